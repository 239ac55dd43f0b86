"""``gem``: a timm backbone, GeM / MAC / SPoC pooling, optional whitening, multi-scale extraction.

Radenović, Tolias, Chum, "Fine-tuning CNN Image Retrieval with No Human Annotation", TPAMI 2018: the
last feature map of a CNN pooled by a generalised mean with a learnable power, then whitened (PCA
whitening fitted on training descriptors, or a learned fully connected layer) and L2-normalised;
at test time the descriptors of several image scales are combined by a power mean.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_option, check_positive
from lookalike.core.errors import OptionError
from lookalike.core.weights import WeightSpec
from lookalike.descriptors.image._backbone import ImageDescriptor, check_counts
from lookalike.layers.gem import MAC, GeM, SPoC

__all__ = ["GeMDescriptor", "power_mean", "rescale"]

POOLINGS = ("gem", "mac", "spoc")
WHITENINGS = (None, "pca", "fc")


def rescale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` resized by ``scale`` (bilinear, antialiased when shrinking; at least 1 pixel a side).

    Example:
        >>> import torch
        >>> rescale(torch.rand(1, 3, 64, 48), 0.5).shape
        torch.Size([1, 3, 32, 24])
    """
    if scale == 1.0:
        return x
    size = [max(1, round(s * scale)) for s in x.shape[-2:]]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)


def power_mean(values: Sequence[torch.Tensor], power: float) -> torch.Tensor:
    """Sign-preserving power mean ``(mean_i sign(v_i) |v_i|^p)`` mapped back by ``sign |.|^(1/p)``.

    Example:
        >>> import torch
        >>> power_mean([torch.tensor([1.0, 0.0]), torch.tensor([3.0, 2.0])], 2.0)  # sqrt(5), sqrt(2)
        tensor([2.2361, 1.4142])
    """
    stacked = torch.stack(list(values))
    if power == 1.0:
        return stacked.mean(dim=0)
    mean = (stacked.sign() * stacked.abs().pow(power)).mean(dim=0)
    return mean.sign() * mean.abs().pow(1.0 / power)


#: Weights trained by lookalike (``configs/gem_bundled.yaml``: instance discrimination on square regions of
#: the 14 training photos bundled with scikit-image plus dead-leaves images, sub-center ArcFace, on a
#: 2-core CPU); recipe, seed and held-out validation numbers (FPR95, mAP, recall@1 on regions of
#: chelsea/coffee/gravel) are in the file's metadata. Reproduce with
#: ``lookalike train --config configs/gem_bundled.yaml``.
GEM_WEIGHTS = {
    "bundled": WeightSpec(
        file="gem_bundled.safetensors",
        sha256="a9609673f057f1fabe138dd8852e9f64bcd67427a97c0d7a81762f7cea6de4c2",
        description="GeM (ResNet-18) trained on regions of scikit-image's bundled photos (CPU recipe)",
    ),
}


