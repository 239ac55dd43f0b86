"""lookalike: learned visual descriptors for patches, images and people.

Build any registered component by name::

    >>> import lookalike
    >>> desc = lookalike.create("descriptor", "sift", patch_size=32)
    >>> "descriptor" in lookalike.KINDS
    True

Every error lookalike raises for bad input is a :class:`LookalikeError` (a ``ValueError``)::

    >>> issubclass(lookalike.ShapeError, lookalike.LookalikeError)
    True

``import lookalike`` is cheap: torch, OpenCV, faiss and timm are imported only where used.
"""

from __future__ import annotations

from lookalike._registry import KINDS, RegistryError, create, list_registered, register
from lookalike._version import __version__
from lookalike.core.errors import (
    DataNotFoundError,
    DTypeError,
    EmptyInputError,
    LookalikeError,
    OptionError,
    ShapeError,
    ValueRangeError,
)

__all__ = [
    "KINDS",
    "DTypeError",
    "DataNotFoundError",
    "EmptyInputError",
    "LookalikeError",
    "OptionError",
    "RegistryError",
    "ShapeError",
    "ValueRangeError",
    "__version__",
    "create",
    "list_registered",
    "register",
]
