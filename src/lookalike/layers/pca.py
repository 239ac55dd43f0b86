"""PCA compression of descriptors: fit once, then project, optionally whiten, L2-normalise.

Power-law whitening (``whiten_power = 0.5``) follows Jégou & Chum, "Negative evidences and
co-occurrences in image retrieval", ECCV 2012.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lookalike._registry import record_registry, register
from lookalike.core.check import (
    check_finite,
    check_int,
    check_not_empty,
    check_positive,
    check_shape,
)
from lookalike.core.errors import LookalikeError, OptionError, ShapeError

__all__ = ["NotFittedError", "PCAProjection", "fit_pca", "pca_project"]

log = logging.getLogger(__name__)


class NotFittedError(LookalikeError):
    """A :class:`PCAProjection` was used before :func:`fit_pca` or ``load_state_dict``."""


def _check_power(value: Any) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if not ok:
        raise OptionError(f"whiten_power: expected a real number, got {value!r}")


def pca_project(
    x: torch.Tensor,
    mean: torch.Tensor,
    components: torch.Tensor,
    eigenvalues: torch.Tensor,
    *,
    whiten_power: float | torch.Tensor = 0.0,
    eps: float = 1e-8,
    normalize: bool = True,
) -> torch.Tensor:
    """Project rows onto principal directions: centre, project, whiten, L2-normalise.

    ``y_k = (c_k · (x - mean)) / (eigenvalue_k + eps) ** (whiten_power / 2)``, then
    ``y / |y|`` when ``normalize``.

    Convention:
        ``whiten_power`` 0 is plain PCA (no scaling), 1 full whitening (unit variance per component on
        the training data), 0.5 square-root (power-law) whitening. Computation runs in the promoted
        dtype of ``x`` and the buffers (float64 for buffers made by :func:`fit_pca`); the result has
        the dtype of ``x``. A row whose projection is all zero (e.g. ``x == mean``) stays all zero
        after normalisation. With ``eps = 0`` a zero eigenvalue makes whitened values infinite.

    Args:
        x: (N, D_in) descriptors.
        mean: (D_in,) mean subtracted first.
        components: (D_out, D_in) orthonormal principal directions, rows.
        eigenvalues: (D_out,) variance along each direction.
        whiten_power: whitening exponent, a float or 0-d tensor.
        eps: added to the eigenvalues before the power (variance units), ``>= 0``.
        normalize: L2-normalise the output rows.

    Returns:
        (N, D_out) projected descriptors.

    Raises:
        ShapeError: inconsistent shapes.
        ValueRangeError: NaN or infinite ``x``.

    Example:
        >>> import torch
        >>> comps = torch.tensor([[0.0, 1.0, 0.0]])
        >>> pca_project(torch.tensor([[3.0, -2.0, 5.0]]), torch.zeros(3), comps, torch.ones(1))
        tensor([[-1.]])
    """
    dims = check_shape(x, ["N", "Din"], "x")
    check_shape(mean, ["Din"], "mean", dims)
    check_shape(components, ["Dout", "Din"], "components", dims)
    check_shape(eigenvalues, ["Dout"], "eigenvalues", dims)
    check_finite(x, "x")
    check_positive(eps, "eps", strict=False)
    work = torch.promote_types(x.dtype, components.dtype)
    y = (x.to(work) - mean.to(work)) @ components.to(work).T
    power = torch.as_tensor(whiten_power, dtype=work, device=y.device)
    y = y * (eigenvalues.to(work) + eps).pow(-power / 2)  # x ** 0 == 1: no-op for plain PCA
    if normalize:
        y = F.normalize(y, dim=1)
    return y.to(x.dtype)


@register("layer", "pca")
class PCAProjection(nn.Module):
    """Fitted PCA projection of descriptors (D_in -> D_out) with optional whitening and L2 norm.

    Build it with :func:`fit_pca`, or construct it empty with the sizes and fill it with
    ``load_state_dict`` (a forward before either raises :class:`NotFittedError`).

    Buffers (persistent, so they travel in ``state_dict`` and safetensors weights):

    - ``mean`` (D_in,): subtracted first (zeros when fitted with ``center=False``);
    - ``components`` (D_out, D_in): orthonormal principal directions as rows, by decreasing variance,
      each with its largest-magnitude entry positive;
    - ``eigenvalues`` (D_out,): variance of the training data along each component;
    - ``whiten_power`` (0-d): the whitening exponent, stored so that a state dict carries the whole
      transform; loading a state dict overrides the constructor value;
    - ``total_variance`` (0-d): total variance of the training data (for
      :attr:`explained_variance_ratio`).

    Args:
        dim_in: input descriptor size D_in.
        dim_out: output size D_out, ``<= dim_in``.
        whiten_power: 0 plain PCA, 1 full whitening, 0.5 square-root whitening.
        eps: added to the eigenvalues before whitening (variance units), default 1e-8.
        normalize: L2-normalise the output rows (default True).
        dtype: dtype of the buffers (float64 by default; ``.to()`` may change it later).

    Example:
        >>> import torch
        >>> x = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
        >>> pca = fit_pca(x, 4, whiten_power=0.5)
        >>> fresh = PCAProjection(dim_in=16, dim_out=4)
        >>> _ = fresh.load_state_dict(pca.state_dict())
        >>> torch.equal(fresh(x), pca(x)), pca(x).shape, pca(x).dtype
        (True, torch.Size([200, 4]), torch.float32)
    """

    def __init__(
        self,
        *,
        dim_in: int,
        dim_out: int,
        whiten_power: float = 0.0,
        eps: float = 1e-8,
        normalize: bool = True,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        check_int(dim_in, "dim_in")
        check_int(dim_out, "dim_out")
        if dim_out > dim_in:
            raise OptionError(f"dim_out: expected at most dim_in={dim_in}, got {dim_out}")
        _check_power(whiten_power)
        check_positive(eps, "eps", strict=False)
        self.dim_in = dim_in
        self.dim_out = dim_out
        self.dim = dim_out
        self.eps = float(eps)
        self.normalize = bool(normalize)
        self.fitted = False
        self.register_buffer("mean", torch.zeros(dim_in, dtype=dtype))
        self.register_buffer("components", torch.zeros(dim_out, dim_in, dtype=dtype))
        self.register_buffer("eigenvalues", torch.zeros(dim_out, dtype=dtype))
        self.register_buffer("whiten_power", torch.tensor(float(whiten_power), dtype=dtype))
        self.register_buffer("total_variance", torch.zeros((), dtype=dtype))
        self.register_load_state_dict_post_hook(_mark_fitted)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project (N, D_in) descriptors to (N, D_out), in the dtype of ``x``."""
        check_shape(x, ["N", str(self.dim_in)], "x")
        if not self.fitted:
            raise NotFittedError(
                "PCAProjection is not fitted: build it with fit_pca(...) or load a state dict"
            )
        return pca_project(
            x,
            self.mean,
            self.components,
            self.eigenvalues,
            whiten_power=self.whiten_power,
            eps=self.eps,
            normalize=self.normalize,
        )

    @property
    def explained_variance_ratio(self) -> torch.Tensor:
        """(D_out,) share of the total training variance carried by each kept component."""
        if not self.fitted:
            raise NotFittedError("PCAProjection is not fitted: no explained variance yet")
        return self.eigenvalues / self.total_variance

    def extra_repr(self) -> str:
        return (
            f"dim_in={self.dim_in}, dim_out={self.dim_out}, "
            f"whiten_power={float(self.whiten_power)}, normalize={self.normalize}"
        )


