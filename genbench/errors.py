"""genbench's own error types: the only errors treated as the user's to fix.

A :class:`GenbenchError` is printed (and recorded in a run record) as its one-paragraph message, without a
traceback: what is wrong, what is valid, where to get what is missing. Every other exception is a bug in
genbench or in a user's model, and keeps its traceback in the run record and the log.
"""

from __future__ import annotations


class GenbenchError(Exception):
    """A mistake in what was asked for, or missing input; the message says what is valid."""


class ConfigError(GenbenchError, ValueError):
    """A config value outside what the code accepts (unknown name, out-of-range number, wrong data for a model)."""
