"""Finding the evaluation sequences below a data folder, shared by the matching and patch protocols."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lookalike.core.errors import DataNotFoundError, OptionError
from lookalike.data.sequences import LAYOUTS, sequence_group

if TYPE_CHECKING:
    from lookalike.data.sequences import HomographySequence

__all__ = ["find_evaluation_sequences"]

_HOW = (
    "set LOOKALIKE_DATA to the folder holding the evaluation data (or pass --data FOLDER); "
    f"layouts read below it: {LAYOUTS}"
)


def find_evaluation_sequences(
    data_root: str | os.PathLike[str] | None = None,
    *,
    groups: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
) -> tuple[Path, list[HomographySequence]]:
    """The data folder and its homography sequences, filtered by data set and by name.

    Args:
        data_root: folder searched (default: ``LOOKALIKE_DATA``, else ``~/.cache/lookalike/data``).
        groups: keep these data sets; a prefix is enough (``"hpatches"``, ``"oxford"``, ``"evd"``).
        names: keep sequences whose name contains one of these strings.

    Returns:
        ``(folder, sequences)``, sequences sorted by name and never empty.

    Raises:
        DataNotFoundError: the folder is missing or holds no sequence; the message says how to point at
            the data and which layouts are read.
        OptionError: a data set of ``groups`` is not in the folder (the message lists those present).

    Example:
        >>> find_evaluation_sequences("/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lookalike.core.errors.DataNotFoundError: no such folder: /nonexistent; set LOOKALIKE_DATA ...
    """
    from lookalike.core.data import data_root as default_root
    from lookalike.data.sequences import find_sequences

    root = Path(data_root).expanduser() if data_root is not None else default_root()
    if not root.is_dir():
        raise DataNotFoundError(f"no such folder: {root}; {_HOW}")
    sequences = find_sequences(root)
    if groups:
        present = sorted({sequence_group(s.name) for s in sequences})
        for want in groups:
            if not any(g.startswith(want) for g in present):
                raise OptionError(
                    f"groups: no data set {want!r} in this folder; present: {present}"
                )
        sequences = [
            s for s in sequences if any(sequence_group(s.name).startswith(w) for w in groups)
        ]
    if names:
        sequences = [s for s in sequences if any(n in s.name for n in names)]
    if not sequences:
        which = f" matching {list(names)}" if names else ""
        raise DataNotFoundError(f"no homography sequence{which} below {root}; {_HOW}")
    return root, sequences
