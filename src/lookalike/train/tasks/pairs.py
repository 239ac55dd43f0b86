"""The ``pairs`` task: batches of matching anchor/positive patches (HardNet, SOSNet recipes)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lookalike.core.errors import OptionError
from lookalike.train.tasks import Stream, Task, register_task

__all__ = ["PairsTask"]


@register_task("pairs")
class PairsTask(Task):
    """Anchor/positive batches; the losses are called as ``loss(anchor_desc, positive_desc)``.

    The data set is built with ``seed`` and ``batch_size`` (pairs per step) and must yield
    ``(anchors, positives)``; its ``stream()`` (e.g. :class:`~lookalike.data.bundled_pairs.PairStream`)
    makes training resumable exactly. The two halves go through the network in two passes
    (BatchNorm statistics per half, as the HardNet recipe).
    """

    def data_kwargs(self, recipe: Any) -> dict[str, Any]:
        return {"seed": recipe.seed, "batch_size": recipe.batch_size}

    def stream(self, data: Any, recipe: Any) -> Stream:
        make = getattr(data, "stream", None)
        if not callable(make):
            raise OptionError(
                f"task pairs: data set {type(data).__name__} has no resumable stream() method"
            )
        return make()

    def forward(self, model, batch: tuple) -> tuple:
        anchors, positives = batch[:2]
        return model(anchors).float(), model(positives).float()

    def criterion(
        self, outputs: tuple, loss: nn.Module, regularizer: nn.Module | None, weight: float
    ) -> torch.Tensor:
        anchors, positives = outputs
        value = loss(anchors, positives)
        if regularizer is not None:
            value = value + weight * regularizer(anchors, positives)
        return value

    def samples(self, batch: tuple) -> int:
        return 2 * int(batch[0].shape[0])

    def sample_inputs(self, data: Any, count: int) -> torch.Tensor:
        stream, chunks, total = iter(data), [], 0
        while total < count:
            chunk = next(stream)[0]
            chunks.append(chunk)
            total += chunk.shape[0]
        return torch.cat(chunks)[:count]
