"""One table, all descriptors: the HPatches patch tasks for ours and the anchors, on the same patches.

:func:`run_patch_table` cuts HPatches-style patches (65 x 65, reference + easy / hard / tough jittered
targets, :mod:`lookalike.data.sequence_patches`) from every homography sequence below a folder
(HPatches, Oxford affine, EVD layouts), describes them with every descriptor named (ours, OpenCV's,
kornia's: :mod:`lookalike.eval.protocols.describers`), and runs the tasks of
:mod:`lookalike.eval.protocols.hpatches` on the descriptors: FPR95, verification, matching and retrieval
mAP per difficulty and their mean. :func:`evaluate_patch_table` does the same on patch sets already in
memory (e.g. the HPatches release read by :mod:`lookalike.data.hpatches_patches`).

Convention:
    - Every descriptor sees the same patches; a sequence's patches are described in one call. The
      time column is the describe time per 1000 patches (wall clock of the describer calls only:
      patch cutting and the tasks are not counted; one small warm-up call is not timed either).
    - Numbers are given over all sequences (``"all"``) and per data set
      (:func:`~lookalike.data.sequences.sequence_group`: ``hpatches-sequences``, ``oxford-affine``,
      ``evd``); the distractors of the retrieval task and the inter-sequence negatives of verification
      come from the sequences evaluated together.
    - The rendering (markdown, JSON, terminal table) is in :mod:`lookalike.eval.report`.
    - A descriptor this installation cannot compute (an OpenCV module missing) gets a row without
      numbers and a note; an unknown name is an error.
    - Evaluation only: these numbers are for reporting, never for tuning or choosing a model.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.core.check import check_not_empty, check_positive
from lookalike.core.errors import EmptyInputError, OptionError
from lookalike.data.sequences import sequence_group
from lookalike.eval.protocols.hpatches import HPatchesOptions, evaluate_described

__all__ = [
    "ALL",
    "DEFAULT_DESCRIPTORS",
    "LEVELS",
    "TASKS",
    "PatchTable",
    "PatchTableRow",
    "evaluate_patch_table",
    "run_patch_table",
]

log = logging.getLogger(__name__)

#: Rows of the table when no descriptor is named: the anchors, then ours.
DEFAULT_DESCRIPTORS: tuple[str, ...] = (
    "opencv-sift",
    "opencv-rootsift",
    "opencv-vgg",
    "opencv-boostdesc",
    "opencv-teblid",
    "kornia-sift",
    "kornia-mkd",
    "sift",
    "rootsift",
    "hardnet:bundled",
)
TASKS: tuple[str, ...] = ("fpr95", "verification", "matching", "retrieval")
LEVELS: tuple[str, ...] = ("easy", "hard", "tough", "mean")
ALL = "all"
_WARMUP = 16  # patches of the untimed warm-up call


@dataclass
class PatchTableRow:
    """One descriptor of the table.

    Attributes:
        name: the descriptor's label (its spec, a weights path shortened to the file name).
        results: group (``"all"`` or a data set) -> flat metrics (:func:`evaluate_described`).
        dim: descriptor length (bits for binary descriptors).
        ms_per_1000: describe time per 1000 patches, in milliseconds.
        n_patches: patches described (reference and targets).
        note: why a row has no numbers, or a remark (e.g. untrained network).
    """

    name: str
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    dim: int | None = None
    ms_per_1000: float | None = None
    n_patches: int = 0
    note: str = ""

    @property
    def skipped(self) -> bool:
        return not self.results

    def value(self, task: str, level: str = "mean", group: str = ALL) -> float | None:
        """``results[group]["<task>/<level>"]``, or None when absent."""
        return self.results.get(group, {}).get(f"{task}/{level}")


@dataclass
class PatchTable:
    """Result of :func:`run_patch_table`: one row per descriptor, numbers per group.

    Attributes:
        rows: the descriptors, in the order asked.
        groups: data sets present (``"all"`` not included), sorted.
        sequences: sequence name -> number of reference patches (3D points).
        config: settings, versions and the code revision.
    """

    rows: list[PatchTableRow]
    groups: list[str]
    sequences: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def row(self, name: str) -> PatchTableRow:
        """The row called ``name``."""
        for row in self.rows:
            if row.name == name:
                return row
        raise OptionError(f"no row {name!r}; rows: {[r.name for r in self.rows]}")

    def groups_shown(self) -> list[str]:
        """``"all"``, then every data set with numbers (when there are several data sets)."""
        if len(self.groups) < 2:
            return [ALL]
        return [ALL, *(g for g in self.groups if any(g in r.results for r in self.rows))]

    def group_title(self, group: str) -> str:
        """``"<group> (<n> sequences, <points> points)"``."""
        names = [s for s in self.sequences if group == ALL or sequence_group(s) == group]
        points = sum(self.sequences[s] for s in names)
        label = "all sequences" if group == ALL else group
        return f"{label} ({len(names)} sequences, {points} points)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content (``results.json``)."""
        return {
            "protocol": "HPatches patch tasks (verification, matching, retrieval, FPR95) on "
            "patches cut from homography sequences",
            "groups": [ALL, *self.groups],
            "sequences": dict(self.sequences),
            "config": self.config,
            "rows": [
                {
                    "name": r.name,
                    "dim": r.dim,
                    "ms_per_1000": None if r.ms_per_1000 is None else round(r.ms_per_1000, 3),
                    "n_patches": r.n_patches,
                    "note": r.note,
                    "skipped": r.skipped,
                    "results": r.results,
                }
                for r in self.rows
            ],
        }


