"""HardNet (Mishchuk et al., NeurIPS 2017) and the L2-Net-style trunk its whole family shares.

The trunk is a stack of 3×3 ``Conv → BatchNorm(affine=False) → ReLU`` layers, two of them with stride
2, then dropout and a final ``Conv`` whose kernel covers the remaining feature map, followed by a last
``BatchNorm``; no convolution has a bias. :func:`hardnet_features` builds it with the same
``nn.Sequential`` indices as kornia's ``HardNet.features``, so kornia and original HardNet state
dicts load unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_option, check_positive
from lookalike.core.errors import OptionError
from lookalike.core.weights import WeightSpec
from lookalike.descriptors.patch._base import PatchNet
from lookalike.layers._common import check_int

__all__ = [
    "HardNet",
    "HardNetFamily",
    "hardnet_features",
    "orthogonal_",
    "strides_for_patch_size",
]

PATCH_SIZES = (32, 48, 64)


def strides_for_patch_size(strides: Sequence[int], patch_size: int) -> tuple[tuple[int, ...], int]:
    """Adapt the 32-px strides of a trunk to ``patch_size`` and give the final kernel size.

    Rule of "Improving the HardNet Descriptor" (Pultar 2020) and its code: for 48- and 64-px input the
    last 3×3 convolution gets stride 2 as well, and the final convolution's kernel is the remaining
    map size: 32 → 8×8, 48 → 6×6, 64 → 8×8.

    Example:
        >>> strides_for_patch_size([1, 1, 2, 1, 2, 1], 48)
        ((1, 1, 2, 1, 2, 2), 6)
    """
    check_option(patch_size, PATCH_SIZES, "patch_size")
    out = tuple(int(s) for s in strides)
    if patch_size != 32:
        out = (*out[:-1], 2)
    size = patch_size
    for s in out:
        size = (size + 2 - 3) // s + 1
    return out, size


def orthogonal_(weight: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Fill ``weight`` in place with a (semi-)orthogonal matrix, like ``nn.init.orthogonal_`` but fast.

    The weight is viewed as ``(out, in·k·k)``; its rows (or columns, whichever are fewer) become
    orthonormal times ``gain``. With a Gaussian ``G`` (fewer rows than columns) and the Cholesky factor
    ``L`` of ``G Gᵀ``, ``L⁻¹ G`` is exactly the ``Qᵀ`` of the QR decomposition ``Gᵀ = Q R`` with a
    positive diagonal, i.e. the Haar-distributed matrix ``nn.init.orthogonal_`` draws, computed from a
    small Gram matrix instead of a tall QR (HardNet8's 512 × 16384 final layer: a fraction of a second
    instead of seconds on two cores).

    Example:
        >>> import torch
        >>> w = orthogonal_(torch.empty(4, 2, 3, 3), gain=0.5).flatten(1)
        >>> torch.allclose(w @ w.T, 0.25 * torch.eye(4), atol=1e-5)
        True
    """
    rows = weight.shape[0]
    flat = torch.randn(rows, weight.numel() // rows)
    wide = flat.shape[0] <= flat.shape[1]
    g = (flat if wide else flat.T).double()
    # float64 Gram: a square Gaussian G is often ill-conditioned (float32 broke Cholesky now and then)
    chol, info = torch.linalg.cholesky_ex(g @ g.T)
    if int(info) == 0:
        q = torch.linalg.solve_triangular(chol, g, upper=False)
    else:  # numerically singular (vanishingly rare in float64): the tall QR, signs as above
        qr, r = torch.linalg.qr(g.T)
        q = (qr * torch.sign(torch.diagonal(r))).T
    with torch.no_grad():
        weight.copy_((q if wide else q.T).reshape(weight.shape).to(weight.dtype) * gain)
    return weight


def hardnet_features(
    widths: Sequence[int],
    strides: Sequence[int],
    *,
    dim: int,
    final_kernel: int,
    dropout: float,
    in_channels: int = 1,
) -> nn.Sequential:
    """The L2-Net/HardNet trunk: ``[Conv3x3, BN, ReLU] × len(widths)``, Dropout, ``Conv(final_kernel)``, BN.

    Args:
        widths: output channels of the 3×3 convolutions.
        strides: their strides (same length).
        dim: output channels of the final convolution.
        final_kernel: its kernel size (the size of the map it sees, so the output is ``1×1``).
        dropout: dropout probability before the final convolution.
        in_channels: input channels.

    Returns:
        ``nn.Sequential`` mapping ``(B, in_channels, P, P)`` to ``(B, dim, 1, 1)``.

    Example:
        >>> import torch
        >>> net = hardnet_features([8, 16], [1, 2], dim=4, final_kernel=8, dropout=0.1)
        >>> net(torch.rand(2, 1, 16, 16)).shape
        torch.Size([2, 4, 1, 1])
    """
    if len(widths) != len(strides):
        raise OptionError(
            f"strides: expected {len(widths)} entries like widths, got {len(strides)}"
        )
    layers: list[nn.Module] = []
    prev = in_channels
    for width, stride in zip(widths, strides):
        layers += [
            nn.Conv2d(prev, width, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width, affine=False),
            nn.ReLU(),
        ]
        prev = width
    layers += [
        nn.Dropout(dropout),
        nn.Conv2d(prev, dim, kernel_size=final_kernel, bias=False),
        nn.BatchNorm2d(dim, affine=False),
    ]
    return nn.Sequential(*layers)


class HardNetFamily(PatchNet):
    """Common constructor of L2Net, HardNet, HardNet8 and the other variants: a configured trunk.

    Args:
        widths: 3×3 convolution widths for 32-px input.
        strides: their strides for 32-px input (adapted by :func:`strides_for_patch_size`).
        dim: output channels of the final convolution.
        dropout: dropout probability before the final convolution.
        patch_size: 32, 48 or 64.
        eps: epsilon of the per-patch standardisation ``(x - mean) / (std + eps)``.
    """

    def __init__(
        self,
        *,
        widths: Sequence[int],
        strides: Sequence[int],
        dim: int,
        dropout: float,
        patch_size: int,
        eps: float,
    ) -> None:
        super().__init__()
        check_positive(dim, "dim")
        check_positive(dropout, "dropout", strict=False)
        if dropout >= 1:
            raise OptionError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        strides, kernel = strides_for_patch_size(strides, patch_size)
        self.patch_size = patch_size
        self.dim = int(dim)
        self._norm_eps = eps
        self.features = hardnet_features(
            widths, strides, dim=int(dim), final_kernel=kernel, dropout=dropout
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Orthogonal convolution weights with gain 0.6, as in the HardNet training code."""
        for mod in self.features:
            if isinstance(mod, nn.Conv2d):
                orthogonal_(mod.weight, gain=0.6)


#: Weights trained by lookalike (``configs/hardnet_bundled.yaml``: synthetic warps of the photos bundled
#: with scikit-image, 800 steps of 512 pairs on a 2-core CPU); recipe, seed and validation FPR95 are in
#: the file's metadata. Reproduce with ``lookalike train --config configs/hardnet_bundled.yaml``.
HARDNET_WEIGHTS = {
    "bundled": WeightSpec(
        file="hardnet_bundled.safetensors",
        sha256="cd7b4974a230144599c4d0291b2445018a1999c690fbf4e25688e1ba78fcd28e",
        description="HardNet trained on synthetic warps of scikit-image's bundled photos (CPU recipe)",
    ),
}


@register("descriptor", "hardnet", weights=HARDNET_WEIGHTS)
class HardNet(HardNetFamily):
    """HardNet: the L2-Net CNN trained with the hardest-in-batch triplet margin loss; 128-d.

    Architecture (32 px): 3×3 convolutions of widths 32, 32, 64 (stride 2), 64, 128 (stride 2), 128,
    each followed by ``BatchNorm2d(affine=False)`` and ReLU; dropout; an 8×8 convolution to ``dim``
    and a last ``BatchNorm2d(affine=False)``; no biases. 48- and 64-px input add stride 2 to the last
    3×3 convolution (:func:`strides_for_patch_size`).

    Args:
        dim: descriptor size (output channels of the final convolution).
        dropout: dropout probability before the final convolution (0.3 in kornia, 0.1 in the
            original training code).
        patch_size: 32, 48 or 64.
        width: channels of the first stage; the stages have ``width, 2·width, 4·width`` channels.
            32 is HardNet; 16 costs about a quarter of the multiply-adds (20.2 instead of 78.2
            MFLOP per 32-px patch) for CPUs without bfloat16.

    Shape:
        - Input: ``(B, 1, P, P)`` patches in [0, 1].
        - Output: ``(B, dim)``, rows L2-normalised.

    Convention:
        - Same state-dict layout as ``kornia.feature.HardNet`` and the original checkpoints (a
          ``{"state_dict": ...}`` file loads through ``lookalike.create(..., weights=path)``).
        - Each patch is standardised to ``(x - mean) / (std + 1e-6)`` (unbiased std, detached
          statistics) like kornia; with the same weights the descriptors equal kornia's (≤ 1e-5).
        - A flat patch gives an all-zero row (kornia: the network's response to a zero patch).
        - See :class:`~lookalike.descriptors.patch._base.PatchNet` for dtypes and ``fuse_for_inference``.

    Example:
        >>> import torch, lookalike
        >>> net = lookalike.create("descriptor", "hardnet").eval()
        >>> net(torch.rand(16, 1, 32, 32)).shape
        torch.Size([16, 128])
    """

    def __init__(
        self, *, dim: int = 128, dropout: float = 0.3, patch_size: int = 32, width: int = 32
    ) -> None:
        w = check_int(width, "width")
        super().__init__(
            widths=(w, w, 2 * w, 2 * w, 4 * w, 4 * w),
            strides=(1, 1, 2, 1, 2, 1),
            dim=dim,
            dropout=dropout,
            patch_size=patch_size,
            eps=1e-6,
        )
        self.width = w
