"""Where lookalike looks for data sets, weights and caches.

- ``LOOKALIKE_HOME`` (default ``~/.cache/lookalike``): downloaded weights and other caches.
- ``LOOKALIKE_DATA`` (default ``$LOOKALIKE_HOME/data``): data sets, each in a folder of its own that keeps the
  layout of the original release (``hpatches-sequences/``, ``oxford-affine/``, ...).
"""

from __future__ import annotations

import os
from pathlib import Path

from lookalike.core.errors import DataNotFoundError

__all__ = ["DataNotFoundError", "data_root", "find_dataset", "lookalike_home", "weights_cache"]


def lookalike_home() -> Path:
    """The cache root: ``$LOOKALIKE_HOME`` or ``~/.cache/lookalike``."""
    env = os.environ.get("LOOKALIKE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lookalike"


def data_root() -> Path:
    """The data root: ``$LOOKALIKE_DATA`` or ``$LOOKALIKE_HOME/data``."""
    env = os.environ.get("LOOKALIKE_DATA")
    return Path(env).expanduser() if env else lookalike_home() / "data"


def weights_cache() -> Path:
    """Folder where downloaded weight files are cached: ``$LOOKALIKE_HOME/weights``."""
    return lookalike_home() / "weights"


def find_dataset(name: str, *, root: str | os.PathLike[str] | None = None, how: str = "") -> Path:
    """Return the folder of data set ``name`` under the data root.

    Args:
        name: folder name of the data set (e.g. ``"hpatches-sequences"``).
        root: data root to search instead of :func:`data_root`.
        how: one sentence telling the user how to obtain the data set, appended to the error.

    Returns:
        The existing folder ``root / name``.

    Raises:
        DataNotFoundError: the folder does not exist; the message says where it looked.

    Example:
        >>> find_dataset("no-such-set", root="/nonexistent", how="Download it from the authors.")
        Traceback (most recent call last):
        ...
        lookalike.core.errors.DataNotFoundError: data set 'no-such-set' not found: looked in /nonexistent/no-such-set (set LOOKALIKE_DATA to the folder that holds it). Download it from the authors.
    """
    base = Path(root).expanduser() if root is not None else data_root()
    path = base / name
    if path.is_dir():
        return path
    msg = (
        f"data set {name!r} not found: looked in {path} "
        "(set LOOKALIKE_DATA to the folder that holds it)."
    )
    raise DataNotFoundError(f"{msg} {how}".strip())
