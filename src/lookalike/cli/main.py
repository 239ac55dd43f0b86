"""Entry point of the ``lookalike`` console script.

Subcommands are contributed by the modules of :mod:`lookalike.cli`: every public module that defines
``add_commands(subparsers)`` adds its parsers there and sets ``func`` (called with the parsed
namespace, returning an exit code) through ``parser.set_defaults(func=...)``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

import lookalike

log = logging.getLogger("lookalike")


class CLIError(lookalike.LookalikeError):
    """A command-line usage error."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line (``lookalike: error: ...``) and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every contributed subcommand."""
    parser = _Parser(
        prog="lookalike",
        description="Learned visual descriptors: match images, train and evaluate descriptors.",
    )
    parser.add_argument("--version", action="version", version=f"lookalike {lookalike.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    package = importlib.import_module("lookalike.cli")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name == "main":
            continue
        module = importlib.import_module(f"lookalike.cli.{info.name}")
        add = getattr(module, "add_commands", None)
        if callable(add):
            add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 success, 1 failure, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    if not args.debug:  # faiss logs its CPU-feature loader lines at INFO on every import
        logging.getLogger("faiss").setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        sys.stderr.write("lookalike: interrupted\n")
        return 130
    except Exception as exc:
        if args.debug:
            raise
        msg = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, (lookalike.LookalikeError, OSError)):
            msg = f"{type(exc).__name__}: {msg}"
        sys.stderr.write(f"lookalike: error: {msg}\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
