"""Seeded, resumable batch samplers over labelled data sets: P×K (metric learning) and shuffled epochs.

Both are endless iterators of index batches (usable as a ``DataLoader``'s ``batch_sampler``). Their
state is two integers, ``{"epoch", "batch"}``: every epoch's order and every batch's draw come from
``numpy.random.default_rng([seed, epoch(, batch)])``, so :meth:`state_dict` /
:meth:`load_state_dict` resume the exact sequence from JSON.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from lookalike.core.check import check_int
from lookalike.core.errors import EmptyInputError, OptionError

__all__ = ["EpochSampler", "PKSampler"]


class _Resumable:
    """Shared state handling: ``epoch`` and ``batch`` within the epoch."""

    seed: int
    epoch: int = 0
    batch: int = 0

    def state_dict(self) -> dict[str, int]:
        """JSON-ready state: the next batch is batch ``batch`` of epoch ``epoch``."""
        return {"seed": self.seed, "epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (its ``seed`` must match)."""
        if int(state.get("seed", self.seed)) != self.seed:
            raise OptionError(
                f"sampler state: saved with seed {state['seed']}, this sampler has seed {self.seed}"
            )
        self.epoch = check_int(state["epoch"], "epoch", 0)
        self.batch = check_int(state["batch"], "batch", 0)

    def __len__(self) -> int:
        """Batches per epoch."""
        raise NotImplementedError

    def _batch(self) -> list[int]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        return self

    def __next__(self) -> list[int]:
        if self.batch >= len(self):
            self.epoch, self.batch = self.epoch + 1, 0
        out = self._batch()
        self.batch += 1
        return out


class PKSampler(_Resumable):
    """Batches of ``p`` identities × ``k`` samples each (batch-hard triplet training).

    Every epoch shuffles the identities and cuts them into ``len(self)`` groups of ``p`` (the last
    ``n_ids % p`` identities of the shuffled order wait for another epoch), so every batch is full:
    ``p * k`` indices, ``k`` consecutive per identity.

    Args:
        labels: (N,) integer label of every sample.
        p: identities per batch (at most the number of distinct labels).
        k: samples per identity; an identity with fewer than ``k`` samples is drawn with
            replacement, otherwise without.
        seed: seed of the sequence.

    Convention:
        Deterministic given ``(labels, p, k, seed)``; the state is ``{"seed", "epoch", "batch"}``.

    Example:
        >>> sampler = PKSampler([0, 0, 1, 1, 1, 2], p=2, k=2, seed=0)
        >>> batch = next(sampler)
        >>> len(batch), len(sampler)
        (4, 1)
        >>> state = sampler.state_dict()
        >>> again = PKSampler([0, 0, 1, 1, 1, 2], p=2, k=2, seed=0)
        >>> again.load_state_dict(state)
        >>> next(again) == next(sampler)
        True
    """

    def __init__(
        self, labels: Sequence[int] | np.ndarray, *, p: int, k: int, seed: int = 0
    ) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise EmptyInputError(
                f"labels: expected a non-empty (N,) array, got shape {labels.shape}"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise OptionError(f"labels: expected integers, got {labels.dtype}")
        self.p = check_int(p, "p")
        self.k = check_int(k, "k")
        self.seed = check_int(seed, "seed", 0)
        self.ids, inverse = np.unique(labels, return_inverse=True)
        if self.ids.size < self.p:
            raise OptionError(f"p: expected at most {self.ids.size} (distinct labels), got {p}")
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=self.ids.size))[:-1]
        self.members = np.split(order, bounds)
        self.epoch, self.batch = 0, 0

    def __len__(self) -> int:
        return self.ids.size // self.p

    def _batch(self) -> list[int]:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.ids.size)
        chosen = perm[self.batch * self.p : (self.batch + 1) * self.p]
        rng = np.random.default_rng([self.seed, self.epoch, self.batch + 1])
        out: list[int] = []
        for ident in chosen:
            members = self.members[ident]
            replace = members.size < self.k
            out.extend(int(i) for i in rng.choice(members, size=self.k, replace=replace))
        return out


class EpochSampler(_Resumable):
    """Shuffled epochs of ``n`` samples in full batches of ``batch_size`` (the remainder is dropped).

    Args:
        n: number of samples (at least ``batch_size``).
        batch_size: indices per batch.
        seed: seed of the sequence.

    Example:
        >>> sampler = EpochSampler(10, batch_size=4, seed=0)
        >>> first = [next(sampler) for _ in range(len(sampler))]
        >>> len(first), len(set(first[0]) | set(first[1]))
        (2, 8)
    """

    def __init__(self, n: int, *, batch_size: int, seed: int = 0) -> None:
        self.n = check_int(n, "n")
        self.batch_size = check_int(batch_size, "batch_size")
        self.seed = check_int(seed, "seed", 0)
        if self.batch_size > self.n:
            raise OptionError(f"batch_size: expected at most n={n}, got {batch_size}")
        self.epoch, self.batch = 0, 0

    def __len__(self) -> int:
        return self.n // self.batch_size

    def _batch(self) -> list[int]:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        return perm[self.batch * self.batch_size : (self.batch + 1) * self.batch_size].tolist()
