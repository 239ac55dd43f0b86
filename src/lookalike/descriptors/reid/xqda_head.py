"""``xqda``: XQDA fitted on the rows of any registered descriptor (deep features + metric learning).

``lomo-xqda`` learns XQDA (Liao et al. 2015) on LOMO vectors; this descriptor learns it on the rows of
another descriptor, typically a re-ID network trained on the same training identities
(``create("descriptor", "xqda", base="relation_net:run/weights.safetensors")``). On small data sets
such as VIPeR the closed-form cross-view metric adds what a network trained on 316 identities did not
learn (measured in ``benchmarks/viper.py``'s ``+xqda`` rows).

Convention:
    - ``fit(images, ids, cams)`` describes the training crops with the frozen base (eval mode, no
      gradients) and fits :func:`~lookalike.descriptors.reid.xqda.fit_xqda` on the float64 rows; the
      rows are then ``P^T base(x)`` with ``P`` the metric's embedding (negative eigenvalues clipped,
      as ``lomo-xqda`` does), L2-normalised. Before fitting, the rows are the base's.
    - The base is built at construction from its spec (a learned base needs its weights unless
      ``allow_random``); a saved ``xqda`` file holds the base's parameters and the projection, and is
      loaded through the same spec (``kwargs.base``), so the base's weights file must still exist.
    - Crops are read at the base's ``crop_size`` (``(256, 128)`` when it has none).
    - ``features="strips"`` (re-ID networks only) fits on the network's own multi-stage strip
      features (:meth:`~lookalike.descriptors.reid._backbone.ReidNetwork.stage_strips`: every
      stage's map max pooled over horizontal strips, square-rooted) instead of its descriptor rows:
      a metric over everything the trunk computes, not only what its reduction layers kept. On an
      inner split of VIPeR's training ids it raised the relation network's rank-1 from 38.1 to
      48.8 (XQDA on the rows: 39.8; ``configs/reid_viper.yaml``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lookalike._registry import check_component_spec, create, register
from lookalike.core.check import check_positive
from lookalike.core.errors import EmptyInputError, OptionError
from lookalike.descriptors._base import Descriptor
from lookalike.descriptors._functional import normalize_descriptors
from lookalike.descriptors.reid.xqda import FittedProjection, fit_xqda

__all__ = ["XQDAHead"]

_FEATURES = ("rows", "strips")


def _check_features(features: Any, base: Descriptor, spec: str) -> str:
    if features not in _FEATURES:
        raise OptionError(f"features: expected one of {_FEATURES}, got {features!r}")
    if features == "strips" and not callable(getattr(base, "stage_strips", None)):
        raise OptionError(
            f"features: 'strips' needs a re-ID network base (relation_net, rga), got {spec!r}"
        )
    return features


@register("descriptor", "xqda")
class XQDAHead(FittedProjection, Descriptor):
    """XQDA on a base descriptor's rows (see the module docstring).

    Args:
        base: registry spec of the base descriptor (``name`` or ``name:weights``); not ``xqda``.
        lambda_reg: ridge added to the intra-personal covariance (paper: 0.001).
        allow_random: accept a learned base without weights (random initialisation; tests).
        features: what XQDA is fitted on: ``"rows"`` (the base's descriptor rows) or ``"strips"``
            (a re-ID network's :meth:`stage_strips`).

    Example:
        >>> import torch
        >>> head = XQDAHead(base="stripe-hsv")
        >>> head.fitted, head.dim == head.base.dim
        (False, True)
        >>> ids = torch.arange(6).repeat(2); cams = torch.tensor([0] * 6 + [1] * 6)
        >>> head = head.fit(torch.rand(12, 3, 64, 32), ids, cams)
        >>> head.fitted, head(torch.rand(2, 3, 64, 32)).shape[0]
        (True, 2)
    """

    needs_weights = True
    differentiable = False
    input_name = "images"

    def __init__(
        self,
        *,
        base: str,
        lambda_reg: float = 0.001,
        allow_random: bool = False,
        features: str = "rows",
    ) -> None:
        super().__init__()
        if not isinstance(base, str) or not base:
            raise OptionError(
                f"base: expected a descriptor spec such as 'relation_net:W', got {base!r}"
            )
        check_component_spec(
            base, kind="descriptor", field="base", container="xqda", allow_random=allow_random
        )
        check_positive(lambda_reg, "lambda_reg", strict=False)
        self.base = create("descriptor", base).eval()
        for param in self.base.parameters():
            param.requires_grad_(False)
        self.lambda_reg = float(lambda_reg)
        self.input_spec = self.base.input_spec
        self.features = _check_features(features, self.base, base)
        self.register_buffer("projection", torch.zeros(self._feature_dim(), 0))

    def _feature_dim(self) -> int:
        if self.features == "rows":
            return int(self.base.dim)
        return int(self.base.stage_strips(torch.zeros(1, 3, *self.crop_size)).shape[1])

    @property
    def crop_size(self) -> tuple[int, int]:
        """``(height, width)`` the re-ID protocol reads crops at: the base's."""
        return tuple(getattr(self.base, "crop_size", None) or (256, 128))  # type: ignore[return-value]

    @property
    def dim(self) -> int:  # type: ignore[override]
        """The fitted dimension; before fitting, that of the rows it gives (the base's)."""
        return self.projection.shape[1] if self.fitted else int(self.base.dim)

    def train(self, mode: bool = True) -> XQDAHead:
        """The base stays in eval mode (it is frozen); only the flag of this module changes."""
        super().train(mode)
        self.base.eval()
        return self

    @torch.no_grad()
    def base_rows(self, images: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
        """``(n, D)`` float32 rows of the frozen base for ``images`` ``(n, 3, H, W)``: its descriptor
        rows, or its strip features with ``features="strips"``."""
        self.base.eval()
        describe = self.base if self.features == "rows" else self.base.stage_strips
        return torch.cat(
            [
                describe(images[i : i + batch_size]).float()
                for i in range(0, len(images), batch_size)
            ]
        )

    def fit(self, images: torch.Tensor, ids: Any, cams: Any, *, batch_size: int = 256) -> XQDAHead:
        """Fit XQDA on the base's rows of ``images`` ``(n, 3, H, W)`` with identities and cameras."""
        self.check_input(images)
        if images.shape[0] == 0:
            raise EmptyInputError("fit: expected training images, got none")
        rows = self.base_rows(images, batch_size=batch_size).cpu().double().numpy()
        ids, cams = np.asarray(ids), np.asarray(cams)
        model = fit_xqda(rows, ids, cams, lambda_reg=self.lambda_reg)
        embed = torch.from_numpy(model.embedding()).to(torch.float32)
        self.projection = embed.to(self.projection.device)
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The base's rows, or its strip features projected once fitted."""
        with torch.no_grad():
            if self.fitted:
                return (self.base_rows(x) @ self.projection.to(x.device)).to(x.dtype)
            return self.base(x).float().to(x.dtype)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return normalize_descriptors(features)
