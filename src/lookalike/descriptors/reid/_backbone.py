"""What the re-ID networks share: a timm ResNet cut into its stem and four stages, a fixed input size.

- :func:`resnet_stages`: any timm ResNet (``resnet18``, ``resnet50``, ``resnet50d``, ...) without its
  classifier, optionally with the last stride set to 1 (the usual re-ID trick: stage 4 keeps the
  resolution of stage 3), weights from a local file or timm's download on explicit request (through
  :func:`lookalike.descriptors.image._backbone.load_backbone_weights`; constructing never downloads by
  default).
- :class:`ReidNetwork`: the :class:`~lookalike.descriptors.image._backbone.ImageDescriptor` of the
  person family: RGB crops in [0, 1] of any size in ``size_range``, resized inside to the network's
  ``input_size`` (the attention and part layers are built for one feature-map size).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lookalike.core.check import check_int
from lookalike.core.errors import OptionError
from lookalike.descriptors._functional import normalize_descriptors
from lookalike.descriptors.image._backbone import ImageDescriptor, load_backbone_weights

__all__ = ["ReidNetwork", "ResNetStages", "check_input_size", "resnet_stages", "strip_max"]

_STAGES = ("layer1", "layer2", "layer3", "layer4")


def check_input_size(size: object) -> tuple[int, int]:
    """``(height, width)`` integers >= 32, else :class:`OptionError`."""
    ok = isinstance(size, Sequence) and not isinstance(size, str) and len(size) == 2
    ok = ok and all(isinstance(s, int) and not isinstance(s, bool) and s >= 32 for s in size)
    if not ok:
        raise OptionError(f"input_size: expected (height, width) integers >= 32, got {size!r}")
    return int(size[0]), int(size[1])


@dataclass
class ResNetStages:
    """A ResNet split for re-ID: ``stem`` then ``stages[0..3]``.

    Attributes:
        stem: convolution(s), norm, activation and max pooling (stride 4).
        stages: ``layer1`` .. ``layer4``.
        channels: output channels of every stage.
        reductions: output stride of every stage (the last one 16 with ``last_stride=1``).
    """

    stem: nn.Sequential
    stages: list[nn.Module]
    channels: list[int]
    reductions: list[int]

    def feature_sizes(self, input_size: tuple[int, int]) -> list[tuple[int, int]]:
        """``(h, w)`` of every stage's output for ``input_size`` (each stride-2 layer gives ``ceil(n / 2)``)."""
        return [
            (math.ceil(input_size[0] / r), math.ceil(input_size[1] / r)) for r in self.reductions
        ]


def _set_last_stride_one(layer4: nn.Module) -> None:
    first = layer4[0]
    changed = False
    for name, module in first.named_modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)
            changed = True
        elif isinstance(module, nn.AvgPool2d) and name.startswith("downsample"):
            module.stride, module.kernel_size, module.ceil_mode = 1, 1, False
    if not changed:
        raise OptionError(
            "last_stride=1: found no stride-2 convolution in the first block of layer4"
        )


