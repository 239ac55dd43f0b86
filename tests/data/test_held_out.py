"""The demo scores only held-out photos: no shipped recipe trains on them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import lookalike
from lookalike.data.bundled import BUNDLED_PHOTOS, HELD_OUT_PHOTOS
from lookalike.eval.protocols.demo import DEMO_PHOTOS, demo_pairs

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
#: Data sets made from the bundled photos; every other recipe trains on the user's own data set
#: (e.g. GLDv2), which holds no bundled photo.
BUNDLED_DATA = ("bundled_pairs", "bundled_classes", "pipeline_pairs", "bundled_instances")


def _data_name(config: Path) -> str:
    return yaml.safe_load(config.read_text())["data"]["name"]


BUNDLED_CONFIGS = [c for c in CONFIGS if _data_name(c) in BUNDLED_DATA]


def _training_photos(config: Path) -> set[str]:
    """The photos the recipe's data set trains on, resolved by the registered data set itself."""
    recipe = yaml.safe_load(config.read_text())
    data = recipe["data"]
    dataset = lookalike.create("dataset", data["name"], **(data.get("kwargs") or {}))
    for attribute in ("train_photos", "photos"):
        if hasattr(dataset, attribute):
            return set(getattr(dataset, attribute))
    raise AssertionError(f"{config.name}: data set {data['name']!r} does not list its photos")


def test_held_out_photos_are_bundled_and_the_demo_uses_only_them():
    assert set(HELD_OUT_PHOTOS) <= set(BUNDLED_PHOTOS)
    assert DEMO_PHOTOS == HELD_OUT_PHOTOS
    assert {p.photo for p in demo_pairs()} == set(HELD_OUT_PHOTOS)


def test_validation_photos_are_the_held_out_ones():
    from lookalike.data.bundled_pairs import VALIDATION_PHOTOS

    assert set(VALIDATION_PHOTOS) == set(HELD_OUT_PHOTOS)


def _viper_protocol(config: Path) -> bool:
    """VIPeR's protocol trains on the training ids of one split (the one evaluation set allowed)."""
    data = yaml.safe_load(config.read_text())["data"]
    kwargs = data.get("kwargs") or {}
    return kwargs.get("dataset") == "viper" and "split" in kwargs


def test_recipes_on_other_data_need_the_users_folder(monkeypatch, tmp_path):
    """A recipe not on bundled photos reads a folder the user names (so it cannot see a demo photo)."""
    monkeypatch.setenv("LOOKALIKE_DATA", str(tmp_path))  # no data sets there
    for config in CONFIGS:
        if config not in BUNDLED_CONFIGS:
            with pytest.raises(lookalike.LookalikeError):
                lookalike.create("dataset", _data_name(config))
        if not _viper_protocol(config):
            continue
        # the VIPeR recipe names one split: its data set holds that split's training ids only
        kwargs = yaml.safe_load(config.read_text())["data"]["kwargs"]
        assert isinstance(kwargs["split"], int)
    assert BUNDLED_CONFIGS


@pytest.mark.parametrize("config", BUNDLED_CONFIGS, ids=lambda p: p.stem)
def test_no_recipe_trains_on_a_demo_photo(config):
    training = _training_photos(config)
    assert training, config.name
    assert not training & set(DEMO_PHOTOS), f"{config.name} trains on {training & set(DEMO_PHOTOS)}"


def test_the_overlap_check_can_fail(tmp_path):
    """A recipe that names a demo photo for training is caught (the check is not vacuous)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "data: {name: bundled_pairs, kwargs: {photos: [camera, coffee], val_photos: [gravel]}}\n"
    )
    assert _training_photos(bad) & set(DEMO_PHOTOS) == {"coffee"}