def _mark_fitted(module: nn.Module, incompatible_keys: Any) -> None:
    # A strict load with missing keys raises after the hooks; a non-strict one is the caller's call.
    if isinstance(module, PCAProjection):
        module.fitted = True


def fit_pca(
    descriptors: torch.Tensor,
    dim: int,
    *,
    whiten_power: float = 0.0,
    eps: float = 1e-8,
    center: bool = True,
    normalize: bool = True,
) -> PCAProjection:
    """Fit a :class:`PCAProjection` keeping the top ``dim`` principal directions of ``descriptors``.

    The (D, D) scatter matrix of the centred rows is eigendecomposed in float64; eigenvalues are the
    sample variances along the components (divided by ``N - 1``; by ``N`` when ``center=False``, where
    they are second moments about the origin).

    Convention:
        Components are rows sorted by decreasing eigenvalue; each is signed so that its entry of
        largest magnitude is positive (the first such entry on exact ties), so fitting is
        deterministic. ``whiten_power``: 0 plain PCA, 1 full whitening (identity covariance of the
        projected training data before normalisation), 0.5 square-root whitening. Fitting needs
        ``N >= dim + 1`` rows (``N >= dim`` when ``center=False``): fewer cannot span ``dim``
        directions. Directions with (near-)zero variance are kept but logged as a warning, since
        whitening would amplify noise along them.

    Args:
        descriptors: (N, D) training descriptors, any floating dtype (device kept).
        dim: number of components, ``1 <= dim <= D``.
        whiten_power: whitening exponent (see above).
        eps: added to the eigenvalues before whitening (variance units), ``>= 0``.
        center: subtract the training mean (``False`` keeps ``mean`` at zero).
        normalize: L2-normalise the output rows.

    Returns:
        A fitted :class:`PCAProjection` (float64 buffers on the device of ``descriptors``).

    Raises:
        ShapeError: ``descriptors`` is not (N, D) or has too few rows for ``dim``.
        EmptyInputError: no rows or no columns.
        ValueRangeError: NaN or infinite values.
        OptionError: ``dim`` is not an integer in ``[1, D]``, or bad ``whiten_power``/``eps``.

    Example:
        >>> import torch
        >>> x = torch.randn(500, 8, generator=torch.Generator().manual_seed(0)) * torch.arange(1.0, 9.0)
        >>> pca = fit_pca(x, 2, whiten_power=1.0, normalize=False)
        >>> y = pca(x).double()
        >>> torch.allclose(y.T.cov(), torch.eye(2, dtype=torch.float64), atol=1e-5)
        True
    """
    check_shape(descriptors, ["N", "D"], "descriptors")
    check_not_empty(descriptors, "descriptors")
    check_finite(descriptors, "descriptors")
    n, d = descriptors.shape
    check_int(dim, "dim")
    if dim > d:
        raise OptionError(f"dim: expected at most the descriptor size {d}, got {dim}")
    _check_power(whiten_power)
    check_positive(eps, "eps", strict=False)
    need = dim + 1 if center else dim
    if n < need:
        raise ShapeError(
            f"descriptors: need at least {need} rows to fit {dim} "
            f"{'centred ' if center else ''}components, got {n}"
        )

    x = descriptors.detach().to(torch.float64)
    mean = x.mean(dim=0) if center else x.new_zeros(d)
    xc = x - mean
    scatter = xc.T @ xc
    evals, evecs = torch.linalg.eigh(scatter)  # ascending
    evals = evals.flip(0).clamp_min(0.0) / (n - 1 if center else n)
    comps = evecs.flip(1).T[:dim].contiguous()
    big = comps.abs().argmax(dim=1, keepdim=True)
    comps = comps * torch.sign(comps.gather(1, big))

    total = evals.sum()
    kept = evals[:dim]
    if bool(kept[-1] <= 1e-12 * max(float(evals[0]), 1e-300)):
        log.warning(
            "fit_pca: %d of the %d kept directions have (near-)zero variance; the data has rank < dim",
            int((kept <= 1e-12 * max(float(evals[0]), 1e-300)).sum()),
            dim,
        )

    model = PCAProjection(
        dim_in=d, dim_out=dim, whiten_power=whiten_power, eps=eps, normalize=normalize
    ).to(descriptors.device)
    model.mean.copy_(mean)
    model.components.copy_(comps)
    model.eigenvalues.copy_(kept)
    model.total_variance.copy_(total)
    model.fitted = True
    kwargs = {
        "dim_in": d,
        "dim_out": dim,
        "whiten_power": float(whiten_power),
        "eps": float(eps),
        "normalize": bool(normalize),
    }
    record_registry(model, "layer", "pca", kwargs)
    return model
