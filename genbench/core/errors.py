"""genbench's own error types: the only errors treated as the user's to fix.

A :class:`GenbenchError` is printed (and recorded in a run record) as its one-paragraph message, without a
traceback: what is wrong, what is valid, where to get what is missing. Every other exception is a bug in
genbench or in a user's model, and keeps its traceback in the run record and the log.
"""

from __future__ import annotations

import difflib


class GenbenchError(Exception):
    """A mistake in what was asked for, or missing input; the message says what is valid."""


class ConfigError(GenbenchError, ValueError):
    """A config value outside what the code accepts (unknown name, out-of-range number, wrong data for a model)."""


class DataError(GenbenchError):
    """Data that cannot be used as loaded (non-finite values, shapes that do not match the declared space)."""


class ModelContractError(GenbenchError):
    """A model (often a user's own) whose capability methods return the wrong thing, e.g. a ``log_prob`` that does not
    give one number per example (docs/design.md, "Model capabilities")."""


class PrecisionError(GenbenchError):
    """A likelihood, bound or AIS asked to run in half precision (or under autocast)."""


class CheckpointError(GenbenchError):
    """A file that is not a readable checkpoint written by a genbench run."""


class CLIError(GenbenchError):
    """A mistake on the command line itself (a missing argument, a model file that does not exist)."""


class TableError(ConfigError):
    """A bad table name, scale or table config; the message lists the valid choices."""


class PublishedError(ConfigError):
    """A malformed or duplicate published-number record; names the file and id."""


class IncompatibleDataError(ConfigError):
    """A model asked to train on a data space it does not support."""


class DataUnavailableError(GenbenchError, RuntimeError):
    """Data files are missing and could not be downloaded."""


class ChecksumError(GenbenchError, RuntimeError):
    """A data file is present but is not the official file."""


class UnknownNameError(ConfigError):
    """An unknown model or data name; the message lists the valid choices."""


def closest(name: str, valid) -> str:
    """`` (did you mean X?)`` for the valid names closest to a misspelled one, or nothing."""
    near = difflib.get_close_matches(name, list(valid), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(near)}?)" if near else ""
