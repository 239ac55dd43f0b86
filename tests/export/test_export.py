"""Export: every registered network descriptor round-trips through ONNX Runtime and TorchScript."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lookalike
from lookalike._registry import get_entry
from lookalike.core.errors import OptionError
from lookalike.descriptors.export import export_descriptor, network_descriptors

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def _params():
    """Patch networks in the fast suite; image and re-ID networks (tens of seconds each) in slow."""
    out = []
    for name in network_descriptors():
        patch = ".descriptors.patch." in get_entry("descriptor", name).factory.__module__
        out.append(pytest.param(name, marks=() if patch else pytest.mark.slow))
    return out


def _inputs(model, batch=5):
    x = torch.rand(model.input_spec.shape(batch), generator=torch.Generator().manual_seed(1))
    x[1] = 0.4  # a flat input
    return x


def test_registry_has_network_descriptors():
    names = network_descriptors()
    assert {"hardnet", "l2net", "sosnet", "tfeat"} <= set(names)
    assert not {"opencv-sift", "sift", "kornia-sift", "lomo-xqda"} & set(names)


@pytest.mark.parametrize("name", _params())
def test_onnx_runtime_and_torchscript_reproduce_pytorch(name, tmp_path):
    # a fixed random init: the float rounding differences then reproduce from run to run
    torch.manual_seed(0)
    model = lookalike.create("descriptor", name).eval()
    onnx_file = export_descriptor(model, tmp_path / f"{name}.onnx", name=name)
    ts_file = export_descriptor(model, tmp_path / f"{name}.pt", format="torchscript")
    session = ort.InferenceSession(str(onnx_file))
    for batch in (1, 5, 9):  # traced with 2: the batch dimension is dynamic
        x = _inputs(model, batch) if batch > 1 else _inputs(model, 2)[:1]
        with torch.no_grad():
            expected = model(x).float().numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == expected.shape
        assert float(np.abs(got - expected).max()) <= 1e-4
        scripted = torch.jit.load(str(ts_file))(x).numpy()
        assert float(np.abs(scripted - expected).max()) <= 1e-4
        if batch > 1:  # the flat input gives an all-zero row in both exported graphs
            assert not got[1].any() and not scripted[1].any()
            assert np.allclose(np.linalg.norm(got[[0, 2]], axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    ("spec", "dim"),
    [("hardnet:bundled", 128), ("hardnet_gated:bundled", 129), ("hardnet_gated:slim", 129)],
)
def test_shipped_weights_export_and_metadata(tmp_path, spec, dim):
    model = lookalike.create("descriptor", spec)
    path = export_descriptor(model, tmp_path / "net.onnx", name=spec)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["lookalike.name"] == spec and meta["lookalike.dim"] == str(dim)
    x = _inputs(model, 64)
    got = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        assert float(np.abs(got - model(x).numpy()).max()) <= 1e-4


def test_the_callers_model_is_untouched(tmp_path):
    model = lookalike.create("descriptor", "hardnet").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_descriptor(model, tmp_path / "h.onnx")
    assert model.training and model.validate
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_bad_arguments(tmp_path):
    model = lookalike.create("descriptor", "hardnet")
    with pytest.raises(OptionError):
        export_descriptor(model, tmp_path / "h.onnx", format="tflite")
    with pytest.raises(OptionError):
        export_descriptor(model, tmp_path / "h.pt", format="onnx")
    with pytest.raises(OptionError):
        export_descriptor(torch.nn.Linear(2, 2), tmp_path / "h.onnx")
    assert not list(tmp_path.iterdir())


def test_cli_exports_a_shipped_network(tmp_path, capsys):
    from lookalike.cli.main import main

    out = tmp_path / "hardnet.onnx"
    assert main(["export", "hardnet:bundled", "--format", "onnx", "--out", str(out)]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
    ts = tmp_path / "hardnet.ts"
    assert main(["export", "hardnet:bundled", "--format", "torchscript", "--out", str(ts)]) == 0
    assert torch.jit.load(str(ts))(torch.rand(3, 1, 32, 32)).shape == (3, 128)


@pytest.mark.parametrize(
    "args, message",
    [
        (["hardnet", "--format", "onnx"], "no weights"),
        (["opencv-sift", "--format", "onnx"], "not a network descriptor"),
        (["no-such-net", "--format", "onnx"], "no-such-net"),
        (["hardnet:bundled", "--format", "torchscript"], "unsupported file type"),
    ],
)
def test_cli_refusals_write_nothing(args, message, tmp_path, capsys):
    from lookalike.cli.main import main

    out = tmp_path / "x.onnx"
    assert main(["export", *args, "--out", str(out)]) == 1
    assert message in capsys.readouterr().err and not out.exists()
