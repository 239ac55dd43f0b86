"""Matchers against two oracles: brute-force numpy loops and kornia's match_* on the same descriptors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lookalike.core.errors import OptionError, ShapeError, ValueRangeError
from lookalike.matching.matchers import MATCHERS, match_descriptors


def _pairs(t) -> list[tuple[int, int]]:
    return sorted(map(tuple, np.asarray(t).tolist()))


def _data(n0, n1, d=16, *, unit=False, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n0, d, generator=g, dtype=dtype)
    b = torch.randn(n1, d, generator=g, dtype=dtype)
    m = min(n0, n1) // 2  # half of them have a close partner
    b[:m] = a[:m] + 0.2 * torch.randn(m, d, generator=g, dtype=dtype)
    if unit:
        a, b = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    return a, b


def _brute_force(a, b, method, th, metric="l2"):
    """Textbook definitions with explicit loops over a float64 distance matrix."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if metric == "cosine":
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        D = 1.0 - a @ b.T
    else:
        D = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    out = []
    for i in range(D.shape[0]):
        order = np.argsort(D[i], kind="stable")
        j = order[0]
        if method in ("mnn", "smnn") and np.argmin(D[:, j]) != i:
            continue
        uses_ratio = method in ("snn", "smnn")
        if uses_ratio and (len(order) < 2 or not D[i, order[0]] / D[i, order[1]] <= th):
            continue
        if method == "smnn":
            col = np.sort(D[:, j])
            if len(col) < 2 or not col[0] / col[1] <= th:
                continue
        out.append((i, int(j)))
    return out


@pytest.mark.parametrize("method", MATCHERS)
@pytest.mark.parametrize("shape", [(40, 55), (55, 40), (3, 2)])
@pytest.mark.parametrize("unit", [False, True], ids=["raw", "unit"])
def test_brute_force_oracle(method, shape, unit):
    a, b = _data(*shape, unit=unit)
    th = {"snn": 0.8, "smnn": 0.95}.get(method)
    ours = match_descriptors(a, b, method, block_size=7)
    assert _pairs(ours.indices) == _brute_force(a, b, method, th)
    # distances are the true L2 distances of the pairs
    i, j = ours.indices[:, 0], ours.indices[:, 1]
    torch.testing.assert_close(ours.distances, (a[i] - b[j]).norm(dim=1))


@pytest.mark.parametrize("method", ["mnn", "smnn"])
def test_cosine_oracle(method):
    a, b = _data(30, 33)
    ours = match_descriptors(a, b, method, metric="cosine")
    assert _pairs(ours.indices) == _brute_force(a, b, method, 0.95, metric="cosine")


@pytest.mark.parametrize("method", MATCHERS)
@pytest.mark.parametrize("unit", [False, True], ids=["raw", "unit"])
@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_kornia_oracle(method, unit, backend):
    import kornia.feature as KF

    a, b = _data(300, 257, d=32, unit=unit, seed=1)
    kornia_fn = {
        "nn": KF.match_nn,
        "mnn": KF.match_mnn,
        "snn": lambda x, y: KF.match_snn(x, y, 0.8),
        "smnn": lambda x, y: KF.match_smnn(x, y, 0.95),
    }[method]
    kd, ki = kornia_fn(a, b)
    ours = match_descriptors(a, b, method, backend=backend, block_size=64)
    assert _pairs(ours.indices) == _pairs(ki)
    if method in ("snn", "smnn"):  # kornia returns the ratios
        order = np.lexsort(ki.numpy().T[::-1])
        torch.testing.assert_close(ours.ratios, kd.view(-1)[order], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("block_size", [1, 5, 1000])
def test_block_size_does_not_change_result(block_size):
    a, b = _data(100, 80, d=8, unit=True, seed=3, dtype=torch.float32)
    ref = match_descriptors(a, b, "smnn", block_size=100)
    got = match_descriptors(a, b, "smnn", block_size=block_size)
    assert torch.equal(ref.indices, got.indices)


def test_hamming_matches_opencv_bfmatcher():
    import cv2

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (60, 32), dtype=np.uint8)
    b = a.copy()
    flip = rng.integers(0, 256, b.shape, dtype=np.uint8) & rng.integers(
        0, 256, b.shape, dtype=np.uint8
    )
    b = np.bitwise_xor(b, flip & 0x11)[::-1].copy()
    ours = match_descriptors(a, b, "mnn", metric="hamming")
    cv = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(a, b)
    assert _pairs(ours.indices) == sorted((m.queryIdx, m.trainIdx) for m in cv)
    expected = {(m.queryIdx, m.trainIdx): m.distance for m in cv}
    for (i, j), d in zip(ours.indices.tolist(), ours.distances.tolist()):
        assert d == expected[(i, j)]


def test_float32_identical_to_opencv_crosscheck():
    import cv2

    a, b = _data(200, 180, d=64, unit=True, seed=5, dtype=torch.float32)
    ours = match_descriptors(a, b, "mnn")
    cv = cv2.BFMatcher(cv2.NORM_L2, crossCheck=True).match(a.numpy(), b.numpy())
    assert _pairs(ours.indices) == sorted((m.queryIdx, m.trainIdx) for m in cv)


