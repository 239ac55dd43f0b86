from __future__ import annotations

import numpy as np
import pytest
import torch

from lookalike.core.check import (
    check_dtype,
    check_finite,
    check_int,
    check_not_empty,
    check_option,
    check_positive,
    check_range,
    check_shape,
)
from lookalike.core.errors import (
    DTypeError,
    EmptyInputError,
    OptionError,
    ShapeError,
    ValueRangeError,
)


def test_shape_ok_binds_names():
    dims = check_shape(torch.zeros(3, 1, 32, 32), ["B", "1", "32", "32"], "patches")
    assert dims == {"B": 3}


def test_shape_wrong_ndim_message():
    with pytest.raises(ShapeError) as info:
        check_shape(torch.zeros(1, 32, 32), ["B", "1", "32", "32"], "patches")
    assert str(info.value) == "patches: expected shape (B, 1, 32, 32), got (1, 32, 32)"
    assert isinstance(info.value, ValueError)


def test_shape_wrong_size_message():
    with pytest.raises(
        ShapeError, match=r"^patches: expected shape \(B, 1, 32, 32\), got \(2, 3, 32, 32\)$"
    ):
        check_shape(torch.zeros(2, 3, 32, 32), ["B", "1", "32", "32"], "patches")


def test_shape_names_agree_within_call():
    check_shape(torch.zeros(4, 4), ["N", "N"], "square")
    with pytest.raises(ShapeError, match=r"expected shape \(N=4, N=4\), got \(4, 5\)"):
        check_shape(torch.zeros(4, 5), ["N", "N"], "square")


def test_shape_names_agree_across_calls():
    dims: dict[str, int] = {}
    check_shape(torch.zeros(5, 128), ["N", "D"], "anchors", dims)
    check_shape(torch.zeros(7, 128), ["M", "D"], "positives", dims)
    assert dims == {"N": 5, "D": 128, "M": 7}
    with pytest.raises(ShapeError, match=r"^labels: expected shape \(N=5\), got \(6\)$"):
        check_shape(torch.zeros(6), ["N"], "labels", dims)


def test_shape_wildcards_and_ellipsis():
    check_shape(torch.zeros(2, 3, 9), ["...", "*", "9"], "x")
    check_shape(torch.zeros(9), ["...", "9"], "x")
    with pytest.raises(ShapeError, match=r"expected shape \(\.\.\., \*, 9\), got \(9\)"):
        check_shape(torch.zeros(9), ["...", "*", "9"], "x")


def test_shape_not_a_tensor():
    with pytest.raises(ShapeError, match=r"x: expected a torch.Tensor, got ndarray"):
        check_shape(np.zeros(3), ["N"], "x")


def test_dtype_message():
    with pytest.raises(
        DTypeError,
        match=r"^x: expected dtype in \[torch.float32, torch.float64\], got torch.int32$",
    ):
        check_dtype(torch.zeros(2, dtype=torch.int32), [torch.float32, torch.float64], "x")
    check_dtype(torch.zeros(2), [torch.float32], "x")


def test_finite_message_counts():
    x = torch.tensor([0.0, float("nan"), float("nan"), float("-inf")])
    with pytest.raises(
        ValueRangeError, match=r"^d: expected finite values, got 2 NaN and 1 infinite of 4$"
    ):
        check_finite(x, "d")
    check_finite(torch.arange(3), "ints are always finite")


def test_range_message_and_nan():
    with pytest.raises(
        ValueRangeError, match=r"^p: expected values in \[0.0, 1.0\], got min -0.5, max 0.5$"
    ):
        check_range(torch.tensor([-0.5, 0.5]), 0.0, 1.0, "p")
    with pytest.raises(ValueRangeError, match=r"got min nan"):
        check_range(torch.tensor([float("nan"), 0.5]), 0.0, 1.0, "p")
    with pytest.raises(ValueRangeError, match=r"\[-inf, 2.0\]"):
        check_range(torch.tensor([3.0]), None, 2.0, "p")
    check_range(torch.empty(0), 0.0, 1.0, "empty is in range")


def test_not_empty_messages():
    with pytest.raises(
        EmptyInputError, match=r"^k: expected at least one element, got none \(shape \(0, 2\)\)$"
    ):
        check_not_empty(torch.zeros(0, 2), "k")
    with pytest.raises(EmptyInputError, match=r"shape \(0,\)"):
        check_not_empty(np.zeros(0), "k")
    with pytest.raises(EmptyInputError, match=r"len 0"):
        check_not_empty([], "k")
    check_not_empty([1], "k")


def test_option_and_positive_messages():
    with pytest.raises(
        OptionError, match=r"^metric: expected one of \['l2', 'cosine'\], got 'l1'$"
    ):
        check_option("l1", ["l2", "cosine"], "metric")
    with pytest.raises(OptionError, match=r"^margin: expected a number > 0, got -1$"):
        check_positive(-1, "margin")
    with pytest.raises(OptionError, match=r">= 0, got True"):
        check_positive(True, "k", strict=False)
    check_positive(0, "k", strict=False)


def test_message_is_built_only_on_failure(monkeypatch):
    import lookalike.core.check as mod

    def boom(*args, **kwargs):
        raise AssertionError("message formatted on the happy path")

    monkeypatch.setattr(mod, "_fail_shape", boom)
    monkeypatch.setattr(mod, "_fmt", boom)
    check_shape(torch.zeros(2, 3), ["B", "3"], "x")


@pytest.mark.parametrize(
    ("value", "low", "want"), [(3, 1, 3), (0, 0, 0), (np.int64(5), 1, 5), (np.uint8(2), 2, 2)]
)
def test_check_int_returns_python_ints(value, low, want):
    got = check_int(value, "k", low)
    assert got == want and type(got) is int


@pytest.mark.parametrize("value", [True, 2.0, "3", 0, -1, np.float32(2), None])
def test_check_int_refuses_non_integers_and_values_below_low(value):
    with pytest.raises(OptionError, match=r"^k: expected an integer >= 1, got "):
        check_int(value, "k")


def test_check_int_lets_none_through_only_when_allowed():
    assert check_int(None, "budget", allow_none=True) is None
    with pytest.raises(OptionError, match=r"expected an integer >= 0 or None, got -1"):
        check_int(-1, "budget", 0, allow_none=True)
