"""Input checks used as the first lines of every public function and ``forward``.

Every check raises a :class:`~lookalike.core.errors.LookalikeError` subclass (a ``ValueError``) that names
the argument, the expectation and what was received. Messages are only formatted on failure, so the
checks cost a few attribute reads on the happy path.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from lookalike.core.errors import (
    DTypeError,
    EmptyInputError,
    OptionError,
    ShapeError,
    ValueRangeError,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "check_dtype",
    "check_finite",
    "check_int",
    "check_not_empty",
    "check_option",
    "check_positive",
    "check_range",
    "check_shape",
    "check_tensor",
]


def _fmt(spec: Sequence[str]) -> str:
    return "(" + ", ".join(spec) + ")"


def check_tensor(x: Any, name: str = "input") -> None:
    """Raise :class:`ShapeError` unless ``x`` is a ``torch.Tensor``."""
    import torch

    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")


def check_shape(
    x: torch.Tensor,
    spec: Sequence[str | int],
    name: str = "input",
    dims: MutableMapping[str, int] | None = None,
) -> MutableMapping[str, int]:
    """Check the shape of ``x`` against a symbolic spec.

    Each entry of ``spec`` is one of:

    - an integer or digit string (``"32"``): the dimension must have exactly that size;
    - a name (``"B"``, ``"D"``): any size, but the same name must have the same size everywhere it
      appears, in this call and in earlier calls that shared the ``dims`` mapping;
    - ``"*"``: any size;
    - ``"..."``: (first entry only) any number of leading dimensions.

    Args:
        x: tensor to check.
        spec: expected shape, e.g. ``["B", "1", "32", "32"]``.
        name: argument name used in the error message.
        dims: mapping of symbolic names to sizes, updated in place; pass the same mapping to several
            calls to make their names agree.

    Returns:
        The ``dims`` mapping (a new dict if none was given) with the sizes bound by this call.

    Raises:
        ShapeError: wrong type, number of dimensions or size.

    Example:
        >>> import torch
        >>> from lookalike.core.check import check_shape
        >>> dims = check_shape(torch.zeros(4, 1, 32, 32), ["B", "1", "32", "32"], "patches")
        >>> dims["B"]
        4
        >>> check_shape(torch.zeros(5, 128), ["B", "128"], "desc", dims)
        Traceback (most recent call last):
        ...
        lookalike.core.errors.ShapeError: desc: expected shape (B=4, 128), got (5, 128)
    """
    check_tensor(x, name)
    if dims is None:
        dims = {}
    shape = tuple(x.shape)
    entries = [str(s) for s in spec]
    variadic = bool(entries) and entries[0] == "..."
    fixed = entries[1:] if variadic else entries
    if (len(shape) < len(fixed)) if variadic else (len(shape) != len(fixed)):
        _fail_shape(name, entries, shape, dims)
    tail = shape[len(shape) - len(fixed) :]
    bound: dict[str, int] = {}
    for want, got in zip(fixed, tail):
        if want == "*":
            continue
        if want.isdigit():
            if int(want) != got:
                _fail_shape(name, entries, shape, dims)
            continue
        expected = dims.get(want, bound.get(want))
        if expected is None:
            bound[want] = got
        elif expected != got:
            _fail_shape(name, entries, shape, {**dims, **bound})
    dims.update(bound)
    return dims


def _fail_shape(
    name: str, entries: list[str], shape: tuple[int, ...], dims: MutableMapping[str, int]
) -> None:
    shown = [f"{e}={dims[e]}" if e in dims else e for e in entries]
    raise ShapeError(f"{name}: expected shape {_fmt(shown)}, got {_fmt([str(s) for s in shape])}")


def check_dtype(x: torch.Tensor, allowed: Iterable[torch.dtype], name: str = "input") -> None:
    """Raise :class:`DTypeError` unless ``x.dtype`` is one of ``allowed``.

    Example:
        >>> import torch
        >>> check_dtype(torch.zeros(2, dtype=torch.int64), [torch.float32], "x")
        Traceback (most recent call last):
        ...
        lookalike.core.errors.DTypeError: x: expected dtype in [torch.float32], got torch.int64
    """
    check_tensor(x, name)
    allowed = tuple(allowed)
    if x.dtype not in allowed:
        raise DTypeError(f"{name}: expected dtype in {list(allowed)}, got {x.dtype}")


def check_finite(x: torch.Tensor, name: str = "input") -> None:
    """Raise :class:`ValueRangeError` if ``x`` holds NaN or infinite values.

    Example:
        >>> import torch
        >>> check_finite(torch.tensor([1.0, float("nan"), float("inf")]), "scores")
        Traceback (most recent call last):
        ...
        lookalike.core.errors.ValueRangeError: scores: expected finite values, got 1 NaN and 1 infinite of 3
    """
    import torch

    check_tensor(x, name)
    if not x.is_floating_point() and not x.is_complex():
        return
    if bool(torch.isfinite(x).all()):
        return
    n_nan = int(torch.isnan(x).sum())
    n_inf = int(torch.isinf(x).sum())
    raise ValueRangeError(
        f"{name}: expected finite values, got {n_nan} NaN and {n_inf} infinite of {x.numel()}"
    )


def check_range(
    x: torch.Tensor,
    low: float | None = None,
    high: float | None = None,
    name: str = "input",
) -> None:
    """Raise :class:`ValueRangeError` unless every value lies in ``[low, high]`` (NaN fails).

    Example:
        >>> import torch
        >>> check_range(torch.tensor([0.0, 1.5]), 0.0, 1.0, "patches")
        Traceback (most recent call last):
        ...
        lookalike.core.errors.ValueRangeError: patches: expected values in [0.0, 1.0], got min 0.0, max 1.5
    """
    check_tensor(x, name)
    if x.numel() == 0:
        return
    lo_v = float(x.min())
    hi_v = float(x.max())
    bad = lo_v != lo_v or hi_v != hi_v  # NaN
    bad = bad or (low is not None and lo_v < low) or (high is not None and hi_v > high)
    if bad:
        lo_s = "-inf" if low is None else repr(float(low))
        hi_s = "inf" if high is None else repr(float(high))
        raise ValueRangeError(
            f"{name}: expected values in [{lo_s}, {hi_s}], got min {lo_v!r}, max {hi_v!r}"
        )


def check_not_empty(x: Any, name: str = "input") -> None:
    """Raise :class:`EmptyInputError` if ``x`` (tensor, array or sized container) has no element.

    Example:
        >>> check_not_empty([], "keypoints")
        Traceback (most recent call last):
        ...
        lookalike.core.errors.EmptyInputError: keypoints: expected at least one element, got none (len 0)
    """
    numel = getattr(x, "numel", None)
    if callable(numel):
        count = int(numel())
        shape = tuple(x.shape)
        if count == 0:
            raise EmptyInputError(
                f"{name}: expected at least one element, got none (shape {shape})"
            )
        return
    size = getattr(x, "size", None)
    if isinstance(size, int) and hasattr(x, "shape"):  # numpy array
        if size == 0:
            raise EmptyInputError(
                f"{name}: expected at least one element, got none (shape {tuple(x.shape)})"
            )
        return
    if len(x) == 0:
        raise EmptyInputError(f"{name}: expected at least one element, got none (len 0)")


def check_option(value: Any, allowed: Iterable[Any], name: str = "option") -> None:
    """Raise :class:`OptionError` unless ``value`` is one of ``allowed``.

    Example:
        >>> check_option("median", ["l2", "cosine"], "metric")
        Traceback (most recent call last):
        ...
        lookalike.core.errors.OptionError: metric: expected one of ['l2', 'cosine'], got 'median'
    """
    allowed = list(allowed)
    if value not in allowed:
        raise OptionError(f"{name}: expected one of {allowed}, got {value!r}")


def check_positive(value: float, name: str = "option", *, strict: bool = True) -> None:
    """Raise :class:`OptionError` unless ``value`` is a number ``> 0`` (``>= 0`` if not strict).

    Example:
        >>> check_positive(0, "margin")
        Traceback (most recent call last):
        ...
        lookalike.core.errors.OptionError: margin: expected a number > 0, got 0
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value > 0 if strict else value >= 0)
    if not ok:
        raise OptionError(f"{name}: expected a number {'>' if strict else '>='} 0, got {value!r}")


def check_int(value: Any, name: str = "option", low: int = 1, *, allow_none: bool = False) -> Any:
    """Return ``value`` as an ``int`` if it is an integer ``>= low`` (NumPy integers too), else raise.

    ``bool`` is refused (``True`` is not a count). With ``allow_none``, ``None`` passes through.

    Raises:
        OptionError: not an integer, or below ``low``.

    Example:
        >>> check_int(3, "k"), check_int(None, "budget", allow_none=True)
        (3, None)
        >>> check_int(2.0, "k")
        Traceback (most recent call last):
        ...
        lookalike.core.errors.OptionError: k: expected an integer >= 1, got 2.0
    """
    if value is None and allow_none:
        return None
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        none = " or None" if allow_none else ""
        raise OptionError(f"{name}: expected an integer >= {low}{none}, got {value!r}")
    return int(value)
