from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import yaml

from lookalike.core.data import DataNotFoundError, data_root, find_dataset, lookalike_home
from lookalike.core.errors import OptionError
from lookalike.core.runs import start_run
from lookalike.data import bundled_photos, list_bundled_photos, stereo_pair


def test_run_directory_holds_config_metrics_version_log(tmp_path):
    with start_run(tmp_path, "recipe", {"optim": {"lr": 0.1}}) as run:
        logging.getLogger("lookalike.test").info("hello from the run")
        run.write_metrics({"fpr95": 0.1})
        run.write_metrics({"steps": 3})
    assert yaml.safe_load((run.path / "config.yaml").read_text()) == {"optim": {"lr": 0.1}}
    assert json.loads((run.path / "metrics.json").read_text()) == {"fpr95": 0.1, "steps": 3}
    version = json.loads((run.path / "version.json").read_text())
    assert version["lookalike"] and "git" in version and version["torch"]
    assert "hello from the run" in (run.path / "run.log").read_text()
    again = start_run(tmp_path, "recipe", {})
    assert again.path != run.path


def test_roots_follow_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "h"))
    monkeypatch.delenv("LOOKALIKE_DATA", raising=False)
    assert lookalike_home() == tmp_path / "h"
    assert data_root() == tmp_path / "h" / "data"
    monkeypatch.setenv("LOOKALIKE_DATA", str(tmp_path / "d"))
    assert data_root() == tmp_path / "d"


def test_missing_dataset_says_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setenv("LOOKALIKE_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError) as info:
        find_dataset("hpatches-sequences", how="Get it from the HPatches release.")
    msg = str(info.value)
    assert str(tmp_path / "hpatches-sequences") in msg and "HPatches release" in msg
    (tmp_path / "hpatches-sequences").mkdir()
    assert find_dataset("hpatches-sequences") == tmp_path / "hpatches-sequences"


def test_bundled_photos_are_real_rgb_uint8():
    names = list_bundled_photos()
    assert len(names) >= 15 and "astronaut" in names
    for photo in bundled_photos(["astronaut", "camera"]):
        assert photo.rgb.dtype == np.uint8 and photo.rgb.ndim == 3 and photo.rgb.shape[2] == 3
        gray = photo.gray
        assert gray.shape == (1, 1, *photo.rgb.shape[:2])
        assert float(gray.min()) >= 0.0 and float(gray.max()) <= 1.0
    camera = bundled_photos(["camera"])[0]
    # grayscale photo replicated to RGB: luminance equals the original values / 255
    np.testing.assert_allclose(camera.gray_array, camera.rgb[:, :, 0] / 255.0, atol=1e-6)


def test_bundled_photos_unknown_name():
    with pytest.raises(OptionError, match="photo name: expected one of"):
        bundled_photos(["mandrill"])


def test_stereo_pair_shapes():
    left, right, disparity = stereo_pair()
    assert left.shape == right.shape and left.dtype == np.uint8
    assert disparity.shape == left.shape[:2] and np.isfinite(disparity).mean() > 0.5