@register("descriptor", "gem", weights=GEM_WEIGHTS)
class GeMDescriptor(ImageDescriptor):
    """Backbone + GeM (or MAC / SPoC) + optional whitening: ``(B, 3, H, W)`` images to ``(B, dim)`` rows.

    Args:
        backbone: any timm model name; its last stage is pooled.
        pooling: ``"gem"`` (learnable power), ``"mac"`` (max) or ``"spoc"`` (mean).
        p: initial GeM power.
        per_channel_p: one learnable power per channel instead of one shared.
        whitening: ``None``, ``"pca"`` (fitted with :meth:`fit_whitening`, stored as buffers) or
            ``"fc"`` (a learned linear layer).
        dim: output size with whitening (default: the backbone's channels).
        whiten_power: PCA whitening exponent (1 full whitening, 0.5 square root, 0 plain PCA).
        scales: image scales whose descriptors are combined (e.g. ``(0.707, 1.0, 1.414)``).
        scale_power: power of the mean across scales (1: the arithmetic mean).
        image_side: resize every image (aspect kept) so that its shorter side is this many pixels
            before the scales apply (``None``: described at the size given, the default). For
            ``gem:bundled`` (trained on 112-pixel views) 112 wins on its held-out views rendered
            at 320 pixels (mAP 0.492 against 0.417 at 320) but loses on real photos, so it is
            not the default there. Likewise ``scales=(0.5,)`` on its 224-pixel held-out views
            (the 3600-step weights: mAP .563 against .474; in ``gem-tch`` .594 against .531):
            the proxy rewards the training scale, so it is not the default either (not measured
            on real photos).
        pretrained: let timm download the backbone's weights (explicit request only).
        backbone_weights: a local backbone weights file (safetensors or timm checkpoint), or a
            descriptor spec whose trunk to start from (``"dolg:bundled"``).
        size_range: accepted input sides ``(min, max)`` in pixels.
        validate: check for NaN / infinite input.

    Convention:
        Multi-scale: the pooled (pre-whitening) features of every scale are power-averaged, then
        whitened and L2-normalised, so the descriptor size does not depend on the scales. A flat
        image gives an all-zero row (see :class:`~lookalike.descriptors._base.Descriptor`).

    Example:
        >>> import torch
        >>> net = GeMDescriptor(backbone="resnet18", whitening="fc", dim=64, size_range=(32, 256)).eval()
        >>> net(torch.rand(2, 3, 64, 80)).shape
        torch.Size([2, 64])
    """

    needs_weights = True

    def __init__(
        self,
        *,
        backbone: str = "resnet50",
        pooling: str = "gem",
        p: float = 3.0,
        per_channel_p: bool = False,
        whitening: str | None = None,
        dim: int | None = None,
        whiten_power: float = 1.0,
        scales: Sequence[float] = (1.0,),
        scale_power: float = 1.0,
        image_side: int | None = None,
        pretrained: bool = False,
        backbone_weights: str | os.PathLike[str] | None = None,
        size_range: Sequence[int] = (32, 2048),
        validate: bool = True,
    ) -> None:
        super().__init__()
        check_option(pooling, POOLINGS, "pooling")
        check_option(whitening, WHITENINGS, "whitening")
        check_positive(scale_power, "scale_power")
        if not scales or not all(isinstance(s, (int, float)) and s > 0 for s in scales):
            raise OptionError(f"scales: expected a non-empty list of numbers > 0, got {scales!r}")
        check_counts(dim=dim, image_side=image_side, optional=("dim", "image_side"))
        channels = self._setup_backbone(
            backbone,
            out_indices=(-1,),
            pretrained=pretrained,
            backbone_weights=backbone_weights,
            size_range=size_range,
            validate=validate,
        )[-1]
        if pooling == "gem":
            self.pool: nn.Module = GeM(p=p, channels=channels if per_channel_p else None)
        else:
            self.pool = MAC() if pooling == "mac" else SPoC()
        if whitening is None and dim not in (None, channels):
            raise OptionError(
                f"dim: {dim} needs whitening ('pca' or 'fc'); the backbone gives {channels}"
            )
        self.dim = dim or channels
        self.whitening: str | None = whitening
        self.whiten: nn.Module | None = None
        if whitening == "fc":
            self.whiten = nn.Linear(channels, self.dim)
        elif whitening == "pca":
            from lookalike.layers.pca import PCAProjection

            self.whiten = PCAProjection(
                dim_in=channels, dim_out=self.dim, whiten_power=whiten_power
            )
        self.scales = tuple(float(s) for s in scales)
        self.image_side = None if image_side is None else int(image_side)
        self.scale_power = float(scale_power)
        self.to(memory_format=torch.channels_last)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``(B, 3, H, W)`` images to ``(B, C)`` pooled features, power-averaged over scales."""
        base = 1.0 if self.image_side is None else self.image_side / min(x.shape[-2:])
        rows = [self.pool(self.backbone(rescale(x, base * s))[-1]) for s in self.scales]
        return rows[0] if len(rows) == 1 else power_mean(rows, self.scale_power)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pooled(x)
        if self.whiten is None:
            return pooled
        if self.whitening == "pca":
            return self.whiten(F.normalize(pooled.float(), dim=1)).to(pooled.dtype)
        return self.whiten(F.normalize(pooled, dim=1))

    @torch.no_grad()
    def pooled_features(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` pre-whitening features of ``(N, 3, H, W)`` images in [0, 1] (eval mode), for fitting."""
        self.check_input(images)
        was = self.training
        self.eval()
        try:
            return self.pooled(self.normalize_input(images)).float()
        finally:
            self.train(was)

    def fit_whitening(self, features: torch.Tensor) -> None:
        """Fit the PCA whitening on ``(N, C)`` training features (:meth:`pooled_features`).

        Never fit it on evaluation data. Needs ``N >= dim + 1`` rows.

        Raises:
            OptionError: the descriptor was not built with ``whitening="pca"``.
        """
        from lookalike.layers.pca import fit_pca

        if self.whitening != "pca":
            raise OptionError(f"fit_whitening: needs whitening='pca', got {self.whitening!r}")
        fitted = fit_pca(
            F.normalize(features.double(), dim=1),
            self.dim,
            whiten_power=float(self.whiten.whiten_power),
        )
        self.whiten.load_state_dict(fitted.state_dict())
