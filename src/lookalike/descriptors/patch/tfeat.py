"""TFeat (Balntas et al., BMVC 2016): a shallow tanh CNN trained with triplets and anchor swap."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping

import torch
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_positive
from lookalike.descriptors.patch._base import PatchNet

__all__ = ["TFeat"]

_FEATURE_KEY = re.compile(r"^features\.(\d+)\.(.+)$")


@register("descriptor", "tfeat")
class TFeat(PatchNet):
    """TFeat: ``Conv7×7(32) → tanh → MaxPool2 → Conv6×6(64) → tanh → Linear(dim) → tanh``, L2-normalised.

    Args:
        dim: descriptor size (output features of the linear layer).

    Shape:
        - Input: ``(B, 1, 32, 32)`` patches in [0, 1].
        - Output: ``(B, dim)``, rows L2-normalised.

    Convention:
        - Input standardisation is ``InstanceNorm2d``'s: ``(x - mean) / sqrt(var + 1e-5)`` (biased
          variance, gradients through the statistics), as in kornia and the reference code.
        - Unlike kornia's ``TFeat``, which returns the final ``tanh`` layer as is, the rows are
          L2-normalised like every lookalike descriptor: ours equal ``F.normalize(kornia_output)``.
        - A flat patch gives an all-zero row.
        - kornia's and the reference checkpoints (``features.1``/``features.4``, with the
          ``InstanceNorm2d`` at index 0) load through :meth:`adapt_state_dict`.

    Example:
        >>> import torch
        >>> TFeat().eval()(torch.rand(5, 1, 32, 32)).shape
        torch.Size([5, 128])
    """

    patch_size = 32
    _norm_kind = "instance"
    _norm_eps = 1e-5
    _detach_stats = False

    def __init__(self, *, dim: int = 128) -> None:
        super().__init__()
        check_positive(dim, "dim")
        self.dim = int(dim)
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=7),
            nn.Tanh(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(32, 64, kernel_size=6),
            nn.Tanh(),
        )
        self.descr = nn.Sequential(nn.Linear(64 * 8 * 8, self.dim), nn.Tanh())

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """``Linear(64·8·8 → dim) → tanh`` of the flattened trunk output."""
        return self.descr(features)

    def _fused_projection(self) -> nn.Module:
        return copy.deepcopy(self.descr)

    @staticmethod
    def adapt_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Shift kornia/reference ``features.{i}`` keys to ``features.{i-1}``; ours pass unchanged.

        The reference layout is recognised by a ``features.1.weight`` key and no ``features.0.weight``.

        Example:
            >>> import torch
            >>> sorted(TFeat.adapt_state_dict({"features.1.weight": torch.zeros(1), "descr.0.bias": torch.zeros(1)}))
            ['descr.0.bias', 'features.0.weight']
        """
        if "features.0.weight" in state or "features.1.weight" not in state:
            return dict(state)
        out: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            match = _FEATURE_KEY.match(key)
            out[f"features.{int(match[1]) - 1}.{match[2]}" if match else key] = value
        return out
