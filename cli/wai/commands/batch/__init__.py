"""`wai batch`: many prompts at once, from a file or a pipe, one JSON line of answer per record."""

from wai.commands.batch.command import BatchOptions, run_batch

__all__ = ["BatchOptions", "run_batch"]
