from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest
import torch
from torch import nn

from lookalike import _registry
from lookalike._registry import create, register, unregister
from lookalike.core.weights import (
    ChecksumError,
    WeightsError,
    WeightSpec,
    download,
    load_weights,
    read_metadata,
    read_weights,
    save_weights,
)


class Tiny(nn.Module):
    def __init__(self, *, width: int = 4, dim: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, dim)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


@pytest.fixture
def tiny_registered(tmp_path):
    register("layer", "test_tiny", weights={"local": WeightSpec(url=None, file=None)})(Tiny)
    yield
    unregister("layer", "test_tiny")


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_gives_identical_tensors(tmp_path):
    torch.manual_seed(0)
    model = Tiny(width=5)
    model.bn.running_mean.uniform_()
    path = save_weights(
        model,
        tmp_path / "w.safetensors",
        kind="layer",
        name="test_tiny",
        kwargs={"width": 5},
        training={"fpr95": 0.01},
    )
    fresh = Tiny(width=5)
    meta = load_weights(fresh, path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key
    assert meta["kwargs"] == {"width": 5}
    assert meta["training"] == {"fpr95": 0.01}
    assert meta["name"] == "test_tiny" and meta["kind"] == "layer"
    assert meta["format"] == "lookalike/1"


def test_create_with_weights_uses_stored_kwargs(tmp_path, tiny_registered):
    model = create("layer", "test_tiny", width=6)
    path = save_weights(model, tmp_path / "w.safetensors")
    meta = read_metadata(path)
    assert meta["kwargs"] == {"width": 6} and meta["name"] == "test_tiny"
    loaded = create("layer", f"test_tiny:{path}")
    assert loaded.conv.out_channels == 6
    x = torch.rand(2, 1, 8, 8)
    model.eval(), loaded.eval()
    assert torch.equal(model(x), loaded(x))


def test_strict_load_names_missing_keys(tmp_path):
    path = save_weights(Tiny(width=4), tmp_path / "w.safetensors")
    other = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(WeightsError, match=r"w.safetensors does not fit Sequential: missing keys"):
        load_weights(other, path)


def test_shape_mismatch_is_named(tmp_path):
    path = save_weights(Tiny(width=4), tmp_path / "w.safetensors")
    with pytest.raises(
        WeightsError, match=r"conv.weight: file \(4, 1, 3, 3\) vs model \(8, 1, 3, 3\)"
    ):
        load_weights(Tiny(width=8), path)


def test_wrong_registry_name_is_refused(tmp_path, tiny_registered):
    path = save_weights(Tiny(), tmp_path / "w.safetensors", kind="descriptor", name="hardnet")
    with pytest.raises(WeightsError, match="holds weights for descriptor 'hardnet'"):
        create("layer", "test_tiny", weights=str(path))


def test_truncated_file_names_the_file(tmp_path):
    path = save_weights(Tiny(), tmp_path / "w.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"w.safetensors: not a valid safetensors file"):
        read_weights(path)
    with pytest.raises(WeightsError, match=r"w.safetensors"):
        load_weights(Tiny(), path)


def test_garbage_file_names_the_file(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x00\x01not safetensors")
    with pytest.raises(WeightsError, match=r"bad.safetensors: not a valid safetensors file"):
        read_weights(path)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match=r"weights file not found: .*nope.safetensors"):
        read_weights(tmp_path / "nope.safetensors")


def test_pth_is_read_weights_only(tmp_path):
    model = Tiny()
    path = tmp_path / "w.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    state, meta = read_weights(path)
    assert meta == {} and set(state) == set(model.state_dict())
    fresh = Tiny()
    load_weights(fresh, path)
    assert torch.equal(fresh.conv.weight, model.conv.weight)


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Tiny()}, path)  # a whole module: needs unpickling of code
    with pytest.raises(WeightsError, match=r"evil.pt: cannot read as a weights-only torch file"):
        read_weights(path)


def test_unknown_weights_name_lists_known(tiny_registered):
    with pytest.raises(WeightsError, match=r"neither a file nor a known name; known names: local"):
        create("layer", "test_tiny", weights="nonexistent")


def test_download_file_url_verifies_and_caches(tmp_path):
    src = tmp_path / "src" / "w.bin"
    src.parent.mkdir()
    src.write_bytes(b"weights" * 100)
    cache = tmp_path / "cache"
    path = download(src.as_uri(), _sha(src), cache_dir=cache)
    assert path == cache / "w.bin" and path.read_bytes() == src.read_bytes()
    src.unlink()  # cached: no second download
    assert download(src.as_uri(), _sha(path), cache_dir=cache) == path


