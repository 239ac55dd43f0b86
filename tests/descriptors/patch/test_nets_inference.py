"""Fast inference path: BatchNorm folding, fused float32/bfloat16/int8 networks, torch.compile parity."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch import nn

import lookalike
from conftest import assert_close
from lookalike.core.errors import DTypeError, OptionError, ShapeError
from lookalike.descriptors.patch import _base
from lookalike.descriptors.patch._inference import (
    FusedPatchNet,
    bf16_supported,
    fold_batchnorm,
    fold_sequential,
)
from lookalike.descriptors.patch._quantize import int8_engine, int8_preferred

NETS = [
    "l2net",
    "hardnet",
    "hardnet8",
    "hardnet7x2",
    "hardnet8x2",
    "hardnet9",
    "sosnet",
    "tfeat",
    "hardnet_gated",
]
needs_bf16 = pytest.mark.skipif(
    not bf16_supported("cpu"), reason="this CPU has no native bfloat16 (AVX512-BF16/AMX)"
)


def _randomise_bn(module: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for mod in module.modules():
        if isinstance(mod, nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
            mod.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            if mod.affine:
                mod.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
                mod.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)


@functools.cache
def _cached(name: str) -> nn.Module:
    torch.manual_seed(0)
    net = lookalike.create("descriptor", name)
    _randomise_bn(net)
    gate = getattr(net, "gate", None)
    if gate is not None:  # a head that varies, so the fused gate is exercised (zero by default)
        nn.init.normal_(gate.score.weight, std=3.0)
        nn.init.normal_(gate.score.bias)
    return net


def _make(name: str) -> nn.Module:
    return copy.deepcopy(_cached(name)).eval()


def _patches(batch: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize(("stride", "groups"), [(1, 1), (2, 1), (1, 2)])
def test_fold_batchnorm_matches_eval_conv_bn(affine, bias, stride, groups):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=stride, padding=1, groups=groups, bias=bias).double()
    bn = nn.BatchNorm2d(6, affine=affine).double()
    _randomise_bn(bn)
    bn.eval()
    before = {k: v.clone() for k, v in {**conv.state_dict(), **bn.state_dict()}.items()}
    folded = fold_batchnorm(conv, bn)
    x = torch.randn(3, 4, 9, 9, dtype=torch.float64)
    assert_close(folded(x), bn(conv(x)))
    after = {**conv.state_dict(), **bn.state_dict()}
    assert all(torch.equal(before[k], after[k]) for k in before)  # pure: inputs untouched
    assert folded.bias is not None and folded.stride == conv.stride and folded.groups == groups


def test_fold_batchnorm_uses_running_stats_even_in_train_mode():
    conv, bn = nn.Conv2d(1, 3, 3, bias=False), nn.BatchNorm2d(3)
    _randomise_bn(bn)
    x = torch.rand(2, 1, 6, 6)
    folded = fold_batchnorm(conv, bn.train())
    assert_close(folded(x), bn.eval()(conv(x)))


def test_fold_batchnorm_rejects_mismatch():
    with pytest.raises(OptionError):
        fold_batchnorm(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(4))
    with pytest.raises(OptionError):
        fold_batchnorm(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3, track_running_stats=False))


def test_fold_sequential_structure():
    seq = nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Conv2d(2, 2, 3),
        nn.Tanh(),
    )
    _randomise_bn(seq)
    folded = fold_sequential(seq)
    assert [type(m) for m in folded] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.Tanh]
    assert not folded.training
    x = torch.rand(2, 1, 8, 8)
    assert_close(folded(x), seq.eval()(x))


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("name", NETS)
def test_fused_float32_matches_eval_model(name, channels_last):
    net = _make(name)
    fused = net.fuse_for_inference(channels_last=channels_last)
    x = _patches(5, net.patch_size)
    x[2] = 0.4  # flat
    with torch.no_grad():
        expected = net(x)
    out = fused(x)
    assert isinstance(fused, FusedPatchNet)
    assert (fused.dim, fused.patch_size, fused.in_channels) == (net.dim, net.patch_size, 1)
    assert out.dtype == torch.float32 and out.shape == (5, net.dim)
    assert_close(out, expected, atol=1e-5, rtol=0)
    assert out[2].eq(0).all()


def test_fused_reads_eval_behaviour_and_is_independent():
    net = _make("hardnet").train()  # dropout and batch statistics on: the fused copy ignores them
    fused = net.fuse_for_inference()
    x = _patches(4)
    with torch.no_grad():
        expected = net.eval()(x)
        for p in net.parameters():
            p.add_(1.0)  # later changes to the network do not reach the fused copy
    assert_close(fused(x), expected)
    assert not fused.train().training
    assert not any("_orig_mod" in k for k in fused.state_dict())


def test_fused_checks_inputs_and_options():
    net = _make("hardnet")
    fused = net.fuse_for_inference()
    with pytest.raises(ShapeError):
        fused(torch.rand(2, 1, 31, 32))
    with pytest.raises(DTypeError):
        fused(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(OptionError):
        net.fuse_for_inference(dtype=torch.float16)
    with pytest.raises(OptionError):
        net.fuse_for_inference(compile=True, dynamic="yes")


def test_fused_from_float64_model_and_input():
    net = _make("hardnet8").double()
    x = _patches(3).double()
    with torch.no_grad():
        expected = net(x)
    out = net.fuse_for_inference()(x)
    assert out.dtype == torch.float32
    assert_close(out.double(), expected, atol=1e-5, rtol=0)


def test_bf16_refused_without_native_support(monkeypatch):
    monkeypatch.setattr(_base, "bf16_supported", lambda device=None: False)
    with pytest.raises(OptionError, match="bfloat16"):
        _make("hardnet").fuse_for_inference(dtype=torch.bfloat16)


@needs_bf16
@pytest.mark.parametrize("name", NETS)
def test_fused_bfloat16_is_close_to_float32(name):
    net = _make(name)
    x = _patches(16, net.patch_size, seed=3)
    x[0] = 0.9  # flat
    with torch.no_grad():
        expected = net(x)
    out = net.fuse_for_inference(dtype=torch.bfloat16)(x)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert out[0].eq(0).all()
    cosine = (out[1:] * expected[1:]).sum(dim=1)
    assert float(cosine.min()) >= 0.9999
    assert_close(out[1:].norm(dim=1), torch.ones(15))


def test_compiled_float32_matches_eager():
    net = _make("hardnet")
    fused = net.fuse_for_inference(compile=True)
    x = _patches(8)
    x[1] = 0.2
    with torch.no_grad():
        expected = net(x)
    out = fused(x)
    assert_close(out, expected, atol=1e-5, rtol=0)
    assert out[1].eq(0).all()
    # A second batch size recompiles with a dynamic batch dimension (and must stay correct).
    assert_close(fused(x[:5]), expected[:5], atol=1e-5, rtol=0)
    with pytest.raises(ShapeError):  # the checks stay outside the compiled graph
        fused(torch.rand(8, 1, 32, 31))


@needs_bf16
def test_compiled_bfloat16_is_close_to_float32():
    net = _make("hardnet")
    x = _patches(8, seed=4)
    with torch.no_grad():
        expected = net(x)
    out = net.fuse_for_inference(dtype=torch.bfloat16, compile=True)(x)
    assert float((out * expected).sum(dim=1).min()) >= 0.9999


def test_fused_net_checks_finite_input_and_empty_batches():
    from lookalike.core.errors import ValueRangeError

    fused = _make("hardnet").fuse_for_inference()
    x = _patches(2)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueRangeError):
        fused(x)
    assert fused(_patches(0)).shape == (0, 128)


@pytest.mark.parametrize("native", [True, False])
def test_cli_info_reports_the_same_bf16_probe(monkeypatch, native):
    # One probe for bfloat16: `lookalike info` must say what fuse_for_inference will accept.
    from lookalike.cli import info
    from lookalike.descriptors.patch import _inference

    monkeypatch.setattr(_inference, "bf16_supported", lambda device=None: native)
    monkeypatch.setattr(_inference, "int8_preferred", lambda device=None: not native)
    collected = info.collect_info()
    assert collected["bf16_cpu"] is native and collected["int8_cpu"] is (not native)


needs_int8 = pytest.mark.skipif(int8_engine("cpu") is None, reason="no quantised CPU engine")


@needs_int8
@pytest.mark.parametrize("name", NETS)
def test_fused_int8_is_close_to_float32(name):
    net = _make(name)
    size = net.patch_size
    calibration = _patches(256, size, seed=5)
    x = _patches(32, size, seed=6)
    x[0] = 0.4  # flat
    with torch.no_grad():
        expected = net(x)
    fused = net.fuse_for_inference(dtype=torch.qint8, calibration=calibration)
    assert fused.dtype == torch.qint8
    out = fused(x)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    assert out[0].eq(0).all()  # the flat-patch rule stays outside the trunk
    cosine = (out[1:] * expected[1:]).sum(dim=1)
    # 8-bit weights (per channel) and activations (per tensor): close, not equal. Without VNNI
    # (where the pipeline never picks int8) the engine's AVX2 kernels leave TFeat's tanh trunk at a
    # cosine of about 0.94 to float32 (stop 40, AVX2-only EPYC); the other trunks stay >= 0.99.
    loose = name == "tfeat" and not int8_preferred("cpu")
    low_mean, low_min = (0.92, 0.9) if loose else (0.99, 0.95)
    assert float(cosine.mean()) >= low_mean and float(cosine.min()) >= low_min
    assert float(cosine.mean()) < 1 - 1e-7  # really quantised, not the float32 trunk
    assert_close(out[1:].norm(dim=1), torch.ones(31))
    assert fused(_patches(0, size)).shape == (0, net.dim)


@needs_int8
def test_int8_calibration_sets_the_activation_ranges():
    # Calibrated on the patches it describes, the int8 trunk is closer to float32 than calibrated on
    # patches of a 100x smaller contrast that the standardisation undoes -- i.e. it is the
    # standardised calibration input that is observed, as the network will see it.
    net = _make("hardnet")
    x = _patches(64, seed=7)
    with torch.no_grad():
        expected = net(x)
    same = net.fuse_for_inference(dtype=torch.qint8, calibration=x)
    scaled = net.fuse_for_inference(dtype=torch.qint8, calibration=0.5 + (x - 0.5) / 100)
    assert_close(same(x), scaled(x), atol=2e-2, rtol=0)  # a few rounding flips
    wrong = net.fuse_for_inference(dtype=torch.qint8, calibration=torch.zeros(64, 1, 32, 32))
    err = (same(x) - expected).norm(dim=1).mean()
    assert err < (wrong(x) - expected).norm(dim=1).mean()


@needs_int8
def test_int8_restores_the_quantised_engine_and_runs_under_another():
    from lookalike.descriptors.patch._quantize import quantize_trunk

    before = torch.backends.quantized.engine
    body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()).eval()
    q = quantize_trunk(body, torch.randn(8, 1, 8, 8))
    assert torch.backends.quantized.engine == before
    x = torch.randn(2, 1, 8, 8)
    expected = q(x)
    other = "onednn" if before != "onednn" else "x86"
    if other in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = other
        try:
            assert_close(q(x), expected, atol=1e-6, rtol=0)
        finally:
            torch.backends.quantized.engine = before


def test_int8_options_are_checked(monkeypatch):
    from lookalike.core.errors import EmptyInputError
    from lookalike.descriptors.patch._quantize import quantize_trunk

    net = _make("hardnet")
    if int8_engine("cpu") is not None:
        with pytest.raises(OptionError, match="calibration"):
            net.fuse_for_inference(dtype=torch.qint8)
        with pytest.raises(OptionError, match="int8 trunk is not compiled"):  # as PatchDescriber
            net.fuse_for_inference(dtype=torch.qint8, calibration=_patches(4), compile=True)
        with pytest.raises(OptionError, match="tensor"):
            net.fuse_for_inference(dtype=torch.qint8, calibration=[[0.0]])
        with pytest.raises(ShapeError):
            net.fuse_for_inference(dtype=torch.qint8, calibration=torch.rand(4, 1, 31, 31))
        trunk = nn.Sequential(nn.Conv2d(1, 2, 3))
        with pytest.raises(EmptyInputError):
            quantize_trunk(trunk, torch.rand(0, 1, 8, 8))
        with pytest.raises(DTypeError):
            quantize_trunk(trunk, torch.rand(2, 1, 8, 8, dtype=torch.float64))
        with pytest.raises(OptionError, match="batch_size"):
            quantize_trunk(trunk, torch.rand(2, 1, 8, 8), batch_size=0)
        with pytest.raises(OptionError, match="Sequential"):
            quantize_trunk(nn.Conv2d(1, 2, 3), torch.rand(2, 1, 8, 8))
    monkeypatch.setattr(_base, "int8_engine", lambda device=None: None)
    with pytest.raises(OptionError, match="int8"):
        net.fuse_for_inference(dtype=torch.qint8, calibration=_patches(4))


def test_int8_engine_and_preference_probes(monkeypatch):
    from lookalike.descriptors.patch import _quantize

    assert _quantize.int8_engine("meta") is None and not _quantize.int8_preferred("meta")
    engines = property(lambda self: ["qnnpack", "none"])
    monkeypatch.setattr(type(torch.backends.quantized), "supported_engines", engines)
    assert _quantize.int8_engine("cpu") is None and not _quantize.int8_preferred("cpu")


def test_int8_refuses_trunks_with_our_own_layers():
    from lookalike.descriptors.patch._quantize import int8_quantizable, quantize_trunk

    se = lookalike.create("descriptor", "hardnet_se").eval()
    assert not int8_quantizable(se.features) and int8_quantizable(_make("hardnet").features)
    if int8_engine("cpu") is not None:
        with pytest.raises(OptionError, match=r"torch\.nn"):
            se.fuse_for_inference(dtype=torch.qint8, calibration=_patches(4))
        with pytest.raises(OptionError, match=r"torch\.nn"):
            quantize_trunk(se.features, _patches(4))
