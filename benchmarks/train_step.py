"""What one training step of the VIPeR recipe costs: with its frozen-prefix cache or without, with
the engine's batched augmentation and fused optimiser step, against per-crop augmentation and the
per-tensor Adam step.

The recipe is ``configs/reid_viper.yaml`` (relation network on three stages of a ResNet-18, 128 x 48
crops, P x K = 8 x 4, ``bf16: auto`` as resolved on this machine, batch-hard triplet with its
cross-batch memory + label-smoothed CE, Adam), built by the training engine itself; only the data
are random crops (632 crops of 316 ids, like one VIPeR split's training half), so nothing is read
and nothing is downloaded. The backbone starts from random weights (``backbone_weights`` unset:
the timing does not depend on them).

Rounds alternate, in one process:

(a) ``engine``: a step as the engine takes it without ``cache_frozen``: the batch is fetched
    with the set's ``__getitems__`` (one augmentation call for the batch) and Adam's step is
    torch's fused one;
(b) ``per-tensor adam``: the same step with Adam's per-tensor step (``foreach=False``, what the
    engine used before);
(c) ``cached prefix``: the engine's step with ``cache_frozen: true`` (the frozen stem and first
    stage run once over the crops before the rounds; each step reads their cached maps, flipped,
    shifted and erased in feature space, and runs the rest of the network);
(d) ``other precision``: (a) in the precision ``bf16: auto`` did not choose on this machine
    (float32 where it chose bfloat16 and the reverse: the ratio says whether the choice was right);

plus the parts on their own: fetching a batch at once or crop by crop (one ``augment_crops`` call
per crop, what a data set without ``__getitems__`` costs; the loop-based augmentation the engine
used before cost less per crop than that, see the closing notes), and the two optimiser steps.
The machine may be shared: read the ratios.

Usage::

    .venv/bin/python benchmarks/train_step.py [--steps 20] [--rounds 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

import torch
from _timing import interleaved

from lookalike._registry import register
from lookalike.core.config import load_config
from lookalike.data.reid.augment import AugmentedReidSet
from lookalike.train.distributed import DistContext
from lookalike.train.engine import _build
from lookalike.train.recipe import TrainRecipe

ROOT = Path(__file__).resolve().parents[1]


class _RandomCrops(torch.utils.data.Dataset):
    """``n_ids`` x 2 random crops, labels ``0 .. n_ids - 1`` (the shape of a VIPeR training half)."""

    def __init__(self, n_ids: int, size: tuple[int, int]) -> None:
        gen = torch.Generator().manual_seed(0)
        self.crops = torch.rand(2 * n_ids, 3, *size, generator=gen)
        self.labels = torch.arange(n_ids).repeat_interleave(2).numpy()
        self.num_classes = n_ids

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.crops[index], int(self.labels[index])


@register("dataset", "benchmark_random_crops")
def _random_crops(*, seed: int = 0, **augment) -> AugmentedReidSet:
    return AugmentedReidSet(_RandomCrops(316, (128, 48)), cache=True, **augment)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed call")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    recipe = load_config(
        TrainRecipe,
        ROOT / "configs" / "reid_viper.yaml",
        [
            "model.kwargs.backbone_weights=null",
            "data.name=benchmark_random_crops",
            "data.kwargs={flip: 0.5, pad: 10, erase: 0.5}",
            "loss.kwargs.memory_start=0",
        ],
    )
    plain = dataclasses.replace(recipe, cache_frozen=False)  # rounds (a), (b) and the parts
    parts = _build(plain, torch.device("cpu"), DistContext())
    cached = _build(
        dataclasses.replace(recipe, cache_frozen=True), torch.device("cpu"), DistContext()
    )
    other = not parts.step.bf16  # the precision ``bf16: auto`` did not choose here
    flipped = _build(dataclasses.replace(plain, bf16=other), torch.device("cpu"), DistContext())
    params = [p for group in parts.optimizer.param_groups for p in group["params"]]
    fused = parts.optimizer
    opt = recipe.optim
    per_tensor = torch.optim.Adam(
        params,
        lr=opt.lr,
        betas=(opt.momentum, 0.999),
        weight_decay=opt.weight_decay,
        foreach=False,
    )
    sampler, data = parts.stream.sampler, parts.data

    def fetch_batched():
        return next(parts.stream)

    def fetch_per_crop():
        items = [data[i] for i in next(sampler)]
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])

    def step(fetch, optimizer, run=parts):
        batch = fetch()
        loss = run.step(*batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for p in params:
        p.grad = torch.zeros_like(p)
    fns = {
        "engine": lambda: [step(fetch_batched, fused) for _ in range(args.steps)],
        "cached prefix": lambda: [
            step(lambda: next(cached.stream), cached.optimizer, cached) for _ in range(args.steps)
        ],
        "other precision": lambda: [
            step(lambda: next(flipped.stream), flipped.optimizer, flipped)
            for _ in range(args.steps)
        ],
        "per-tensor adam": lambda: [step(fetch_batched, per_tensor) for _ in range(args.steps)],
        "fetch batched": lambda: [fetch_batched() for _ in range(args.steps)],
        "fetch per crop": lambda: [fetch_per_crop() for _ in range(args.steps)],
        "adam fused": lambda: [fused.step() for _ in range(args.steps)],
        "adam per tensor": lambda: [per_tensor.step() for _ in range(args.steps)],
    }
    times = interleaved(fns, args.rounds)
    ms = {name: 1000 * statistics.median(t) / args.steps for name, t in times.items()}
    print(f"VIPeR recipe, batch {recipe.batch_size}, {args.steps} steps x {args.rounds} rounds, "
          f"median ms per step (2 threads):")  # fmt: skip
    for name, value in ms.items():
        print(f"  {name:16s} {value:8.2f} ms")
    print(f"bf16 autocast: {parts.step.bf16} (recipe: {recipe.bf16}); 'other precision' runs "
          f"bf16={other}: other / chosen = {ms['other precision'] / ms['engine']:.2f}x")  # fmt: skip
    print(f"step:      per-tensor adam / engine = {ms['per-tensor adam'] / ms['engine']:.3f}x")
    print(f"cache:     engine / cached prefix = {ms['engine'] / ms['cached prefix']:.2f}x "
          f"(the cache took {cached.cache_seconds:.1f} s once)")  # fmt: skip
    print(f"fetch:     per crop / batched = {ms['fetch per crop'] / ms['fetch batched']:.2f}x")
    print(f"optimiser: per tensor / fused = {ms['adam per tensor'] / ms['adam fused']:.2f}x")


if __name__ == "__main__":
    main()
