"""Spatial transformer (Jaderberg et al., NeurIPS 2015): localisation net → affine grid → resampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_option, check_shape
from lookalike.layers._common import check_feature_map, check_int, check_ints

__all__ = ["TRANSFORMS", "SpatialTransformer", "similarity_theta"]

#: Transform families of :class:`SpatialTransformer` and their number of parameters.
TRANSFORMS = {"affine": 6, "similarity": 4}


def similarity_theta(params: torch.Tensor) -> torch.Tensor:
    """``(B, 4)`` ``(a, b, tx, ty)`` → ``(B, 2, 3)`` ``[[a, -b, tx], [b, a, ty]]``.

    A rotation by ``angle`` with scale ``s`` is ``a = s cos(angle)``, ``b = s sin(angle)``; ``(1, 0, 0, 0)``
    is the identity. Coordinates are the normalised ``[-1, 1]`` ones of ``F.affine_grid``.

    Example:
        >>> similarity_theta(torch.tensor([[1.0, 0.0, 0.5, 0.0]]))
        tensor([[[1.0000, -0.0000, 0.5000],
                 [0.0000, 1.0000, 0.0000]]])
    """
    check_shape(params, ["B", "4"], "params")
    a, b, tx, ty = params.unbind(dim=1)
    return torch.stack([torch.stack([a, -b, tx], 1), torch.stack([b, a, ty], 1)], 1)


@register("layer", "stn")
class SpatialTransformer(nn.Module):
    """Predict an affine (or similarity) transform of the input and resample the input with it.

    The localisation network is ``[Conv k×k → MaxPool 2 → ReLU]`` per entry of ``loc_channels``,
    adaptive average pooling to ``4×4``, ``Linear → ReLU → Linear`` to the transform parameters. Its
    last layer starts at zero weights and the identity as bias, so the untrained transformer returns its
    input (up to float rounding of ``grid_sample`` at pixel centres).

    Args:
        in_channels: input channels ``C``.
        loc_channels: widths of the localisation convolutions.
        loc_kernel_size: their kernel size (odd).
        hidden: width of the hidden fully connected layer.
        transform: ``"affine"`` (6 parameters) or ``"similarity"`` (rotation, isotropic scale and
            translation: 4 parameters, see :func:`similarity_theta`).
        out_size: ``(H, W)`` of the output (default: the input's size).
        padding_mode: ``grid_sample``'s padding for samples outside the input (``"zeros"``,
            ``"border"``, ``"reflection"``).

    Convention:
        ``theta`` maps normalised output coordinates to input coordinates (``F.affine_grid`` with
        ``align_corners=False``): the output at ``p`` is the input at ``theta @ [p, 1]``.

    Example:
        >>> import torch
        >>> stn = SpatialTransformer(1, transform="similarity")
        >>> x = torch.rand(2, 1, 32, 32)
        >>> bool((stn(x) - x).abs().max() < 1e-6)  # identity at initialisation
        True
    """

    def __init__(
        self,
        in_channels: int,
        *,
        loc_channels: tuple[int, ...] = (8, 16),
        loc_kernel_size: int = 5,
        hidden: int = 32,
        transform: str = "affine",
        out_size: tuple[int, int] | None = None,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        widths = check_ints(loc_channels, "loc_channels")
        k = check_int(loc_kernel_size, "loc_kernel_size")
        check_option(transform, list(TRANSFORMS), "transform")
        check_option(padding_mode, ["zeros", "border", "reflection"], "padding_mode")
        self.transform = transform
        self.padding_mode = padding_mode
        self.out_size = None if out_size is None else check_ints(out_size, "out_size", length=2)
        layers: list[nn.Module] = []
        prev = in_channels
        for width in widths:
            layers += [
                nn.Conv2d(prev, width, k, padding=k // 2),
                nn.MaxPool2d(2, ceil_mode=True),
                nn.ReLU(),
            ]
            prev = width
        layers.append(nn.AdaptiveAvgPool2d(4))
        self.localization = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(prev * 16, check_int(hidden, "hidden")), nn.ReLU()
        )
        self.head = nn.Linear(hidden, TRANSFORMS[transform])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Zero weights and identity bias in the last layer: the untrained transformer is the identity."""
        nn.init.zeros_(self.head.weight)
        identity = (
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0] if self.transform == "affine" else [1.0, 0.0, 0.0, 0.0]
        )
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor(identity))

    def theta(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(B, 2, 3)`` transforms predicted for ``(B, C, H, W)`` ``x`` (see Convention)."""
        check_feature_map(x, self.in_channels, "x")
        params = self.head(self.fc(self.localization(x)))
        if self.transform == "similarity":
            return similarity_theta(params)
        return params.view(-1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Resample ``(B, C, H, W)`` ``x`` with its predicted transform: ``(B, C, *out_size)``.

        Raises:
            ShapeError: ``x`` is not ``(B, in_channels, H, W)``.
            DTypeError: ``x`` is not floating point.
        """
        theta = self.theta(x)
        size = self.out_size or tuple(x.shape[2:])
        grid = F.affine_grid(theta, [x.shape[0], x.shape[1], *size], align_corners=False)
        return F.grid_sample(
            x,
            grid.to(x.dtype),
            mode="bilinear",
            padding_mode=self.padding_mode,
            align_corners=False,
        )
