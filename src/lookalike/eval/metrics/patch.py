"""Patch-descriptor metrics as pure functions on arrays: FPR at 95 % recall, average precision, SNN mAP.

Every function takes NumPy arrays or torch tensors (anything ``np.asarray`` accepts), works in float64 and
returns a Python ``float``. Inputs are checked at the door: a wrong shape raises
:class:`~lookalike.core.errors.ShapeError`, NaN raises :class:`~lookalike.core.errors.ValueRangeError`, and a
set without positives (or, for a false-positive rate, without negatives) raises
:class:`~lookalike.core.errors.EmptyInputError`, since the metric is undefined there.

Definitions and their sources:

- :func:`fpr_at_recall`: the false-positive rate at the smallest distance threshold whose recall reaches 95 %
  (HardNet's ``ErrorRateAt95Recall``, Mishchuk et al. 2017; equal to reading scikit-learn's ``roc_curve`` of
  ``-distance`` at the first ``tpr >= 0.95``).
- :func:`average_precision`: the HPatches benchmark AP (``hpatches-benchmark/python/utils/metrics.py``): the
  trapezoidal area under the precision/recall curve that starts at ``(recall 0, precision 1)``, with entries
  scored ``-inf`` never retrieved and optional positives that are never retrieved (``num_positives``).
- :func:`average_precision_step`: the non-interpolated AP ``sum_k (R_k - R_{k-1}) P_k`` of scikit-learn's
  ``average_precision_score``, used by the Brown-revisited protocol.
- :func:`snn_map`: UBC PhotoTour ("Brown") revisited, Mishkin 2020 (``ducha-aiki/brown_phototour_revisited``):
  mean over image groups of the AP of ``1 - SNN ratio`` at predicting a correct nearest neighbour.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lookalike.core.check import check_option
from lookalike.core.errors import EmptyInputError, OptionError, ShapeError, ValueRangeError

__all__ = [
    "average_precision",
    "average_precision_step",
    "fpr_at_recall",
    "pairwise_distances",
    "snn_map",
]


def _vector(x: Any, name: str, dtype: type = np.float64) -> np.ndarray:
    """``x`` as a 1-D array of ``dtype``; NaN raises."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ShapeError(f"{name}: expected shape (N,), got {tuple(arr.shape)}")
    arr = arr.astype(dtype, copy=False)
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueRangeError(
            f"{name}: expected no NaN, got {int(np.isnan(arr).sum())} of {arr.size}"
        )
    return arr


def _labels(x: Any, n: int, name: str = "labels") -> np.ndarray:
    """Binary labels as a bool vector of length ``n`` (values must be 0/1 or bool)."""
    arr = _vector(x, name, dtype=np.float64)
    if arr.shape[0] != n:
        raise ShapeError(f"{name}: expected shape ({n},), got ({arr.shape[0]},)")
    if not np.isin(arr, (0.0, 1.0)).all():
        raise ValueRangeError(
            f"{name}: expected binary values 0/1, got {np.unique(arr)[:5].tolist()}"
        )
    return arr.astype(bool)


def fpr_at_recall(distances: Any, labels: Any, *, recall: float = 0.95) -> float:
    """False-positive rate at the first distance threshold whose recall reaches ``recall``.

    A pair is predicted "match" when its distance is at most the threshold ``t``. Among the thresholds with
    ``TPR(t) = #{positives with d <= t} / P >= recall`` the smallest is taken and
    ``FPR(t) = #{negatives with d <= t} / N`` is returned.

    Convention:
        - Ties: all pairs with the same distance cross the threshold together, so negatives tied with the
          positive that completes the recall count as false positives (the grouped definition of scikit-learn's
          ``roc_curve``). Without ties this is exactly HardNet's ``ErrorRateAt95Recall``.
        - The recall target is reached when ``TP >= ceil(recall * P)`` (with a 1e-9 tolerance on the product).
        - ``+inf`` distances are allowed (they are crossed last); NaN raises.
        - No positive or no negative pair: :class:`EmptyInputError` (the rate is undefined).

    Args:
        distances: ``(N,)`` distances of the pairs (smaller = more similar).
        labels: ``(N,)`` 1 for a matching pair, 0 for a non-matching pair.
        recall: target recall in ``(0, 1]``.

    Returns:
        The false-positive rate in ``[0, 1]``.

    Raises:
        ShapeError: inputs are not 1-D of the same length.
        ValueRangeError: NaN distances or non-binary labels.
        EmptyInputError: no positive or no negative pair.
        OptionError: ``recall`` outside ``(0, 1]``.

    Example:
        >>> fpr_at_recall([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0])
        0.5
        >>> fpr_at_recall([0.1, 0.2, 0.2, 0.4], [1, 0, 1, 0])  # the tied negative is crossed too
        0.5
    """
    if not (isinstance(recall, (int, float)) and 0.0 < recall <= 1.0):
        raise OptionError(f"recall: expected a number in (0, 1], got {recall!r}")
    d = _vector(distances, "distances")
    y = _labels(labels, d.shape[0])
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0:
        raise EmptyInputError("fpr_at_recall: no positive pair, the recall is undefined")
    if n_neg == 0:
        raise EmptyInputError(
            "fpr_at_recall: no negative pair, the false-positive rate is undefined"
        )
    order = np.argsort(d, kind="stable")
    d_sorted = d[order]
    y_sorted = y[order]
    # The cumulative counts at the end of each block of tied distances.
    block_end = np.flatnonzero(np.r_[d_sorted[1:] != d_sorted[:-1], True])
    tp = np.cumsum(y_sorted)[block_end]
    fp = np.cumsum(~y_sorted)[block_end]
    needed = int(np.ceil(recall * n_pos - 1e-9))
    first = int(np.argmax(tp >= needed))
    return float(fp[first] / n_neg)


