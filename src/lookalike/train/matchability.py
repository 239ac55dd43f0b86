"""Fit a matchability gate (:class:`~lookalike.layers.matchability.MatchabilityGate`) for a patch network.

Recipe (issue 10, stop 37; every choice made on held-out bundled photos only):

1. Labels: nuisance pairs (:func:`lookalike.data.nuisance_pairs.nuisance_pairs`) of the TRAINING photos
   (:data:`~lookalike.data.bundled.BUNDLED_PHOTOS` minus
   :data:`~lookalike.data.bundled.HELD_OUT_PHOTOS`), draws :data:`TRAIN_DRAW0` and up, the matching
   pipeline's own DoG keypoints. A keypoint is positive when the other view has a detection within
   ``tol`` px of its true position (:func:`partner_labels`).
2. Head: an L2-regularised logistic regression on the network's unit rows (:func:`fit_logistic`),
   standardised for the fit and folded back into ``w, b``.
3. Model: the base network's trunk weights plus the gate, saved with the base's recipe, the fit and the
   held-out validation numbers in its metadata (:func:`fit_gated_weights`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.core.check import check_int
from lookalike.core.errors import EmptyInputError, OptionError, ShapeError

__all__ = [
    "TRAIN_DRAW0",
    "LogisticFit",
    "collect_partner_samples",
    "fit_gated_weights",
    "fit_logistic",
    "partner_labels",
    "roc_auc",
    "training_photos",
]

#: First draw of the training photos' pairs (held-out scoring uses draws 0, 1, ...).
TRAIN_DRAW0 = 100


def training_photos() -> list[str]:
    """The bundled photos a gate may be fitted on: all but the held-out ones.

    Example:
        >>> "chelsea" in training_photos(), "camera" in training_photos()
        (False, True)
    """
    from lookalike.data.bundled import BUNDLED_PHOTOS, HELD_OUT_PHOTOS

    return [p for p in BUNDLED_PHOTOS if p not in HELD_OUT_PHOTOS]


def partner_labels(xy_a: Any, xy_b: Any, H: Any, tol: float) -> np.ndarray:
    """True where a point of view a, mapped by ``H`` (a → b), lies within ``tol`` px of a point of b.

    Args:
        xy_a: ``(N, 2)`` points of view a (x, y).
        xy_b: ``(M, 2)`` points of view b.
        H: ``(3, 3)`` homography from a to b.
        tol: distance in pixels of view b (> 0).

    Returns:
        ``(N,)`` bool; all False when b has no point.

    Example:
        >>> partner_labels([[0.0, 0.0], [5.0, 5.0]], [[1.0, 1.0]], np.eye(3), 2.0)
        array([ True, False])
    """
    from scipy.spatial import cKDTree

    from lookalike.geometry import project_points

    if not (isinstance(tol, int | float) and tol > 0):
        raise OptionError(f"tol: expected a distance > 0 px, got {tol!r}")
    a = np.asarray(xy_a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(xy_b, dtype=np.float64).reshape(-1, 2)
    if len(a) == 0 or len(b) == 0:
        return np.zeros(len(a), dtype=bool)
    dist, _ = cKDTree(b).query(project_points(np.asarray(H, dtype=np.float64), a), k=1)
    return dist <= tol


def collect_partner_samples(
    describer: Any,
    photos: Sequence[str],
    draws: Sequence[int],
    *,
    tol: float = 3.0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``describer`` and partner labels for every keypoint of the photos' nuisance pairs.

    Both views of each pair count (a → b with ``H``, b → a with its inverse).

    Args:
        describer: a matching describer (``describe_keypoints(image, keypoints) -> Features``).
        photos: bundled photo names (use :func:`training_photos`; never the held-out ones).
        draws: nuisance-pair draws (:data:`TRAIN_DRAW0` and up).
        tol: partner distance in pixels.
        progress: called with ``(done, total)`` after each draw.

    Returns:
        ``(N, D)`` float32 rows and ``(N,)`` bool labels.

    Raises:
        EmptyInputError: no photo, no draw, or no keypoint at all.
    """
    from lookalike.data.nuisance_pairs import nuisance_pairs
    from lookalike.matching.keypoints import detect_keypoints

    if not photos or not draws:
        raise EmptyInputError(
            f"photos and draws: expected at least one each, got {photos}, {draws}"
        )
    rows, labels = [], []
    for i, draw in enumerate(draws):
        for pair in nuisance_pairs(seed=int(draw), photos=list(photos)):
            k0, k1 = detect_keypoints(pair.image0), detect_keypoints(pair.image1)
            views = ((pair.image0, k0, k1, pair.H), (pair.image1, k1, k0, np.linalg.inv(pair.H)))
            for image, ka, kb, H in views:
                if len(ka) == 0:
                    continue
                rows.append(describer.describe_keypoints(image, ka).descriptors.float().numpy())
                labels.append(partner_labels(ka.xy, kb.xy, H, tol))
        if progress is not None:
            progress(i + 1, len(draws))
    if not rows:
        raise EmptyInputError("no keypoint was detected in any pair")
    return np.concatenate(rows).astype(np.float32), np.concatenate(labels)


