"""AMOS Patches: the patch file and the registered views, written in the published layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lookalike
from data.formats import write_amos_patch_file, write_amos_view
from lookalike.core.errors import DataNotFoundError, EmptyInputError, LookalikeError, ShapeError
from lookalike.data.amos import AmosPatches, AmosViews, read_amos_patch_file
from lookalike.data.bundled import bundled_photos


@pytest.fixture
def patch_file(tmp_path):
    rng = np.random.default_rng(0)
    sets = rng.integers(0, 256, (6, 4, 1, 96, 96), dtype=np.uint8)
    lafs = rng.random((6, 2, 3))
    path = write_amos_patch_file(
        tmp_path / "train_patches.pt",
        sets,
        cam_idxs=[0, 0, 0, 1, 1, 1],
        lafs=lafs,
        view_names=["00000001_a", "00000002_b"],
    )
    return path, sets, lafs


def test_reads_patch_file(patch_file):
    path, sets, lafs = patch_file
    data = lookalike.create("dataset", "amos_patches", path=path)
    assert len(data) == 6
    np.testing.assert_array_equal(data.patch_sets, sets[:, :, 0])
    np.testing.assert_allclose(data.lafs, lafs, atol=1e-6)
    np.testing.assert_array_equal(data.views, [0, 0, 0, 1, 1, 1])
    assert data.view_names == ["00000001_a", "00000002_b"]
    patches, label = data[2]
    assert patches.shape == (4, 1, 96, 96) and label == 2
    torch.testing.assert_close(patches[1, 0], torch.from_numpy(sets[2, 1, 0]).float() / 255)


def test_resize_and_pairs(patch_file):
    path, _, _ = patch_file
    data = AmosPatches(path=path, patch_size=32)
    assert data[0][0].shape == (4, 1, 32, 32)
    anchors, positives, labels = data.sample_pairs(5, np.random.default_rng(1))
    assert anchors.shape == positives.shape == (5, 1, 32, 32)
    assert labels.unique().numel() == 5
    assert not torch.equal(anchors, positives)  # two different images of each set
    with pytest.raises(EmptyInputError):
        data.sample_pairs(7, np.random.default_rng(1))


def test_four_dimensional_sets_and_mask(tmp_path):
    sets = np.zeros((3, 2, 16, 16), np.uint8)
    mask = np.array([[True, True], [True, False], [False, False]])
    path = write_amos_patch_file(tmp_path / "p.pt", sets, patches_mask=mask)
    data = AmosPatches(path=path, patch_size=16, use_mask=True)
    np.testing.assert_array_equal(data.mask, mask)
    _, _, labels = data.sample_pairs(1, np.random.default_rng(0))
    assert labels.tolist() == [0]  # the only set with two usable images
    assert read_amos_patch_file(path)["lafs"].shape == (3, 2, 3)


def test_untrusted_objects_need_trusted(tmp_path):
    path = write_amos_patch_file(
        tmp_path / "p.pt", np.zeros((2, 2, 1, 8, 8), np.uint8), extra={"collisions": np.arange(3)}
    )
    with pytest.raises(LookalikeError, match="trusted=True"):
        AmosPatches(path=path)
    assert len(AmosPatches(path=path, trusted=True)) == 2


def test_patch_file_errors(tmp_path):
    with pytest.raises(DataNotFoundError):
        read_amos_patch_file(tmp_path / "missing.pt")
    torch.save({"other": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(LookalikeError, match="patch_sets"):
        read_amos_patch_file(tmp_path / "x.pt")
    torch.save({"patch_sets": torch.zeros(2, 8, 8, dtype=torch.uint8)}, tmp_path / "y.pt")
    with pytest.raises(ShapeError):
        read_amos_patch_file(tmp_path / "y.pt")
    torch.save(
        {"patch_sets": torch.zeros(2, 2, 8, 8, dtype=torch.uint8), "cam_idxs": torch.zeros(3)},
        tmp_path / "z.pt",
    )
    with pytest.raises(ShapeError):
        read_amos_patch_file(tmp_path / "z.pt")


def test_registered_views(tmp_path):
    gray = (bundled_photos(["camera"])[0].gray_array[:200, :240] * 255).astype(np.uint8)
    shades = [np.clip(gray.astype(int) + b, 0, 255) for b in (-30, 0, 25)]
    write_amos_view(tmp_path / "AMOS_views_v3" / "Train" / "00000001_view", shades)
    write_amos_view(tmp_path / "AMOS_views_v3" / "Train" / "00000002_view", shades[:2])
    views = AmosViews(tmp_path / "AMOS_views_v3")
    assert [v.name for v in views] == ["00000001_view", "00000002_view"]
    assert len(views[0].images) == 3
    sets, lafs = views.patch_sets(0, budget=50, patch_size=32)
    assert sets.shape == (len(lafs), 3, 32, 32) and sets.dtype == np.uint8 and len(lafs) > 5
    # pixel-aligned images: the sets differ only by the brightness offsets
    diff = sets[:, 2].astype(float) - sets[:, 1].astype(float)
    assert abs(np.median(diff) - 25) < 3
    with pytest.raises(DataNotFoundError):
        AmosViews(tmp_path / "nothing")
