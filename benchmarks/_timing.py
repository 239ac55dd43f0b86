"""Timing helpers shared by the benchmark scripts (run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Time every candidate once per round, after one warm-up call each (seconds per call)."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def rate(fn: Callable, x: torch.Tensor, min_time: float) -> float:
    """Samples per second of ``fn(x)``, called at least twice and for at least ``min_time`` seconds.

    On CUDA the device is synchronised before the clock starts and after every call.
    """
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    sync()
    calls, start = 0, time.perf_counter()
    while True:
        fn(x)
        sync()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and calls >= 2:
            return calls * x.shape[0] / elapsed
