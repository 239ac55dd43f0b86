"""XQDA: cross-view quadratic discriminant analysis (Liao et al., CVPR 2015), and ``lomo-xqda``.

:func:`fit_xqda` learns, from labelled features seen by different cameras, a projection ``W`` (d x r)
and a metric ``M = inv(S_I) - inv(S_E)`` (r x r) from the covariances of feature differences of pairs of
the same person (``S_I``) and of different persons (``S_E``), both across cameras, as the authors'
``XQDA.m`` does: features reduced by a QR decomposition when ``d > n``, ``S_I + lambda I``, the
directions of the SVD of ``inv(S_I) S_E`` with singular value > 1. Distances are
``(x - y)^T W M W^T (x - y)``.

:class:`LomoXQDA` (registered ``lomo-xqda``) is LOMO followed by the fitted projection
``P = W L``, with ``L L^T`` the positive part of ``M``, so that Euclidean distances of ``P^T x`` are the
XQDA distances (negative eigenvalues of ``M`` clipped to 0); rows are then L2-normalised like every
descriptor's. ``metric_rows(x)`` gives ``P^T x`` itself: the re-ID protocol ranks by those, the
paper's distance (VIPeR, 10 splits, ``benchmarks/viper.py``: rank-1 37.5 ± 1.5, mAP 51.2, against
37.1 ± 2.7 and 50.6 by the cosine of the unit rows; 41.8 against 39.2 on an inner split of split 0's
training ids).

Convention:
    - Pairs: every ordered pair of images from different cameras; same identity -> intra-personal,
      otherwise extra-personal. With two cameras (VIPeR) these are exactly the paper's gallery/probe
      pairs. Same-camera pairs are not used.
    - Fitting: ``LomoXQDA.fit(images, ids, cams)`` describes the images with LOMO and sets the
      buffers; before fitting, the projection is empty and the rows equal ``lomo``'s (so
      ``needs_weights = True``: commands refuse an unfitted ``lomo-xqda`` unless ``--allow-random``).
    - Saving and loading: the fitted projection is a buffer, so
      ``lookalike.core.weights.save_weights(model, "xqda.safetensors")`` stores it and
      ``lookalike.create("descriptor", "lomo-xqda", weights="xqda.safetensors")`` loads it (the buffer
      takes the file's shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lookalike._registry import register
from lookalike.core.check import check_int, check_positive
from lookalike.core.errors import EmptyInputError, ShapeError
from lookalike.descriptors._base import Descriptor, InputSpec
from lookalike.descriptors._functional import normalize_descriptors
from lookalike.descriptors.reid.lomo import LOMO_DIM, lomo_features, to_lomo_crops

__all__ = ["FittedProjection", "LomoXQDA", "XQDAModel", "fit_xqda", "xqda_distances"]


@dataclass(frozen=True)
class XQDAModel:
    """A fitted XQDA: ``projection`` W ``(d, r)`` and ``metric`` M ``(r, r)`` (float64)."""

    projection: np.ndarray
    metric: np.ndarray

    def embedding(self) -> np.ndarray:
        """``(d, r')`` matrix ``P`` with ``||P^T (x - y)||^2`` = the XQDA distance (M's positive part)."""
        values, vectors = np.linalg.eigh((self.metric + self.metric.T) / 2.0)
        keep = values > 0
        return self.projection @ (vectors[:, keep] * np.sqrt(values[keep]))


def _pair_covariance(x, ids, cams, same_id: bool) -> tuple[np.ndarray, float]:
    """Sum over ordered cross-camera pairs (same or different id) of ``(xi - xj)(xi - xj)^T``, count."""
    _, idg = np.unique(ids, return_inverse=True)
    _, camg = np.unique(cams, return_inverse=True)
    _, icg = np.unique(idg * (camg.max() + 1) + camg, return_inverse=True)

    def sums(group):
        n = np.bincount(group).astype(np.float64)
        s = np.zeros((len(n), x.shape[1]))
        np.add.at(s, group, x)
        return n, s

    n_id, s_id = sums(idg)
    n_cam, s_cam = sums(camg)
    n_ic, s_ic = sums(icg)
    # partners of i: same id, other camera  /  other camera (any id)
    deg_intra = n_id[idg] - n_ic[icg]
    cross_intra = s_id.T @ s_id - s_ic.T @ s_ic
    if same_id:
        deg, cross = deg_intra, cross_intra
    else:
        total = x.sum(0)
        deg = len(x) - n_cam[camg] - deg_intra
        cross = np.outer(total, total) - s_cam.T @ s_cam - cross_intra
    cov = 2.0 * (x.T * deg) @ x - cross - cross.T
    return cov, float(deg.sum())


def fit_xqda(
    features: Any, ids: Any, cams: Any, *, lambda_reg: float = 0.001, dims: int | None = None
) -> XQDAModel:
    """Fit XQDA on ``(n, d)`` features with identities and cameras (see the module docstring).

    Args:
        features: ``(n, d)`` training features.
        ids: ``(n,)`` identities; ``cams``: ``(n,)`` cameras (at least two).
        lambda_reg: ridge added to the intra-personal covariance (paper: 0.001).
        dims: keep this many directions (default: every direction with singular value > 1).

    Raises:
        ShapeError: inconsistent shapes. EmptyInputError: no intra- or no extra-personal pair.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> ids = np.repeat(np.arange(30), 2); cams = np.tile([0, 1], 30)
        >>> x = rng.normal(size=(30, 8))[ids] + 0.3 * rng.normal(size=(60, 8))
        >>> model = fit_xqda(x, ids, cams)
        >>> model.projection.shape[0], model.metric.shape[0] == model.projection.shape[1]
        (8, True)
    """
    x = np.asarray(features, dtype=np.float64)
    ids, cams = np.asarray(ids).reshape(-1), np.asarray(cams).reshape(-1)
    if x.ndim != 2 or len(ids) != len(x) or len(cams) != len(x):
        raise ShapeError(
            f"fit_xqda: expected features (n, d) with n ids and n cameras, got {x.shape}, "
            f"{ids.shape}, {cams.shape}"
        )
    check_positive(lambda_reg, "lambda_reg", strict=False)
    n, d = x.shape
    basis = None
    if d > n:  # work in the span of the training features
        basis, r = np.linalg.qr(x.T, mode="reduced")
        x = r.T
    s_in, n_in = _pair_covariance(x, ids, cams, same_id=True)
    s_ex, n_ex = _pair_covariance(x, ids, cams, same_id=False)
    if n_in == 0 or n_ex == 0:
        raise EmptyInputError(
            f"fit_xqda: expected same-person and different-person pairs across cameras, got "
            f"{int(n_in)} and {int(n_ex)} (identities seen by one camera only?)"
        )
    s_in = s_in / n_in + lambda_reg * np.eye(x.shape[1])
    s_ex = s_ex / n_ex
    u, sv, _ = np.linalg.svd(np.linalg.solve(s_in, s_ex))
    order = np.argsort(-sv, kind="stable")
    r = max(1, int((sv > 1).sum()))
    if dims is not None:
        check_int(dims, "dims")
        r = min(dims, r)
    v = u[:, order[:r]]
    metric = np.linalg.inv(v.T @ s_in @ v) - np.linalg.inv(v.T @ s_ex @ v)
    projection = v if basis is None else basis @ v
    return XQDAModel(projection, metric)


def xqda_distances(model: XQDAModel, query: Any, gallery: Any) -> np.ndarray:
    """``(Q, G)`` XQDA distances ``(x - y)^T W M W^T (x - y)`` (the published metric, may be < 0)."""
    q = np.asarray(query, dtype=np.float64) @ model.projection
    g = np.asarray(gallery, dtype=np.float64) @ model.projection
    qm, gm = q @ model.metric, g @ model.metric
    return (qm * q).sum(1)[:, None] + (gm * g).sum(1)[None, :] - qm @ g.T - q @ model.metric.T @ g.T


class FittedProjection:
    """Mixin of the XQDA descriptors: a ``projection`` buffer ``(d, r)``, empty (``r = 0``) until fitted.

    Loading a file takes the saved projection's width (the fitted dimension), both through
    :func:`~lookalike.core.weights.load_weights` (``adapt_state_dict``) and ``load_state_dict``.
    """

    projection: torch.Tensor

    @property
    def fitted(self) -> bool:
        """Whether ``fit`` (or loading fitted weights) set a projection."""
        return self.projection.shape[1] > 0

    def adapt_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Take the shape of a saved projection (its width is the fitted dimension)."""
        saved = state.get("projection")
        if saved is not None and saved.ndim == 2 and saved.shape[0] == self.projection.shape[0]:
            self.projection = torch.zeros_like(saved, device=self.projection.device)
        return state

    def metric_rows(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, r)`` float32 rows whose Euclidean distances are the fitted XQDA distances.

        XQDA ranks by ``(x - y)^T W M W^T (x - y)`` (Liao et al. 2015): these are the projected
        features before ``forward``'s L2 normalisation (``M``'s positive part,
        :meth:`XQDAModel.embedding`). The re-ID protocol ranks with them, as the paper does;
        ``forward`` keeps the unit rows every descriptor returns (cosine search in an index).
        Before fitting: ``forward``'s rows.
        """
        if not self.fitted:
            return self(x).float()  # type: ignore[operator]
        self.check_input(x)  # type: ignore[attr-defined]
        with torch.no_grad():
            return self.forward_features(x).float()  # type: ignore[attr-defined]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        self.adapt_state_dict({"projection": state_dict.get(prefix + "projection")})
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]


@register("descriptor", "lomo-xqda")
class LomoXQDA(FittedProjection, Descriptor):
    """LOMO + XQDA: ``(B, 3, H, W)`` crops to rows of the fitted XQDA embedding (see module docstring).

    Example:
        >>> import torch
        >>> model = LomoXQDA()
        >>> model.fitted, model.dim
        (False, 26960)
    """

    needs_weights = True
    differentiable = False
    input_name = "images"
    #: ``(height, width)`` crops are read at by the re-ID protocol (LOMO's native size).
    crop_size: tuple[int, int] = (128, 48)

    def __init__(self, *, lambda_reg: float = 0.001, retinex: bool = False) -> None:
        super().__init__()
        check_positive(lambda_reg, "lambda_reg", strict=False)
        self.lambda_reg, self.retinex = float(lambda_reg), bool(retinex)
        self.input_spec = InputSpec(channels=3, size=(16, 4096), normalization="none")
        self.register_buffer("projection", torch.zeros(LOMO_DIM, 0))

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self.projection.shape[1] if self.fitted else LOMO_DIM

    @torch.no_grad()
    def fit(self, images: torch.Tensor, ids: Any, cams: Any, *, batch_size: int = 256) -> LomoXQDA:
        """Fit XQDA on LOMO features of ``images`` ``(n, 3, H, W)`` with identities and cameras."""
        self.check_input(images)
        if images.shape[0] == 0:
            raise EmptyInputError("fit: expected training images, got none")
        feats = np.concatenate(
            [
                lomo_features(to_lomo_crops(images[i : i + batch_size]), use_retinex=self.retinex)
                for i in range(0, len(images), batch_size)
            ]
        )
        model = fit_xqda(feats, np.asarray(ids), np.asarray(cams), lambda_reg=self.lambda_reg)
        embed = torch.from_numpy(model.embedding()).to(torch.float32)
        self.projection = embed.to(self.projection.device)
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """LOMO vectors, projected when fitted."""
        feats = lomo_features(to_lomo_crops(x), use_retinex=self.retinex)
        feats = torch.from_numpy(feats).to(torch.float32)
        if self.fitted:
            feats = feats @ self.projection.cpu()
        return feats.to(x.device)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return normalize_descriptors(features)
