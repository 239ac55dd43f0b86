"""One registry for every named component: ``register``, ``create``, ``list_registered``.

Components register themselves with a decorator on a small factory function or class::

    @register("descriptor", "hardnet", weights={"bundled": WeightSpec(file="hardnet.safetensors")})
    class HardNet(nn.Module): ...

and are built by name with :func:`create`. The modules that hold registrations are imported lazily on the
first look-up, so ``import lookalike`` stays cheap.

Building with weights lives here too (:func:`build_with_weights`, :func:`resolve_weights`,
:func:`record_registry`): it joins registry entries and the weights file I/O of
:mod:`lookalike.core.weights`, which knows nothing of the registry.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import inspect
import os
import pkgutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookalike.core.errors import LookalikeError, OptionError

KINDS: tuple[str, ...] = (
    "descriptor",
    "layer",
    "loss",
    "index",
    "reranker",
    "protocol",
    "dataset",
    "task",
)

# Packages whose modules register components; every public module below them is imported on first look-up.
_PROVIDERS: tuple[str, ...] = (
    "lookalike.layers",
    "lookalike.descriptors",
    "lookalike.losses",
    "lookalike.index",
    "lookalike.eval",
    "lookalike.data",
    "lookalike.matching",
    "lookalike.train",
    "lookalike.baselines",
)


class RegistryError(LookalikeError, KeyError):
    """A name is registered twice, or a look-up names an unknown kind or name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Entry:
    """A registered component.

    Attributes:
        kind: registry kind, one of :data:`KINDS`.
        name: unique name within the kind.
        factory: callable building the component from keyword arguments.
        weights: named pretrained weights (name -> :class:`lookalike.core.weights.WeightSpec`).
        doc: first line of the factory's docstring.
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    weights: Mapping[str, Any] = field(default_factory=dict)
    doc: str = ""


_REGISTRY: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
_loaded = False
_loading = False
_load_lock = threading.RLock()


def _check_kind(kind: str) -> None:
    if kind not in _REGISTRY:
        raise RegistryError(f"unknown registry kind {kind!r}; expected one of {sorted(_REGISTRY)}")


def register(
    kind: str, name: str, *, weights: Mapping[str, Any] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a factory (class or function) under ``kind``/``name``.

    Args:
        kind: one of :data:`KINDS`.
        name: unique name within ``kind``; may not contain ``:`` (reserved for ``name:weights``).
        weights: named weight files this component can load (see :mod:`lookalike.core.weights`).

    Returns:
        A decorator returning the factory unchanged.

    Raises:
        RegistryError: the kind is unknown, or the name is already taken.

    Example:
        >>> from lookalike._registry import register, create, unregister
        >>> @register("layer", "doctest_identity")
        ... def identity(*, scale=1):
        ...     return lambda x: x * scale
        >>> create("layer", "doctest_identity", scale=2)(21)
        42
        >>> unregister("layer", "doctest_identity")
    """
    _check_kind(kind)
    if not name or ":" in name:
        raise RegistryError(f"invalid {kind} name {name!r}: expected a non-empty name without ':'")

    def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
        table = _REGISTRY[kind]
        if name in table:
            other = table[name].factory
            raise RegistryError(
                f"duplicate {kind} name {name!r}: already registered by "
                f"{other.__module__}.{other.__qualname__}"
            )
        doc = (factory.__doc__ or "").strip().splitlines()
        table[name] = Entry(kind, name, factory, dict(weights or {}), doc[0] if doc else "")
        return factory

    return decorator


def unregister(kind: str, name: str) -> None:
    """Remove a registration (for tests and plugins that re-register)."""
    _check_kind(kind)
    _REGISTRY[kind].pop(name, None)


def _load_providers() -> None:
    """Import every public module below the provider packages, so their ``@register`` calls run.

    The registry counts as loaded only once every import succeeded; a provider module that fails to
    import raises an ``ImportError`` naming it (on this and on every later look-up), instead of its
    names going missing. A look-up made while the providers are being imported (a module that
    creates a component at import time) sees what is registered so far.
    """
    global _loaded, _loading
    if _loaded:
        return
    # Other threads wait on the lock; the loading thread re-enters it (RLock) and sees _loading.
    with _load_lock:
        if _loaded or _loading:
            return
        _loading = True
        try:
            for package in _PROVIDERS:
                if importlib.util.find_spec(package) is None:  # optional provider not installed
                    continue
                pkg = _import_provider(package)
                for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."):
                    if not info.name.rsplit(".", 1)[-1].startswith("_"):
                        _import_provider(info.name)
            _loaded = True
        finally:
            _loading = False


