"""SOSNet (Tian et al., CVPR 2019): the L2-Net trunk trained with second-order similarity regularisation."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from lookalike._registry import register
from lookalike.core.check import check_positive
from lookalike.core.errors import OptionError
from lookalike.descriptors.patch._base import PatchNet
from lookalike.descriptors.patch.hardnet import hardnet_features

__all__ = ["SOSNet"]

_KORNIA_KEY = re.compile(r"^layers\.(\d+)\.(.+)$")


@register("descriptor", "sosnet")
class SOSNet(PatchNet):
    """SOSNet for 32×32 patches (the ``SOSNet32x32`` architecture of the reference code and kornia).

    Architecture: ``InstanceNorm2d`` on the input, then HardNet's trunk (3×3 convolutions of widths
    32, 32, 64/2, 64, 128/2, 128 with ``BatchNorm2d(affine=False)`` and ReLU, dropout, an 8×8
    convolution to ``dim`` and a last ``BatchNorm2d(affine=False)``), then an L2 normalisation (the
    reference code writes it as ``LocalResponseNorm(2·dim, alpha=2·dim, beta=0.5, k=0)``, which is the
    same thing on a ``1×1`` map). The SOS regulariser is part of the loss, not of the network.

    Args:
        dim: descriptor size (output channels of the final convolution).
        dropout: dropout probability before the final convolution.

    Shape:
        - Input: ``(B, 1, 32, 32)`` patches in [0, 1].
        - Output: ``(B, dim)``, rows L2-normalised.

    Convention:
        - Input standardisation is ``InstanceNorm2d``'s: ``(x - mean) / sqrt(var + 1e-5)`` with the
          biased variance and gradients through the statistics. The ``1e-5`` is absolute, so a
          low-contrast patch in [0, 1] and the same patch in [0, 255] can differ (as in kornia).
        - A flat patch gives an all-zero row (kornia: the uniform vector ``1/sqrt(dim)``, from the
          ``1e-10`` it adds before its normalisation).
        - kornia's and the reference checkpoints (``layers.*`` keys, with the ``InstanceNorm2d`` at
          index 0) load through :meth:`adapt_state_dict`; our trunk is ``features.*``.

    Example:
        >>> import torch
        >>> SOSNet().eval()(torch.rand(8, 1, 32, 32)).shape
        torch.Size([8, 128])
    """

    patch_size = 32
    _norm_kind = "instance"
    _norm_eps = 1e-5
    _detach_stats = False

    def __init__(self, *, dim: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        check_positive(dim, "dim")
        check_positive(dropout, "dropout", strict=False)
        if dropout >= 1:
            raise OptionError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        self.dim = int(dim)
        self.features = hardnet_features(
            (32, 32, 64, 64, 128, 128),
            (1, 1, 2, 1, 2, 1),
            dim=int(dim),
            final_kernel=8,
            dropout=dropout,
        )

    @staticmethod
    def adapt_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename kornia/reference keys ``layers.{i}.*`` to ``features.{i-1}.*``; ours pass unchanged.

        Example:
            >>> import torch
            >>> list(SOSNet.adapt_state_dict({"layers.1.weight": torch.zeros(1)}))
            ['features.0.weight']
        """
        out: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            match = _KORNIA_KEY.match(key)
            out[f"features.{int(match[1]) - 1}.{match[2]}" if match else key] = value
        return out
