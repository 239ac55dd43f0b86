"""One table, all descriptors: the HPatches patch tasks for ours and the anchors, on the same patches.

:func:`run_patch_table` cuts HPatches-style patches (65 x 65, reference + easy / hard / tough jittered
targets, :mod:`lookalike.data.sequence_patches`) from every homography sequence below a folder
(HPatches, Oxford affine, EVD layouts), describes them with every descriptor named (ours, OpenCV's,
kornia's: :mod:`lookalike.eval.patch_baselines`), and runs the tasks of
:mod:`lookalike.eval.patch_protocols` on the descriptors: FPR95, verification, matching and retrieval
mAP per difficulty and their mean. :func:`evaluate_patch_table` does the same on patch sets already in
memory (e.g. the HPatches release read by :mod:`lookalike.data.hpatches_patches`).

Convention:
    - Every descriptor sees the same patches; a sequence's patches are described in one call. The
      time column is the describe time per 1000 patches (wall clock of the describer calls only:
      patch cutting and the tasks are not counted; one small warm-up call is not timed either).
    - Numbers are given over all sequences (``"all"``) and per data set (the first part of a sequence
      name: ``hpatches-sequences``, ``oxford-affine``, ``evd``); the distractors of the retrieval task and
      the inter-sequence negatives of verification come from the sequences evaluated together.
    - A descriptor this installation cannot compute (an OpenCV module missing) gets a row without
      numbers and a note; an unknown name is an error.
    - Evaluation only: these numbers are for reporting, never for tuning or choosing a model.
"""

from __future__ import annotations

import json
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
from lookalike.eval.patch_baselines import describe_sequence, resolve_describers
from lookalike.eval.patch_protocols import (
    POOL_SIZES,
    evaluate_described,
)