def _import_provider(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except Exception as exc:
        raise ImportError(
            f"lookalike: cannot import the provider module {module} ({type(exc).__name__}: {exc}); "
            f"its components cannot be registered",
            name=module,
        ) from exc


def get_entry(kind: str, name: str) -> Entry:
    """Return the :class:`Entry` for ``kind``/``name``.

    Raises:
        RegistryError: unknown kind or name; the message lists the available names.
    """
    _check_kind(kind)
    _load_providers()
    table = _REGISTRY[kind]
    if name not in table:
        raise RegistryError(_unknown_name_message(kind, name, table))
    return table[name]


def _unknown_name_message(kind: str, name: str, table: Mapping[str, Entry]) -> str:
    close = difflib.get_close_matches(name, list(table), n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    available = ", ".join(sorted(table)) or "(none)"
    shipped = [f"{n}:{w}" for n in sorted(table) for w in sorted(table[n].weights)]
    weights = f"with shipped weights: {', '.join(shipped)}; " if shipped else ""
    return (
        f"unknown {kind} {name!r}{hint}. Available: {available}. Names take weights as "
        f"NAME:WEIGHTS ({weights}or NAME:FILE with a .safetensors/.pt file)"
    )


def list_registered(kind: str) -> list[str]:
    """Sorted names registered under ``kind``.

    Example:
        >>> import lookalike
        >>> "sift" in lookalike.list_registered("descriptor")
        True
    """
    _check_kind(kind)
    _load_providers()
    return sorted(_REGISTRY[kind])


def split_spec(spec: str) -> tuple[str, str | None]:
    """Split ``"name:weights"`` into ``("name", "weights")``; ``"name"`` gives ``("name", None)``."""
    name, sep, weights = spec.partition(":")
    return name, (weights if sep else None)


def check_component_spec(
    spec: str, *, kind: str, field: str, container: str, allow_random: bool = False
) -> tuple[str, str | None]:
    """``(name, weights)`` of a spec that a composite (``container``) builds from, after the checks.

    A composite cannot hold another of its own kind (``name == container``), and a learned component
    (factory flag ``needs_weights``) needs weights unless ``allow_random``.

    Raises:
        OptionError: either rule broken; the message names ``field`` and the spec.
        RegistryError: unknown name.

    Example:
        >>> check_component_spec("color-hist", kind="descriptor", field="members", container="ensemble")
        ('color-hist', None)
    """
    name, weights = split_spec(spec)
    if name == container:
        raise OptionError(f"{field}: {container} cannot hold another {container} ({spec!r})")
    learned = getattr(get_entry(kind, name).factory, "needs_weights", False)
    if learned and weights is None and not allow_random:
        raise OptionError(
            f"{field}: {spec!r} is a learned network without weights; give {name}:WEIGHTS or "
            "allow_random=True"
        )
    return name, weights


def is_shipped(kind: str, spec: str) -> bool:
    """Whether ``spec`` (``name:weights``) is registered under ``kind`` with its weights file installed
    in the package (``lookalike/weights/``). Never downloads.

    A composite without weights of its own (a factory with a ``MEMBERS`` tuple of specs, such as the
    ``gem-color`` ensemble) counts as shipped when its members' weights are.

    Example:
        >>> is_shipped("descriptor", "sift"), is_shipped("descriptor", "no-such-name:bundled")
        (False, False)
        >>> is_shipped("descriptor", "gem-color") == is_shipped("descriptor", "gem:bundled")
        True
    """
    from importlib import resources

    name, weights = split_spec(spec)
    try:
        entry = get_entry(kind, name)
    except LookalikeError:
        return False
    members = getattr(entry.factory, "MEMBERS", None)
    if weights is None and members:
        return all(is_shipped(kind, m) for m in members if split_spec(m)[1] is not None)
    wspec = entry.weights.get(weights or "")
    if wspec is None or getattr(wspec, "file", None) is None:
        return False
    return (resources.files("lookalike") / "weights" / wspec.file).is_file()


def best_shipped(kind: str, candidates: tuple[str, ...], fallback: str) -> str:
    """The first of ``candidates`` (best first) whose weights are installed, else ``fallback``.

    Example:
        >>> best_shipped("descriptor", ("no-such-name:bundled",), "sift")
        'sift'
    """
    for spec in candidates:
        if is_shipped(kind, spec):
            return spec
    return fallback


def create(kind: str, name: str, *, weights: str | None = None, **kwargs: Any) -> Any:
    """Build a registered component.

    Args:
        kind: one of :data:`KINDS`.
        name: registered name, optionally ``"name:weights"`` (e.g. ``"hardnet:bundled"``).
        weights: a weights name declared by the component, or a path to a ``.safetensors``
            (or ``.pt``/``.pth``, read with ``weights_only=True``) file. Loaded strictly. Constructor
            kwargs stored in a safetensors file are used as defaults, explicit ``kwargs`` win.
        **kwargs: keyword arguments for the factory.

    Returns:
        The component (usually an ``nn.Module``). A module built with ``weights`` comes back in
        eval mode, ready for inference (dropout off, BatchNorm on its running statistics; call
        ``.train()`` to fine-tune); without weights it is in PyTorch's default train mode.

    Raises:
        RegistryError: unknown kind or name; the message lists the names and the ``NAME:WEIGHTS``
            forms.
        OptionError: a keyword the factory does not accept, or a required one missing; the message
            lists the accepted keywords.
        lookalike.core.weights.WeightsError: the weights cannot be found or do not fit.

    Example:
        >>> import lookalike
        >>> sift = lookalike.create("descriptor", "sift", patch_size=32)
        >>> sift.dim
        128
        >>> lookalike.create("descriptor", "hardnet:bundled").training
        False
    """
    base, spec_weights = split_spec(name)
    if spec_weights is not None:
        if weights is not None and weights != spec_weights:
            raise RegistryError(
                f"weights given twice: {spec_weights!r} in the name and {weights!r} as argument"
            )
        weights = spec_weights
    entry = get_entry(kind, base)
    if weights is not None:
        check_keywords(entry, kwargs, required=False)
        return build_with_weights(entry, weights, kwargs)
    check_keywords(entry, kwargs)
    obj = entry.factory(**kwargs)
    record_registry(obj, kind, base, kwargs)
    return obj


def _parameters(factory: Callable[..., Any]) -> list[inspect.Parameter] | None:
    """The keyword parameters of ``factory``, or ``None`` when it takes ``**kwargs`` (or has no signature)."""
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def check_keywords(entry: Entry, kwargs: Mapping[str, Any], *, required: bool = True) -> None:
    """Raise :class:`OptionError` if ``kwargs`` has a keyword ``entry``'s factory does not accept.

    Factories taking ``**kwargs`` check their own keywords.

    Args:
        entry: the registry entry.
        kwargs: the keyword arguments for its factory.
        required: also raise when a keyword without default is missing.

    Example:
        >>> import lookalike
        >>> lookalike.create("descriptor", "sift", patch_sise=32)
        Traceback (most recent call last):
        ...
        lookalike.core.errors.OptionError: descriptor 'sift': unknown keyword 'patch_sise' (did you mean 'patch_size'?); accepted: clipval, layout, mask_type, num_ang_bins, num_spatial_bins, patch_size, rootsift, sigma_type, validate
    """
    params = _parameters(entry.factory)
    if params is None:
        return
    accepted = sorted(p.name for p in params)
    listed = ", ".join(accepted) or "(none)"
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        close = difflib.get_close_matches(unknown[0], accepted, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        words = "keyword" if len(unknown) == 1 else "keywords"
        raise OptionError(
            f"{entry.kind} {entry.name!r}: unknown {words} {', '.join(map(repr, unknown))}{hint}; "
            f"accepted: {listed}"
        )
    missing = [
        p.name for p in params if p.default is inspect.Parameter.empty and p.name not in kwargs
    ]
    if required and missing:
        raise OptionError(
            f"{entry.kind} {entry.name!r}: missing required keyword "
            f"{', '.join(map(repr, missing))}; accepted: {listed}"
        )


# ------------------------------------------------------------------ building with weights
def resolve_weights(entry: Entry, weights: str | os.PathLike[str]) -> Path:
    """Turn a weights name declared by ``entry`` or a file path into an existing, verified file.

    Named weights are read from the installed package's ``lookalike/weights/`` folder, or downloaded
    once into the cache and checked against their SHA-256 (:func:`lookalike.core.weights.download`).

    Raises:
        WeightsError: neither a known name nor a file; a packaged file missing; a bad checksum.
    """
    from importlib import resources

    from lookalike.core.weights import WeightsError, download, verify_sha256

    key = str(weights)
    spec = entry.weights.get(key)
    if spec is None:
        path = Path(key).expanduser()
        if path.is_file():
            return path
        names = ", ".join(sorted(entry.weights)) or "(none)"
        raise WeightsError(
            f"weights {key!r} for {entry.kind} {entry.name!r} is neither a file nor a known name; "
            f"known names: {names}"
        )
    if spec.file is not None:
        path = Path(str(resources.files("lookalike") / "weights" / spec.file))
        if path.is_file():
            verify_sha256(path, spec.sha256)
            return path
        if spec.url is None:
            raise WeightsError(f"packaged weights file missing: {path} (reinstall lookalike)")
    if spec.url is None:
        raise WeightsError(f"weights {key!r} of {entry.name!r} declare neither a file nor a URL")
    return download(spec.url, spec.sha256)


#: Constructor keywords that only choose a network's starting weights; a weights file that was saved
#: with them loads without them (see :func:`build_with_weights`).
START_ONLY_KEYWORDS = ("backbone_weights", "pretrained", "swin_weights")


def build_with_weights(entry: Entry, weights: str, kwargs: Mapping[str, Any]) -> Any:
    """Build ``entry`` with constructor kwargs from the weights file, load the weights strictly, eval mode.

    Keyword precedence: the named weights' ``WeightSpec.kwargs`` < the file's stored kwargs < ``kwargs``.
    Stored keywords that only say where training *started* (:data:`START_ONLY_KEYWORDS`: a backbone
    file, a download request) are dropped: the file holds every weight, so loading never needs the
    start file nor a network.
    A module comes back in eval mode (see :func:`create`). When the file records the patch geometry its
    network was trained on (``training.patch_geometry.patch_extent``), the model's ``patch_extent`` is
    set to it, so the matching pipeline cuts patches the way training did.

    Raises:
        WeightsError: the file holds another component's weights, or does not fit.
        OptionError: the merged keywords do not fit the factory.
    """
    from lookalike.core.weights import WeightsError, load_weights, read_metadata

    path = resolve_weights(entry, weights)
    meta = read_metadata(path) if path.suffix == ".safetensors" else {}
    if meta.get("name") and (meta.get("kind"), meta.get("name")) != (entry.kind, entry.name):
        raise WeightsError(
            f"{path} holds weights for {meta.get('kind')} {meta.get('name')!r}, "
            f"not {entry.kind} {entry.name!r}"
        )
    spec = entry.weights.get(str(weights))
    stored = {k: v for k, v in meta.get("kwargs", {}).items() if k not in START_ONLY_KEYWORDS}
    merged = {**(spec.kwargs if spec else {}), **stored, **kwargs}
    check_keywords(entry, merged)
    model = entry.factory(**merged)
    load_weights(model, path, strict=True)
    geometry = (meta.get("training") or {}).get("patch_geometry") or {}
    if geometry.get("patch_extent") is not None and hasattr(model, "patch_extent"):
        model.patch_extent = float(geometry["patch_extent"])
    eval_mode = getattr(model, "eval", None)
    if callable(eval_mode):
        eval_mode()
    record_registry(model, entry.kind, entry.name, merged)
    return model


def record_registry(model: Any, kind: str, name: str, kwargs: Mapping[str, Any]) -> None:
    """Remember how ``model`` was built (``model._lookalike_registry``), for ``save_weights``."""
    record = {"kind": kind, "name": name, "kwargs": dict(kwargs)}
    with contextlib.suppress(AttributeError, TypeError):  # objects that take no attributes
        object.__setattr__(model, "_lookalike_registry", record)


def build_component(component: Any, kind: str, **extra: Any) -> Any:
    """Build a config :class:`~lookalike.core.config.Component`: ``create(kind, name, **kwargs, **extra)``.

    Example:
        >>> from lookalike.core.config import Component
        >>> build_component(Component("sift", {"patch_size": 32}), "descriptor").dim
        128
    """
    return create(kind, component.name, **{**component.kwargs, **extra})
