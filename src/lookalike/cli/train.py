"""``lookalike train --config RECIPE.yaml [key.path=value ...] [--resume RUN_OR_CHECKPOINT]``.

Under ``torchrun --nproc_per_node N -m lookalike train ...`` every process trains its shard of the
global batch; only rank 0 prints and writes the run directory.
"""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from lookalike.core.config import load_config
    from lookalike.train.checkpoint import resolve_checkpoint
    from lookalike.train.engine import train
    from lookalike.train.recipe import TrainRecipe

    recipe = load_config(TrainRecipe, args.config, args.overrides)
    if args.resume is not None:
        resolve_checkpoint(args.resume)  # fail before anything is created
    result = train(recipe, resume=args.resume, progress=not args.quiet)
    if result.run_dir is None:  # not rank 0
        return 0
    from rich.console import Console

    console = Console()
    console.print(f"run directory: {result.run_dir}")
    console.print(f"weights: {result.weights}")
    for key, value in result.metrics.items():
        console.print(f"  {key}: {value}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Contribute the ``train`` subcommand."""
    parser = sub.add_parser(
        "train",
        help="train a descriptor from a recipe",
        description=(
            "Train a descriptor (task pairs, labelled or pk). Dotted overrides (optim.lr=0.05) "
            "apply after the file. Multi-process: torchrun --nproc_per_node N -m lookalike train ..."
        ),
    )
    parser.add_argument("--config", required=True, help="recipe YAML (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides")
    parser.add_argument("--resume", help="checkpoint file or run directory to continue from")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)