def _ap_curve(
    scores: Any, labels: Any, num_positives: int | None, ties: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """Cumulative (tp, fp) at each cut of the ranking, with the leading (0, 0); and the positive count."""
    check_option(ties, ("group", "stable"), "ties")
    s = _vector(scores, "scores")
    y = _labels(labels, s.shape[0])
    n_pos = int(y.sum())
    if num_positives is not None:
        if not isinstance(num_positives, (int, np.integer)) or num_positives < n_pos:
            raise OptionError(
                f"num_positives: expected an integer >= the {n_pos} positives in labels, "
                f"got {num_positives!r}"
            )
        n_pos = int(num_positives)
    if n_pos == 0:
        raise EmptyInputError(
            "average precision: no positive, the precision/recall curve is undefined"
        )
    keep = s > -np.inf  # entries scored -inf are never retrieved
    s, y = s[keep], y[keep]
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    if ties == "group" and s.size:
        cut = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
        tp, fp = tp[cut], fp[cut]
    return np.r_[0, tp].astype(np.float64), np.r_[0, fp].astype(np.float64), n_pos


def average_precision(
    scores: Any, labels: Any, *, num_positives: int | None = None, ties: str = "group"
) -> float:
    """Average precision as defined by the HPatches benchmark.

    The ranking sorts entries by decreasing score. Precision ``max(tp, eps) / max(tp + fp, eps)`` and recall
    ``tp / P`` are taken after every cut, starting from ``(recall 0, precision 1)``, and AP is the trapezoidal
    area ``sum_k (R_k - R_{k-1}) (P_k + P_{k-1}) / 2``.

    Convention:
        - ``ties="group"`` (default): entries with equal scores are retrieved together, so the curve has one
          point per distinct score and the area is linear across a tied block. The result does not depend on
          the input order.
        - ``ties="stable"``: tied entries are retrieved in input order, reproducing the benchmark code
          (``np.argsort(-scores, kind="mergesort")``) exactly.
        - Entries scored ``-inf`` are never retrieved (they add no point to the curve).
        - ``num_positives``: total number of positives, at least those in ``labels``; the missing ones are never
          retrieved, which caps the recall (the HPatches matching task passes the number of reference patches).
        - No positive at all: :class:`EmptyInputError`. No entry retrieved: 0.

    Args:
        scores: ``(N,)`` similarity scores (larger = retrieved first), e.g. negative distances.
        labels: ``(N,)`` 1 for a relevant entry, 0 otherwise.
        num_positives: total positives, when some are never retrieved.
        ties: ``"group"`` or ``"stable"``.

    Returns:
        AP in ``[0, 1]``.

    Example:
        >>> average_precision([0.9, 0.8, 0.7], [1, 0, 1])  # points (0,1) (.5,1) (.5,.5) (1,2/3)
        0.7916666666666666
        >>> average_precision([1.0, 1.0], [1, 0]), average_precision([1.0, 1.0], [1, 0], ties="stable")
        (0.75, 1.0)
    """
    tp, fp, n_pos = _ap_curve(scores, labels, num_positives, ties)
    small = 1e-10
    recall = tp / n_pos
    precision = np.maximum(tp, small) / np.maximum(tp + fp, small)
    return float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2.0))


def average_precision_step(scores: Any, labels: Any) -> float:
    """Non-interpolated average precision ``sum_k (R_k - R_{k-1}) P_k`` over distinct scores.

    This is scikit-learn's ``average_precision_score`` for binary labels.

    Convention:
        Tied scores form one threshold (their precision is shared). No positive: :class:`EmptyInputError`.

    Args:
        scores: ``(N,)`` scores, larger first.
        labels: ``(N,)`` binary relevance.

    Returns:
        AP in ``[0, 1]``.

    Example:
        >>> average_precision_step([0.9, 0.8, 0.7], [1, 0, 1])  # 0.5 * 1 + 0.5 * 2/3
        0.8333333333333333
    """
    tp, fp, n_pos = _ap_curve(scores, labels, None, "group")
    tp, fp = tp[1:], fp[1:]
    precision = tp / np.maximum(tp + fp, 1)
    return float(np.sum(np.diff(np.r_[0.0, tp]) / n_pos * precision))


