"""``lookalike match A.jpg B.jpg [--descriptor ...] [--out matches.png]``: match two images.

Convention:
    - Every option and the ``--out`` path are checked before any image is read or matched.
    - The default descriptor is ``sift`` (our SIFT on pyramid patches, no weights needed; a pair
      5-15x faster than a HardNet pair on a 2-core CPU, with or without native bfloat16:
      ``benchmarks/matching.py``).
      The best shipped network, ``hardnet_gated:bundled`` (more correct and fewer wrong mutual
      matches than RootSIFT on held-out pairs), is offered by name. A learned network named without
      weights is refused (``--allow-random`` overrides).
    - Images larger than ``--max-size`` (2048 px) are detected and described downscaled; the printed
      model and the picture are in pixels of the original images.
"""

from __future__ import annotations

import argparse
import json

# The option vocabularies of lookalike.matching (kept equal by tests/cli/test_match.py; listed here
# so that building the parser does not import torch).
MATCHERS = ("nn", "mnn", "snn", "smnn")
DETECTORS = ("dog", "harris-laplace", "hessian")
GEOMETRIES = ("homography", "fundamental", "none")
DEFAULT_DESCRIPTOR = "sift"
DEFAULT_MAX_SIZE = 2048


def _format_model(model) -> list[str]:
    return ["  [" + "  ".join(f"{v: .6g}" for v in row) + "]" for row in model]


def picture_suffixes() -> list[str]:
    """The picture suffixes ``--out`` accepts: those this OpenCV can write."""
    import cv2

    candidates = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
    return [s for s in candidates if cv2.haveImageWriter(f"x{s}")]


def _check(args: argparse.Namespace):
    """Every check that needs no image: output path, weights, options; returns the out path."""
    from lookalike.cli._common import check_output_file, require_trained

    out = check_output_file(args.out, suffixes=picture_suffixes()) if args.out else None
    require_trained(args.descriptor, allow_random=args.allow_random)  # unknown names fail too
    return out


def _print_result(console, result) -> None:
    t = result.timings
    console.print(
        f"descriptor {result.descriptor}, matcher {result.matcher}: "
        f"keypoints {len(result.keypoints0)} / {len(result.keypoints1)}, "
        f"matches {result.num_matches}, inliers {result.num_inliers} "
        f"({t['total']:.2f} s: detect {t['detect']:.2f}, describe {t['describe']:.2f}, "
        f"match {t['match']:.2f}, {result.geometry} {t['geometry']:.2f})"
    )
    if result.model is None:
        reason = (
            "no geometry asked" if result.geometry == "none" else "too few or inconsistent matches"
        )
        console.print(f"model: none ({reason})")
    else:
        how = "x1 ~ H x0" if result.geometry == "homography" else "x1^T F x0 = 0"
        console.print(f"{result.geometry} ({how}):")
        for line in _format_model(result.model):
            console.print(line)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lookalike.cli._common import parse_views
    from lookalike.data.images import load_image, write_image
    from lookalike.matching.draw import draw_matches
    from lookalike.matching.pipeline import ImageMatcher

    console = Console()
    out = _check(args)
    matcher = ImageMatcher(
        args.descriptor,
        matcher=args.matcher,
        detector=args.detector,
        max_keypoints=args.max_keypoints,
        upright=args.upright,
        ratio_threshold=args.ratio,
        geometry=args.geometry,
        ransac_threshold=args.ransac_threshold,
        max_size=args.max_size,
        views=parse_views(args.views),
    )
    image0 = load_image(args.image0, gray=False)
    image1 = load_image(args.image1, gray=False)
    with console.status(f"matching with {matcher.descriptor}"):
        result = matcher(image0, image1)
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
        _print_result(console, result)
    if out is not None:
        picture = draw_matches(image0, image1, result, max_matches=args.draw)
        path = write_image(out, picture)
        if not args.json:
            what = "inlier matches" if result.model is not None else "matches"
            console.print(f"wrote {what} to {path}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Contribute the ``match`` subcommand."""
    from lookalike.cli._common import add_allow_random, add_views_argument

    parser = sub.add_parser(
        "match",
        help="match two images: keypoints, descriptors, matches and a homography",
        description=(
            "Detect keypoints (DoG), describe them, match (mutual + ratio test) and fit a "
            "homography (or fundamental matrix) with MAGSAC++. Prints counts and the model; "
            "--out draws the inlier matches side by side."
        ),
    )
    parser.add_argument("image0", help="first image file")
    parser.add_argument("image1", help="second image file")
    parser.add_argument(
        "--descriptor",
        default=DEFAULT_DESCRIPTOR,
        help="any registered descriptor (lookalike info lists them): ours (sift, rootsift, "
        "hardnet:bundled, NAME:weights.safetensors...), opencv-{sift,rootsift,vgg,boostdesc,teblid,"
        "orb} or kornia-{sift,rootsift,mkd}. Default: sift, our SIFT (no weights needed, fast on a "
        "CPU); the best shipped network is hardnet_gated:bundled",
    )
    parser.add_argument(
        "--matcher", default="smnn", choices=MATCHERS, help="default smnn (mutual + ratio test)"
    )
    parser.add_argument("--detector", default="dog", choices=DETECTORS, help="default dog")
    parser.add_argument("--max-keypoints", type=int, default=2048, help="keypoint budget per image")
    parser.add_argument(
        "--max-size",
        type=int,
        default=DEFAULT_MAX_SIZE,
        help=f"detect and describe on images downscaled to this longest side in pixels "
        f"(default {DEFAULT_MAX_SIZE}; 0: full resolution); results are in original pixels",
    )
    parser.add_argument("--upright", action="store_true", help="ignore keypoint orientation")
    add_views_argument(parser)
    parser.add_argument("--ratio", type=float, default=None, help="ratio-test threshold (0.9)")
    parser.add_argument(
        "--geometry", default="homography", choices=GEOMETRIES, help="default homography"
    )
    parser.add_argument(
        "--ransac-threshold", type=float, default=None, help="inlier threshold (px)"
    )
    parser.add_argument(
        "--out",
        help="write a picture of the inlier matches (.png, .jpg, .jpeg, .bmp, .webp, .tif, .tiff); "
        "its folder must exist",
    )
    parser.add_argument("--draw", type=int, default=400, help="draw at most this many matches")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_allow_random(parser)
    parser.set_defaults(func=_run)