# ------------------------------------------------------------------ running
@contextmanager
def _progress_bar(progress: Any) -> Iterator[Any]:
    """``None`` (no bar), the caller's ``rich.progress.Progress``, or a transient one on stderr."""
    if progress is None or progress is False:
        yield None
    elif progress is True:
        from rich.console import Console
        from rich.progress import Progress

        with Progress(console=Console(stderr=True), transient=True) as bar:
            yield bar
    else:
        yield progress


def _stamp(config: dict[str, Any], options: HPatchesOptions) -> dict[str, Any]:
    """``config`` with the protocol options, the versions and the code revision (before the run)."""
    import cv2
    import kornia
    import torch

    import lookalike
    from lookalike.core.runs import git_revision

    return {
        **config,
        "protocol": options.to_dict(),
        "lookalike": lookalike.__version__,
        "git": git_revision(),
        "torch": torch.__version__,
        "kornia": kornia.__version__,
        "opencv": cv2.__version__,
        "torch_threads": torch.get_num_threads(),
        "opencv_threads": cv2.getNumThreads(),
    }


def _describe_row(row: PatchTableRow, describer: Any, sets: Sequence[Any], bar: Any, task: Any):
    """Describe every set with one describer; fills the row's size and time, returns the descriptors."""
    from lookalike.eval.protocols.describers import describe_sequence

    describer(np.ascontiguousarray(sets[0].ref[:_WARMUP]))  # one-off set-up, not timed
    described, seconds = [], 0.0
    for seq in sets:
        if bar is not None:
            bar.update(task, description=f"{row.name:>18} {seq.name}")
        d, dt = describe_sequence(describer, seq)
        described.append(d)
        seconds += dt
        if bar is not None:
            bar.advance(task)
    row.n_patches = sum(len(d) * (1 + len(d.targets)) for d in described)
    row.dim = int(described[0].ref.shape[1])
    row.ms_per_1000 = 1e6 * seconds / max(row.n_patches, 1)
    log.info("%s: %d patches, %.1f ms / 1000", row.name, row.n_patches, row.ms_per_1000)
    return described


