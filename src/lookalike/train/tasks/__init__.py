"""Training tasks: how a family's batches become embeddings and a loss.

The engine (:mod:`lookalike.train.engine`) is one loop for every family; a task tells it

- which extra arguments the data set is built with and how its resumable stream is made;
- which extra arguments the losses need (``num_classes``, ``embedding_dim`` for class weights);
- how a batch becomes outputs (:meth:`Task.forward`, per process) and outputs a loss
  (:meth:`Task.criterion`, on the global batch gathered from every process).

Tasks are registered under kind ``task`` (recipe key ``task``): ``pairs``
(:class:`~lookalike.train.tasks.pairs.PairsTask`), ``labelled`` and ``pk``
(:mod:`lookalike.train.tasks.labelled`); ``lookalike.list_registered("task")`` lists them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lookalike._registry import build_component, create, list_registered, register
from lookalike.core.check import check_option

__all__ = ["Stream", "Task", "build_task", "register_task"]


class Stream:
    """A resumable, endless iterator of batches: ``next()``, ``state_dict()``, ``load_state_dict()``."""

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


class Task:
    """Base class of the training tasks (see the module docstring)."""

    name: str = ""

    def data_kwargs(self, recipe: Any) -> dict[str, Any]:
        """Extra keyword arguments of the data set factory."""
        return {"seed": recipe.seed}

    def stream(self, data: Any, recipe: Any) -> Stream:
        """The resumable stream of global batches."""
        raise NotImplementedError

    def loss_kwargs(self, data: Any, model: nn.Module) -> dict[str, Any]:
        """Arguments a loss gets when its factory takes them and the recipe does not set them."""
        return {}

    def forward(self, model: Callable[[torch.Tensor], torch.Tensor], batch: tuple) -> tuple:
        """Outputs of this process's shard: embeddings (float) and labels (int), dim 0 = samples."""
        raise NotImplementedError

    def criterion(
        self, outputs: tuple, loss: nn.Module, regularizer: nn.Module | None, weight: float
    ) -> torch.Tensor:
        """Scalar loss of the (gathered) outputs."""
        raise NotImplementedError

    def samples(self, batch: tuple) -> int:
        """Patches (images) in a global batch."""
        return int(batch[0].shape[0])

    def sample_inputs(self, data: Any, count: int) -> torch.Tensor:
        """``count`` training inputs (for the post-training PCA fit)."""
        raise NotImplementedError


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator registering a task under kind ``task`` (and setting its ``name``)."""

    def decorator(cls: type[Task]) -> type[Task]:
        cls.name = name
        return register("task", name)(cls)

    return decorator


def build_task(name: str, **kwargs: Any) -> Task:
    """Build the task ``name`` with its recipe kwargs.

    Raises:
        OptionError: unknown task name.
    """
    check_option(name, list_registered("task"), "task.name")
    return create("task", name, **kwargs)


def build_loss(component: Any, extras: dict[str, Any]) -> nn.Module:
    """Build a loss component, adding the ``extras`` its factory accepts and the recipe leaves unset."""
    from lookalike._registry import get_entry, split_spec

    factory = get_entry("loss", split_spec(component.name)[0]).factory
    accepted = inspect.signature(factory).parameters
    added = {k: v for k, v in extras.items() if k in accepted and k not in component.kwargs}
    return build_component(component, "loss", **added)
