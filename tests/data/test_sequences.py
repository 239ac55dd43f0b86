"""Homography sequences: the three layouts on tiny synthetic folders, and the real data when present."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.core.errors import DataNotFoundError
from lookalike.data.images import write_image
from lookalike.data.sequences import HomographySequence, SequenceError, find_sequences


def _image(path, value=100):
    write_image(path, np.full((8, 9), value, np.uint8))


def _h(k):
    H = np.eye(3)
    H[0, 2] = k
    return H


def _hpatches(folder, n=3):
    folder.mkdir(parents=True)
    for k in range(1, n + 1):
        write_image(folder / f"{k}.ppm", np.full((8, 9, 3), 10 * k, np.uint8))
        if k > 1:
            np.savetxt(folder / f"H_1_{k}", _h(k))


def _oxford(folder, n=3, suffix=".pgm"):
    folder.mkdir(parents=True)
    for k in range(1, n + 1):
        _image(folder / f"img{k}{suffix}", 10 * k)
        if k > 1:
            np.savetxt(folder / f"H1to{k}p", _h(k))


def _evd(folder, names=("adam", "cat")):
    for sub in ("1", "2", "h"):
        (folder / sub).mkdir(parents=True)
    for name in names:
        _image(folder / "1" / f"{name}.png")
        _image(folder / "2" / f"{name}.png")
        np.savetxt(folder / "h" / f"{name}.txt", _h(5))


def test_all_three_layouts(tmp_path):
    _hpatches(tmp_path / "hpatches-sequences" / "v_a")
    _oxford(tmp_path / "oxford-affine" / "boat")
    _evd(tmp_path / "evd" / "EVD")
    seqs = find_sequences(tmp_path)
    assert [s.name for s in seqs] == [
        "evd/adam",
        "evd/cat",
        "hpatches-sequences/v_a",
        "oxford-affine/boat",
    ]
    hp = seqs[2]
    assert len(hp.images) == 3 and hp.images[0].name == "1.ppm"
    assert [k for _, k, _ in hp.pairs()] == [1, 2]
    assert hp.homographies[1][0, 2] == 3.0 and hp.homographies[1].dtype == np.float64
    assert hp.load(1).shape == (8, 9) and hp.load(1, gray=False).shape == (8, 9, 3)
    assert seqs[0].images[1].parent.name == "2"
    assert seqs[3].images[0].suffix == ".pgm"


def test_root_inside_a_data_set_keeps_its_name(tmp_path):
    _oxford(tmp_path / "oxford-affine" / "graf", suffix=".ppm")
    assert [s.name for s in find_sequences(tmp_path / "oxford-affine")] == ["oxford-affine/graf"]
    assert [s.name for s in find_sequences(tmp_path / "oxford-affine" / "graf")] == [
        "oxford-affine/graf"
    ]


def test_images_without_ground_truth_are_left_out(tmp_path):
    folder = tmp_path / "seq"
    _hpatches(folder, n=4)
    (folder / "H_1_3").unlink()
    (seq,) = find_sequences(tmp_path)
    assert [p.name for p in seq.images] == ["1.ppm", "2.ppm", "4.ppm"]
    assert seq.homographies[1][0, 2] == 4.0


def test_empty_and_missing_roots(tmp_path):
    assert find_sequences(tmp_path) == []
    with pytest.raises(DataNotFoundError):
        find_sequences(tmp_path / "missing")


def test_bad_homography_file(tmp_path):
    folder = tmp_path / "seq"
    _hpatches(folder, n=2)
    (folder / "H_1_2").write_text("1 2 3\n")
    with pytest.raises(SequenceError, match="9 numbers"):
        find_sequences(tmp_path)


def test_mismatched_lengths_and_bad_index():
    with pytest.raises(SequenceError):
        HomographySequence("x", (), ())
    with pytest.raises(SequenceError):
        HomographySequence("x", ("a.png", "b.png"), ())


def test_load_out_of_range(tmp_path):
    _hpatches(tmp_path / "s", n=2)
    (seq,) = find_sequences(tmp_path)
    with pytest.raises(SequenceError):
        seq.load(5)


def test_real_data_layouts(data_root):
    seqs = find_sequences(data_root)
    names = [s.name for s in seqs]
    assert "oxford-affine/graf" in names and "hpatches-sequences/v_graffiti" in names
    assert "evd/adam" in names
    by_name = {s.name: s for s in seqs}
    assert len(by_name["oxford-affine/boat"].images) == 6
    assert len(by_name["evd/adam"].homographies) == 1
    graf = by_name["oxford-affine/graf"].homographies[0]
    assert graf[0, 0] == pytest.approx(8.7976964e-01)
    assert sum(len(s.homographies) for s in seqs if s.name.startswith("oxford-affine/")) == 40
