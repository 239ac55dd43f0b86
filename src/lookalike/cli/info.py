"""``lookalike info``: versions, device, threads, data and weights roots, what is registered."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
from typing import Any

from lookalike import KINDS, __version__, list_registered
from lookalike.core.data import data_root, lookalike_home, weights_cache

_PACKAGES = (
    "torch",
    "torchvision",
    "kornia",
    "timm",
    "opencv-contrib-python-headless",
    "faiss-cpu",
    "numpy",
    "scikit-image",
)


def collect_info() -> dict[str, Any]:
    """Everything ``lookalike info`` shows, as a JSON-ready dict."""
    import torch

    from lookalike.descriptors.patch import _inference

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    cuda = torch.cuda.is_available()
    root = data_root()
    return {
        "lookalike": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cuda": cuda,
        "threads": torch.get_num_threads(),
        "bf16_cpu": _inference.bf16_supported("cpu"),  # the probe fuse_for_inference uses
        "int8_cpu": _inference.int8_preferred("cpu"),  # int8 is the fused default without bf16
        "home": str(lookalike_home()),
        "data_root": str(root),
        "data_root_exists": root.is_dir(),
        "weights_cache": str(weights_cache()),
        "registered": {kind: list_registered(kind) for kind in KINDS},
    }


def _run(args: argparse.Namespace) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"lookalike {info['lookalike']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("python", f"{info['python']} ({info['platform']})")
    for name, version in info["packages"].items():
        table.add_row(name, version or "not installed")
    table.add_row("device", f"{info['device']} (cuda: {info['cuda']})")
    table.add_row("threads", str(info["threads"]))
    table.add_row("bf16 on CPU", str(info["bf16_cpu"]))
    table.add_row("int8 (VNNI) on CPU", str(info["int8_cpu"]))
    exists = "" if info["data_root_exists"] else " (missing: set LOOKALIKE_DATA)"
    table.add_row("data root", info["data_root"] + exists)
    table.add_row("weights cache", info["weights_cache"])
    for kind, names in info["registered"].items():
        table.add_row(f"registered {kind}", ", ".join(names) or "-")
    console.print(table)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Contribute the ``info`` subcommand."""
    parser = sub.add_parser(
        "info", help="show versions, device, data roots and registered components"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=_run)