def resnet_stages(
    name: str = "resnet50",
    *,
    last_stride: int = 1,
    width: float = 1.0,
    pretrained: bool = False,
    backbone_weights: str | os.PathLike[str] | None = None,
) -> ResNetStages:
    """A timm ResNet without classifier, split into stem and stages.

    Args:
        name: a timm ResNet name (a model with ``layer1`` .. ``layer4``).
        last_stride: 2 (ImageNet layout) or 1 (stage 4 at stride 16).
        width: multiplier of the stem and stage widths (1: the named network; e.g. 0.25 gives a
            ResNet-18 with 16-128 channels for CPU training). Only 1 fits pretrained weights.
        pretrained: let timm download its weights (explicit request only).
        backbone_weights: a local ``.safetensors`` / ``.pth`` file of the ResNet (a full timm
            checkpoint is fine: its classifier is skipped), or a descriptor spec whose trunk is a
            ResNet of the same layout (``"gem:bundled"``: ResNet-18; see
            :func:`lookalike.descriptors.image._backbone.backbone_state`).

    Raises:
        OptionError: not a timm ResNet, a bad ``last_stride``, or both weight sources.
        WeightsError: the weights file does not fit.

    Example:
        >>> net = resnet_stages("resnet18", last_stride=1)
        >>> net.channels, net.reductions, net.feature_sizes((256, 128))[-1]
        ([64, 128, 256, 512], [4, 8, 16, 16], (16, 8))
    """
    import timm

    if not isinstance(name, str) or not timm.is_model(name):
        raise OptionError(f"backbone: expected a timm ResNet name, got {name!r}")
    if last_stride not in (1, 2) or isinstance(last_stride, bool):
        raise OptionError(f"last_stride: expected 1 or 2, got {last_stride!r}")
    if pretrained and backbone_weights is not None:
        raise OptionError("pretrained and backbone_weights: expected at most one of them")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 4:
        raise OptionError(f"width: expected a number in (0, 4], got {width!r}")
    if width != 1 and pretrained:
        raise OptionError(f"width: pretrained weights need width 1, got {width!r}")
    extra = {}
    if width != 1:
        extra = {
            "channels": tuple(max(8, round(c * width)) for c in (64, 128, 256, 512)),
            "stem_width": max(8, round(64 * width)),
        }
    try:
        model = timm.create_model(
            name, pretrained=bool(pretrained), num_classes=0, global_pool="", **extra
        )
    except TypeError as exc:
        raise OptionError(f"width: {name!r} takes no width multiplier ({exc})") from exc
    if not all(hasattr(model, s) for s in ("conv1", "bn1", "act1", "maxpool", *_STAGES)):
        raise OptionError(f"backbone: expected a ResNet (conv1, layer1..layer4), got {name!r}")
    if backbone_weights is not None:
        load_backbone_weights(model, backbone_weights)
    info = {f["module"]: f for f in model.feature_info}
    channels = [int(info[s]["num_chs"]) for s in _STAGES]
    reductions = [int(info[s]["reduction"]) for s in _STAGES]
    if last_stride == 1:
        _set_last_stride_one(model.layer4)
        reductions[-1] = reductions[-2]
    stem = nn.Sequential(model.conv1, model.bn1, model.act1, model.maxpool)
    return ResNetStages(stem, [getattr(model, s) for s in _STAGES], channels, reductions)


