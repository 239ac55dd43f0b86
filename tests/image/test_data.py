"""Readers of labelled image sets (class folders, GLDv2) and of revisited ground truth (restricted unpickler)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

import lookalike
from image.formats import write_gldv2, write_image_folders, write_revisited
from lookalike.core.errors import DataNotFoundError, LookalikeError, OptionError
from lookalike.data.gldv2 import GLDv2, gldv2_image_path, read_train_csv
from lookalike.data.image_folders import ImageFolders
from lookalike.data.revisited import UnsafePickleError, read_revisited, safe_load_pickle


def test_image_folders(tmp_path):
    write_image_folders(tmp_path, classes=3, per_class=4)
    (tmp_path / "empty").mkdir()
    data = lookalike.create("dataset", "image_folders", root=tmp_path, image_size=32)
    assert isinstance(data, ImageFolders)
    assert (
        len(data) == 12
        and data.num_classes == 3
        and data.classes == ["class_0", "class_1", "class_2"]
    )
    assert data.class_counts.tolist() == [4, 4, 4]
    x, y = data[5]
    assert (
        x.shape == (3, 32, 32)
        and x.dtype == torch.float32
        and x.min() >= 0
        and x.max() <= 1
        and y == 1
    )
    # the class colour survives: class 1 is green
    assert x[1].mean() > x[0].mean() and x[1].mean() > x[2].mean()
    aug = ImageFolders(root=tmp_path, image_size=32, augment=True)
    torch.manual_seed(0)
    xa, ya = aug[5]
    assert xa.shape == (3, 32, 32) and ya == 1 and not torch.equal(xa, x)
    with pytest.raises(DataNotFoundError):
        ImageFolders(root=tmp_path / "missing")
    with pytest.raises(DataNotFoundError):
        ImageFolders(root=tmp_path / "empty")
    with pytest.raises(OptionError):
        ImageFolders(root=tmp_path, image_size=4)


def test_gldv2_layout(tmp_path):
    write_gldv2(tmp_path, landmarks=(7, 42, 1000), per_class=3, missing=1)
    rows = read_train_csv(tmp_path / "train.csv")
    assert len(rows) == 10 and rows[0][1] == 7
    data = lookalike.create("dataset", "gldv2", root=tmp_path, image_size=24)
    assert isinstance(data, GLDv2)
    assert len(data) == 9 and data.landmark_ids == [7, 42, 1000] and data.num_classes == 3
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data[4][0].shape == (3, 24, 24)
    first = rows[0][0]
    assert (
        gldv2_image_path(tmp_path, first)
        == tmp_path / "train" / first[0] / first[1] / first[2] / f"{first}.jpg"
    )
    with pytest.raises(DataNotFoundError, match="min_images=4"):
        GLDv2(root=tmp_path, min_images=4)  # 3 images each (the 4th of landmark 7 is missing)
    assert GLDv2(root=tmp_path, min_images=3).num_classes == 3


def test_gldv2_errors(tmp_path):
    with pytest.raises(DataNotFoundError):
        GLDv2(root=tmp_path)
    (tmp_path / "train.csv").write_text("id,landmark\nabc,1\n")
    with pytest.raises(OptionError, match="id,landmark_id"):
        GLDv2(root=tmp_path)
    (tmp_path / "train.csv").write_text("id,landmark_id\nabcd,x\n")
    with pytest.raises(OptionError, match="not an integer"):
        GLDv2(root=tmp_path)
    (tmp_path / "train.csv").write_text("id,landmark_id\nabcd,1\n")
    with pytest.raises(DataNotFoundError, match="none of the images"):
        GLDv2(root=tmp_path)


def test_revisited_ground_truth(tmp_path):
    write_revisited(tmp_path)
    data = read_revisited(tmp_path, "roxford5k")
    assert (
        len(data.images) == 12 and len(data.queries) == 3 and all(p.is_file() for p in data.images)
    )
    assert data.ground_truth[1]["easy"].tolist() == [4, 5] and data.ground_truth[1][
        "junk"
    ].tolist() == [7]
    with pytest.raises(DataNotFoundError):
        read_revisited(tmp_path, "rparis6k")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_code():
    with pytest.raises(UnsafePickleError, match="system"):
        safe_load_pickle(pickle.dumps({"gnd": [_Evil()]}))
    with pytest.raises(UnsafePickleError):
        safe_load_pickle(pickle.dumps(_Evil))  # a class by reference
    with pytest.raises(LookalikeError):
        safe_load_pickle(b"\x80\x04garbage")
    ok = safe_load_pickle(
        pickle.dumps({"a": [1, 2.5, "x", (3,)], "b": np.eye(2, dtype=np.float32), "c": np.int64(4)})
    )
    assert ok["a"] == [1, 2.5, "x", (3,)] and ok["b"].dtype == np.float32 and ok["c"] == 4
