"""``lookalike match A.jpg B.jpg [--descriptor ...] [--out matches.png]``: match two images."""

from __future__ import annotations

import argparse
import json


def _format_model(model) -> list[str]:
    return ["  [" + "  ".join(f"{v: .6g}" for v in row) + "]" for row in model]


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lookalike.data.images import load_image, write_image
    from lookalike.matching.draw import draw_matches
    from lookalike.matching.pipeline import ImageMatcher

    console = Console()
    image0 = load_image(args.image0, gray=False)
    image1 = load_image(args.image1, gray=False)
    matcher = ImageMatcher(
        args.descriptor,
        matcher=args.matcher,
        detector=args.detector,
        max_keypoints=args.max_keypoints,
        upright=args.upright,
        ratio_threshold=args.ratio,
        geometry=args.geometry,
        ransac_threshold=args.ransac_threshold,
    )
    with console.status(f"matching with {matcher.descriptor}"):
        result = matcher(image0, image1)
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    else:
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
                "no geometry asked"
                if result.geometry == "none"
                else "too few or inconsistent matches"
            )
            console.print(f"model: none ({reason})")
        else:
            how = "x1 ~ H x0" if result.geometry == "homography" else "x1^T F x0 = 0"
            console.print(f"{result.geometry} ({how}):")
            for line in _format_model(result.model):
                console.print(line)
    if args.out:
        picture = draw_matches(image0, image1, result, max_matches=args.draw)
        path = write_image(args.out, picture)
        if not args.json:
            what = "inlier matches" if result.model is not None else "matches"
            console.print(f"wrote {what} to {path}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Contribute the ``match`` subcommand."""
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
        default=None,
        help="registered descriptor (sift, hardnet:bundled...), opencv-{sift,rootsift,vgg,"
        "boostdesc,teblid,orb} or kornia-sift (default: sift)",
    )
    parser.add_argument("--matcher", default="smnn", help="nn, mnn, snn or smnn (default smnn)")
    parser.add_argument("--detector", default="dog", help="dog, harris-laplace or hessian")
    parser.add_argument("--max-keypoints", type=int, default=2048, help="keypoint budget per image")
    parser.add_argument("--upright", action="store_true", help="ignore keypoint orientation")
    parser.add_argument("--ratio", type=float, default=None, help="ratio-test threshold (0.9)")
    parser.add_argument("--geometry", default="homography", help="homography, fundamental or none")
    parser.add_argument(
        "--ransac-threshold", type=float, default=None, help="inlier threshold (px)"
    )
    parser.add_argument("--out", help="write a picture of the inlier matches (PNG/JPEG)")
    parser.add_argument("--draw", type=int, default=400, help="draw at most this many matches")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=_run_with_default)


def _run_with_default(args: argparse.Namespace) -> int:
    from lookalike.matching.pipeline import DEFAULT_DESCRIPTOR

    if args.descriptor is None:
        args.descriptor = DEFAULT_DESCRIPTOR
    return _run(args)
