"""lookalike: learned visual descriptors for patches, images and people.

Build any registered component by name::

    >>> import lookalike
    >>> desc = lookalike.create("descriptor", "sift", patch_size=32)
    >>> "descriptor" in lookalike.KINDS
    True

``import lookalike`` is cheap: torch, OpenCV, faiss and timm are imported only where used.
"""

from __future__ import annotations

from lookalike._registry import KINDS, create, list_registered, register
from lookalike.core.errors import LookalikeError, ShapeError

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "LookalikeError",
    "ShapeError",
    "__version__",
    "create",
    "list_registered",
    "register",
]
