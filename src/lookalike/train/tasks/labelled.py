"""Tasks on labelled samples: ``labelled`` (margin-head classification) and ``pk`` (P×K metric learning).

Both read a map-style data set with ``labels`` (N,) in ``[0, num_classes)``, ``num_classes`` and
``__getitem__(i) -> (input, label)``, through a seeded, resumable sampler of
:mod:`lookalike.data.samplers`; the losses are called as ``loss(embeddings, labels)`` and get
``num_classes`` and ``embedding_dim`` when their factory takes them (class weights live in the loss).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from lookalike.core.check import check_int
from lookalike.core.errors import OptionError
from lookalike.data.samplers import EpochSampler, PKSampler
from lookalike.train.tasks import Stream, Task, register_task

__all__ = ["LabelledStream", "LabelledTask", "PKTask"]


class LabelledStream(Stream):
    """Batches ``(inputs (B, ...), labels (B,) int64)`` of a data set drawn by a resumable sampler."""

    def __init__(self, data: Any, sampler: EpochSampler | PKSampler) -> None:
        self.data, self.sampler = data, sampler

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        indices = next(self.sampler)
        fetch = getattr(self.data, "__getitems__", None)  # batched fetch (torch's convention)
        items = fetch(indices) if fetch is not None else [self.data[i] for i in indices]
        inputs = torch.stack([torch.as_tensor(x) for x, _ in items])
        return inputs, torch.tensor([int(y) for _, y in items], dtype=torch.int64)

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])


def _check_labelled(data: Any) -> None:
    for attr in ("labels", "num_classes", "__getitem__"):
        if not hasattr(data, attr):
            raise OptionError(
                f"labelled tasks need a data set with labels, num_classes and __getitem__; "
                f"{type(data).__name__} has no {attr}"
            )


@register_task("labelled")
class LabelledTask(Task):
    """Classification through a margin head in the loss (e.g. ``arcface``); shuffled epochs."""

    def stream(self, data: Any, recipe: Any) -> Stream:
        _check_labelled(data)
        return LabelledStream(
            data, EpochSampler(len(data), batch_size=recipe.batch_size, seed=recipe.seed)
        )

    def loss_kwargs(self, data: Any, model: nn.Module) -> dict[str, Any]:
        """``num_classes``, ``embedding_dim`` and, when the data set counts them, ``class_counts``
        (per-class training samples, for dynamic ArcFace margins)."""
        extras = {"num_classes": int(data.num_classes), "embedding_dim": int(model.dim)}
        counts = getattr(data, "class_counts", None)
        if counts is not None:
            extras["class_counts"] = [int(c) for c in counts]
        return extras

    def forward(self, model, batch: tuple) -> tuple:
        inputs, labels = batch
        return model(inputs).float(), labels

    def criterion(
        self, outputs: tuple, loss: nn.Module, regularizer: nn.Module | None, weight: float
    ) -> torch.Tensor:
        embeddings, labels = outputs
        value = loss(embeddings, labels)
        if regularizer is not None:
            value = value + weight * regularizer(embeddings, labels)
        return value

    def sample_inputs(self, data: Any, count: int) -> torch.Tensor:
        index = np.arange(min(count, len(data)))
        return torch.stack([torch.as_tensor(data[int(i)][0]) for i in index])


@register_task("pk")
class PKTask(LabelledTask):
    """P identities × K samples per batch (:class:`~lookalike.data.samplers.PKSampler`).

    The recipe's ``loss`` is typically ``batch_hard_triplet`` and its ``regularizer``
    ``cross_entropy`` (label smoothing) with ``regularizer_weight``: a weighted sum.

    Args:
        k: samples per identity; ``P = batch_size / k``.
    """

    def __init__(self, *, k: int = 4) -> None:
        check_int(k, "task.kwargs.k", 2)
        self.k = k

    def stream(self, data: Any, recipe: Any) -> Stream:
        _check_labelled(data)
        if recipe.batch_size % self.k:
            raise OptionError(
                f"batch_size: expected a multiple of task.kwargs.k={self.k}, got {recipe.batch_size}"
            )
        sampler = PKSampler(
            np.asarray(data.labels), p=recipe.batch_size // self.k, k=self.k, seed=recipe.seed
        )
        return LabelledStream(data, sampler)
