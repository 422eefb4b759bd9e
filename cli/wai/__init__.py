"""wai: a terminal chat tool for Workers AI and local llama.cpp models."""

__version__ = "0.1.0"