def _evaluate_row(
    row: PatchTableRow, described: list[Any], groups: list[str], per_group: bool, options: Any
) -> None:
    """The tasks over all sequences and, with ``per_group``, on each data set alone."""
    subsets = {ALL: described}
    if per_group and len(groups) > 1:
        subsets.update({g: [d for d in described if sequence_group(d.name) == g] for g in groups})
    for g, subset in subsets.items():
        try:
            row.results[g] = evaluate_described(subset, options)
        except EmptyInputError as exc:
            log.warning("%s on %s: %s", row.name, g, exc)
            row.note = "; ".join(filter(None, [row.note, f"{g}: {exc}"]))
    if len(groups) == 1 and ALL in row.results:
        row.results[groups[0]] = row.results[ALL]


def _run(
    entries: list[tuple[str, Any, str]],
    patch_sets: Sequence[Any],
    *,
    bar: Any,
    per_group: bool,
    options: HPatchesOptions,
    config: dict[str, Any],
) -> PatchTable:
    """Describe every set with every entry, evaluate all sequences and each group: the table."""
    config = _stamp(config, options)
    sets = [s for s in patch_sets if len(s) > 0]
    check_not_empty(sets, "patch_sets")
    groups = sorted({sequence_group(s.name) for s in sets})
    active = [e for e in entries if e[1] is not None]
    task = bar.add_task("describing", total=len(active) * len(sets)) if bar is not None else None
    rows = []
    for name, describer, note in entries:
        row = PatchTableRow(name, note=note)
        rows.append(row)
        if describer is None:
            continue
        described = _describe_row(row, describer, sets, bar, task)
        if bar is not None:
            bar.update(task, description=f"{name:>18} evaluating")
        _evaluate_row(row, described, groups, per_group, options)
    return PatchTable(rows, groups, {s.name: len(s) for s in sets}, config)


def evaluate_patch_table(
    patch_sets: Sequence[Any],
    descriptors: Sequence[Any] = DEFAULT_DESCRIPTORS,
    options: HPatchesOptions | None = None,
    *,
    per_group: bool = True,
    device: Any = None,
    batch_size: int = 512,
    progress: Any = False,
) -> PatchTable:
    """The table on patch sets in memory (:class:`~lookalike.data.hpatches_patches.PatchSequence`).

    Args:
        patch_sets: uint8 patch sequences; empty ones are left out.
        descriptors: spec strings (:func:`~lookalike.eval.protocols.describers.resolve_describers`)
            or describers (a callable ``(N, P, P) uint8 -> (N, D)`` with a ``name``).
        options: the task options (:class:`~lookalike.eval.protocols.hpatches.HPatchesOptions`).
        per_group: also evaluate each data set (first part of the sequence names) on its own.
        device: torch device of the torch descriptors (default CPU).
        batch_size: patches per forward pass.
        progress: False, True (a transient rich bar on stderr) or a running ``rich.progress.Progress``.

    Returns:
        A :class:`PatchTable`.

    Raises:
        OptionError: an unknown descriptor (the message lists the valid ones).
        EmptyInputError: no descriptor, or no patch.

    Example:
        >>> import numpy as np
        >>> from lookalike.data.hpatches_patches import PatchSequence
        >>> rng = np.random.default_rng(0)
        >>> refs = [rng.integers(0, 256, (30, 65, 65), dtype=np.uint8) for _ in range(2)]
        >>> sets = [PatchSequence(f"toy/s{i}", r, {"e1": r, "h1": r}) for i, r in enumerate(refs)]
        >>> options = HPatchesOptions(n_pairs=200, n_queries=10)
        >>> evaluate_patch_table(sets, ["sift"], options).row("sift").value("matching", "easy")
        1.0
    """
    from lookalike.eval.protocols.describers import resolve_describers

    check_positive(batch_size, "batch_size")
    entries = resolve_describers(descriptors, device=device, batch_size=batch_size)
    config = {"device": str(device or "cpu"), "batch_size": batch_size}
    with _progress_bar(progress) as bar:
        return _run(
            entries,
            patch_sets,
            bar=bar,
            per_group=per_group,
            options=options or HPatchesOptions(),
            config=config,
        )


