"""HPatches patch protocol: verification, matching and retrieval mAP and FPR95 (protocol ``hpatches``).

The HPatches tasks follow the hpatches-benchmark code (``python/utils/tasks.py``, Balntas et al. 2017) on
:class:`~lookalike.data.hpatches_patches.PatchSequence` inputs, either the HPatches release or patches cut
from any homography sequences (:mod:`lookalike.data.sequence_patches`). Image ``0`` is the reference, images
``1..K`` the targets; ``"e"``, ``"h"``, ``"t"`` the easy / hard / tough jitter. Distances are Euclidean.

- Verification: ``n_pairs`` positive pairs (a random sequence, patch and two distinct images), as many
  intra-sequence negatives (same sequence and images, another patch) and inter-sequence negatives (another
  sequence). Per difficulty and negative kind, AP (:func:`~lookalike.eval.metrics.average_precision`) of the
  *imbalanced* set: all negatives and the first 20 % of the positives, scored by ``-distance``.
- Matching: per sequence, difficulty and target image, every reference patch is matched to its nearest target
  patch; AP of the nearest-neighbour distances with "correct" = same row, out of ``N`` positives. Averaged over
  the targets of a sequence, then over sequences.
- Retrieval: queries are reference patches with a standard deviation above 10 grey levels; for a query its
  ``K`` target patches are the positives, the distractors are reference patches of the *other* sequences from
  one shuffled pool. AP over the first ``k`` entries of ``[positives, distractors]`` for each pool size ``k``
  (100 ... 20 000, capped at what is available), averaged over queries, then over the pool sizes (sizes that
  would all be capped to the same list are counted once).
- FPR95: :func:`~lookalike.eval.metrics.fpr_at_recall` on the verification positives against all its
  negatives (intra and inter).
- Describing: every patch goes through :func:`lookalike.descriptors.describe.describe_patches`, the one
  describe path (area resize to the descriptor's ``patch_size``), so the registered ``hpatches`` protocol and
  the descriptor table (:mod:`lookalike.eval.protocols.patch_table`) give the same numbers.

Deviations from the benchmark code, all deterministic given ``seed``: positives use every image pair (the
benchmark draws image ids from 0..4 only), an inter-sequence negative always comes from another sequence, and
duplicate capped pool sizes are averaged once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from lookalike._registry import register
from lookalike.core.check import check_not_empty, check_positive
from lookalike.core.errors import EmptyInputError, OptionError
from lookalike.data.hpatches_patches import DIFFICULTIES, PatchSequence
from lookalike.eval.metrics.patch import average_precision, fpr_at_recall, pairwise_distances

__all__ = [
    "POOL_SIZES",
    "DescribedSequence",
    "HPatchesOptions",
    "HPatchesProtocol",
    "describe_sequences",
    "evaluate_described",
    "evaluate_patch_descriptor",
    "hpatches_matching",
    "hpatches_retrieval",
    "hpatches_verification",
    "verification_pairs",
]

POOL_SIZES: tuple[int, ...] = (100, 500, 1000, 5000, 10000, 15000, 20000)
#: A torch patch descriptor: ``(B, C, p, p)`` float in [0, 1] -> ``(B, D)``.
DescribeFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class HPatchesOptions:
    """Options of the HPatches tasks, shared by every entry point (protocol, table, CLI).

    Attributes:
        n_pairs: verification pairs per kind (positives, intra and inter negatives).
        n_queries: retrieval queries (at most).
        pool_sizes: retrieval distractor pool sizes.
        n_distractors: retrieval distractor pool (the benchmark's 20 000).
        seed: seed of the verification pairs and the retrieval queries.

    Example:
        >>> HPatchesOptions(n_pairs=1000).n_queries
        1000
        >>> HPatchesOptions.coerce({"seed": 3}).seed
        3
    """

    n_pairs: int = 100_000
    n_queries: int = 1000
    pool_sizes: tuple[int, ...] = POOL_SIZES
    n_distractors: int = 20_000
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("n_pairs", "n_queries", "n_distractors"):
            check_positive(getattr(self, name), name)
        sizes = tuple(self.pool_sizes)
        if not sizes or not all(isinstance(k, (int, np.integer)) and k > 0 for k in sizes):
            raise OptionError(f"pool_sizes: expected positive integers, got {self.pool_sizes!r}")
        object.__setattr__(self, "pool_sizes", tuple(int(k) for k in sizes))
        if not isinstance(self.seed, (int, np.integer)):
            raise OptionError(f"seed: expected an integer, got {self.seed!r}")

    @classmethod
    def coerce(cls, value: Any = None, **overrides: Any) -> HPatchesOptions:
        """``None`` (defaults), an instance or a mapping of fields; ``overrides`` win.

        Raises:
            OptionError: an unknown field (the message lists the known ones).
        """
        base = {} if value is None else asdict(value) if isinstance(value, cls) else dict(value)
        merged = {**base, **overrides}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise OptionError(
                f"HPatches options: unknown {unknown}; expected some of {sorted(known)}"
            )
        return cls(**merged)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``pool_sizes`` as a list)."""
        return {**asdict(self), "pool_sizes": list(self.pool_sizes)}


@dataclass(frozen=True)
class DescribedSequence:
    """Descriptors of a :class:`PatchSequence`: ``ref`` ``(N, D)``, ``targets`` by key, ``ref_std`` ``(N,)``."""

    name: str
    ref: np.ndarray = field(repr=False)
    targets: Mapping[str, np.ndarray] = field(repr=False)
    ref_std: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return int(self.ref.shape[0])

    def images(self, difficulty: str) -> int:
        """Number of images (reference included) at ``difficulty``."""
        return 1 + sum(1 for k in self.targets if k[0] == difficulty)

    def stack(self, difficulty: str) -> np.ndarray:
        """``(images, N, D)``: the reference then targets 1..K at ``difficulty``."""
        keys = sorted((k for k in self.targets if k[0] == difficulty), key=lambda k: int(k[1:]))
        return np.stack([self.ref] + [self.targets[k] for k in keys])


def describe_sequences(
    describer: DescribeFn,
    sequences: Sequence[PatchSequence],
    *,
    batch_size: int = 512,
    patch_size: int | None = None,
    device: str | torch.device | None = None,
) -> list[DescribedSequence]:
    """Describe every patch of every sequence, one batched pass per sequence.

    Patches go through :func:`lookalike.descriptors.describe.describe_patches` (uint8 scaled to [0, 1],
    area-resized to ``patch_size``, default ``describer.patch_size``).

    Example:
        >>> import numpy as np, torch
        >>> ref = np.zeros((3, 8, 8), np.uint8)
        >>> seq = describe_sequences(lambda x: x.flatten(1), [PatchSequence("s", ref, {"e1": ref})])[0]
        >>> seq.ref.shape, list(seq.targets)
        ((3, 64), ['e1'])
    """
    from lookalike.descriptors.describe import describe_patches

    check_not_empty(list(sequences), "sequences")
    described = []
    for seq in sequences:
        keys = list(seq.targets)
        patches = np.concatenate([seq.ref] + [seq.targets[k] for k in keys])
        desc = describe_patches(
            describer, patches, batch_size=batch_size, patch_size=patch_size, device=device
        )
        desc = desc.detach().to("cpu", torch.float32).numpy()
        n = len(seq)
        targets = {k: desc[(i + 1) * n : (i + 2) * n] for i, k in enumerate(keys)}
        std = seq.ref.reshape(n, -1).astype(np.float64).std(axis=1)
        if seq.ref.dtype != np.uint8:
            std = std * 255.0
        described.append(DescribedSequence(seq.name, desc[:n], targets, std))
    return described


def _difficulties(described: Sequence[DescribedSequence]) -> list[str]:
    if not described:
        raise EmptyInputError("no sequence to evaluate")
    present = [d for d in DIFFICULTIES if all(s.images(d) > 1 for s in described)]
    if not present:
        raise EmptyInputError("no difficulty has target patches in every sequence")
    return present


def _flat(described: Sequence[DescribedSequence], difficulty: str) -> tuple[np.ndarray, np.ndarray]:
    """All descriptors at ``difficulty`` in one array, and each sequence's offset into it."""
    stacks = [s.stack(difficulty).reshape(-1, s.ref.shape[1]) for s in described]
    offsets = np.cumsum([0] + [len(x) for x in stacks[:-1]])
    return np.concatenate(stacks), offsets


def verification_pairs(
    described: Sequence[DescribedSequence], difficulty: str, n_pairs: int, seed: int
) -> dict[str, np.ndarray]:
    """Pairs ``(n, 6)`` as ``seq1, image1, patch1, seq2, image2, patch2`` for ``pos``, ``intra``, ``inter``."""
    rng = np.random.default_rng(seed)
    lengths = np.array([len(s) for s in described])
    n_img = np.array([s.images(difficulty) for s in described])
    eligible = np.flatnonzero(lengths >= 2)
    if eligible.size == 0:
        raise EmptyInputError("verification: every sequence has fewer than 2 patches")
    s = rng.choice(eligible, size=n_pairs)
    i1 = (rng.random(n_pairs) * lengths[s]).astype(np.int64)
    i2 = (i1 + 1 + (rng.random(n_pairs) * (lengths[s] - 1)).astype(np.int64)) % lengths[s]
    t1 = (rng.random(n_pairs) * n_img[s]).astype(np.int64)
    t2 = (t1 + 1 + (rng.random(n_pairs) * (n_img[s] - 1)).astype(np.int64)) % n_img[s]
    out = {"pos": np.stack([s, t1, i1, s, t2, i1], 1), "intra": np.stack([s, t1, i1, s, t2, i2], 1)}
    if len(described) > 1:
        s2 = (s + 1 + (rng.random(n_pairs) * (len(described) - 1)).astype(np.int64)) % len(
            described
        )
        j2 = (rng.random(n_pairs) * lengths[s2]).astype(np.int64)
        u2 = np.where(t2 < n_img[s2], t2, (rng.random(n_pairs) * n_img[s2]).astype(np.int64))
        out["inter"] = np.stack([s, t1, i1, s2, u2, j2], 1)
    return out


def _pair_distances(flat: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, pairs: np.ndarray):
    a = offsets[pairs[:, 0]] + pairs[:, 1] * lengths[pairs[:, 0]] + pairs[:, 2]
    b = offsets[pairs[:, 3]] + pairs[:, 4] * lengths[pairs[:, 3]] + pairs[:, 5]
    return np.linalg.norm(flat[a].astype(np.float64) - flat[b], axis=1)


def hpatches_verification(
    described: Sequence[DescribedSequence],
    *,
    n_pairs: int = 100_000,
    positive_fraction: float = 0.2,
    seed: int = 42,
) -> dict[str, dict[str, float]]:
    """Patch verification: ``{difficulty: {"intra": AP, "inter": AP, "mean": AP, "fpr95": FPR}}``.

    Convention:
        The imbalanced set keeps every negative and the first ``max(1, int(positive_fraction * P))`` positives.
        With a single sequence there are no inter-sequence negatives and ``"inter"`` is absent.
    """
    check_positive(n_pairs, "n_pairs")
    if not 0.0 < positive_fraction <= 1.0:
        raise OptionError(
            f"positive_fraction: expected a number in (0, 1], got {positive_fraction!r}"
        )
    lengths = np.array([len(s) for s in described])
    results: dict[str, dict[str, float]] = {}
    for d in _difficulties(described):
        flat, offsets = _flat(described, d)
        pairs = verification_pairs(described, d, int(n_pairs), seed)
        dist = {k: _pair_distances(flat, offsets, lengths, v) for k, v in pairs.items()}
        n_keep = max(1, int(positive_fraction * dist["pos"].size))
        res: dict[str, float] = {}
        for kind in ("intra", "inter"):
            if kind in dist:
                scores = -np.r_[dist[kind], dist["pos"][:n_keep]]
                labels = np.r_[np.zeros(dist[kind].size), np.ones(n_keep)]
                res[kind] = average_precision(scores, labels)
        res["mean"] = float(np.mean([res[k] for k in ("intra", "inter") if k in res]))
        negatives = np.concatenate([dist[k] for k in ("intra", "inter") if k in dist])
        res["fpr95"] = fpr_at_recall(
            np.r_[dist["pos"], negatives],
            np.r_[np.ones(dist["pos"].size), np.zeros(negatives.size)],
        )
        results[DIFFICULTIES[d]] = res
    return results


def hpatches_matching(described: Sequence[DescribedSequence]) -> dict[str, float]:
    """Image matching mAP per difficulty name, ``{"easy": mAP, ...}``.

    Convention:
        The nearest neighbour is numpy's ``argmin`` (the lowest index among tied distances), as in the benchmark.
    """
    results = {}
    for d in _difficulties(described):
        per_seq = []
        for seq in described:
            stack = seq.stack(d)
            n = len(seq)
            truth = np.arange(n)
            aps = []
            for target in stack[1:]:
                dist = pairwise_distances(seq.ref, target)
                nn = np.argmin(dist, axis=1)
                aps.append(average_precision(-dist[truth, nn], nn == truth, num_positives=n))
            per_seq.append(np.mean(aps))
        results[DIFFICULTIES[d]] = float(np.mean(per_seq))
    return results


def hpatches_retrieval(
    described: Sequence[DescribedSequence],
    *,
    n_queries: int = 1000,
    pool_sizes: Sequence[int] = POOL_SIZES,
    n_distractors: int = 20_000,
    std_threshold: float = 10.0,
    seed: int = 42,
) -> dict[str, dict[str, float]]:
    """Patch retrieval: ``{difficulty: {"pool_<k>": mAP, ..., "mean": mAP over the pool sizes}}``.

    Convention:
        Queries (at most ``n_queries``) and a distractor pool (at most ``n_distractors``, the benchmark's
        20 000) are drawn without overlap from the reference patches whose standard deviation exceeds
        ``std_threshold`` grey levels. A query's list is its ``K`` positives followed by the pool's
        distractors from other sequences (pool order); pool size ``k`` keeps its first ``k`` entries (all of
        them when fewer). Pool sizes beyond the
        longest list are dropped except the first, which stands for "everything available".

    Raises:
        EmptyInputError: no reference patch passes the standard-deviation filter.
    """
    check_positive(n_queries, "n_queries")
    check_positive(n_distractors, "n_distractors")
    rng = np.random.default_rng(seed)
    cand = [
        (s, i)
        for s, seq in enumerate(described)
        for i in np.flatnonzero(seq.ref_std > std_threshold)
    ]
    if not cand:
        raise EmptyInputError(f"retrieval: no reference patch has a std above {std_threshold}")
    cand = np.array(cand, dtype=np.int64).reshape(-1, 2)
    order = rng.permutation(len(cand))
    queries = cand[order[: min(n_queries, len(cand))]]
    pool = cand[order[min(n_queries, len(cand)) :]][:n_distractors]
    pool_desc = np.stack([described[s].ref[i] for s, i in pool]) if len(pool) else None
    other = [int((pool[:, 0] != s).sum()) for s in range(len(described))]
    results = {}
    for d in _difficulties(described):
        available = max(described[s].images(d) - 1 + other[s] for s, _ in queries)
        sizes = []
        for k in sorted({int(k) for k in pool_sizes}):
            sizes.append(k)
            if k >= available:  # larger sizes would repeat this capped one
                break
        per_size: dict[int, list[float]] = {k: [] for k in sizes}
        for s, i in queries:
            seq = described[s]
            q = seq.ref[i : i + 1]
            d_pos = pairwise_distances(q, seq.stack(d)[1:, i])[0]
            d_neg = np.zeros(0)
            if pool_desc is not None:
                d_neg = pairwise_distances(q, pool_desc[pool[:, 0] != s])[0]
            dist = np.r_[d_pos, d_neg]
            truth = np.r_[np.ones(d_pos.size), np.zeros(d_neg.size)]
            for k in sizes:
                per_size[k].append(average_precision(-dist[:k], truth[:k]))
        res = {f"pool_{k}": float(np.mean(v)) for k, v in per_size.items()}
        res["mean"] = float(np.mean(list(res.values())))
        results[DIFFICULTIES[d]] = res
    return results


def evaluate_described(
    described: Sequence[DescribedSequence], options: HPatchesOptions | None = None
) -> dict[str, float]:
    """All tasks on descriptors already computed: a flat dict of numbers.

    Keys: ``"<task>/<difficulty>"`` for ``task`` in ``fpr95``, ``verification``, ``matching``, ``retrieval``
    and difficulty in ``easy``, ``hard``, ``tough`` (those present), ``"verification/<difficulty>/intra"`` and
    ``/inter``, ``"<task>/mean"`` over the difficulties, and ``n_sequences``, ``n_patches``. APs are in
    ``[0, 1]``. A descriptor is described once and can be evaluated on several groups of sequences.
    """
    check_not_empty(described, "described")
    opts = options if options is not None else HPatchesOptions()
    out: dict[str, float] = {
        "n_sequences": float(len(described)),
        "n_patches": float(sum(len(s) for s in described)),
    }
    verification = hpatches_verification(described, n_pairs=opts.n_pairs, seed=opts.seed)
    matching = hpatches_matching(described)
    retrieval = hpatches_retrieval(
        described,
        n_queries=opts.n_queries,
        pool_sizes=opts.pool_sizes,
        n_distractors=opts.n_distractors,
        seed=opts.seed,
    )
    for name, res in verification.items():
        out[f"fpr95/{name}"] = res["fpr95"]
        out[f"verification/{name}"] = res["mean"]
        for kind in ("intra", "inter"):
            if kind in res:
                out[f"verification/{name}/{kind}"] = res[kind]
        out[f"matching/{name}"] = matching[name]
        out[f"retrieval/{name}"] = retrieval[name]["mean"]
    for task in ("fpr95", "verification", "matching", "retrieval"):
        out[f"{task}/mean"] = float(np.mean([out[f"{task}/{n}"] for n in verification]))
    return out


def evaluate_patch_descriptor(
    describer: DescribeFn,
    patch_sets: Sequence[PatchSequence],
    options: HPatchesOptions | None = None,
    *,
    batch_size: int = 512,
    patch_size: int | None = None,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Describe ``patch_sets`` and run every task: the flat dict of :func:`evaluate_described`.

    Example:
        >>> import numpy as np, torch
        >>> rng = np.random.default_rng(0)
        >>> refs = [rng.integers(0, 255, (20, 8, 8), dtype=np.uint8) for _ in range(2)]
        >>> seqs = [PatchSequence(f"s{i}", r, {"e1": r, "h1": r}) for i, r in enumerate(refs)]
        >>> flat = lambda x: torch.nn.functional.normalize(x.flatten(1), dim=1)
        >>> res = evaluate_patch_descriptor(flat, seqs, HPatchesOptions(n_pairs=200, n_queries=10))
        >>> res["matching/easy"], res["fpr95/hard"]
        (1.0, 0.0)
    """
    described = describe_sequences(
        describer, patch_sets, batch_size=batch_size, patch_size=patch_size, device=device
    )
    return evaluate_described(described, options)


@register("protocol", "hpatches")
class HPatchesProtocol:
    """All HPatches tasks: ``protocol(describer, patch_sets) -> flat dict`` (:func:`evaluate_described`).

    Args:
        options: :class:`HPatchesOptions` (or a mapping of its fields).
        batch_size: patches per forward pass.
        device: where the descriptor runs (default: its own device).
        **overrides: single :class:`HPatchesOptions` fields (``n_pairs=...``), overriding ``options``.

    Example:
        >>> import lookalike
        >>> lookalike.create("protocol", "hpatches", n_pairs=500).options.n_pairs
        500
    """

    def __init__(
        self,
        *,
        options: HPatchesOptions | Mapping[str, Any] | None = None,
        batch_size: int = 512,
        device: str | torch.device | None = None,
        **overrides: Any,
    ) -> None:
        check_positive(batch_size, "batch_size")
        self.options = HPatchesOptions.coerce(options, **overrides)
        self.batch_size = int(batch_size)
        self.device = device

    def __call__(self, describer: Any, data: Sequence[PatchSequence]) -> dict[str, float]:
        """Evaluate ``describer`` (a patch descriptor, or a registered spec string) on patch sets."""
        return evaluate_patch_descriptor(
            resolve_descriptor(describer),
            data,
            self.options,
            batch_size=self.batch_size,
            device=self.device,
        )


def resolve_descriptor(describer: Any) -> Any:
    """A patch descriptor from a spec string (``"sift"``, ``"hardnet:bundled"``) or itself.

    Raises:
        OptionError: neither a string nor a callable.
    """
    if isinstance(describer, str):
        import lookalike

        return lookalike.create("descriptor", describer)
    if not callable(describer):
        raise OptionError(
            f"describer: expected a patch descriptor or a spec string, got {type(describer).__name__}"
        )
    return describer
