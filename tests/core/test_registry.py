from __future__ import annotations

import pytest

import lookalike
from lookalike._registry import RegistryError, create, list_registered, register, unregister


@pytest.fixture
def temp_layer():
    names = []

    def _register(name, factory=None):
        factory = factory or (lambda **kw: dict(kw))
        register("layer", name)(factory)
        names.append(name)
        return factory

    yield _register
    for name in names:
        unregister("layer", name)


def test_register_and_create_passes_kwargs(temp_layer):
    temp_layer("test_tmp_a")
    assert create("layer", "test_tmp_a", x=1) == {"x": 1}
    assert "test_tmp_a" in list_registered("layer")


def test_duplicate_name_raises(temp_layer):
    temp_layer("test_tmp_dup")
    with pytest.raises(RegistryError, match="duplicate layer name 'test_tmp_dup'"):
        register("layer", "test_tmp_dup")(lambda: None)


def test_unknown_name_lists_available(temp_layer):
    temp_layer("test_tmp_known")
    with pytest.raises(RegistryError) as info:
        create("layer", "no_such_thing")
    msg = str(info.value)
    assert "unknown layer 'no_such_thing'" in msg
    assert "test_tmp_known" in msg
    assert isinstance(info.value, ValueError)


def test_unknown_kind_raises():
    with pytest.raises(RegistryError, match="unknown registry kind 'widget'"):
        list_registered("widget")
    with pytest.raises(RegistryError, match="unknown registry kind"):
        register("widget", "x")


def test_invalid_name_raises():
    with pytest.raises(RegistryError, match="without ':'"):
        register("layer", "a:b")


def test_weights_given_twice_raises(temp_layer):
    temp_layer("test_tmp_w")
    with pytest.raises(RegistryError, match="weights given twice"):
        create("layer", "test_tmp_w:one", weights="two")


def test_reexported_at_top_level():
    assert lookalike.create is create
    assert lookalike.list_registered is list_registered
    assert set(lookalike.KINDS) >= {"descriptor", "layer", "loss", "index", "protocol", "dataset"}