def strip_max(fmap: torch.Tensor, parts: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, parts)``: the maximum over each of ``parts`` horizontal strips, with
    ``adaptive_max_pool2d``'s bins (rows ``floor(iH/n)`` to ``ceil((i+1)H/n)``), written with slices so
    the ONNX export (dynamic batch) works: ``H`` is fixed by the network's input size.

    Example:
        >>> import torch
        >>> from torch.nn.functional import adaptive_max_pool2d
        >>> x = torch.rand(2, 3, 7, 4)
        >>> torch.equal(strip_max(x, 3), adaptive_max_pool2d(x, (3, 1)).squeeze(-1))
        True
    """
    h = int(fmap.shape[2])
    strips = [fmap[:, :, (i * h) // parts : -(-(i + 1) * h // parts)] for i in range(parts)]
    return torch.stack([s.amax(dim=(2, 3)) for s in strips], dim=-1)


class ReidNetwork(ImageDescriptor):
    """Base of the re-ID networks: crops resized to :attr:`input_size`, normalised, then :meth:`trunk`.

    Convention:
        Inputs are RGB person crops in [0, 1] of any size in ``size_range``; they are resized
        (bilinear, antialiased when shrinking) to ``input_size = (height, width)`` inside, because the
        relation layers are built for one feature-map size. A flat crop gives an all-zero row.

        With ``flip_average`` (a constructor option, stored with the weights), an eval-mode network
        describes every crop and its left-right mirror in one batch and returns the sum of the two
        L2-normalised rows (then normalised again): the descriptor becomes mirror invariant at twice
        the inference cost. Training mode describes the crop alone (flips are an augmentation there).
    """

    input_size: tuple[int, int]
    flip_average: bool = False

    @property
    def crop_size(self) -> tuple[int, int]:
        """``(height, width)`` the re-ID protocol reads crops at: :attr:`input_size`."""
        return self.input_size

    def _setup_reid_input(
        self, input_size: Sequence[int], size_range: Sequence[int], flip_average: bool = False
    ) -> None:
        self.input_size = check_input_size(input_size)
        if not isinstance(flip_average, bool):
            raise OptionError(f"flip_average: expected True or False, got {flip_average!r}")
        self.flip_average = flip_average
        self._setup_input(size_range)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` resized to :attr:`input_size` (unchanged when it already has it)."""
        if tuple(x.shape[-2:]) == self.input_size:
            return x
        shrink = x.shape[-2] > self.input_size[0] or x.shape[-1] > self.input_size[1]
        return F.interpolate(
            x, size=self.input_size, mode="bilinear", align_corners=False, antialias=shrink
        )

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``(B, 3, *input_size)`` crops to ``(B, D)`` raw descriptors (see the subclass)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement trunk")

    def blocks(self) -> list[nn.Module]:
        """The trunk's blocks in the order they run (stem first): the units the training engine's
        frozen-prefix cache (recipe key ``cache_frozen``) may run once, ahead of training."""
        raise OptionError(f"{type(self).__name__} does not list its blocks")

    def embed_after(self, fmap: torch.Tensor, start: int) -> torch.Tensor:
        """``(B, D)`` raw descriptors of the output of block ``start - 1`` of :meth:`blocks`
        (the rest of the trunk; no resizing and no flip averaging: for training)."""
        raise OptionError(f"{type(self).__name__} does not list its blocks")

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resize(x)
        if not self.flip_average or self.training:
            return self.trunk(x)
        plain, mirrored = self.trunk(torch.cat([x, x.flip(-1)])).chunk(2)
        return normalize_descriptors(plain) + normalize_descriptors(mirrored)  # norms in float32

    @torch.no_grad()
    def stage_strips(self, x: torch.Tensor, *, max_strips: int = 12) -> torch.Tensor:
        """``(B, F)`` float32 features of the trunk's own maps, for a metric fitted on top (``xqda``
        with ``features="strips"``): what the descriptor's reduction layers may have dropped.

        Every block of :meth:`blocks` after the stem (each ResNet stage, with its attention if any)
        gives its map max pooled over ``min(rows, max_strips)`` horizontal strips (:func:`strip_max`),
        and the last two blocks also their global maximum; the pieces are concatenated, stage by
        stage, and square-rooted (``sign(v) sqrt(|v|)``: the power normalisation usual before a
        metric on pooled activations). With :attr:`flip_average` the features of the crop and of its
        mirror are averaged. No gradients; call it in eval mode (batch statistics otherwise).

        Args:
            x: ``(B, 3, H, W)`` RGB crops in [0, 1], resized inside as for the descriptor.
            max_strips: the most strips a map is cut into (>= 1).
        """
        check_int(max_strips, "max_strips")
        self.check_input(x)
        crops = self.resize(self.normalize_input(x))
        views = [crops, crops.flip(-1)] if self.flip_average else [crops]
        return sum(self._strips_of(v, max_strips) for v in views) / len(views)

    def _strips_of(self, fmap: torch.Tensor, max_strips: int) -> torch.Tensor:
        blocks = self.blocks()
        pieces = []
        for index, block in enumerate(blocks):
            fmap = block(fmap)
            if index == 0:  # the stem
                continue
            pieces.append(strip_max(fmap, min(int(fmap.shape[2]), max_strips)).flatten(1))
            if index >= len(blocks) - 2:
                pieces.append(fmap.amax(dim=(2, 3)))
        rows = torch.cat(pieces, dim=1).float()
        return rows.sign() * rows.abs().sqrt()
