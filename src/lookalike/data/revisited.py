"""Revisited Oxford and Paris (Radenović et al., CVPR 2018): ground truth read without unpickling code.

Layout of the public release: ``<root>/roxford5k/gnd_roxford5k.pkl`` and ``<root>/roxford5k/jpg/*.jpg``
(``rparis6k`` alike). The pickle holds ``{"imlist": [...], "qimlist": [...], "gnd": [{"bbx": [...],
"easy": array, "hard": array, "junk": array}, ...]}``. It is read with a restricted unpickler that
builds plain containers (dict, list, tuple, str, numbers) and NumPy arrays only: any other global in
the file (a class, a function such as ``os.system``) is refused with :class:`UnsafePickleError`
before it is looked up.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.core.errors import DataNotFoundError, LookalikeError

__all__ = ["RevisitedDataset", "UnsafePickleError", "read_revisited", "safe_load_pickle"]

#: The only globals a ground-truth pickle may name: NumPy's array and scalar reconstruction.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class UnsafePickleError(LookalikeError):
    """A pickle names a global outside the allowed plain containers and NumPy arrays."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to unpickle {module}.{name}: only plain containers and NumPy arrays are allowed"
        )


def safe_load_pickle(data: bytes | str | os.PathLike[str]) -> Any:
    """Unpickle bytes or a file allowing plain containers and NumPy arrays only.

    Raises:
        UnsafePickleError: the pickle names any other global.
        DataNotFoundError: no such file.
        LookalikeError: a truncated or corrupt pickle.

    Example:
        >>> import pickle, numpy as np
        >>> safe_load_pickle(pickle.dumps({"easy": np.arange(3)}))["easy"].tolist()
        [0, 1, 2]
        >>> safe_load_pickle(pickle.dumps(print))
        Traceback (most recent call last):
        ...
        lookalike.data.revisited.UnsafePickleError: refusing to unpickle builtins.print: only plain containers and NumPy arrays are allowed
    """
    if isinstance(data, bytes):
        raw = data
    else:
        path = Path(data)
        if not path.is_file():
            raise DataNotFoundError(f"no such file: {path}")
        raw = path.read_bytes()
    try:
        return _RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # pickle raises many types for bad input
        raise LookalikeError(f"cannot read the pickle ({type(exc).__name__}: {exc})") from exc


@dataclass
class RevisitedDataset:
    """A revisited data set: database and query image files, per-query ground truth.

    Attributes:
        name: ``roxford5k`` or ``rparis6k``.
        images: database image files.
        queries: query image files.
        ground_truth: per query ``{"easy", "hard", "junk"}`` database indices and ``bbx``.
    """

    name: str
    images: list[Path]
    queries: list[Path]
    ground_truth: list[dict[str, Any]]


def read_revisited(root: str | os.PathLike[str], name: str = "roxford5k") -> RevisitedDataset:
    """Read ``<root>/<name>/gnd_<name>.pkl`` and list the images under ``<root>/<name>/jpg``.

    Raises:
        DataNotFoundError: no ground-truth file.
        UnsafePickleError: the ground truth names a forbidden global.
        LookalikeError: the ground truth lacks ``imlist``, ``qimlist`` or ``gnd``.
    """
    folder = Path(root).expanduser() / name
    gnd_file = folder / f"gnd_{name}.pkl"
    if not gnd_file.is_file():
        raise DataNotFoundError(f"revisited: no ground truth at {gnd_file}")
    data = safe_load_pickle(gnd_file)
    if not isinstance(data, dict) or not {"imlist", "qimlist", "gnd"} <= set(data):
        raise LookalikeError(f"{gnd_file}: expected a dict with imlist, qimlist and gnd")
    truth = []
    for entry in data["gnd"]:
        truth.append(
            {
                k: np.asarray(entry.get(k, []), dtype=np.int64).ravel()
                for k in ("easy", "hard", "junk")
            }
        )
        truth[-1]["bbx"] = entry.get("bbx")
    jpg = folder / "jpg"
    return RevisitedDataset(
        name=name,
        images=[jpg / f"{i}.jpg" for i in data["imlist"]],
        queries=[jpg / f"{q}.jpg" for q in data["qimlist"]],
        ground_truth=truth,
    )
