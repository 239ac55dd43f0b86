from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lookalike.core.config import (
    Component,
    ConfigError,
    apply_overrides,
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
