"""One registry for every named component: ``register``, ``create``, ``list_registered``.

Components register themselves with a decorator on a small factory function or class::

    @register("descriptor", "hardnet", weights={"bundled": WeightSpec(file="hardnet.safetensors")})
    class HardNet(nn.Module): ...

and are built by name with :func:`create`. The modules that hold registrations are imported lazily on the
first look-up, so ``import lookalike`` stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lookalike.core.errors import LookalikeError

KINDS: tuple[str, ...] = ("descriptor", "layer", "loss", "index", "protocol", "dataset")

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
    """Import every module below the provider packages, so their ``@register`` calls run."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package in _PROVIDERS:
        if importlib.util.find_spec(package) is None:
            continue
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."):
            if not info.name.rsplit(".", 1)[-1].startswith("_"):
                importlib.import_module(info.name)


def get_entry(kind: str, name: str) -> Entry:
    """Return the :class:`Entry` for ``kind``/``name``.

    Raises:
        RegistryError: unknown kind or name; the message lists the available names.
    """
    _check_kind(kind)
    _load_providers()
    table = _REGISTRY[kind]
    if name not in table:
        available = ", ".join(sorted(table)) or "(none)"
        raise RegistryError(f"unknown {kind} {name!r}; available: {available}")
    return table[name]


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
        The component (usually an ``nn.Module``).

    Raises:
        RegistryError: unknown kind or name.
        lookalike.core.weights.WeightsError: the weights cannot be found or do not fit.

    Example:
        >>> import lookalike
        >>> sift = lookalike.create("descriptor", "sift", patch_size=32)
        >>> sift.dim
        128
    """
    base, spec_weights = split_spec(name)
    if spec_weights is not None:
        if weights is not None and weights != spec_weights:
            raise RegistryError(
                f"weights given twice: {spec_weights!r} in the name and {weights!r} as argument"
            )
        weights = spec_weights
    entry = get_entry(kind, base)
    from lookalike.core.weights import build_with_weights, record_registry

    if weights is not None:
        return build_with_weights(entry, weights, kwargs)
    obj = entry.factory(**kwargs)
    record_registry(obj, kind, base, kwargs)
    return obj