def roc_auc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted one half).

    Example:
        >>> roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
        0.75
    """
    from scipy.stats import rankdata

    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ShapeError(f"labels: expected {s.shape[0]} entries like scores, got {y.shape[0]}")
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        raise EmptyInputError(f"labels: expected both classes, got {pos} positive, {neg} negative")
    ranks = rankdata(s)
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


@dataclass(frozen=True)
class LogisticFit:
    """A fitted linear head ``sigmoid(rows @ w + b)`` with its fit statistics."""

    w: np.ndarray
    b: float
    auc: float
    samples: int
    positive_rate: float
    C: float


def _logistic(z: np.ndarray, y: np.ndarray, C: float, max_iter: int) -> tuple[np.ndarray, float]:
    """Minimise ``C · Σ log-loss + ½‖w‖²`` (intercept free) with L-BFGS: scikit-learn's objective."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    sign = np.where(y, 1.0, -1.0)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:-1], theta[-1]
        margin = sign * (z @ w + b)
        loss = -C * log_expit(margin).sum() + 0.5 * w @ w
        r = -C * sign * expit(-margin)
        return float(loss), np.concatenate([z.T @ r + w, [r.sum()]])

    theta0 = np.zeros(z.shape[1] + 1)
    res = minimize(objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return res.x[:-1], float(res.x[-1])


def fit_logistic(
    rows: Any, labels: Any, *, C: float = 0.1, holdout: float = 0.2, max_iter: int = 2000
) -> LogisticFit:
    """Logistic regression of ``labels`` on standardised ``rows``, folded back to raw-row ``w, b``.

    The inner AUC is measured on a random ``holdout`` fraction (seed 0) with a head fitted on the rest;
    the returned head is then refitted on all rows.

    Args:
        rows: ``(N, D)`` features.
        labels: ``(N,)`` bools, both classes present.
        C: inverse L2 strength (scikit-learn's ``C``; the loss is summed, not averaged).
        holdout: fraction for the inner AUC, in (0, 1).
        max_iter: L-BFGS iterations.

    Example:
        >>> x = np.array([[0.0], [1.0], [2.0], [3.0]])
        >>> fit = fit_logistic(np.r_[x, x], [0, 0, 1, 1, 0, 1, 1, 1], C=10.0, holdout=0.5)
        >>> bool(fit.w[0] > 0), fit.samples
        (True, 8)
    """
    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(labels).astype(bool).ravel()
    if x.ndim != 2 or len(x) != len(y):
        raise ShapeError(f"rows, labels: expected (N, D) and (N,), got {x.shape} and {y.shape}")
    if not 0 < holdout < 1 or not C > 0:
        raise OptionError(f"holdout in (0, 1) and C > 0: got holdout={holdout!r}, C={C!r}")
    if y.all() or not y.any():
        raise EmptyInputError(f"labels: expected both classes among {len(y)} samples")
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    order = np.random.default_rng(0).permutation(len(z))
    cut = int((1.0 - holdout) * len(z))
    w, b = _logistic(z[order[:cut]], y[order[:cut]], C, max_iter)
    auc = roc_auc(z[order[cut:]] @ w + b, y[order[cut:]])
    w, b = _logistic(z, y, C, max_iter)
    w_raw = w / scale
    return LogisticFit(w_raw, float(b - w_raw @ mean), auc, len(y), float(y.mean()), float(C))


def _held_out_scores(base: str, gated: str, seeds: int) -> dict[str, dict[str, float]]:
    """MMA@3 and H@3 of the base and the gated network on held-out nuisance pairs (draws 0..)."""
    import tempfile

    from lookalike.data.nuisance_pairs import write_nuisance_sequences
    from lookalike.eval.protocols import (
        MatchingOptions,
        evaluate_matching,
        find_evaluation_sequences,
    )
    from lookalike.matching.pipeline import ImageMatcher

    kwargs = MatchingOptions().matcher_kwargs()
    matchers = {label: ImageMatcher(label, **kwargs) for label in (base, gated)}
    with tempfile.TemporaryDirectory() as tmp:
        write_nuisance_sequences(Path(tmp), seeds=range(seeds))
        _, found = find_evaluation_sequences(tmp)
        report = evaluate_matching(found, matchers)
    out = {}
    for label, key in ((base, "base"), (gated, "gated")):
        summary = report.summary(label)
        out[key] = {
            "mma@3": round(float(report.mma_at(summary, 3)), 4),
            "h@3": round(float(summary["homography_accuracy"]["3"]), 4),
        }
    return out


def fit_gated_weights(
    out: str | os.PathLike[str],
    *,
    base: str = "hardnet:bundled",
    draws: int = 4,
    gamma: float = 3.0,
    tol: float = 3.0,
    C: float = 0.1,
    validate_seeds: int = 3,
    photos: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Fit a gate on ``base``'s rows and save ``hardnet_gated`` weights (trunk of ``base`` + gate).

    Args:
        out: the ``.safetensors`` file to write.
        base: ``"hardnet"`` or ``"hardnet:WEIGHTS"`` (a trained HardNet).
        draws: training draws :data:`TRAIN_DRAW0` .. ``TRAIN_DRAW0 + draws - 1``.
        gamma: the gate's exponent.
        tol: partner distance of the labels, pixels.
        C: inverse L2 strength of the logistic head.
        validate_seeds: held-out draws ``0..`` on which the saved model and ``base`` are scored
            (MMA@3, H@3), recorded in the metadata; 0 skips.
        photos: training photos (default :func:`training_photos`); held-out photos are refused.
        progress: called with ``(done, total)`` draws while collecting.

    Returns:
        The ``training`` metadata written to the file.

    Raises:
        OptionError: ``base`` is not a HardNet, a held-out photo among ``photos``, bad numbers.
    """
    import torch

    import lookalike
    from lookalike._registry import get_entry, resolve_weights
    from lookalike.core.weights import read_metadata, save_weights
    from lookalike.data.bundled import HELD_OUT_PHOTOS
    from lookalike.descriptors.patch.gated import HardNetGated
    from lookalike.descriptors.patch.hardnet import HardNet
    from lookalike.matching import create_describer

    photos = list(photos) if photos is not None else training_photos()
    leaked = sorted(set(photos) & set(HELD_OUT_PHOTOS))
    if leaked:
        raise OptionError(f"photos: expected training photos only, got held-out {leaked}")
    for value, what, low in ((draws, "draws", 1), (validate_seeds, "validate_seeds", 0)):
        check_int(value, what, low)
    name, _, weights = base.partition(":")
    net = lookalike.create("descriptor", name, **({"weights": weights} if weights else {}))
    if type(net) is not HardNet:
        raise OptionError(f"base: expected a HardNet ('hardnet[:WEIGHTS]'), got {base!r}")
    kwargs = {
        "dim": net.dim,
        "patch_size": net.patch_size,
        "gamma": float(gamma),
        "width": net.width,
    }
    gated = HardNetGated(**kwargs)  # checks gamma before the long collection
    draw_range = range(TRAIN_DRAW0, TRAIN_DRAW0 + draws)
    rows, labels = collect_partner_samples(
        create_describer(base), photos, draw_range, tol=tol, progress=progress
    )
    fit = fit_logistic(rows, labels, C=C)
    missing, unexpected = gated.load_state_dict(net.state_dict(), strict=False)
    if unexpected or sorted(missing) != ["gate.score.bias", "gate.score.weight"]:
        raise OptionError(f"base: its state dict does not fit HardNet ({missing}, {unexpected})")
    with torch.no_grad():
        gated.gate.score.weight.copy_(torch.from_numpy(fit.w).float()[None])
        gated.gate.score.bias.fill_(fit.b)
    gated.patch_extent = net.patch_extent
    gated.eval()
    base_meta: dict[str, Any] = {}
    if weights:
        path = resolve_weights(get_entry("descriptor", name), weights)
        base_meta = read_metadata(path) if path.suffix == ".safetensors" else {}
    fit_meta = {k: v for k, v in asdict(fit).items() if k not in ("w", "b")}
    training: dict[str, Any] = {
        "base": base,
        "base_training": base_meta.get("training", {}),
        "gate": {
            **fit_meta,
            "photos": photos,
            "draws": [TRAIN_DRAW0, TRAIN_DRAW0 + draws - 1],
            "partner_px": tol,
            "gamma": float(gamma),
            "keypoints": "dog, 2048 (detect_keypoints defaults)",
        },
    }
    geometry = training["base_training"].get("patch_geometry")
    if geometry is not None:
        training["patch_geometry"] = geometry
    save = {"kind": "descriptor", "name": "hardnet_gated", "kwargs": kwargs}
    save_weights(gated, out, **save, training=training)
    if validate_seeds:  # the saved file, through the pipeline's own (fused) describer
        scores = _held_out_scores(base, f"hardnet_gated:{out}", validate_seeds)
        training["validation"] = {"held_out_draws": validate_seeds, "scores": scores}
        save_weights(gated, out, **save, training=training)
    return training
