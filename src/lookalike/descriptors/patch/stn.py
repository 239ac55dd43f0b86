"""A spatial transformer in front of a patch descriptor (``stn_hardnet``): the STN rectifies, the net describes."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from lookalike._registry import create, register
from lookalike.core.errors import OptionError
from lookalike.descriptors._base import Descriptor, InputSpec
from lookalike.layers.stn import SpatialTransformer

__all__ = ["STNPatchDescriptor"]


@register("descriptor", "stn_hardnet")
class STNPatchDescriptor(Descriptor):
    """``descriptor(stn(patch))``: a :class:`~lookalike.layers.stn.SpatialTransformer` before any patch descriptor.

    The transformer starts as the identity, so the untrained model describes exactly like the wrapped
    descriptor; training both end to end lets the transformer undo rotations, scalings and shifts the
    descriptor is not invariant to.

    Args:
        descriptor: a registered patch descriptor name (default ``"hardnet"``) or a descriptor module.
        patch_size: patch side, passed to the descriptor when it is built by name.
        transform: ``"similarity"`` (rotation, scale, shift; default) or ``"affine"``.
        padding_mode: ``grid_sample`` padding for samples outside the patch (``"border"`` by default:
            no artificial black edge).
        descriptor_kwargs: more keywords for a descriptor built by name.

    Attributes:
        stn: the spatial transformer.
        descriptor: the wrapped descriptor.

    Example:
        >>> import torch, lookalike
        >>> net = lookalike.create("descriptor", "stn_hardnet").eval()
        >>> x = torch.rand(4, 1, 32, 32)
        >>> torch.allclose(net(x), net.descriptor(x), atol=1e-6)  # untrained: the identity in front
        True
    """

    needs_weights: ClassVar[bool] = True
    input_name: ClassVar[str] = "patches"

    def __init__(
        self,
        *,
        descriptor: str | Descriptor = "hardnet",
        patch_size: int = 32,
        transform: str = "similarity",
        padding_mode: str = "border",
        descriptor_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(descriptor, str):
            inner = create(
                "descriptor", descriptor, patch_size=patch_size, **(descriptor_kwargs or {})
            )
        elif isinstance(descriptor, Descriptor):
            if descriptor_kwargs:
                raise OptionError("descriptor_kwargs: only for a descriptor given by name")
            inner = descriptor
        else:
            raise OptionError(
                f"descriptor: expected a registered name or a Descriptor, got {type(descriptor).__name__}"
            )
        if not isinstance(inner, nn.Module) or not isinstance(
            getattr(inner, "input_spec", None), InputSpec
        ):
            raise OptionError(f"descriptor: {descriptor!r} does not declare an input_spec")
        self.descriptor = inner
        self.dim = int(inner.dim)
        self.patch_extent = inner.patch_extent
        self.stn = SpatialTransformer(
            inner.input_spec.channels, transform=transform, padding_mode=padding_mode
        )

    @property
    def input_spec(self) -> InputSpec:  # type: ignore[override]
        """The wrapped descriptor's input."""
        return self.descriptor.input_spec

    @property
    def patch_size(self) -> int:
        """The wrapped descriptor's patch size."""
        return self.descriptor.patch_size

    def output_dtype(self, x: torch.Tensor) -> torch.dtype:
        return self.descriptor.output_dtype(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Rectify the patches with the transformer, then the wrapped descriptor's trunk."""
        self.check_input(x, finite=False)
        dtype = self.stn.head.weight.dtype
        return self.descriptor.forward_features(self.stn(x.to(dtype)))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.descriptor.forward_head(features)
