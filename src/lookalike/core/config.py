"""Typed recipe configs: YAML files of ``{name, kwargs}`` components loaded into dataclasses.

A recipe is a dataclass tree. Leaves are typed fields (``int``, ``float``, ``str``, ``bool``, ``Path``,
optionals, lists, tuples, dicts); a :class:`Component` names a registered component and its kwargs.
Dotted overrides from the command line are applied after the file::

    lookalike train --config configs/hardnet.yaml optim.lr=0.05 model.kwargs.dim=64

Unknown keys and values of the wrong type are errors that list the valid keys.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from lookalike.core.errors import LookalikeError

__all__ = [
    "Component",
    "ConfigError",
    "apply_overrides",
    "bounded",
    "check_override_keys",
    "from_dict",
    "load_config",
    "to_dict",
]

T = TypeVar("T")


class ConfigError(LookalikeError):
    """A config file or override has an unknown key or a value of the wrong type."""


@dataclasses.dataclass
class Component:
    """A registered component: ``name`` in the registry and its constructor ``kwargs``.

    Attributes:
        name: registry name, optionally ``"name:weights"``.
        kwargs: keyword arguments for the factory (free-form; checked by the factory itself).

    Built with :func:`lookalike._registry.build_component` (core holds the data, the registry builds).
    """

    name: str
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


_BOUNDS = {
    "ge": (lambda v, b: v >= b, ">="),
    "gt": (lambda v, b: v > b, ">"),
    "le": (lambda v, b: v <= b, "<="),
    "lt": (lambda v, b: v < b, "<"),
}


def bounded(default: Any, **bounds: float) -> Any:
    """A dataclass field with a default and a range (``ge``, ``gt``, ``le``, ``lt``) checked on load.

    :func:`from_dict` checks every bounded value it reads and names the full dotted key; ``None``
    (for optional fields) is not range-checked.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Optim:
        ...     lr: float = bounded(0.1, gt=0)
        >>> from_dict(Optim, {"lr": -1})
        Traceback (most recent call last):
        ...
        lookalike.core.config.ConfigError: lr: expected a value > 0, got -1.0
    """
    unknown = sorted(set(bounds) - set(_BOUNDS))
    if unknown:
        raise ConfigError(
            f"bounded: unknown bound {unknown[0]!r}; expected one of {sorted(_BOUNDS)}"
        )
    return dataclasses.field(default=default, metadata={"bounds": dict(bounds)})


def _check_bounds(value: Any, field: dataclasses.Field, where: str) -> None:
    bounds = field.metadata.get("bounds") if field.metadata else None
    if not bounds or value is None or isinstance(value, bool):
        return
    for key, limit in bounds.items():
        ok, symbol = _BOUNDS[key]
        if not ok(value, limit):
            raise ConfigError(f"{where}: expected a value {symbol} {limit}, got {value!r}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce_union(value: Any, tp: Any, args: tuple, where: str) -> Any:
    if value is None and type(None) in args:
        return None
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(value, arg, where)
        except ConfigError:
            continue
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _coerce_sequence(value: Any, tp: Any, origin: Any, args: tuple, where: str) -> Any:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    items = list(value)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(items) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(items)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(items, args)))
    inner = args[0] if args else Any
    out = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(items)]
    return tuple(out) if (origin is tuple or tp is tuple) else out


def _parse_number(value: Any, kind: type, where: str) -> Any:
    """``int`` or ``float`` from a number or a numeric string (bools refused)."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) or (kind is float and isinstance(value, float)):
        return kind(value)
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")


def _coerce_scalar(value: Any, tp: Any, where: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "yes", "no", "1", "0"}:
            return value.lower() in {"true", "yes", "1"}
        raise ConfigError(f"{where}: expected bool, got {value!r}")
    if tp in (int, float):
        return _parse_number(value, tp, where)
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected str, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
        raise ConfigError(f"{where}: expected a path, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` to type ``tp`` or raise :class:`ConfigError` naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, tp, args, where)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return _from_mapping(tp, value, where)
    if origin in (list, tuple) or tp in (list, tuple):
        return _coerce_sequence(value, tp, origin, args, where)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    return _coerce_scalar(value, tp, where)


def _from_mapping(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    prefix = f"{where}." if where else ""
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]}; valid keys{' of ' + where if where else ''}: "
            f"{', '.join(sorted(fields))}"
        )
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _coerce(data[name], hints[name], f"{prefix}{name}")
            _check_bounds(values[name], field, f"{prefix}{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {prefix}{name}")
    return cls(**values)