def test_download_checksum_mismatch_leaves_no_file(tmp_path):
    src = tmp_path / "w.bin"
    src.write_bytes(b"abc")
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match=r"w.bin: SHA-256 mismatch: expected 0+, got "):
        download(src.as_uri(), "0" * 64, cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_corrupt_cached_file_is_detected(tmp_path):
    src = tmp_path / "w.bin"
    src.write_bytes(b"good")
    cache = tmp_path / "cache"
    path = download(src.as_uri(), _sha(src), cache_dir=cache)
    path.write_bytes(b"bad!")
    with pytest.raises(ChecksumError, match="SHA-256 mismatch"):
        download(src.as_uri(), _sha(src), cache_dir=cache)


def test_download_unreachable_url_says_where_to_put_file(tmp_path):
    with pytest.raises(WeightsError, match=r"cannot download .*Put the file at .*missing.bin"):
        download((tmp_path / "missing.bin").as_uri(), None, cache_dir=tmp_path / "c")


def test_named_weights_download_through_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_HOME", str(tmp_path / "home"))
    model = Tiny(width=3)
    src = save_weights(
        model,
        tmp_path / "pub" / "tiny.safetensors",
        kind="layer",
        name="test_tiny2",
        kwargs={"width": 3},
    )
    spec = WeightSpec(url=src.as_uri(), sha256=_sha(src))
    register("layer", "test_tiny2", weights={"pub": spec})(Tiny)
    try:
        loaded = create("layer", "test_tiny2:pub")
        assert loaded.conv.out_channels == 3
        assert (tmp_path / "home" / "weights" / "tiny.safetensors").is_file()
        assert torch.equal(loaded.fc.weight, model.fc.weight)
    finally:
        unregister("layer", "test_tiny2")


def test_metadata_is_json(tmp_path):
    path = save_weights(Tiny(), tmp_path / "w.safetensors", kwargs={"width": 4})
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        raw = fh.metadata()
    assert json.loads(raw["kwargs"]) == {"width": 4}


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_saved_weights_are_readable_like_any_user_file(tmp_path, umask_022):
    path = save_weights(Tiny(), tmp_path / "w.safetensors")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # mkstemp's 0600 would hide it from others
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary file left


def test_downloaded_weights_are_readable_like_any_user_file(tmp_path, umask_022):
    src = tmp_path / "w.bin"
    src.write_bytes(b"weights")
    path = download(src.as_uri(), _sha(src), cache_dir=tmp_path / "cache")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    old = os.umask(0o077)  # the umask decides, as for any file the user creates
    try:
        other = download(src.as_uri(), _sha(src), cache_dir=tmp_path / "c2")
    finally:
        os.umask(old)
    assert stat.S_IMODE(other.stat().st_mode) == 0o600


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_weights(Tiny(width=4), tmp_path / "w.safetensors")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save_weights(Tiny(width=5), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_core_weights_knows_nothing_of_the_registry():
    from lookalike.core import weights

    for name in ("build_with_weights", "resolve_weights", "record_registry"):
        assert not hasattr(weights, name)
        assert callable(getattr(_registry, name))


# ------------------------------------------------------------------ float16 storage
def test_store_float16_halves_float32_tensors_and_loads_back_into_float32(tmp_path):
    from lookalike.core.weights import read_metadata, read_weights, store_float16

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32))
    path = save_weights(net, tmp_path / "w.safetensors", kind="k", name="n", training={"a": 1})
    before = path.stat().st_size
    out = store_float16(path, tmp_path / "half.safetensors")
    state, meta = read_weights(out)
    assert state["0.weight"].dtype == torch.float16
    assert state["1.num_batches_tracked"].dtype == torch.int64  # integers are kept
    assert meta["storage"] == "float16" and meta["training"] == {"a": 1} and meta["kind"] == "k"
    assert out.stat().st_size < 0.6 * before
    again = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32))
    load_weights(again, out)
    assert again[0].weight.dtype == torch.float32
    # each value is exactly the float16 rounding of the original
    assert torch.equal(again[0].weight, net[0].weight.half().float())
    assert not torch.equal(again[0].weight, net[0].weight)
    assert read_metadata(path).get("storage") is None  # the source file is untouched


def test_store_float16_refuses_values_beyond_its_range(tmp_path):
    from lookalike.core.weights import WeightsError, store_float16

    net = torch.nn.Linear(2, 2)
    with torch.no_grad():
        net.weight[0, 0] = 1e6
    path = save_weights(net, tmp_path / "w.safetensors", kind="k", name="n")
    with pytest.raises(WeightsError, match="float16"):
        store_float16(path)
    with pytest.raises(WeightsError, match="not found"):
        store_float16(tmp_path / "missing.safetensors")
