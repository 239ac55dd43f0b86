"""Shared fixtures: devices, dtypes, tolerances, gradcheck, real-data root.

- ``device``: ``cpu`` always, ``cuda`` when available.
- ``dtype``: float32 and float64.
- ``assert_close(actual, expected, dtype=None)``: per-dtype tolerances.
- ``gradcheck(fn, *inputs)``: float64 gradient check.
- ``data_root``: the ``LOOKALIKE_DATA`` folder, or a clean skip with the reason.
- ``@pytest.mark.slow`` marks long tests; every test that uses ``data_root`` is marked ``data``
  automatically. The default run (``python -m pytest``, the README's command) deselects both; CI runs
  them afterwards with ``python -m pytest -m "slow or data"``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

# Keep the suite deterministic and within 2 cores.
torch.set_num_threads(min(2, torch.get_num_threads()))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64]

TOLERANCES = {
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float32: (1e-5, 1e-5),
    torch.float64: (1e-8, 1e-8),
}


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(params=DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def dtype(request) -> torch.dtype:
    return request.param


def assert_close(actual, expected, *, dtype: torch.dtype | None = None, rtol=None, atol=None):
    """``torch.testing.assert_close`` with tolerances chosen by dtype (numpy arrays accepted)."""
    actual = torch.as_tensor(np.asarray(actual) if not torch.is_tensor(actual) else actual)
    expected = torch.as_tensor(np.asarray(expected) if not torch.is_tensor(expected) else expected)
    dt = dtype or actual.dtype
    r, a = TOLERANCES.get(dt, (1e-5, 1e-5))
    torch.testing.assert_close(
        actual,
        expected.to(actual.dtype).to(actual.device),
        rtol=r if rtol is None else rtol,
        atol=a if atol is None else atol,
    )


def gradcheck(fn, *inputs, eps: float = 1e-6, atol: float = 1e-4, **kwargs) -> bool:
    """float64 ``torch.autograd.gradcheck`` on inputs converted to float64 with ``requires_grad``."""
    prepared = [
        x.detach().to(torch.float64).requires_grad_(True)
        if torch.is_tensor(x) and x.is_floating_point()
        else x
        for x in inputs
    ]
    return torch.autograd.gradcheck(fn, prepared, eps=eps, atol=atol, **kwargs)


def randomize_(module: torch.nn.Module, seed: int = 0, *, scale: float = 0.3) -> torch.nn.Module:
    """Random parameters (``N(0, scale^2)``) and BatchNorm statistics, in place; the mode is kept.

    For oracle tests that load the same weights into two implementations: identical outputs are then
    not an accident of the initialisation.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return module


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` imported as a module (benchmarks are not a package)."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark every test that needs the real evaluation data ``data`` (before ``-m`` deselects)."""
    for item in items:
        if "data_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real evaluation data folder, or skip (evaluation only: never train on it)."""
    env = os.environ.get("LOOKALIKE_DATA")
    if not env:
        pytest.skip("LOOKALIKE_DATA is not set: real-data tests need the evaluation data")
    path = Path(env)
    if not path.is_dir():
        pytest.skip(f"LOOKALIKE_DATA={env} is not a folder")
    return path


def pytest_configure(config):
    # Make the helpers importable as ``from conftest import assert_close`` in test modules.
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
