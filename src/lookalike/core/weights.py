"""Model weights: safetensors files with metadata, named weights, checksummed downloads.

A lookalike weights file is a ``.safetensors`` file whose metadata holds:

=================  ==============================================================
``format``         ``"lookalike/1"``
``kind``/``name``  the registry entry the weights belong to (e.g. ``descriptor``/``hardnet``)
``kwargs``         JSON of the constructor keyword arguments
``version``        lookalike version that wrote the file
``training``       JSON of the training config and validation numbers (optional)
=================  ==============================================================

Pickles are never loaded: a ``.pt``/``.pth`` file is read with ``torch.load(weights_only=True)``.
Constructing a model never downloads; named weights with a URL are fetched by
:func:`lookalike._registry.resolve_weights` only when asked for, and verified against their SHA-256.
Files are written atomically (a temporary file renamed into place) with the permissions of any file
the user creates (``0666`` minus the umask, e.g. ``0644``).

This module knows nothing of the registry: building a registered component with weights is
:func:`lookalike._registry.build_with_weights`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lookalike.core.data import weights_cache
from lookalike.core.errors import LookalikeError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "ChecksumError",
    "WeightSpec",
    "WeightsError",
    "download",
    "load_weights",
    "read_metadata",
    "read_weights",
    "save_weights",
    "sha256_file",
    "store_float16",
    "verify_sha256",
]

log = logging.getLogger(__name__)
FORMAT = "lookalike/1"


class WeightsError(LookalikeError):
    """A weights file is missing, corrupt, or does not fit the model."""


class ChecksumError(WeightsError):
    """A file's SHA-256 differs from the expected one."""


@dataclass(frozen=True)
class WeightSpec:
    """Where named weights come from (data, not code).

    Attributes:
        file: file name inside the installed package's ``lookalike/weights/`` folder, or ``None``.
        url: download address for weights not shipped with the package (``file://`` works).
        sha256: expected SHA-256 of the file (hex); checked for downloads and package files.
        description: what the weights were trained on, for ``lookalike info``.
        kwargs: constructor kwargs the weights need (used when the file has no metadata).
    """

    file: str | None = None
    url: str | None = None
    sha256: str | None = None
    description: str = ""
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike[str], sha256: str | None) -> None:
    """Raise :class:`ChecksumError` unless the file's SHA-256 is ``sha256`` (``None``: no check)."""
    if sha256 is None:
        return
    actual = sha256_file(path)
    if actual.lower() != sha256.lower():
        raise ChecksumError(f"{path}: SHA-256 mismatch: expected {sha256.lower()}, got {actual}")


