"""Exception hierarchy. Every user-facing error is a :class:`LookalikeError` and a ``ValueError``."""

from __future__ import annotations


class LookalikeError(ValueError):
    """Base class of every error lookalike raises for bad input, options, files or data."""


class ShapeError(LookalikeError):
    """A tensor has the wrong number of dimensions or a dimension of the wrong size."""


class DTypeError(LookalikeError):
    """A tensor has a dtype the function does not accept."""


class ValueRangeError(LookalikeError):
    """Values are non-finite or outside the accepted range."""


class EmptyInputError(LookalikeError):
    """An input that must hold at least one element is empty."""


class OptionError(LookalikeError):
    """A keyword option has an unsupported value."""


class DataNotFoundError(LookalikeError, FileNotFoundError):
    """A data set or file is not where it was looked for."""
