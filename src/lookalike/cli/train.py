"""``lookalike train --config RECIPE.yaml [key.path=value ...] [--resume RUN_OR_CHECKPOINT]``."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lookalike.core.config import load_config
    from lookalike.train.engine import train_patches
    from lookalike.train.recipe import PatchTrainRecipe

    recipe = load_config(PatchTrainRecipe, args.config, args.overrides)
    result = train_patches(recipe, resume=args.resume, progress=not args.quiet)
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
        description="Train a patch descriptor. Dotted overrides (optim.lr=0.05) apply after the file.",
    )
    parser.add_argument("--config", required=True, help="recipe YAML (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides")
    parser.add_argument("--resume", help="checkpoint file or run directory to continue from")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)
