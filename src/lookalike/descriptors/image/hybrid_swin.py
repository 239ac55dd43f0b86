"""``hybrid_swin``: EfficientNet stages as the patch embedding of a timm Swin stack, with a virtual token.

The 2021 Google Landmark Retrieval winners' hybrid (Henkel & Singer): a CNN's early stages turn the image
into a grid of local features that replaces the Swin transformer's linear patch embedding; a learned
position embedding is added to the grid; the Swin stages (shifted-window attention, patch merging)
follow. A virtual (class) token then reads the whole final grid through one global-attention
transformer block (windowed attention has no place for a token outside the grid), and the neck
FC-BN-PReLU maps the token to the descriptor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lookalike._registry import register
from lookalike.core.check import check_int
from lookalike.core.errors import OptionError
from lookalike.descriptors.image._backbone import (
    ImageDescriptor,
    create_backbone,
    load_backbone_weights,
)

__all__ = ["HybridSwinDescriptor"]


@register("descriptor", "hybrid_swin")
class HybridSwinDescriptor(ImageDescriptor):
    """CNN patch embedding + Swin stages + virtual token + neck: images to ``(B, dim)`` rows.

    Args:
        embedder: timm CNN whose stage ``embed_stage`` is the patch embedding (``efficientnet_b0``...).
        embed_stage: timm ``out_indices`` entry of the embedding stage (2: stride 8 on EfficientNet).
        swin: timm Swin model name whose stages are used (its own patch embedding is dropped).
        swin_kwargs: more keywords for the Swin's ``timm.create_model`` (e.g. smaller ``depths``).
        pos_grid: side of the learned position embedding grid; resized bicubically to other grids.
        dim: output size of the neck.
        pretrained: let timm download the embedder's and Swin's weights (explicit request only).
        backbone_weights: a local weights file of the embedder CNN.
        swin_weights: a local weights file of the Swin (a full timm checkpoint; patch embedding and
            head are skipped).
        size_range: accepted input sides ``(min, max)``.
        validate: check for NaN / infinite input.

    Example:
        >>> import torch
        >>> kw = {"depths": (1, 1, 1, 1), "embed_dim": 32, "num_heads": (1, 2, 4, 8)}
        >>> net = HybridSwinDescriptor(embedder="efficientnet_b0", swin_kwargs=kw, dim=64).eval()
        >>> net(torch.rand(2, 3, 64, 96)).shape
        torch.Size([2, 64])
    """

    needs_weights = True

    def __init__(
        self,
        *,
        embedder: str = "efficientnet_b0",
        embed_stage: int = 2,
        swin: str = "swin_tiny_patch4_window7_224",
        swin_kwargs: Mapping[str, Any] | None = None,
        pos_grid: int = 28,
        dim: int = 512,
        pretrained: bool = False,
        backbone_weights: str | os.PathLike[str] | None = None,
        swin_weights: str | os.PathLike[str] | None = None,
        size_range: Sequence[int] = (32, 2048),
        validate: bool = True,
    ) -> None:
        super().__init__()
        import timm

        check_int(pos_grid, "pos_grid")
        check_int(dim, "dim")
        if not isinstance(swin, str) or not swin.startswith("swin") or not timm.is_model(swin):
            raise OptionError(f"swin: expected a timm Swin model name (swin_*), got {swin!r}")
        self._setup_input(size_range)
        self.embedder = create_backbone(
            embedder,
            out_indices=(embed_stage,),
            pretrained=pretrained,
            backbone_weights=backbone_weights,
        )
        model = timm.create_model(
            swin,
            pretrained=pretrained,
            num_classes=0,
            strict_img_size=False,
            **dict(swin_kwargs or {}),
        )
        self.stages = nn.ModuleDict({"layers": model.layers, "norm": model.norm})
        if swin_weights is not None:
            load_backbone_weights(self.stages, swin_weights)
        width = int(model.embed_dim if isinstance(model.embed_dim, int) else model.embed_dim[0])
        final = int(model.num_features)
        self.proj = nn.Conv2d(int(self.embedder.feature_info.channels()[-1]), width, 1)
        self.proj_norm = nn.LayerNorm(width)
        self.pos_embed = nn.Parameter(torch.zeros(1, width, pos_grid, pos_grid))
        self.token = nn.Parameter(torch.zeros(1, 1, final))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.token, std=0.02)
        heads = int(model.layers[-1].blocks[0].attn.num_heads)
        self.token_block = timm.models.vision_transformer.Block(final, num_heads=heads)
        self.neck = nn.Sequential(nn.Linear(final, dim), nn.BatchNorm1d(dim), nn.PReLU())
        self.dim = dim
        self.validate = validate
        self.to(memory_format=torch.channels_last)

    def _position(self, height: int, width: int) -> torch.Tensor:
        pos = self.pos_embed
        if pos.shape[-2:] != (height, width):
            pos = F.interpolate(pos, size=(height, width), mode="bicubic", align_corners=False)
        return pos

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.proj(self.embedder(x)[-1])
        grid = grid + self._position(*grid.shape[-2:]).to(grid.dtype)
        tokens = self.proj_norm(grid.permute(0, 2, 3, 1))  # (B, h, w, C): Swin's NHWC layout
        tokens = self.stages["norm"](self.stages["layers"](tokens)).flatten(1, 2)
        seq = torch.cat(
            [self.token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1
        )
        return self.neck(self.token_block(seq)[:, 0])