__all__ = [
    "ALL",
    "DEFAULT_DESCRIPTORS",
    "LEVELS",
    "TASKS",
    "PatchTable",
    "PatchTableRow",
    "evaluate_described",
    "evaluate_patch_table",
    "run_patch_table",
    "sequence_group",
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
_TITLES = {
    "fpr95": "FPR95",
    "verification": "verification mAP",
    "matching": "matching mAP",
    "retrieval": "retrieval mAP",
}
_WARMUP = 16  # patches of the untimed warm-up call


def sequence_group(name: str) -> str:
    """Data set of a sequence: ``"oxford-affine/graf"`` -> ``"oxford-affine"``."""
    return name.split("/", 1)[0]


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


def _best(values: list[float | None], lower: bool) -> float | None:
    present = [round(v, 3) for v in values if v is not None]
    if len(present) < 2:
        return None
    return min(present) if lower else max(present)


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

    def _groups_shown(self) -> list[str]:
        if len(self.groups) < 2:
            return [ALL]
        return [ALL, *(g for g in self.groups if any(g in r.results for r in self.rows))]

    def to_dict(self) -> dict[str, Any]:
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

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def _group_title(self, group: str) -> str:
        names = [s for s in self.sequences if group == ALL or sequence_group(s) == group]
        points = sum(self.sequences[s] for s in names)
        label = "all sequences" if group == ALL else group
        return f"{label} ({len(names)} sequences, {points} points)"

    def to_markdown(self) -> str:
        """A table over all sequences, then one per data set; best value per column in bold."""
        lines = [
            "# Patch descriptors: HPatches tasks on the same patches",
            "",
            "FPR95: false positive rate at 95 % recall of the verification pairs (lower is better); "
            "verification / matching / retrieval: mean average precision (higher is better), per "
            "jitter level (easy / hard / tough) and their mean. ms/1k: describe time per 1000 "
            "patches.",
        ]
        header = ["descriptor", "dim"]
        header += [
            f"{_TITLES[t].split()[0]} {lv[0] if lv != 'mean' else 'mean'}"
            for t in TASKS
            for lv in LEVELS
        ]
        header.append("ms/1k")
        for group in self._groups_shown():
            lines += ["", f"## {self._group_title(group)}", ""]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|---|" + "---:|" * (len(header) - 1))
            best = {
                (t, lv): _best([r.value(t, lv, group) for r in self.rows], lower=t == "fpr95")
                for t in TASKS
                for lv in LEVELS
            }
            for r in self.rows:
                cells = [r.name, "-" if r.dim is None else str(r.dim)]
                for t in TASKS:
                    for lv in LEVELS:
                        v = r.value(t, lv, group)
                        text = "-" if v is None else f"{v:.3f}"
                        cells.append(
                            f"**{text}**"
                            if v is not None and round(v, 3) == best[(t, lv)]
                            else text
                        )
                cells.append("-" if r.ms_per_1000 is None else f"{r.ms_per_1000:.0f}")
                lines.append("| " + " | ".join(cells) + " |")
        notes = [f"- {r.name}: {r.note}" for r in self.rows if r.note]
        if notes:
            lines += ["", "## Notes", "", *notes]
        if self.config:
            lines += ["", "## Settings", "", "```json", json.dumps(self.config, indent=2), "```"]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``results.json`` and ``results.md`` into ``out_dir`` (created); return their paths."""
        out = Path(out_dir).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        paths = {"json": out / "results.json", "markdown": out / "results.md"}
        paths["json"].write_text(self.to_json())
        paths["markdown"].write_text(self.to_markdown())
        return paths

    def rich_table(self, group: str = ALL) -> Any:
        """A ``rich.table.Table`` of one group: each task as ``mean (easy/hard/tough)``."""
        from rich.table import Table

        if group != ALL and group not in self.groups:
            raise OptionError(f"group: expected one of {[ALL, *self.groups]}, got {group!r}")
        table = Table(title=f"patch descriptors: {self._group_title(group)}")
        table.add_column("descriptor", style="bold")
        table.add_column("dim", justify="right")
        for t in TASKS:
            table.add_column(f"{_TITLES[t]}{' ↓' if t == 'fpr95' else ''}", justify="right")
        table.add_column("ms/1k", justify="right")
        for r in self.rows:
            cells = [r.name, "-" if r.dim is None else str(r.dim)]
            for t in TASKS:
                mean = r.value(t, "mean", group)
                levels = [r.value(t, lv, group) for lv in LEVELS[:3]]
                if mean is None:
                    cells.append("-")
                    continue
                detail = "/".join("-" if v is None else f"{v:.2f}" for v in levels)
                cells.append(f"{mean:.3f} ({detail})")
            cells.append("-" if r.ms_per_1000 is None else f"{r.ms_per_1000:.0f}")
            table.add_row(*cells, style="dim" if r.skipped else None)
        return table


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


def _run(
    entries: list[tuple[str, Any, str]],
    patch_sets: Sequence[Any],
    *,
    bar: Any,
    per_group: bool,
    protocol: dict[str, Any],
    config: dict[str, Any],
) -> PatchTable:
    """Describe every set with every entry, evaluate all sequences and each group: the table."""
    import cv2
    import kornia
    import torch

    import lookalike
    from lookalike.core.runs import git_revision

    config = {  # stamped before the run: the code and versions that produce the numbers
        **config,
        "protocol": {**protocol, "pool_sizes": list(protocol["pool_sizes"])},
        "lookalike": lookalike.__version__,
        "git": git_revision(),
        "torch": torch.__version__,
        "kornia": kornia.__version__,
        "opencv": cv2.__version__,
        "torch_threads": torch.get_num_threads(),
        "opencv_threads": cv2.getNumThreads(),
    }
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
        describer(np.ascontiguousarray(sets[0].ref[:_WARMUP]))  # one-off set-up, not timed
        described, seconds = [], 0.0
        for seq in sets:
            if bar is not None:
                bar.update(task, description=f"{name:>18} {seq.name}")
            d, dt = describe_sequence(describer, seq)
            described.append(d)
            seconds += dt
            if bar is not None:
                bar.advance(task)
        row.n_patches = sum(len(d) * (1 + len(d.targets)) for d in described)
        row.dim = int(described[0].ref.shape[1])
        row.ms_per_1000 = 1e6 * seconds / max(row.n_patches, 1)
        log.info("%s: %d patches, %.1f ms / 1000", name, row.n_patches, row.ms_per_1000)
        subsets = {ALL: described}
        if per_group and len(groups) > 1:
            subsets.update(
                {g: [d for d in described if sequence_group(d.name) == g] for g in groups}
            )
        for g, subset in subsets.items():
            if bar is not None:
                bar.update(task, description=f"{name:>18} evaluating {g}")
            try:
                row.results[g] = evaluate_described(subset, **protocol)
            except EmptyInputError as exc:
                log.warning("%s on %s: %s", name, g, exc)
                row.note = "; ".join(filter(None, [row.note, f"{g}: {exc}"]))
        if len(groups) == 1 and ALL in row.results:
            row.results[groups[0]] = row.results[ALL]
        if ALL in row.results:
            log.info(
                "%s: FPR95 %.3f, mAP verification %.3f matching %.3f retrieval %.3f (all)",
                name,
                *(row.value(t) for t in TASKS),
            )
    return PatchTable(rows, groups, {s.name: len(s) for s in sets}, config)


def evaluate_patch_table(
    patch_sets: Sequence[Any],
    descriptors: Sequence[Any] = DEFAULT_DESCRIPTORS,
    *,
    per_group: bool = True,
    device: Any = None,
    batch_size: int = 512,
    n_pairs: int = 100_000,
    n_queries: int = 1000,
    pool_sizes: Sequence[int] = POOL_SIZES,
    n_distractors: int = 20_000,
    seed: int = 42,
    progress: Any = False,
) -> PatchTable:
    """The table on patch sets in memory (:class:`~lookalike.data.hpatches_patches.PatchSequence`).

    Args:
        patch_sets: uint8 patch sequences; empty ones are left out.
        descriptors: spec strings (:func:`~lookalike.eval.patch_baselines.create_patch_describer`)
            or describers (a callable ``(N, P, P) uint8 -> (N, D)`` with a ``name``).
        per_group: also evaluate each data set (first part of the sequence names) on its own.
        device: torch device of the torch descriptors (default CPU).
        batch_size: patches per forward pass.
        n_pairs, n_queries, pool_sizes, n_distractors, seed: options of the tasks
            (:func:`evaluate_described`).
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
        >>> table = evaluate_patch_table(sets, ["sift"], n_pairs=200, n_queries=10)
        >>> table.row("sift").value("matching", "easy")
        1.0
    """
    check_positive(batch_size, "batch_size")
    entries = resolve_describers(descriptors, device=device, batch_size=batch_size)
    protocol = _protocol(n_pairs, n_queries, pool_sizes, n_distractors, seed)
    config = {"device": str(device or "cpu"), "batch_size": batch_size}
    with _progress_bar(progress) as bar:
        return _run(
            entries, patch_sets, bar=bar, per_group=per_group, protocol=protocol, config=config
        )


def _protocol(
    n_pairs: int, n_queries: int, pool_sizes: Sequence[int], n_distractors: int, seed: int
):
    return {
        "n_pairs": n_pairs,
        "n_queries": n_queries,
        "pool_sizes": tuple(pool_sizes),
        "n_distractors": n_distractors,
        "seed": seed,
    }


def _select(
    sequences: list[Any], groups: Sequence[str] | None, names: Sequence[str] | None
) -> list[Any]:
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
    return sequences


def run_patch_table(
    data_root: str | os.PathLike[str] | None = None,
    descriptors: Sequence[Any] = DEFAULT_DESCRIPTORS,
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
    n_pairs: int = 100_000,
    n_queries: int = 1000,
    pool_sizes: Sequence[int] = POOL_SIZES,
    n_distractors: int = 20_000,
) -> PatchTable:
    """Cut patches from every homography sequence below ``data_root`` and tabulate every descriptor.

    Args:
        data_root: folder searched for HPatches / Oxford affine / EVD sequences (default: the data root,
            ``LOOKALIKE_DATA``).
        descriptors: spec strings or describers (see :func:`evaluate_patch_table`); unknown names raise
            before any patch is cut.
        groups: keep these data sets only; a prefix is enough (``"hpatches"``, ``"oxford"``, ``"evd"``).
        sequences: keep sequences whose name contains one of these strings.
        budget: keypoints detected per reference image (``extract_sequence_patches``).
        seed: jitter of the patches and the random pairs and queries of the tasks.
        min_patches: sequences with fewer usable patches are left out (listed in the config).
        out_dir: when given, ``results.json`` and ``results.md`` are written there.
        progress: False, True (a transient rich bar on stderr) or a running ``rich.progress.Progress``.
        per_group, device, batch_size, n_pairs, n_queries, pool_sizes, n_distractors: see
            :func:`evaluate_patch_table`.

    Returns:
        A :class:`PatchTable` (``.rows``, ``.to_markdown()``, ``.to_json()``, ``.write(dir)``,
        ``.rich_table()``).

    Raises:
        OptionError: unknown descriptor or data set.
        DataNotFoundError: no homography sequence below ``data_root`` (after the filters).
    """
    from lookalike.core.data import data_root as default_root
    from lookalike.core.errors import DataNotFoundError
    from lookalike.data.sequence_patches import extract_sequence_patches
    from lookalike.data.sequences import find_sequences

    check_positive(batch_size, "batch_size")
    root = Path(data_root).expanduser() if data_root is not None else default_root()
    entries = resolve_describers(descriptors, device=device, batch_size=batch_size)
    found = _select(find_sequences(root), groups, sequences)
    if not found:
        raise DataNotFoundError(
            f"no homography sequence (HPatches, Oxford affine or EVD) below {root}"
        )
    patch_sets, left_out = [], []
    with _progress_bar(progress) as bar:
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
        protocol = _protocol(n_pairs, n_queries, pool_sizes, n_distractors, seed)
        table = _run(
            entries, patch_sets, bar=bar, per_group=per_group, protocol=protocol, config=config
        )
    if out_dir is not None:
        table.write(out_dir)
    return table