def pairwise_distances(x: Any, y: Any, *, chunk: int = 4096) -> np.ndarray:
    """Euclidean distance matrix between the rows of ``x`` ``(N, D)`` and ``y`` ``(M, D)``, float64 ``(N, M)``.

    Convention:
        Computed as ``|x|^2 + |y|^2 - 2 x.y`` (BLAS); squared distances below ``1e-12 (|x|^2 + |y|^2)`` are
        set to 0, so identical rows are exactly at distance 0 and tie exactly.

    Example:
        >>> pairwise_distances([[0.0, 0.0]], [[3.0, 4.0], [0.0, 1.0]])
        array([[5., 1.]])
    """
    a = _matrix(x, "x")
    b = _matrix(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ShapeError(f"y: expected shape (M, {a.shape[1]}), got {tuple(b.shape)}")
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.float64)
    b_sq = (b * b).sum(1)
    for start in range(0, a.shape[0], chunk):
        block = a[start : start + chunk]
        norms = (block * block).sum(1)[:, None] + b_sq[None, :]
        d2 = norms - 2.0 * block @ b.T
        d2[d2 <= 1e-12 * norms] = 0.0
        out[start : start + chunk] = np.sqrt(d2)
    return out


def _matrix(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ShapeError(f"{name}: expected shape (N, D), got {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueRangeError(f"{name}: expected finite values")
    return arr


def snn_map(descriptors: Any, labels: Any, groups: Any) -> float:
    """Brown-revisited mean average precision of the second-nearest-neighbour (SNN) ratio.

    For every group (the patches whose interest point was found in the same reference image): every ordered
    pair ``(anchor i, positive j)`` with the same 3D-point label and ``i != j`` is compared with the anchor's
    hardest in-group negative ``n(i)`` (the closest patch with another label). The match is *correct* when
    ``d(i, j) <= d(i, n(i))``, and it is scored by ``1 - min(d_pos, d_neg) / max(d_pos, d_neg)`` (``0 / 0``
    counts as ratio 1). The group's AP (:func:`average_precision_step`) measures how well the score ranks
    correct matches first; the result is the mean over groups.

    Convention:
        - Distances are Euclidean. A tie ``d_pos == d_neg`` counts as correct with score 0.
        - Groups without an anchor-positive pair or without a negative are skipped; a group without any correct
          match has AP 0. No usable group: :class:`EmptyInputError`.
        - This implements the definition of ``evaluate_mAP_snn_based`` in ``brown_phototour_revisited``
          for every anchor (that code only mines negatives in chunks of groups above 1000 patches).

    Args:
        descriptors: ``(N, D)`` descriptors.
        labels: ``(N,)`` integer 3D-point ids.
        groups: ``(N,)`` integer group ids (the reference image of each patch).

    Returns:
        mAP in ``[0, 1]``.

    Example:
        >>> import numpy as np
        >>> desc = np.array([[0.0], [0.1], [1.0], [1.2], [5.0]])
        >>> snn_map(desc, [0, 0, 1, 1, 2], [0, 0, 0, 0, 0])
        1.0
    """
    desc = _matrix(descriptors, "descriptors")
    n = desc.shape[0]
    lab = _vector(labels, "labels", dtype=np.int64)
    grp = _vector(groups, "groups", dtype=np.int64)
    for name, arr in (("labels", lab), ("groups", grp)):
        if arr.shape[0] != n:
            raise ShapeError(f"{name}: expected shape ({n},), got ({arr.shape[0]},)")
    aps = []
    for g in np.unique(grp):
        idx = np.flatnonzero(grp == g)
        cur = lab[idx]
        same = cur[:, None] == cur[None, :]
        pos_mask = same & ~np.eye(idx.size, dtype=bool)
        if not pos_mask.any() or same.all():
            continue
        dist = pairwise_distances(desc[idx], desc[idx])
        neg_dist = np.where(same, np.inf, dist).min(axis=1)
        anchors, positives = np.nonzero(pos_mask)
        d_pos = dist[anchors, positives]
        d_neg = neg_dist[anchors]
        correct = d_pos <= d_neg
        lo, hi = np.minimum(d_pos, d_neg), np.maximum(d_pos, d_neg)
        ratio = np.divide(lo, hi, out=np.ones_like(lo), where=hi > 0)
        aps.append(average_precision_step(1.0 - ratio, correct) if correct.any() else 0.0)
    if not aps:
        raise EmptyInputError(
            "snn_map: no group has both an anchor-positive pair and a negative; nothing to evaluate"
        )
    return float(np.mean(aps))
