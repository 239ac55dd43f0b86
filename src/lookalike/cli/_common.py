"""Checks every command makes before it starts work: output paths, trained weights, run folders.

Convention (one for every command):
    - Results go to ``--out`` when given, else to ``runs/<YYYYmmdd-HHMMSS>-<command>/`` below the
      current folder (see :func:`default_run_dir`); ``runs/`` is in ``.gitignore``.
    - An output *file*'s folder must already exist (nothing is created at a path the user may have
      mistyped); its suffix must be one the writer supports; an existing file is replaced.
    - An output *folder* may be new (it is created, with its parents, only when the command starts
      writing) or an existing folder; an existing file at that path is an error.
    - Paths are checked before any work, so a bad path fails in a second and leaves nothing behind.
    - Inference commands refuse a learned network without weights (:func:`require_trained`):
      random weights print plausible numbers that mean nothing. ``--allow-random`` overrides.
    - Commands that write a run folder take ``--out`` and ``--runs`` (:func:`add_output_arguments`),
      check them with :func:`check_run_output` and resolve them with :func:`result_dir`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lookalike.core.errors import LookalikeError, OptionError

__all__ = [
    "DATA_DEFAULT_HELP",
    "OutputPathError",
    "UntrainedModelError",
    "add_allow_random",
    "add_data_argument",
    "add_output_arguments",
    "check_output_dir",
    "check_output_file",
    "check_run_output",
    "check_trained",
    "default_run_dir",
    "require_trained",
    "result_dir",
    "split_list",
]

#: Where ``--data`` defaults to, as every command's help says it.
DATA_DEFAULT_HELP = "default: LOOKALIKE_DATA, else ~/.cache/lookalike/data"


class OutputPathError(LookalikeError):
    """An output path that cannot be written (missing folder, unsupported suffix, not writable)."""


class UntrainedModelError(LookalikeError):
    """A learned network named without weights in an inference command."""


def _writable_folder(folder: Path, what: str) -> None:
    if not folder.is_dir():
        raise OutputPathError(f"{what}: folder {str(folder)!r} does not exist (create it first)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what}: folder {str(folder)!r} is not writable")


def check_output_file(
    path: str | os.PathLike[str], *, suffixes: Iterable[str], what: str = "--out"
) -> Path:
    """Check that ``path`` can be written as a file of one of ``suffixes``; returns it as a Path.

    Raises:
        OutputPathError: unsupported suffix, missing or unwritable folder, or ``path`` is a folder.

    Example:
        >>> check_output_file("matches.png", suffixes=[".png", ".jpg"]).name
        'matches.png'
    """
    out = Path(path).expanduser()
    allowed = sorted({s.lower() for s in suffixes})
    if out.suffix.lower() not in allowed:
        raise OutputPathError(
            f"{what}: unsupported file type {out.suffix or '(no suffix)'!r} in {str(out)!r}; "
            f"expected one of {allowed}"
        )
    if out.is_dir():
        raise OutputPathError(f"{what}: {str(out)!r} is a folder, expected a file name")
    _writable_folder(out.parent if str(out.parent) else Path("."), what)
    if out.exists() and not os.access(out, os.W_OK):
        raise OutputPathError(f"{what}: {str(out)!r} exists and is not writable")
    return out


def check_output_dir(path: str | os.PathLike[str], *, what: str = "--out") -> Path:
    """Check that ``path`` is an existing writable folder or can be created; creates nothing.

    Raises:
        OutputPathError: ``path`` is an existing file, or no ancestor folder is writable.

    Example:
        >>> check_output_dir("runs/new-folder").name
        'new-folder'
    """
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{what}: {str(out)!r} is a file, expected a folder")
    if out.is_dir():
        _writable_folder(out, what)
        return out
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"{what}: {str(parent)!r} is a file, cannot create {str(out)!r}")
    _writable_folder(parent, what)
    return out


def default_run_dir(command: str, root: str | os.PathLike[str] = "runs") -> Path:
    """``runs/<YYYYmmdd-HHMMSS>-<command>``: where a command writes when no ``--out`` is given.

    Example:
        >>> default_run_dir("demo").parent.name
        'runs'
    """
    return Path(root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{command}"


def require_trained(spec: str, *, allow_random: bool = False) -> None:
    """Refuse a learned descriptor named without weights (see the module Convention).

    Args:
        spec: ``name`` or ``name:weights``.
        allow_random: accept an untrained network anyway (for experiments).

    Raises:
        UntrainedModelError: ``spec`` names a learned network and no weights.
        RegistryError: unknown descriptor.
    """
    from lookalike._registry import get_entry, split_spec

    name, weights = split_spec(spec)
    entry = get_entry("descriptor", name)
    if weights or allow_random or not getattr(entry.factory, "needs_weights", False):
        return
    shipped = [f"{name}:{w}" for w in sorted(entry.weights)]
    offer = f"the shipped weights {', '.join(shipped)} or " if shipped else ""
    raise UntrainedModelError(
        f"{name!r} is a learned network and no weights were given: use {offer}"
        f"{name}:FILE with a weights file (e.g. {name}:runs/.../weights.safetensors); "
        f"--allow-random runs it with random weights"
    )


def add_allow_random(parser) -> None:
    """Add the ``--allow-random`` flag to an inference command's parser."""
    parser.add_argument(
        "--allow-random",
        action="store_true",
        help="allow learned networks without weights (random initialisation; for experiments only)",
    )