def download(
    url: str,
    sha256: str | None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    filename: str | None = None,
    progress: bool = True,
) -> Path:
    """Download ``url`` into the cache (once) and verify its checksum.

    A cached file is re-verified on every call. The download goes to a temporary file that is renamed
    into place only after the checksum matched, so an interrupted or corrupt download never poisons the
    cache.

    Args:
        url: ``http(s)://`` or ``file://`` address.
        sha256: expected hex SHA-256, or ``None`` to skip verification (not recommended).
        cache_dir: target folder; default ``$LOOKALIKE_HOME/weights``.
        filename: name in the cache; default the last component of the URL.
        progress: show a progress bar (rich) while downloading.

    Returns:
        Path of the verified file.

    Raises:
        ChecksumError: the downloaded (or cached) file has another SHA-256.
        WeightsError: the URL cannot be read.
    """
    folder = Path(cache_dir) if cache_dir is not None else weights_cache()
    name = filename or url.rstrip("/").rsplit("/", 1)[-1]
    target = folder / name
    if target.exists():
        verify_sha256(target, sha256)
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
    tmp = Path(tmp_name)
    try:
        try:
            response = urllib.request.urlopen(url, timeout=60)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise WeightsError(
                f"cannot download {url}: {exc}. Put the file at {target} to use it offline."
            ) from exc
        with response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            _copy(response, out, total, progress and total > (1 << 20), name)
        actual = sha256_file(tmp)
        if sha256 is not None and actual.lower() != sha256.lower():
            raise ChecksumError(
                f"{target.name} downloaded from {url}: SHA-256 mismatch: expected "
                f"{sha256.lower()}, got {actual}; the file was not kept"
            )
        _publish(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("downloaded %s to %s", url, target)
    return target


def _user_file_mode() -> int:
    """``0o666`` minus the process umask: the mode ``open(path, "w")`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _publish(tmp: Path, target: Path) -> None:
    """Give ``tmp`` (``mkstemp`` makes it ``0600``) a user file's mode, then rename it to ``target``."""
    os.chmod(tmp, _user_file_mode())
    tmp.replace(target)


def _write_safetensors(tensors: dict[str, Any], meta: dict[str, str], path: Path) -> Path:
    """Write ``tensors`` with ``meta`` to ``path`` atomically (an interrupted save leaves no truncated
    file there) with a user file's mode."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save_file(tensors, tmp_name, metadata=meta)
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _copy(src: Any, dst: Any, total: int, show: bool, label: str) -> None:
    if not show:
        shutil.copyfileobj(src, dst)
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(f"downloading {label}", total=total)
        while block := src.read(1 << 16):
            dst.write(block)
            bar.advance(task, len(block))


def save_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    kind: str | None = None,
    name: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    extra: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Save ``model.state_dict()`` as safetensors with lookalike metadata.

    ``kind``, ``name`` and ``kwargs`` default to what :func:`lookalike.create` recorded on the model.

    Args:
        model: module to save.
        path: output file (``.safetensors``).
        kind: registry kind.
        name: registry name.
        kwargs: constructor keyword arguments (JSON-serialisable).
        training: training config and validation numbers (JSON-serialisable).
        extra: more tensors to store under their own keys (e.g. optimizer state).

    Returns:
        The path written (atomically, mode ``0666`` minus the umask).
    """
    from lookalike._version import __version__

    recorded = getattr(model, "_lookalike_registry", None) or {}
    meta = {
        "format": FORMAT,
        "kind": kind or recorded.get("kind", ""),
        "name": name or recorded.get("name", ""),
        "kwargs": json.dumps(dict(kwargs if kwargs is not None else recorded.get("kwargs", {}))),
        "version": __version__,
        "training": json.dumps(dict(training or {})),
    }
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    for key, value in (extra or {}).items():
        if key in tensors:
            raise WeightsError(f"extra tensor key {key!r} clashes with a model parameter")
        tensors[key] = value.detach().cpu().contiguous().clone()
    return _write_safetensors(tensors, meta, Path(path))


def _open_safetensors(path: Path, *, tensors: bool) -> tuple[dict[str, str], dict[str, Any]]:
    """Raw metadata (and the tensors when asked) of a safetensors file; errors name the file."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            state = {key: fh.get_tensor(key) for key in fh.keys()} if tensors else {}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a valid safetensors file ({exc})") from exc
    return meta, state


def store_float16(path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Rewrite a safetensors weights file with its float32 tensors stored as float16 (half the size).

    Loading casts them back to the model's dtype (``load_state_dict`` copies across dtypes), so a
    float32 model built from the file runs in float32 with weights rounded to float16 (about 3
    significant digits; check the descriptor's cosine to the float32 rows before shipping such a
    file). Other tensors (integers, float64, bfloat16) and the metadata are kept; the metadata gains
    ``storage: float16``. Written atomically to ``out`` (default: over ``path``).

    Raises:
        WeightsError: missing or invalid file, or a float32 value outside float16's range.

    Example:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> net = torch.nn.Linear(4, 2)
        >>> path = save_weights(net, Path(tempfile.mkdtemp()) / "w.safetensors", kind="k", name="n")
        >>> state, meta = read_weights(store_float16(path))
        >>> state["weight"].dtype, meta["storage"]
        (torch.float16, 'float16')
    """
    import torch

    path = Path(path)
    meta, state = _open_safetensors(path, tensors=True)
    limit = float(torch.finfo(torch.float16).max)
    for key, value in state.items():
        if value.dtype == torch.float32:
            if value.numel() and float(value.abs().max()) > limit:
                raise WeightsError(
                    f"{path}: tensor {key!r} has values beyond float16's range (max |x| {limit:g})"
                )
            state[key] = value.half()
    meta["storage"] = "float16"
    return _write_safetensors(state, meta, Path(out) if out is not None else path)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Metadata of a safetensors file, with ``kwargs``/``training`` decoded from JSON."""
    path = Path(path)
    meta, _ = _open_safetensors(path, tensors=False)
    for key in ("kwargs", "training"):
        if key in meta:
            try:
                meta[key] = json.loads(meta[key])
            except json.JSONDecodeError as exc:
                raise WeightsError(f"{path}: metadata {key!r} is not valid JSON") from exc
    return meta


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a weights file into ``(state_dict, metadata)`` without building a model.

    Subnormal float32 / bfloat16 values are read as 0 (:mod:`lookalike.core.subnormal`: they
    change no result and make CPU inference several times slower).

    ``.safetensors`` files are read with safetensors; ``.pt``/``.pth``/``.ckpt`` files with
    ``torch.load(weights_only=True)`` (a ``{"state_dict": ...}`` wrapper is unwrapped). Nothing is
    ever unpickled.

    Raises:
        WeightsError: missing, truncated, corrupt, or not a mapping of tensors; the message names the file.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix in {".pt", ".pth", ".ckpt", ".bin"}:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for bad files
            raise WeightsError(f"{path}: cannot read as a weights-only torch file ({exc})") from exc
        if isinstance(obj, Mapping) and "state_dict" in obj:
            obj = obj["state_dict"]
        if not isinstance(obj, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in obj.values()
        ):
            raise WeightsError(f"{path}: expected a mapping of tensor names to tensors")
        return _flushed(dict(obj)), {}
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_metadata(path)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a valid safetensors file ({exc})") from exc
    return _flushed(state), meta


def _flushed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # float32 / bfloat16 subnormals stay subnormal in a float32 model and slow every CPU multiply
    # (lookalike.core.subnormal); float16 ones become normal float32 numbers, so they are kept.
    import torch

    from lookalike.core.subnormal import flush_subnormal_

    flush_subnormal_(v for v in state.values() if v.dtype in (torch.float32, torch.bfloat16))
    return state


def load_weights(
    model: nn.Module, path: str | os.PathLike[str], *, strict: bool = True
) -> dict[str, Any]:
    """Load a weights file into ``model`` (strictly by default) and return its metadata.

    Models that can read foreign layouts (e.g. kornia's state dicts) define
    ``adapt_state_dict(state) -> state``, which is applied first.

    Raises:
        WeightsError: unreadable file, or missing/unexpected keys or shape mismatches (named).
    """
    state, meta = read_weights(path)
    adapt = getattr(model, "adapt_state_dict", None)
    if callable(adapt):
        state = adapt(state)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if strict and (missing or unexpected):
        raise WeightsError(
            f"{path} does not fit {type(model).__name__}: missing keys {missing[:8]}, "
            f"unexpected keys {unexpected[:8]}"
        )
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if wrong:
        raise WeightsError(f"{path} does not fit {type(model).__name__}: {'; '.join(wrong[:8])}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=strict)
    return meta
