"""Re-ID readers on tiny fixtures of every layout, and on the shared VIPeR data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lookalike
from lookalike.core.errors import DataNotFoundError, OptionError
from lookalike.data.reid import ReidTrainSet, load_crops, read_benchmark, viper_split
from reid.formats import write_market_style, write_msmt17, write_reid_folder, write_viper


@pytest.mark.parametrize("duke", [False, True])
def test_market_style_layout(tmp_path, duke):
    name, folder = ("duke", "DukeMTMC-reID") if duke else ("market1501", "Market-1501-v15.09.15")
    write_market_style(tmp_path / folder, duke=duke)
    bench = read_benchmark(name, tmp_path)
    assert len(bench.train) == 8 and set(bench.train.ids) == {1, 2, 3, 4}
    assert bench.query.ids.tolist() == [5, 6, 7, 8] and set(bench.query.cams) == {1}
    # junk -1 dropped, distractor 0000 kept in the gallery
    assert -1 not in bench.gallery.ids and (bench.gallery.ids == 0).sum() == 1
    assert len(bench.gallery) == 13


def test_cuhk03_variants(tmp_path):
    for variant in ("labeled", "detected"):
        write_market_style(tmp_path / "cuhk03-np" / variant)
    bench = read_benchmark("cuhk03", tmp_path, variant="detected")
    assert bench.name == "cuhk03-detected" and len(bench.query) == 4
    with pytest.raises(OptionError):
        read_benchmark("cuhk03", tmp_path, variant="both")


def test_msmt17_lists(tmp_path):
    write_msmt17(tmp_path / "MSMT17_V1")
    bench = read_benchmark("msmt17", tmp_path)
    assert len(bench.train) == 6  # train + val lists
    assert bench.query.cams.tolist() == [2, 2, 2]  # third name field, 0-based
    assert sorted(set(bench.gallery.cams)) == [3, 4]
    assert all(p.exists() for p in bench.query.paths + bench.gallery.paths)


def test_viper_splits(tmp_path):
    write_viper(tmp_path / "viper", n_ids=8)
    bench = read_benchmark("viper", tmp_path, split=2)
    train_ids, test_ids = viper_split(8, 2)
    assert sorted(set(bench.train.ids)) == train_ids.tolist()
    assert bench.query.ids.tolist() == test_ids.tolist() == bench.gallery.ids.tolist()
    assert set(bench.query.cams) == {0} and set(bench.gallery.cams) == {1}
    assert bench.single_shot
    other = read_benchmark("viper", tmp_path, split=3)
    assert other.query.ids.tolist() != bench.query.ids.tolist()


def test_folder_layout_default_cameras(tmp_path):
    write_reid_folder(tmp_path / "people")
    bench = read_benchmark("folder", tmp_path / "people")
    assert set(bench.query.cams) == {0} and set(bench.gallery.cams) == {1}
    assert (
        bench.query.ids.tolist() == [0, 1, 2] and len(bench.gallery) == 6 and len(bench.train) == 3
    )
    write_reid_folder(tmp_path / "cams", cameras=True)
    bench = read_benchmark("folder", tmp_path / "cams")
    assert set(bench.query.cams) == {1} and sorted(set(bench.gallery.cams)) == [1, 2]


def test_missing_data_says_where_it_looked(tmp_path):
    for name in ("market1501", "duke", "msmt17", "cuhk03", "viper", "folder"):
        with pytest.raises(DataNotFoundError, match="looked in"):
            read_benchmark(name, tmp_path)
    with pytest.raises(OptionError):
        read_benchmark("prid", tmp_path)


def test_train_set_and_crops(tmp_path):
    write_viper(tmp_path / "viper", n_ids=6)
    data = lookalike.create("dataset", "viper", root=tmp_path, split=1)
    assert isinstance(data, ReidTrainSet) and len(data) == 6 and data.num_classes == 3
    crop, label = data[0]
    assert crop.shape == (3, 128, 48) and crop.dtype == torch.float32 and 0 <= label < 3
    batch = load_crops(data.images.paths[:2], (64, 32))
    assert batch.shape == (2, 3, 64, 32) and float(batch.min()) >= 0 and float(batch.max()) <= 1


@pytest.mark.data
def test_shared_viper(data_root):
    bench = read_benchmark("viper", data_root, split=0)
    assert len(bench.train) == 632 and len(bench.query) == len(bench.gallery) == 316
    assert not set(bench.train.ids) & set(bench.query.ids)
    assert np.array_equal(np.sort(bench.query.ids), np.sort(bench.gallery.ids))


def test_viper_original_cam_a_cam_b_layout(tmp_path):
    import cv2

    from reid.formats import crop

    for k in range(6):
        for cam in ("cam_a", "cam_b"):
            (tmp_path / "VIPeR" / cam).mkdir(parents=True, exist_ok=True)
            name = f"{k:03d}_{0 if cam == 'cam_a' else 90}.bmp"
            cv2.imwrite(str(tmp_path / "VIPeR" / cam / name), crop(k, 0 if cam == "cam_a" else 1))
    bench = read_benchmark("viper", tmp_path, split=0)
    assert len(bench.train) == 6 and len(bench.query) == len(bench.gallery) == 3
    assert [p.parent.name for p in bench.query.paths] == ["cam_a"] * 3
    assert [p.name.split("_")[0] for p in bench.query.paths] == [
        p.name.split("_")[0] for p in bench.gallery.paths
    ]
