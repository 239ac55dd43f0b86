"""``lookalike prune --base hardnet_gated:bundled --width 20 --out FILE``: a narrower HardNet to fine-tune.

The library does the work (:func:`lookalike.train.prune.prune_weights`): the base's trunk keeps, in every
3×3 layer, the channels the next layer reads most (input-weight L1), and the result is saved as ``hardnet``
weights of the new width, with the source and the criterion in its metadata. Fine-tune it with ``lookalike
train --config configs/hardnet_dog_bundled.yaml model.name=hardnet:FILE`` and gate it with ``lookalike
fit-gate``.
"""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from lookalike.cli._common import check_output_file, require_trained
    from lookalike.train.prune import prune_weights

    require_trained(args.base)
    out = check_output_file(args.out, suffixes=(".safetensors",))
    training = prune_weights(out, base=args.base, width=args.width)
    print(f"wrote {out}: hardnet width {training['width']}, pruned from {training['pruned_from']}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Contribute ``lookalike prune``."""
    parser = sub.add_parser(
        "prune",
        help="prune a trained HardNet trunk to a narrower width (a start for fine-tuning)",
        description=(
            "Keep, in every 3x3 layer of the base's trunk, the channels whose input weights in the "
            "next layer have the largest L1 norm, and write hardnet weights of --width."
        ),
    )
    parser.add_argument("--base", default="hardnet_gated:bundled", help="trained NAME:WEIGHTS")
    parser.add_argument("--width", type=int, default=20, help="first-stage channels of the result")
    parser.add_argument("--out", required=True, help="output .safetensors file")
    parser.set_defaults(func=_run)
