from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

import lookalike
from lookalike import _registry
from lookalike._registry import RegistryError, create, list_registered, register, unregister
from lookalike.core.errors import OptionError


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


# ------------------------------------------------------------------ messages and keyword checks
def test_unknown_name_lists_weights_forms():
    with pytest.raises(RegistryError) as info:
        create("descriptor", "hardnett")
    msg = str(info.value)
    assert "did you mean 'hardnet'" in msg
    assert "hardnet:bundled" in msg and "NAME:WEIGHTS" in msg and "NAME:FILE" in msg
    assert "sift" in msg  # the available names


def test_unknown_keyword_is_an_option_error_naming_accepted_ones(temp_layer):
    temp_layer("test_tmp_kw", lambda *, width=1, depth=2: (width, depth))
    with pytest.raises(OptionError) as info:
        create("layer", "test_tmp_kw", widht=3)
    msg = str(info.value)
    assert "unknown keyword 'widht'" in msg and "did you mean 'width'" in msg
    assert "accepted: depth, width" in msg
    assert isinstance(info.value, ValueError)
    with pytest.raises(OptionError, match="accepted: clipval"):
        create("descriptor", "sift", patch_sise=32)
    with pytest.raises(OptionError, match="unknown keyword 'bogus'"):
        create("descriptor", "rootsift", bogus=1)  # a **kwargs factory with a declared signature


def test_missing_required_keyword_is_an_option_error(temp_layer):
    temp_layer("test_tmp_req", lambda *, size: size)
    with pytest.raises(OptionError, match="missing required keyword 'size'"):
        create("layer", "test_tmp_req")
    assert create("layer", "test_tmp_req", size=3) == 3


def test_var_keyword_factories_check_their_own_keywords(temp_layer):
    temp_layer("test_tmp_var", lambda **kw: kw)
    assert create("layer", "test_tmp_var", anything=1) == {"anything": 1}


# ------------------------------------------------------------------ weights: eval mode
def test_created_with_weights_is_ready_for_inference():
    net = lookalike.create("descriptor", "hardnet", weights="bundled")
    assert net.training is False
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first, second = net(x), net(x)
        one = net(x[:1])  # BatchNorm in train mode would refuse a batch of one
    assert torch.equal(first, second)
    torch.testing.assert_close(one, first[:1], atol=1e-5, rtol=0)
    assert (
        lookalike.create("descriptor", "hardnet").training is True
    )  # no weights: PyTorch's default


# ------------------------------------------------------------------ provider loading
@pytest.fixture
def fresh_registry(monkeypatch, tmp_path):
    """A registry that loads again, with an extra provider package under ``tmp_path``."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_registry, "_loaded", False)
    names = []

    def _provider(package: str, body: str) -> None:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "comp.py").write_text(body)
        names.append(package)
        monkeypatch.setattr(_registry, "_PROVIDERS", (*_registry._PROVIDERS, package))

    yield _provider
    for package in names:
        for mod in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
            del sys.modules[mod]


def test_failing_provider_raises_its_own_import_error(fresh_registry):
    fresh_registry("lk_test_broken", "import lk_no_such_module\n")
    for _ in range(2):  # not marked loaded: every look-up says why
        with pytest.raises(ImportError, match=r"lk_test_broken\.comp .*lk_no_such_module"):
            list_registered("descriptor")
    assert _registry._loaded is False


def test_provider_registrations_are_loaded(fresh_registry):
    fresh_registry(
        "lk_test_ok",
        "from lookalike import register\n"
        "@register('layer', 'lk_test_ok_layer')\n"
        "def make():\n    return 42\n",
    )
    try:
        assert create("layer", "lk_test_ok_layer") == 42
        assert _registry._loaded is True
    finally:
        unregister("layer", "lk_test_ok_layer")


def test_missing_provider_package_is_skipped(monkeypatch):
    monkeypatch.setattr(_registry, "_loaded", False)
    monkeypatch.setattr(_registry, "_PROVIDERS", (*_registry._PROVIDERS, "lk_not_installed"))
    assert "sift" in list_registered("descriptor")
    assert "lookalike.baselines" in _registry._PROVIDERS


# ------------------------------------------------------------------ top level
def test_errors_exported_at_top_level():
    from lookalike.core import errors

    for name in (
        "LookalikeError",
        "ShapeError",
        "DTypeError",
        "ValueRangeError",
        "EmptyInputError",
        "OptionError",
        "DataNotFoundError",
    ):
        assert getattr(lookalike, name) is getattr(errors, name)
    assert lookalike.RegistryError is RegistryError
    from lookalike._version import __version__

    assert lookalike.__version__ == __version__


def test_import_is_torch_free():
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import lookalike"],
        capture_output=True,
        text=True,
        check=True,
    )
    heavy = re.findall(r"\| +(torch|cv2|faiss|timm)$", out.stderr, flags=re.M)
    assert heavy == []
    assert re.search(r"\| +lookalike$", out.stderr, flags=re.M)  # the oracle sees the package
