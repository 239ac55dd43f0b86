"""L2-Net (Tian et al., CVPR 2017): the patch CNN that HardNet later adopted unchanged."""

from __future__ import annotations

from lookalike._registry import register
from lookalike.descriptors.patch.hardnet import HardNet

__all__ = ["L2Net"]


@register("descriptor", "l2net")
class L2Net(HardNet):
    """L2-Net: seven convolutions with non-affine BatchNorm, trained with its progressive sampling loss.

    The single-stream L2-Net is the network HardNet reuses, so the architecture equals
    :class:`~lookalike.descriptors.patch.hardnet.HardNet`'s (3×3 convolutions of widths 32, 32, 64/2,
    64, 128/2, 128, then an 8×8 convolution to ``dim``, ``BatchNorm2d(affine=False)`` everywhere, no
    biases); only the default dropout differs. The registry keeps both names so that weights say which
    recipe trained them. The two-stream central-surround variant (L2-Net CS) is not implemented.

    Args:
        dim: descriptor size.
        dropout: dropout probability before the final convolution (0.1, as in the L2-Net ports).
        patch_size: 32, 48 or 64 (48/64: stride 2 on the last 3×3 convolution).

    Shape:
        - Input: ``(B, 1, P, P)`` patches in [0, 1].
        - Output: ``(B, dim)``, rows L2-normalised.

    Convention:
        Patches are standardised to ``(x - mean) / (std + 1e-6)``; a flat patch gives an all-zero row;
        the state-dict layout is HardNet's. See :class:`~lookalike.descriptors.patch._base.PatchNet`.

    Example:
        >>> import torch
        >>> L2Net().eval()(torch.rand(3, 1, 32, 32)).shape
        torch.Size([3, 128])
    """

    def __init__(self, *, dim: int = 128, dropout: float = 0.1, patch_size: int = 32) -> None:
        super().__init__(dim=dim, dropout=dropout, patch_size=patch_size)
