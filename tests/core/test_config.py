from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lookalike.core.config import (
    Component,
    ConfigError,
    apply_overrides,
    bounded,
    from_dict,
    load_config,
    to_dict,
)


@dataclass
class Optim:
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    milestones: list[int] = field(default_factory=list)


@dataclass
class Recipe:
    model: Component
    optim: Optim = field(default_factory=Optim)
    steps: int = 100
    out: Path = Path("runs")
    size: tuple[int, int] = (32, 32)
    note: str | None = None


YAML = """
model:
  name: hardnet
  kwargs: {dim: 128}
optim:
  lr: 0.5
  milestones: [10, 20]
steps: 7
"""


def test_load_yaml_then_nested_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(YAML)
    recipe = load_config(
        Recipe, path, ["optim.lr=0.05", "model.kwargs.dim=64", "optim.nesterov=true"]
    )
    assert recipe.optim.lr == 0.05
    assert recipe.optim.milestones == [10, 20]
    assert recipe.model == Component("hardnet", {"dim": 64})
    assert recipe.optim.nesterov is True
    assert recipe.steps == 7


def test_type_coercion():
    recipe = from_dict(
        Recipe,
        {"model": {"name": "x"}, "steps": "12", "optim": {"lr": 1}, "out": "a/b", "size": [48, 48]},
    )
    assert recipe.steps == 12 and isinstance(recipe.steps, int)
    assert recipe.optim.lr == 1.0 and isinstance(recipe.optim.lr, float)
    assert recipe.out == Path("a/b")
    assert recipe.size == (48, 48)
    assert from_dict(Recipe, {"model": {"name": "x"}, "note": None}).note is None


def test_override_values_are_parsed_as_yaml():
    data = apply_overrides({}, ["a=1", "b=0.5", "c=true", "d=[1, 2]", "e=text"])
    assert data == {"a": 1, "b": 0.5, "c": True, "d": [1, 2], "e": "text"}


def test_unknown_top_level_key_lists_valid_keys():
    with pytest.raises(
        ConfigError, match=r"unknown key stepz; valid keys: model, note, optim, out, size, steps"
    ):
        from_dict(Recipe, {"model": {"name": "x"}, "stepz": 1})


def test_unknown_nested_key_from_override_lists_valid_keys(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(YAML)
    with pytest.raises(
        ConfigError,
        match=r"unknown key optim.lr_max; valid keys of optim: lr, milestones, momentum, nesterov",
    ):
        load_config(Recipe, path, ["optim.lr_max=3"])


def test_bad_types_name_the_key():
    with pytest.raises(ConfigError, match=r"optim.lr: expected float, got 'fast'"):
        from_dict(Recipe, {"model": {"name": "x"}, "optim": {"lr": "fast"}})
    with pytest.raises(ConfigError, match=r"steps: expected int, got 2.5"):
        from_dict(Recipe, {"model": {"name": "x"}, "steps": 2.5})
    with pytest.raises(ConfigError, match=r"optim.milestones\[1\]: expected int, got 'x'"):
        from_dict(Recipe, {"model": {"name": "x"}, "optim": {"milestones": [1, "x"]}})
    with pytest.raises(ConfigError, match=r"size: expected 2 items, got 3"):
        from_dict(Recipe, {"model": {"name": "x"}, "size": [1, 2, 3]})
    with pytest.raises(ConfigError, match=r"optim.nesterov: expected bool, got 'maybe'"):
        from_dict(Recipe, {"model": {"name": "x"}, "optim": {"nesterov": "maybe"}})


def test_missing_required_key():
    with pytest.raises(ConfigError, match="missing required key model"):
        from_dict(Recipe, {})


def test_malformed_override():
    with pytest.raises(ConfigError, match=r"expected KEY.PATH=VALUE"):
        apply_overrides({}, ["optim.lr"])
    with pytest.raises(ConfigError, match="steps is a value, not a mapping"):
        apply_overrides({"steps": 3}, ["steps.x=1"])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Recipe, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(Recipe, bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(Recipe, scalar)


def test_to_dict_round_trip():
    recipe = from_dict(Recipe, {"model": {"name": "x", "kwargs": {"a": 1}}})
    assert from_dict(Recipe, to_dict(recipe)) == recipe
    assert to_dict(recipe)["out"] == "runs"


# ---------------------------------------------------------------- user-facing defects


@dataclass
class Bounded:
    steps: int = bounded(10, ge=1)
    lr: float = bounded(0.1, gt=0)
    optim: Optim = field(default_factory=Optim)
    limit: int | None = bounded(None, ge=1)


def test_empty_config_file_is_an_error(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty config"):
        load_config(Recipe, empty)
    comments = tmp_path / "comments.yaml"
    comments.write_text("# nothing set\n")
    with pytest.raises(ConfigError, match="empty config"):
        load_config(Recipe, comments)


@pytest.mark.parametrize(
    "override, message",
    [
        ("steps=-3", r"steps: expected a value >= 1, got -3"),
        ("steps=0", r"steps: expected a value >= 1, got 0"),
        ("lr=0", r"lr: expected a value > 0, got 0.0"),
        ("limit=0", r"limit: expected a value >= 1, got 0"),
    ],
)
def test_numeric_fields_are_range_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Bounded, None, [override])
    assert load_config(Bounded, None, ["limit=null"]).limit is None


def test_every_train_recipe_number_is_range_checked_with_its_dotted_key():
    from lookalike.train.recipe import TrainRecipe

    for override, key in [
        ("steps=-3", "steps"),
        ("batch_size=0", "batch_size"),
        ("val_every=-1", "val_every"),
        ("val_points=0", "val_points"),
        ("checkpoint_every=-1", "checkpoint_every"),
        ("optim.lr=0", "optim.lr"),
        ("optim.lr=-0.1", "optim.lr"),
        ("optim.momentum=1.5", "optim.momentum"),
        ("optim.weight_decay=-1", "optim.weight_decay"),
        ("optim.warmup_steps=-2", "optim.warmup_steps"),
        ("pca.dim=-1", "pca.dim"),
        ("pca.samples=0", "pca.samples"),
        ("regularizer_weight=-1", "regularizer_weight"),
        ("threads=-1", "threads"),
    ]:
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: expected a value"):
            load_config(TrainRecipe, None, [override])


def test_unknown_dotted_override_names_the_full_key():
    with pytest.raises(
        ConfigError, match=r"unknown key no\.such\.key; valid keys: limit, lr, optim, steps"
    ):
        load_config(Bounded, None, ["no.such.key=1"])
    with pytest.raises(
        ConfigError, match=r"unknown key optim\.no\.such; valid keys of optim: lr, milestones"
    ):
        load_config(Bounded, None, ["optim.no.such=1"])
    # kwargs of a component are free-form: checked by the component, not here
    assert load_config(Recipe, None, ["model.name=x", "model.kwargs.any.depth=1"]).model.kwargs == {
        "any": {"depth": 1}
    }
