"""Backends turn a Request into a stream of Events. Each knows nothing of terminals."""
