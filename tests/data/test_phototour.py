"""UBC PhotoTour reader on a tiny subset written in the published format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lookalike
from data.formats import write_phototour
from lookalike.core.errors import DataNotFoundError, LookalikeError
from lookalike.data.phototour import PhotoTour, read_pairs, read_patch_sheets

N = 300  # two sheets, the second one partly filled


@pytest.fixture
def subset(tmp_path):
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (N, 64, 64), dtype=np.uint8)
    points = np.repeat(np.arange(N // 3), 3)
    images = np.arange(N) // 100
    pairs = [(0, 1), (0, 3), (4, 5), (10, 200), (299, 298)]
    folder = write_phototour(tmp_path / "liberty", patches, points, image_ids=images, pairs=pairs)
    return folder, patches, points, images, pairs


def test_reads_everything(subset):
    folder, patches, points, images, pairs = subset
    data = lookalike.create("dataset", "phototour", subset="liberty", root=folder.parent)
    assert len(data) == N and data.name == "liberty"
    np.testing.assert_array_equal(data.patches, patches)
    np.testing.assert_array_equal(data.labels, points)
    np.testing.assert_array_equal(data.image_ids, images)
    assert data.interest.shape == (N, 4)
    np.testing.assert_array_equal(data.pairs, np.array(pairs))
    np.testing.assert_array_equal(data.is_match, [True, False, True, False, True])


def test_sheet_order_is_row_major(tmp_path):
    patches = np.zeros((20, 64, 64), np.uint8)
    patches[17] = 255  # second row (16 per row), second column
    folder = write_phototour(tmp_path / "s", patches, range(20))
    sheet = __import__("cv2").imread(str(folder / "patches0000.bmp"), 0)
    assert sheet[64:128, 64:128].min() == 255 and sheet[:64].max() == 0
    np.testing.assert_array_equal(read_patch_sheets(folder, 20), patches)


def test_items_and_resizing(subset):
    folder, patches, points, *_ = subset
    data = PhotoTour(path=folder, patch_size=32)
    x, label = data[7]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and label == points[7]
    full = PhotoTour(path=folder)
    x64, _ = full[7]
    torch.testing.assert_close(x64[0], torch.from_numpy(patches[7]).float() / 255)
    assert full.patch_tensor().shape == (N, 1, 64, 64)


def test_optional_files(subset):
    folder, *_ = subset
    (folder / "interest.txt").unlink()
    data = PhotoTour(path=folder, pairs=None)
    assert data.image_ids is None and data.pairs is None


def test_errors(subset, tmp_path):
    folder, *_ = subset
    with pytest.raises(DataNotFoundError, match="looked in"):
        PhotoTour(subset="notredame", root=tmp_path)
    with pytest.raises(DataNotFoundError):
        PhotoTour(path=folder, pairs="m50_1_1_0.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match=r"info\.txt"):
        PhotoTour(path=tmp_path / "empty")
    bad = folder / "bad.txt"
    bad.write_text("1 2 3\n")
    with pytest.raises(LookalikeError, match="7 columns"):
        read_pairs(bad)
    (folder / "info.txt").write_text("".join(f"{i} 0\n" for i in range(600)))
    with pytest.raises(DataNotFoundError, match="sheets"):
        PhotoTour(path=folder, pairs=None)
