"""Exceptions raised by symrnn.

Every error a user can cause (bad data file, bad setting, bad model file)
is one of these, with a one-line message saying what is wrong and what to do.
Scripts catch :class:`SymrnnError`, print its message and exit with status 2.
"""


class SymrnnError(Exception):
    """Base class of every error symrnn raises on bad input."""


class ConfigError(SymrnnError):
    """A setting (environment variable or argument) has an invalid value."""


class DataError(SymrnnError):
    """A data file or corpus cannot be read or holds no usable text."""


class CheckpointError(SymrnnError):
    """A model file is missing, corrupt, of unknown layout or mismatched."""
