"""A first-in first-out memory of detached embeddings and their labels (cross-batch memory).

Wang et al., "Cross-Batch Memory for Embedding Learning", CVPR 2020: once a network's embeddings
drift slowly, those of the last few batches are still good stand-ins for the current network's, so a
loss can mine positives and negatives among many more samples than one batch holds.

Private module: :class:`~lookalike.losses.triplet.BatchHardTripletLoss` (``memory=``) uses it. The
state is held in buffers, so it is saved with the loss's ``state_dict`` (training checkpoints) and
moves with ``.to()``.
"""

from __future__ import annotations

import torch
from torch import nn

from lookalike.layers._common import check_int

__all__ = ["EmbeddingMemory"]


class EmbeddingMemory(nn.Module):
    """Ring buffer of the last ``size`` (embedding, label) rows.

    Args:
        size: rows kept (``>= 1``); older rows are overwritten first.
        dim: embedding width D.

    Buffers (saved in ``state_dict``): ``embeddings`` (size, D) float32, ``labels`` (size,) int64,
    ``count`` (rows ever added, a 0-d int64).
    """

    def __init__(self, *, size: int, dim: int) -> None:
        super().__init__()
        self.size = check_int(size, "memory")
        self.dim = check_int(dim, "embedding_dim")
        self.register_buffer("embeddings", torch.zeros(self.size, self.dim))
        self.register_buffer("labels", torch.zeros(self.size, dtype=torch.int64))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    def __len__(self) -> int:
        return min(int(self.count), self.size)

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of the filled rows: ``(embeddings (M, D), labels (M,))``, ``M = len(self)``, in
        slot order (copies: a later :meth:`add` must not change what a graph saved for backward)."""
        m = len(self)
        return self.embeddings[:m].clone(), self.labels[:m].clone()

    @torch.no_grad()
    def add(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Append (N, D) rows (detached, cast to the buffer's dtype); keeps the last ``size``.

        No input checks (internal helper): the loss checks shapes at its door.
        """
        n = embeddings.shape[0]
        if n > self.size:
            embeddings, labels = embeddings[n - self.size :], labels[n - self.size :]
            self.count += n - self.size
            n = self.size
        start = int(self.count) % self.size
        slots = (torch.arange(n, device=self.labels.device) + start) % self.size
        self.embeddings[slots] = embeddings.detach().to(self.embeddings)
        self.labels[slots] = labels.detach().to(self.labels)
        self.count += n

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"
