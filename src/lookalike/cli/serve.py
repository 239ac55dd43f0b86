"""``lookalike serve INDEX``: the HTTP search service and its web page (FastAPI + uvicorn).

Convention:
    - The index is opened and its descriptor built before the port is bound: a missing, corrupted or
      mismatched index fails at once with exit code 1.
    - Tokens are never given on the command line (they would show in the process list): ``--token-env
      VAR`` names the environment variable holding the write token, ``--read-token-env VAR`` the one
      holding the read token. A named variable that is unset or empty is an error.
    - One process, one index; uploads are described in worker threads, at most ``--max-concurrency``
      requests at once (more are answered 503). Endpoints and error codes: :mod:`lookalike.service.app`.
"""

from __future__ import annotations

import argparse
import os

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def _token(var: str | None, flag: str) -> str | None:
    from lookalike.core.errors import OptionError

    if var is None:
        return None
    value = os.environ.get(var, "").strip()
    if not value:
        raise OptionError(f"{flag} {var}: the environment variable {var} is unset or empty")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _megabytes(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of megabytes, got {text!r}")
    return max(1, round(value * 1024 * 1024))


def _run(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from lookalike.service.app import create_app

    log = logging.getLogger("lookalike")
    app = create_app(
        args.index,
        descriptor=args.descriptor,
        allow_writes=args.allow_writes,
        token=_token(args.token_env, "--token-env"),
        read_token=_token(args.read_token_env, "--read-token-env"),
        max_upload_bytes=args.max_upload_mb,
        max_pixels=args.max_pixels,
        max_concurrency=args.max_concurrency,
        max_k=args.max_k,
        images_root=args.images_root,
        device=args.device,
    )
    engine = app.state.engine
    log.info(
        "serving %s (%d items, descriptor %s) at http://%s:%d/ (API docs at /docs)",
        args.index,
        len(engine.index),
        engine.index.descriptor or "none: vector queries only",
        args.host,
        args.port,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, workers=1)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Contribute the ``serve`` subcommand."""
    from lookalike.service.settings import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES

    parser = sub.add_parser(
        "serve",
        help="serve an index over HTTP: search by image or vector, a web page, metrics",
        description=(
            "Serve INDEX (made by 'lookalike index build') over HTTP: POST /search with an image "
            "upload or a JSON vector, GET /items/{id} and its thumbnail, GET /health, GET /metrics "
            "(Prometheus), a web page at / and the API docs at /docs. Uploads are described with "
            "the descriptor the index was built with."
        ),
    )
    parser.add_argument("index", help="the index directory")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind ({DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT})")
    parser.add_argument(
        "--descriptor",
        help="expected descriptor spec; refused when the index was built with another "
        "(default: the one the index names)",
    )
    parser.add_argument(
        "--allow-writes",
        action="store_true",
        help="enable POST /items and DELETE /items/{id} (saved atomically into INDEX)",
    )
    parser.add_argument(
        "--token-env",
        metavar="VAR",
        help="environment variable holding the bearer token for writes",
    )
    parser.add_argument(
        "--read-token-env",
        metavar="VAR",
        help="environment variable holding the bearer token for reads (default: reads are open)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=_megabytes,
        default=DEFAULT_MAX_UPLOAD_BYTES,
        help=f"largest upload in megabytes ({DEFAULT_MAX_UPLOAD_BYTES // (1024 * 1024)})",
    )
    parser.add_argument(
        "--max-pixels",
        type=_positive,
        default=DEFAULT_MAX_PIXELS,
        help=f"largest upload in pixels, width x height ({DEFAULT_MAX_PIXELS})",
    )
    parser.add_argument(
        "--max-concurrency",
        type=_positive,
        default=8,
        help="requests handled at once; more are answered 503 (8)",
    )
    parser.add_argument(
        "--max-k", type=_positive, default=100, help="largest k a search may ask (100)"
    )
    parser.add_argument(
        "--images-root",
        help="folder that relative image paths in the index metadata are resolved against",
    )
    parser.add_argument("--device", default="cpu", help="torch device of the descriptor (cpu)")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn log level (info)",
    )
    parser.set_defaults(func=_run)
