"""HPatches-style patches from homography sequences: jitter magnitudes, correspondence, real sequences."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lookalike
from data.formats import write_homography_sequence
from lookalike.core.errors import DataNotFoundError, OptionError
from lookalike.data.bundled import bundled_photos
from lookalike.data.sequence_patches import (
    HPATCHES_JITTER,
    Jitter,
    extract_sequence_patches,
    jitter_lafs,
    random_jitter,
)
from lookalike.data.sequences import find_sequences


def _ellipse_overlap(T: np.ndarray) -> float:
    """Overlap (IoU) of the unit disc with its image under ``[T | t]``, on a fine grid."""
    g = np.linspace(-2.2, 2.2, 221)
    X, Y = np.meshgrid(g, g)
    P = np.stack([X.ravel(), Y.ravel()])
    inside = (P**2).sum(0) <= 1
    q = np.linalg.solve(T[:, :2], P - T[:, 2:3])
    moved = (q**2).sum(0) <= 1
    return (inside & moved).sum() / (inside | moved).sum()


def _ncc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(float)
    b = b.reshape(len(b), -1).astype(float)
    a -= a.mean(1, keepdims=True)
    b -= b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1) + 1e-9)


def test_jitter_overlap_matches_hpatches():
    # the HPatches release documents median ellipse overlaps of ~0.85 (easy) and ~0.72 (hard)
    rng = np.random.default_rng(0)
    medians = {
        d: np.median([_ellipse_overlap(T) for T in random_jitter(rng, 300, j)])
        for d, j in HPATCHES_JITTER.items()
    }
    assert 0.80 <= medians["e"] <= 0.88
    assert 0.67 <= medians["h"] <= 0.76
    assert medians["t"] < medians["h"] - 0.05


def test_jitter_ranges_and_application():
    rng = np.random.default_rng(1)
    T = random_jitter(rng, 2000, HPATCHES_JITTER["h"])
    angle = np.arctan2(T[:, 1, 0], T[:, 0, 0])  # T = R diag(sx, sy): first column is sx (cos, sin)
    assert np.abs(angle).max() <= math.radians(20) + 1e-6
    assert np.abs(T[:, :, 2]).max() <= 0.30
    identity = random_jitter(rng, 3, Jitter(0.0, 0.0, 0.0, 0.0))
    lafs = np.array([[[2.0, 1.0, 10.0], [0.0, 3.0, 5.0]]] * 3)
    np.testing.assert_allclose(jitter_lafs(lafs, identity), lafs)
    shift = np.array([[[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]]] * 3)
    np.testing.assert_allclose(jitter_lafs(lafs, shift)[:, :, 2], [[11.0, 5.0]] * 3)  # c + A t


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("seqs")
    gray = (bundled_photos(["camera"])[0].gray_array * 255).astype(np.uint8)
    c, s = math.cos(math.radians(15)), math.sin(math.radians(15))
    rot = np.array([[c, -s, 256 - c * 256 + s * 256], [s, c, 256 - s * 256 - c * 256], [0, 0, 1.0]])
    persp = np.array([[0.9, 0.05, 20.0], [-0.03, 0.95, 15.0], [1e-4, 5e-5, 1.0]])
    write_homography_sequence(root / "v_toy", gray, [np.eye(3), rot, persp])
    return root


def test_extracts_corresponding_patches(toy_root):
    seq = find_sequences(toy_root)[0]
    patches = extract_sequence_patches(seq, budget=300, seed=0)
    n = len(patches)
    assert n > 50 and patches.ref.shape == (n, 65, 65) and patches.ref.dtype == np.uint8
    assert sorted(patches.targets) == sorted(f"{d}{k}" for d in "eht" for k in (1, 2, 3))
    assert patches.point_ids.shape == (n,)
    # the identity target without jitter would equal ref; easy jitter keeps it close, tough less so
    easy = {k: np.median(_ncc(patches.ref, patches.targets[f"e{k}"])) for k in (1, 2, 3)}
    tough = np.median(_ncc(patches.ref, patches.targets["t2"]))
    shuffled = np.median(_ncc(patches.ref, np.roll(patches.targets["e2"], 1, axis=0)))
    assert min(easy.values()) > 0.75
    assert tough < easy[2]
    assert shuffled < 0.5


def test_no_jitter_identity_target_equals_ref(toy_root, monkeypatch):
    import lookalike.data.sequence_patches as sp

    monkeypatch.setitem(sp.HPATCHES_JITTER, "e", Jitter(0.0, 0.0, 0.0, 0.0))
    seq = find_sequences(toy_root)[0]
    patches = extract_sequence_patches(seq, budget=200, difficulties="e")
    diff = np.abs(patches.ref.astype(int) - patches.targets["e1"].astype(int))
    assert diff.max() <= 1  # same image, same frames: only rounding


def test_deterministic_and_options(toy_root):
    seq = find_sequences(toy_root)[0]
    a = extract_sequence_patches(seq, budget=100, seed=3, difficulties="h")
    b = extract_sequence_patches(seq, budget=100, seed=3, difficulties="h")
    c = extract_sequence_patches(seq, budget=100, seed=4, difficulties="h")
    np.testing.assert_array_equal(a.targets["h2"], b.targets["h2"])
    assert not np.array_equal(a.targets["h2"], c.targets["h2"]) or len(a) != len(c)
    assert sorted(a.targets) == ["h1", "h2", "h3"]
    small = extract_sequence_patches(seq, budget=100, patch_size=32, difficulties="e")
    assert small.ref.shape[1:] == (32, 32)
    with pytest.raises(OptionError):
        extract_sequence_patches(seq, difficulties="x")


def test_registered_dataset(toy_root, tmp_path):
    sets = lookalike.create("dataset", "sequence_patches", root=toy_root, budget=150)
    assert len(sets) == 1 and sets[0].name.endswith("v_toy")
    with pytest.raises(DataNotFoundError):
        lookalike.create("dataset", "sequence_patches", root=tmp_path)


@pytest.mark.data
def test_real_sequence(data_root):
    seq = next(s for s in find_sequences(data_root) if s.name.endswith("v_graffiti"))
    patches = extract_sequence_patches(seq, budget=300, difficulties="e")
    assert len(patches) > 50 and patches.target_images == (1, 2, 3, 4, 5)
    assert np.median(_ncc(patches.ref, patches.targets["e1"])) > 0.6
