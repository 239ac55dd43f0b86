"""``lookalike export NAME[:WEIGHTS] --format onnx|torchscript --out FILE``: a network as a portable file.

The library does the work (:func:`lookalike.descriptors.export.export_descriptor`): a graph with a
dynamic batch dimension that reproduces the PyTorch descriptors (ONNX Runtime within 1e-4 in the
tests), flat inputs giving all-zero rows. Only network descriptors (registered, needing trained
weights) are exported; a network named without weights is refused unless ``--allow-random``.
"""

from __future__ import annotations

import argparse


def _run_export(args: argparse.Namespace) -> int:
    import lookalike
    from lookalike._registry import get_entry, split_spec
    from lookalike.cli._common import check_output_file, require_trained
    from lookalike.core.errors import OptionError
    from lookalike.descriptors.export import EXPORT_FORMATS, export_descriptor, network_descriptors

    name, _ = split_spec(args.spec)
    networks = network_descriptors()
    if name not in networks:
        get_entry("descriptor", name)  # an unknown name: RegistryError listing the names
        raise OptionError(
            f"{name!r} is not a network descriptor; exportable: {', '.join(networks)}"
        )
    require_trained(args.spec, allow_random=args.allow_random)
    out = check_output_file(args.out, suffixes=EXPORT_FORMATS[args.format])
    model = lookalike.create("descriptor", args.spec)
    path = export_descriptor(model, out, format=args.format, name=args.spec, opset=args.opset)
    spec = model.input_spec
    print(
        f"wrote {path}: {args.format}, input (batch, {spec.channels}, ...) -> (batch, {model.dim})"
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Contribute ``lookalike export``."""
    from lookalike.cli._common import add_allow_random
    from lookalike.descriptors.export import DEFAULT_OPSET, EXPORT_FORMATS

    parser = sub.add_parser(
        "export",
        help="export a descriptor network to ONNX or TorchScript (dynamic batch)",
        description=(
            "Write a registered descriptor network (NAME or NAME:WEIGHTS, e.g. hardnet:bundled or "
            "hardnet:runs/.../weights.safetensors) as an ONNX or TorchScript file with a dynamic "
            "batch dimension: input (batch, C, P, P) float in [0, 1], output (batch, D) unit rows."
        ),
    )
    parser.add_argument("spec", metavar="NAME[:WEIGHTS]", help="the network and its weights")
    parser.add_argument("--format", required=True, choices=list(EXPORT_FORMATS), help="file format")
    parser.add_argument("--out", required=True, help="output file (.onnx; .pt or .ts)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    add_allow_random(parser)
    parser.set_defaults(func=_run_export)
