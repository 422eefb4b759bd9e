"""Sinks show a turn's events: a live panel on a terminal, plain text in a pipe, JSON for scripts."""
