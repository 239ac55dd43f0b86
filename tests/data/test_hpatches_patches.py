"""HPatches patch files: tiny fixtures in the release format, and the real ref.png of the shared data."""

from __future__ import annotations

import numpy as np
import pytest

import lookalike
from data.formats import write_hpatches_sequence
from lookalike.core.errors import DataNotFoundError, LookalikeError, ShapeError
from lookalike.data.hpatches_patches import (
    HPATCHES_TYPES,
    PatchSequence,
    read_hpatches_sequence,
    read_patch_strip,
    write_patch_strip,
)


def _sequence(rng, n=5):
    return {key: rng.integers(0, 256, (n, 65, 65), dtype=np.uint8) for key in HPATCHES_TYPES}


def test_reads_a_full_sequence(tmp_path):
    files = _sequence(np.random.default_rng(0))
    write_hpatches_sequence(tmp_path / "v_toy", files)
    seq = read_hpatches_sequence(tmp_path / "v_toy")
    assert seq.name == "v_toy" and len(seq) == 5 and seq.patch_size == 65
    assert seq.difficulties == ("e", "h", "t") and seq.target_images == (1, 2, 3, 4, 5)
    np.testing.assert_array_equal(seq.ref, files["ref"])
    for key in HPATCHES_TYPES[1:]:
        np.testing.assert_array_equal(seq.targets[key], files[key])
    np.testing.assert_array_equal(seq.patches(0, "h"), files["ref"])
    np.testing.assert_array_equal(seq.patches(3, "h"), files["h3"])
    np.testing.assert_array_equal(seq.point_ids, np.arange(5))


def test_partial_sequence(tmp_path):
    files = _sequence(np.random.default_rng(1))
    write_hpatches_sequence(tmp_path / "i_toy", {k: files[k] for k in ("ref", "e1", "h1")})
    with pytest.raises(DataNotFoundError, match="require_all"):
        read_hpatches_sequence(tmp_path / "i_toy")
    seq = read_hpatches_sequence(tmp_path / "i_toy", require_all=False)
    assert sorted(seq.targets) == ["e1", "h1"] and seq.difficulties == ("e", "h")


def test_release_folder(tmp_path):
    root = tmp_path / "hpatches-release"
    rng = np.random.default_rng(2)
    for name in ("i_a", "v_b", "v_c"):
        write_hpatches_sequence(root / name, _sequence(rng, n=3))
    data = lookalike.create("dataset", "hpatches_patches", root=tmp_path)
    assert len(data) == 3 and [s.name for s in data] == ["i_a", "v_b", "v_c"]
    views = lookalike.create("dataset", "hpatches_patches", path=root, category="v")
    assert views.names == ["v_b", "v_c"]
    assert (
        lookalike.create("dataset", "hpatches_patches", path=root, sequences=["v_c"])[0].name
        == "v_c"
    )
    with pytest.raises(DataNotFoundError, match="not found"):
        lookalike.create("dataset", "hpatches_patches", path=root, sequences=["v_zzz"])


def test_strip_errors(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "wide.png"), np.zeros((130, 64), np.uint8))
    with pytest.raises(ShapeError):
        read_patch_strip(tmp_path / "wide.png")
    cv2.imwrite(str(tmp_path / "short.png"), np.zeros((100, 65), np.uint8))
    with pytest.raises(ShapeError):
        read_patch_strip(tmp_path / "short.png")
    with pytest.raises(DataNotFoundError):
        read_patch_strip(tmp_path / "missing.png")
    write_hpatches_sequence(
        tmp_path / "bad", {"ref": np.zeros((3, 65, 65)), "e1": np.zeros((2, 65, 65))}
    )
    with pytest.raises(ShapeError):
        read_hpatches_sequence(tmp_path / "bad", require_all=False)


def test_patch_sequence_checks():
    with pytest.raises(ShapeError):
        PatchSequence("x", np.zeros((3, 65, 64), np.uint8))
    with pytest.raises(LookalikeError, match="target key"):
        PatchSequence("x", np.zeros((3, 8, 8), np.uint8), {"x1": np.zeros((3, 8, 8), np.uint8)})


def test_write_strip_round_trip(tmp_path):
    patches = np.random.default_rng(3).integers(0, 256, (4, 65, 65), dtype=np.uint8)
    write_patch_strip(tmp_path / "p.png", patches)
    np.testing.assert_array_equal(read_patch_strip(tmp_path / "p.png"), patches)


@pytest.mark.data
def test_real_ref_file(data_root):
    import cv2

    path = data_root / "hpatches-patches-ref" / "ref.png"
    seq = read_hpatches_sequence(path.parent, require_all=False)
    assert len(seq) == 1123 and seq.ref.shape == (1123, 65, 65) and seq.ref.dtype == np.uint8
    assert seq.targets == {}
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(seq.ref[5], image[5 * 65 : 6 * 65])
    assert seq.ref.reshape(1123, -1).std(axis=1).mean() > 5  # real image content, not blank