def _cut(found: list[Any], budget: int, seed: int, min_patches: int, bar: Any):
    """Patch sets of the sequences with at least ``min_patches`` patches, and those left out."""
    from lookalike.data.sequence_patches import extract_sequence_patches

    patch_sets, left_out = [], []
    task = bar.add_task("cutting patches", total=len(found)) if bar is not None else None
    for seq in found:
        if bar is not None:
            bar.update(task, description=f"cutting patches {seq.name}")
        patches = extract_sequence_patches(seq, budget=budget, seed=seed)
        if len(patches) < min_patches:
            log.warning("%s: %d usable patches, left out", seq.name, len(patches))
        (patch_sets if len(patches) >= min_patches else left_out).append(patches)
        if bar is not None:
            bar.advance(task)
    return patch_sets, left_out


def run_patch_table(
    data_root: str | os.PathLike[str] | None = None,
    descriptors: Sequence[Any] = DEFAULT_DESCRIPTORS,
    options: HPatchesOptions | None = None,
    *,
    groups: Sequence[str] | None = None,
    sequences: Sequence[str] | None = None,
    budget: int = 1000,
    seed: int = 0,
    min_patches: int = 2,
    out_dir: str | os.PathLike[str] | None = None,
    progress: Any = False,
    per_group: bool = True,
    device: Any = None,
    batch_size: int = 512,
) -> PatchTable:
    """Cut patches from every homography sequence below ``data_root`` and tabulate every descriptor.

    Args:
        data_root: folder searched for HPatches / Oxford affine / EVD sequences (default: the data root,
            ``LOOKALIKE_DATA``).
        descriptors: spec strings or describers (see :func:`evaluate_patch_table`); unknown names raise
            before any patch is cut.
        options: the task options; default ``HPatchesOptions(seed=seed)``.
        groups: keep these data sets only; a prefix is enough (``"hpatches"``, ``"oxford"``, ``"evd"``).
        sequences: keep sequences whose name contains one of these strings.
        budget: keypoints detected per reference image (``extract_sequence_patches``).
        seed: jitter of the patches (and, without ``options``, of the task pairs and queries).
        min_patches: sequences with fewer usable patches are left out (listed in the config).
        out_dir: when given, ``results.json`` and ``results.md`` are written there.
        progress: False, True (a transient rich bar on stderr) or a running ``rich.progress.Progress``.
        per_group, device, batch_size: see :func:`evaluate_patch_table`.

    Returns:
        A :class:`PatchTable`.

    Raises:
        OptionError: unknown descriptor or data set.
        DataNotFoundError: no homography sequence below ``data_root`` (after the filters).
    """
    from lookalike.eval.protocols.describers import resolve_describers
    from lookalike.eval.protocols.sequences import find_evaluation_sequences

    check_positive(batch_size, "batch_size")
    opts = options if options is not None else HPatchesOptions(seed=seed)
    entries = resolve_describers(descriptors, device=device, batch_size=batch_size)
    root, found = find_evaluation_sequences(data_root, groups=groups, names=sequences)
    with _progress_bar(progress) as bar:
        patch_sets, left_out = _cut(found, budget, seed, min_patches, bar)
        if not patch_sets:
            raise EmptyInputError(f"no sequence below {root} has {min_patches} usable patches")
        config = {
            "data": str(root),
            "groups": list(groups) if groups else None,
            "sequence_filter": list(sequences) if sequences else None,
            "budget": budget,
            "seed": seed,
            "patch_size": int(patch_sets[0].patch_size),
            "min_patches": min_patches,
            "left_out_sequences": [p.name for p in left_out],
            "device": str(device or "cpu"),
            "batch_size": batch_size,
        }
        table = _run(entries, patch_sets, bar=bar, per_group=per_group, options=opts, config=config)
    if out_dir is not None:
        from lookalike.eval.report.files import write_patch_table

        write_patch_table(table, Path(out_dir))
    return table
