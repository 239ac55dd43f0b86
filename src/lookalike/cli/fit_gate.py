"""``lookalike fit-gate --base hardnet:WEIGHTS --out FILE``: a HardNet plus a fitted matchability gate.

The library does the work (:func:`lookalike.train.matchability.fit_gated_weights`): partner labels on
nuisance pairs of the training photos, a logistic head on the network's rows, the ``hardnet_gated``
weights file (base trunk + gate) with the base's recipe, the fit and held-out validation scores in its
metadata. The shipped ``hardnet_gated:bundled`` is ``lookalike fit-gate --base
hardnet:RUN/weights.safetensors --out src/lookalike/weights/hardnet_gated_bundled.safetensors`` on a run
of ``lookalike train --config configs/hardnet_dog_bundled.yaml``.
"""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from lookalike.cli._common import check_output_file, require_trained
    from lookalike.train.matchability import fit_gated_weights

    require_trained(args.base)
    out = check_output_file(args.out, suffixes=(".safetensors",))
    console = Console(stderr=True)
    with Progress(console=console, disable=args.quiet) as bar:
        task = bar.add_task("collecting partner labels (training photos)", total=args.draws)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        training = fit_gated_weights(
            out,
            base=args.base,
            draws=args.draws,
            gamma=args.gamma,
            tol=args.partner_px,
            C=args.C,
            validate_seeds=args.validate_draws,
            progress=progress,
        )
    gate = training["gate"]
    print(
        f"wrote {out}: {gate['samples']} keypoints, {gate['positive_rate']:.1%} positive, "
        f"inner AUC {gate['auc']:.3f}"
    )
    for label, scores in training.get("validation", {}).get("scores", {}).items():
        print(f"  held-out {label}: MMA@3 {scores['mma@3']:.3f}, H@3 {scores['h@3']:.2f}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Contribute ``lookalike fit-gate``."""
    parser = sub.add_parser(
        "fit-gate",
        help="fit a matchability gate on a trained HardNet (hardnet_gated weights)",
        description=(
            "Label the keypoints of nuisance pairs of the training photos (partner within "
            "--partner-px), fit a logistic head on the network's rows, and write hardnet_gated "
            "weights (the base trunk plus the gate), scored on held-out pairs."
        ),
    )
    parser.add_argument("--base", default="hardnet:bundled", help="trained HardNet NAME:WEIGHTS")
    parser.add_argument("--out", required=True, help="output .safetensors file")
    parser.add_argument("--draws", type=int, default=4, help="training draws (100, 101, ...)")
    parser.add_argument("--gamma", type=float, default=3.0, help="gate exponent")
    parser.add_argument("--partner-px", type=float, default=3.0, help="label distance, pixels")
    parser.add_argument("--C", type=float, default=0.1, help="inverse L2 strength of the head")
    parser.add_argument(
        "--validate-draws", type=int, default=3, help="held-out draws to score (0: none)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)