def test_numpy_input_and_half_precision():
    a, b = _data(20, 20, d=8, unit=True, dtype=torch.float32)
    ref = match_descriptors(a, b, "mnn")
    assert torch.equal(match_descriptors(a.numpy(), b.numpy(), "mnn").indices, ref.indices)
    assert len(match_descriptors(a.half(), b.half(), "mnn")) > 0


@pytest.mark.parametrize("method", MATCHERS)
def test_empty_and_too_small(method):
    a, b = _data(5, 5)
    assert len(match_descriptors(a[:0], b, method)) == 0
    assert len(match_descriptors(a, b[:0], method)) == 0
    if method in ("snn", "smnn"):
        assert len(match_descriptors(a, b[:1], method)) == 0
    got = match_descriptors(a[:0], b[:0], method)
    assert got.indices.shape == (0, 2) and got.indices.dtype == torch.long


@pytest.mark.parametrize("unit", [False, True], ids=["raw", "unit"])
def test_duplicate_descriptors_give_one_match_per_column(unit):
    a, b = _data(20, 20, d=8, unit=unit)
    a = torch.cat([a, a[:5]])  # exact duplicates: tied distances
    got = match_descriptors(a, b, "mnn", block_size=4)
    cols = got.indices[:, 1].tolist()
    assert len(cols) == len(set(cols)) and len(got) >= 5


def test_zero_distance_ties_fail_the_ratio_test():
    a = torch.zeros(1, 4)
    b = torch.zeros(2, 4)
    assert len(match_descriptors(a, b, "snn")) == 0  # 0 / 0 is NaN
    assert len(match_descriptors(a, b, "nn")) == 1


def test_bad_input():
    a, b = _data(4, 4)
    with pytest.raises(ShapeError):
        match_descriptors(a, b[:, :3])
    with pytest.raises(ShapeError):
        match_descriptors(a[0], b)
    with pytest.raises(OptionError):
        match_descriptors(a, b, "median")
    with pytest.raises(OptionError):
        match_descriptors(a, b, metric="l1")
    with pytest.raises(OptionError):
        match_descriptors(a, b, "snn", ratio_threshold=0)
    with pytest.raises(OptionError):
        match_descriptors(a, b, metric="hamming")
    with pytest.raises(OptionError):
        match_descriptors(a, b, block_size=0)
    bad = a.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueRangeError):
        match_descriptors(bad, b)


@pytest.mark.slow
def test_twenty_thousand_squared_fits_in_memory():
    import resource

    a, b = _data(20_000, 20_000, d=128, unit=True, dtype=torch.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    got = match_descriptors(a, b, "smnn", backend="torch")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert len(got) > 5_000
    assert grown_mb < 800  # the full matrix alone would be 1.6 GB


def _fginn_oracle(x, y, xy1, radius, k=10):
    """Per row: nearest index and its ratio to the first neighbour (of the k nearest) farther than
    ``radius`` from the nearest one's position (else the k-th)."""
    d = np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))
    nn, ratio = [], []
    for row in d:
        order = np.argsort(row, kind="stable")[: min(k, len(row))]
        far = [j for j in order[1:] if np.linalg.norm(xy1[j] - xy1[order[0]]) > radius]
        second = far[0] if far else order[-1]
        nn.append(order[0])
        ratio.append(row[order[0]] / row[second])
    return np.array(nn), np.array(ratio)


def test_fginn_ratio_equals_a_brute_force_loop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 16)).astype(np.float64)
    y = np.concatenate([x[:40] + 0.05 * rng.normal(size=(40, 16)), rng.normal(size=(30, 16))])
    y = np.concatenate([y, y[:20] + 1e-3])  # near-duplicate descriptors ...
    xy0 = rng.uniform(0, 100, (60, 2))
    xy1 = rng.uniform(0, 100, (90, 2))
    xy1[70:] = xy1[:20] + 2.0  # ... 2 px from their originals: one place seen twice
    got = match_descriptors(x, y, "smnn", ratio_threshold=0.8, positions=(xy0, xy1))
    nn01, r01 = _fginn_oracle(x, y, xy1, 10.0)
    nn10, r10 = _fginn_oracle(y, x, xy0, 10.0)
    keep = [(i, j) for i, j in enumerate(nn01) if nn10[j] == i and r01[i] <= 0.8 and r10[j] <= 0.8]
    assert sorted(map(tuple, got.indices.tolist())) == keep
    np.testing.assert_allclose(got.ratios.numpy(), np.maximum(r01, r10[nn01])[[i for i, _ in keep]])
    # the plain second neighbour is the duplicate: Lowe's test drops those places
    plain = match_descriptors(x, y, "smnn", ratio_threshold=0.8)
    assert len(keep) >= 35 and len(plain) < len(keep) - 10
    with pytest.raises(OptionError, match="positions"):
        match_descriptors(x, y, "smnn", positions=(xy0,))
    with pytest.raises(ShapeError):
        match_descriptors(x, y, "smnn", positions=(xy0, xy1[:5]))
