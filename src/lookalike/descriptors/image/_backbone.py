"""What every global image descriptor shares: a timm backbone, weights from a local file, normalisation.

- :func:`create_backbone`: ``timm.create_model(name, features_only=True, pretrained=False)`` for any
  timm name, with the stages a descriptor needs; weights from a local safetensors or timm checkpoint
  file (:func:`load_backbone_weights`), or timm's own download only when ``pretrained=True`` is asked
  for explicitly. Constructing never downloads by default.
- :class:`ImageDescriptor`: the :class:`~lookalike.descriptors._base.Descriptor` of the image family:
  ``(B, 3, H, W)`` inputs in [0, 1], per-channel normalisation inside (the backbone's mean and std),
  channels-last memory format on CPU; :meth:`ImageDescriptor._setup_backbone` takes the keywords every
  backbone descriptor shares (``backbone``, ``pretrained``, ``backbone_weights``, ``size_range``,
  ``validate``).
- :func:`check_counts`: the one check of channel / size keywords (integers ``>= 1``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lookalike.core.check import check_int
from lookalike.core.errors import OptionError
from lookalike.descriptors._base import Descriptor, InputSpec

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageDescriptor",
    "backbone_state",
    "check_counts",
    "create_backbone",
    "load_backbone_weights",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Classifier / head keys a full timm checkpoint holds that a ``features_only`` backbone lacks.
_HEAD_PREFIXES = ("fc.", "classifier.", "head.", "conv_head.", "bn2.", "head_drop.", "global_pool.")


def _check_size_range(size: Any) -> tuple[int, int]:
    ok = isinstance(size, Sequence) and len(size) == 2
    ok = ok and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)
    if not ok or size[0] > size[1]:
        raise OptionError(f"size_range: expected (min, max) integers >= 1, got {size!r}")
    return int(size[0]), int(size[1])


def check_counts(*, optional: Sequence[str] = (), **counts: Any) -> None:
    """Raise :class:`OptionError` unless every keyword's value is an integer ``>= 1`` (``bool`` is not
    an integer here); ``None`` passes for the names in ``optional``.

    Example:
        >>> check_counts(local_dim=64, dim=None, optional=("dim",))
        >>> check_counts(local_dim=64, dim=0)
        Traceback (most recent call last):
        ...
        lookalike.core.errors.OptionError: dim: expected an integer >= 1, got 0
    """
    for name, value in counts.items():
        if value is None and name in optional:
            continue
        check_int(value, name)


def create_backbone(
    name: str,
    *,
    out_indices: Sequence[int],
    pretrained: bool = False,
    backbone_weights: str | os.PathLike[str] | None = None,
    **timm_kwargs: Any,
) -> nn.Module:
    """A timm ``features_only`` backbone returning the feature maps of ``out_indices``.

    Args:
        name: any timm model name (``resnet50``, ``efficientnet_b0``, ...).
        out_indices: the stages to return (timm's ``out_indices``; 0 is the stem).
        pretrained: let timm download its pretrained weights (needs a network; never the default).
        backbone_weights: a local ``.safetensors`` / ``.pth`` file of the backbone (a timm
            checkpoint of the full classifier is fine: its head is skipped), or the spec of a
            descriptor whose trunk to start from (``"gem:bundled"``, see :func:`backbone_state`).
        **timm_kwargs: more keywords for ``timm.create_model``.

    Raises:
        OptionError: timm does not know ``name``, or ``pretrained`` and ``backbone_weights`` are both
            given.
        WeightsError: the weights file is unreadable or does not fit (missing backbone keys named).

    Example:
        >>> net = create_backbone("resnet18", out_indices=(4,))
        >>> net.feature_info.channels(), net.feature_info.reduction()
        ([512], [32])
    """
    import timm

    if not isinstance(name, str) or not timm.is_model(name):
        raise OptionError(
            f"backbone: expected a timm model name (timm.list_models()), got {name!r}"
        )
    if pretrained and backbone_weights is not None:
        raise OptionError("pretrained and backbone_weights: expected at most one of them")
    model = timm.create_model(
        name,
        features_only=True,
        pretrained=bool(pretrained),
        out_indices=tuple(int(i) for i in out_indices),
        **timm_kwargs,
    )
    _drop_unused_blocks(model)
    if backbone_weights is not None:
        load_backbone_weights(model, backbone_weights)
    return model


def _drop_unused_blocks(model: nn.Module) -> None:
    """Cut the blocks after the last returned stage (EfficientNet-style feature nets run them all)."""
    names = model.feature_info.module_name()
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential) or not all(n.startswith("blocks.") for n in names):
        return
    last = max(int(n.split(".")[1]) for n in names)
    model.blocks = blocks[: last + 1]


def backbone_state(source: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], str]:
    """``(state_dict, label)`` of a backbone weights ``source``: a local file, or a descriptor spec.

    A file (``.safetensors`` / ``.pth``) is read as it is. Otherwise ``source`` must be a
    ``"name:weights"`` spec of a registered descriptor whose weights hold a timm backbone under
    ``backbone.`` (``"gem:bundled"``, ``"dolg:bundled"``): those tensors are returned without the
    prefix, so another network can start from a shipped descriptor's trunk. Named weights resolve
    as :func:`lookalike.create` resolves them (package folder, or a checked download when declared).

    Raises:
        WeightsError: neither a file nor a ``name:weights`` spec, unknown weights, or a spec whose
            file holds no ``backbone.`` tensors.
        RegistryError: unknown descriptor name.

    Example:
        >>> state, label = backbone_state("gem:bundled")
        >>> label, "layer4.1.bn2.weight" in state, any(k.startswith("whiten") for k in state)
        ('gem:bundled (backbone.*)', True, False)
    """
    from lookalike._registry import get_entry, resolve_weights, split_spec
    from lookalike.core.weights import WeightsError, read_weights

    path = os.fspath(source)
    local = os.path.expanduser(path)
    if os.path.isfile(local):
        state, _ = read_weights(local)
        return {k.removeprefix("module."): v for k, v in state.items()}, path
    name, weights = split_spec(path)
    if not name or not weights:
        raise WeightsError(
            f"backbone_weights: expected a weights file or a 'name:weights' descriptor spec "
            f"(e.g. 'gem:bundled'), got {path!r}"
        )
    state, _ = read_weights(resolve_weights(get_entry("descriptor", name), weights))
    trunk = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    if not trunk:
        raise WeightsError(f"backbone_weights: {path!r} holds no backbone.* tensors")
    return trunk, f"{path} (backbone.*)"


def load_backbone_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a backbone's weights from a local file or a descriptor spec; every backbone key must be found.

    ``path`` is read by :func:`backbone_state` (a file, or ``"gem:bundled"``-style spec whose
    ``backbone.*`` tensors are taken). Keys of a classifier head (``fc.``, ``classifier.``,
    ``head.``, ``conv_head.``...) and of stages the ``features_only`` model dropped are skipped; a
    missing backbone key or a shape mismatch raises.

    Raises:
        WeightsError: unreadable file, missing keys, or mismatched shapes.
    """
    from lookalike.core.weights import WeightsError

    state, label = backbone_state(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise WeightsError(
            f"{label} does not fit the backbone {type(model).__name__}: missing keys {missing[:8]}"
        )
    wrong = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if wrong:
        raise WeightsError(
            f"{label}: shape mismatch for {wrong[:4]} (file {tuple(state[wrong[0]].shape)}, "
            f"backbone {tuple(own[wrong[0]].shape)})"
        )
    model.load_state_dict({k: state[k].to(own[k].dtype) for k in own}, strict=True)


class ImageDescriptor(Descriptor):
    """Base of the global image descriptors: normalisation and memory format around a trunk.

    Subclasses call :meth:`_setup_input` in their constructor and implement :meth:`embed`, which
    maps normalised ``(B, 3, H, W)`` images to ``(B, D)`` raw descriptors; the base L2-normalises.

    Convention:
        Inputs are RGB in [0, 1]; the per-channel ``(x - mean) / std`` of the backbone's training is
        applied inside (so every caller feeds the same [0, 1] images). On CPU the normalised batch is
        converted to channels-last, the faster layout for oneDNN convolutions.
    """

    input_name = "images"
    channels_last: bool = True

    def _setup_input(
        self,
        size_range: Sequence[int],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        low, high = _check_size_range(size_range)
        self.input_spec = InputSpec(
            channels=3, size=(low, high), normalization=(tuple(mean), tuple(std))
        )
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )

    def _setup_backbone(
        self,
        backbone: str,
        *,
        out_indices: Sequence[int],
        pretrained: bool,
        backbone_weights: str | os.PathLike[str] | None,
        size_range: Sequence[int],
        validate: bool,
    ) -> list[int]:
        """The shared part of a backbone descriptor's constructor: the input spec of ``size_range``
        (checked first, before the backbone is built), ``self.backbone`` from :func:`create_backbone`
        and ``self.validate``. Returns the channels of the returned stages."""
        self._setup_input(size_range)
        self.backbone = create_backbone(
            backbone,
            out_indices=out_indices,
            pretrained=pretrained,
            backbone_weights=backbone_weights,
        )
        self.validate = validate
        return [int(c) for c in self.backbone.feature_info.channels()]

    def normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` in the network's dtype, channels-last on CPU."""
        dtype = next((p.dtype for p in self.parameters()), x.dtype)
        x = ((x - self.mean.to(x.dtype)) / self.std.to(x.dtype)).to(dtype)
        if self.channels_last and x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images to ``(B, D)`` raw descriptors (see the subclass)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement embed")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.normalize_input(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        from lookalike.descriptors._functional import normalize_descriptors

        return normalize_descriptors(features)

    def fuse_for_inference(self, *, bf16: bool = False, compile: bool = False) -> ImageDescriptor:
        """A frozen eval-mode copy for fast inference: BatchNorm folded into the backbone convolutions
        (:func:`~lookalike.descriptors.fold.fold_graph_batchnorm` on every timm feature net, timm's
        fused BatchNorm + activation modules included), channels-last, optionally bfloat16 weights and
        ``torch.compile``. The original is not modified.

        Convention:
            A backbone that ``torch.fx`` cannot trace is kept unfolded (logged). bfloat16 rows differ
            from float32 ones (report their cosine); the output dtype is still the input's.
        """
        import copy
        import logging

        from lookalike.descriptors.fold import fold_graph_batchnorm

        fused = copy.deepcopy(self).eval()
        for name, child in list(fused.named_children()):
            if hasattr(child, "feature_info"):
                try:
                    setattr(fused, name, fold_graph_batchnorm(child))
                except Exception as exc:  # tracing failures come in many types
                    logging.getLogger(__name__).warning("%s: BatchNorm not folded (%s)", name, exc)
        fused = fused.to(memory_format=torch.channels_last)
        if bf16:
            fused = fused.to(torch.bfloat16)
        for p in fused.parameters():
            p.requires_grad_(False)
        if compile:
            fused.embed = torch.compile(fused.embed)  # type: ignore[method-assign]
        return fused


def to_channels_last(module: nn.Module) -> nn.Module:
    """``module`` converted to channels-last memory format (on CPU the faster layout for convolutions)."""
    return module.to(memory_format=torch.channels_last)