def check_trained(specs: Iterable[str], *, allow_random: bool) -> None:
    """:func:`require_trained` for every registered descriptor among ``specs`` (anchors such as
    ``opencv-sift`` are not registry names and pass).

    Raises:
        UntrainedModelError: a learned network named without weights (and no ``allow_random``).
    """
    import lookalike
    from lookalike._registry import split_spec

    registered = set(lookalike.list_registered("descriptor"))
    for spec in specs:
        if isinstance(spec, str) and split_spec(spec)[0] in registered:
            require_trained(spec, allow_random=allow_random)


def split_list(text: str | None) -> list[str]:
    """The comma-separated items of an option, stripped, empty ones dropped (``None``: none).

    Example:
        >>> split_list(" sift, hardnet:bundled,,"), split_list(None)
        (['sift', 'hardnet:bundled'], [])
    """
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def add_views_argument(parser) -> None:
    """``--views``: view synthesis of the matching pipeline (:mod:`lookalike.matching.views`)."""
    parser.add_argument(
        "--views",
        default=None,
        help="view synthesis for wide baselines: 'asift' (tilts 1,2,4: 16 views) or comma-separated "
        "tilts such as 1,4 (default: off; patch descriptors only)",
    )


def parse_views(value: str | None) -> str | tuple[float, ...] | None:
    """``--views``: a preset name, comma-separated tilts, or None (checked by the pipeline).

    Example:
        >>> parse_views("asift"), parse_views("1, 4"), parse_views(None)
        ('asift', (1.0, 4.0), None)
    """
    if value is None or not any(c.isdigit() for c in value):
        return value
    try:
        return tuple(float(t) for t in split_list(value))
    except ValueError:
        raise OptionError(
            f"--views: expected 'asift' or comma-separated tilts, got {value!r}"
        ) from None


def add_data_argument(parser, what: str = "data folder") -> None:
    """Add ``--data`` (default ``None``: the data root) to a command's parser; ``what`` starts its help."""
    parser.add_argument("--data", default=None, help=f"{what} ({DATA_DEFAULT_HELP})")


def add_output_arguments(parser, command: str) -> None:
    """Add ``--out`` (default ``None``: a new run folder) and ``--runs`` (the parent of run folders,
    default ``runs``) to the parser of ``command`` (e.g. ``"evaluate-matching"``)."""
    parser.add_argument(
        "--out", default=None, help=f"output folder (default: runs/<timestamp>-{command})"
    )
    parser.add_argument("--runs", default="runs", help="parent of run folders (default: runs)")


def check_run_output(
    out: str | os.PathLike[str] | None, runs: str | os.PathLike[str]
) -> Path | None:
    """``out`` checked by :func:`check_output_dir`; ``None`` when results go to a new run folder
    below ``runs`` (then ``runs`` is checked, as ``--runs``). Creates nothing.

    Raises:
        OutputPathError: as :func:`check_output_dir`.
    """
    if out is not None:
        return check_output_dir(out)
    check_output_dir(runs, what="--runs")
    return None


def result_dir(
    out: Path | None, runs: str | os.PathLike[str], command: str, config: Mapping[str, Any]
) -> Path:
    """``out``, or a new ``<runs>/<timestamp>-<command>/`` holding ``config.yaml`` and the versions
    (:func:`lookalike.core.runs.start_run`)."""
    from lookalike.core.runs import start_run

    return out if out is not None else start_run(runs, command, config).path