def from_dict(cls: type[T], data: Mapping[str, Any] | None) -> T:
    """Build dataclass ``cls`` from a nested mapping, coercing and checking every value.

    Example:
        >>> from dataclasses import dataclass, field
        >>> @dataclass
        ... class Recipe:
        ...     model: Component
        ...     lr: float = 0.1
        ...     steps: int = 100
        >>> r = from_dict(Recipe, {"model": {"name": "hardnet"}, "lr": "0.05"})
        >>> r.lr, r.model.name, r.steps
        (0.05, 'hardnet', 100)
        >>> from_dict(Recipe, {"model": {"name": "x"}, "stepz": 1})
        Traceback (most recent call last):
        ...
        lookalike.core.config.ConfigError: unknown key stepz; valid keys: lr, model, steps
    """
    if not dataclasses.is_dataclass(cls):
        raise ConfigError(f"expected a dataclass type, got {cls!r}")
    return _from_mapping(cls, dict(data or {}), "")


def to_dict(obj: Any) -> Any:
    """Plain YAML/JSON-ready structure (paths as strings, tuples as lists) of a config dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _parse_scalar(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``"a.b.c=value"`` overrides to a nested dict (values parsed as YAML scalars).

    Missing intermediate mappings are created; whether a key is valid is checked later, when the
    result is turned into the dataclass by :func:`from_dict`.

    Example:
        >>> apply_overrides({"optim": {"lr": 0.1}}, ["optim.lr=0.05", "model.kwargs.dim=64"])
        {'optim': {'lr': 0.05}, 'model': {'kwargs': {'dim': 64}}}
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r}: expected KEY.PATH=VALUE")
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {item!r}: {'.'.join(parts[: i + 1])} is a value, not a mapping"
                )
            node = child
        node[parts[-1]] = _parse_scalar(raw)
    return data


def _valid_keys(cls: type) -> list[str]:
    return sorted(f.name for f in dataclasses.fields(cls) if f.init)


def check_override_keys(cls: type, overrides: Iterable[str]) -> None:
    """Check that every ``key.path`` of ``overrides`` names a field of the dataclass tree ``cls``.

    The walk stops at the first field that is not a dataclass (a ``dict``, ``Any`` or a
    :class:`Component`'s ``kwargs``, checked by the component itself).

    Raises:
        ConfigError: the message names the full dotted key and lists the valid keys at that level.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Recipe:
        ...     steps: int = 1
        >>> check_override_keys(Recipe, ["no.such.key=1"])
        Traceback (most recent call last):
        ...
        lookalike.core.config.ConfigError: unknown key no.such.key; valid keys: steps (override 'no.such.key=1')
    """
    for item in overrides:
        key = item.partition("=")[0].strip()
        node: Any = cls
        parts = key.split(".")
        for i, part in enumerate(parts):
            if typing.get_origin(node) in (typing.Union, types.UnionType):
                inner = [a for a in typing.get_args(node) if dataclasses.is_dataclass(a)]
                node = inner[0] if inner else node
            if not (isinstance(node, type) and dataclasses.is_dataclass(node)):
                break
            fields = _valid_keys(node)
            if part not in fields:
                where = ".".join(parts[:i])
                raise ConfigError(
                    f"unknown key {key}; valid keys{' of ' + where if where else ''}: "
                    f"{', '.join(fields)} (override {item!r})"
                )
            node = typing.get_type_hints(node)[part]


def load_config(
    cls: type[T],
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
) -> T:
    """Load a YAML recipe into ``cls``, applying dotted overrides after the file.

    Args:
        cls: the recipe dataclass.
        path: YAML file, or ``None`` to start from the dataclass defaults (overrides merge into
            them).
        overrides: ``"key.path=value"`` strings.

    Raises:
        ConfigError: unreadable or empty YAML, unknown keys (the full dotted key of an override),
            wrong types, values out of range (the message lists valid keys).
    """
    import yaml

    data: dict[str, Any] = {}
    if path is None and dataclasses.is_dataclass(cls):
        try:  # overrides merge into the defaults (e.g. data.kwargs.x=1 keeps data.name)
            data = to_dict(cls())
        except TypeError:  # required fields: start empty
            data = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
        if loaded is None:
            raise ConfigError(f"{path}: empty config (no key set); start from a recipe in configs/")
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data = loaded
    overrides = list(overrides)
    if dataclasses.is_dataclass(cls):
        check_override_keys(cls, overrides)
    data = apply_overrides(data, overrides)
    return from_dict(cls, data)
