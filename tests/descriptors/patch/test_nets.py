"""L2Net, HardNet and its variants, SOSNet, TFeat: contract, kornia oracle, flat patches, dtypes, gradients."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
import torch.utils.flop_counter

import lookalike
from conftest import assert_close, gradcheck
from lookalike.core.errors import DTypeError, OptionError, ShapeError
from lookalike.core.weights import save_weights
from lookalike.descriptors.patch._functional import normalize_descriptors, standardize_patches
from lookalike.descriptors.patch.hardnet import strides_for_patch_size
from lookalike.descriptors.patch.hardnet8 import HardNet8, pca_project

kornia_feature = pytest.importorskip("kornia.feature")

# name -> (dim, default patch size, other patch sizes)
NETS = {
    "l2net": (128, 32, (48, 64)),
    "hardnet": (128, 32, (48, 64)),
    "hardnet8": (128, 32, (48, 64)),
    "hardnet7x2": (256, 32, (48, 64)),
    "hardnet8x2": (512, 32, (48, 64)),
    "hardnet9": (256, 32, (48, 64)),
    "sosnet": (128, 32, ()),
    "tfeat": (128, 32, ()),
}
KORNIA = {"hardnet": "HardNet", "hardnet8": "HardNet8", "sosnet": "SOSNet", "tfeat": "TFeat"}


def _patches(batch: int, size: int = 32, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, size, size, generator=gen).to(dtype)


def _randomise_bn(module: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for mod in module.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
            mod.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)


@functools.cache
def _cached(name: str, kwargs: tuple) -> torch.nn.Module:
    torch.manual_seed(0)
    return lookalike.create("descriptor", name, **dict(kwargs))


def _make(name: str, **kwargs) -> torch.nn.Module:
    """A fresh copy of a registered network (construction, with its orthogonal init, runs once)."""
    return copy.deepcopy(_cached(name, tuple(sorted(kwargs.items()))))


@functools.cache
def _kornia(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    ref = getattr(kornia_feature, KORNIA[name])(pretrained=False)
    _randomise_bn(ref)
    return ref.eval()


def _kornia_pair(name: str):
    """A kornia model with random weights and BN statistics, and ours holding the same weights."""
    ref = _kornia(name)
    ours = _make(name)
    state = ref.state_dict()
    adapt = getattr(ours, "adapt_state_dict", None)
    ours.load_state_dict(adapt(state) if adapt else state)
    return ref, ours.eval()


def _kornia_out(ref, name: str, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = ref(x)
    # kornia's TFeat returns its tanh layer unnormalised; ours normalises every descriptor.
    return F.normalize(out, dim=1) if name == "tfeat" else out


def test_all_networks_are_registered():
    assert set(NETS) <= set(lookalike.list_registered("descriptor"))


@pytest.mark.parametrize("name", sorted(NETS))
def test_attributes_and_output(name):
    dim, size, _ = NETS[name]
    net = _make(name).eval()
    assert (net.dim, net.patch_size, net.in_channels) == (dim, size, 1)
    assert type(net).patch_size == size  # a class attribute, not only an instance one
    with torch.no_grad():
        out = net(_patches(3, size))
    assert out.shape == (3, dim) and out.dtype == torch.float32
    assert_close(out.norm(dim=1), torch.ones(3))


@pytest.mark.parametrize(
    ("name", "size"), [(n, s) for n, (_, _, sizes) in NETS.items() for s in sizes]
)
def test_larger_patch_sizes(name, size):
    net = _make(name, patch_size=size).eval()
    assert net.patch_size == size
    with torch.no_grad():
        out = net(_patches(2, size))
    assert out.shape == (2, NETS[name][0])
    with pytest.raises(ShapeError):
        net(_patches(2, 32))


def test_stride_rule_follows_the_thesis():
    assert strides_for_patch_size((1, 1, 2, 1, 2, 1), 32) == ((1, 1, 2, 1, 2, 1), 8)
    assert strides_for_patch_size((1, 1, 2, 1, 2, 1, 1), 48) == ((1, 1, 2, 1, 2, 1, 2), 6)
    assert strides_for_patch_size((1, 1, 2, 1, 2, 1, 1), 64) == ((1, 1, 2, 1, 2, 1, 2), 8)
    with pytest.raises(OptionError):
        strides_for_patch_size((1, 2), 40)


def _convs(net: torch.nn.Module) -> list[tuple[int, int, int]]:
    """(out channels, stride, kernel) of every convolution in a trunk, in order."""
    return [
        (m.out_channels, m.stride[0], m.kernel_size[0])
        for m in net.features
        if isinstance(m, torch.nn.Conv2d)
    ]


def test_variant_architectures():
    def convs(name):
        return _convs(_make(name))

    assert convs("hardnet7x2") == [
        (64, 1, 3), (64, 1, 3), (128, 2, 3), (128, 1, 3), (256, 2, 3), (256, 1, 3), (256, 1, 8)
    ]  # fmt: skip
    assert convs("hardnet8x2")[-2:] == [(512, 1, 3), (512, 1, 8)]
    assert convs("hardnet9") == [
        (32, 1, 3), (32, 1, 3), (64, 2, 3), (64, 1, 3), (128, 1, 3), (128, 2, 3), (256, 1, 3),
        (256, 1, 3), (256, 1, 8),
    ]  # fmt: skip
    assert convs("hardnet8")[-1] == (512, 1, 8)


def test_width_scales_every_hardnet_stage():
    slim = lookalike.create("descriptor", "hardnet", width=16).eval()
    assert _convs(slim) == [
        (16, 1, 3), (16, 1, 3), (32, 2, 3), (32, 1, 3), (64, 2, 3), (64, 1, 3), (128, 1, 8)
    ]  # fmt: skip
    assert _convs(lookalike.create("descriptor", "hardnet"))[0] == (32, 1, 3)
    # Multiply-adds per 32-px patch, by hand: sum over convolutions of out_pixels * C_out * C_in * k².
    macs = (
        32 * 32 * (16 * 1 * 9 + 16 * 16 * 9)
        + 16 * 16 * (32 * 16 * 9 + 32 * 32 * 9)
        + 8 * 8 * (64 * 32 * 9 + 64 * 64 * 9)
        + 128 * 64 * 64
    )
    counter = torch.utils.flop_counter.FlopCounterMode(display=False)
    with counter, torch.no_grad():
        slim(_patches(3))
    convolution_flops = sum(
        n for op, n in counter.get_flop_counts()["Global"].items() if "convolution" in str(op)
    )
    assert convolution_flops == 3 * 2 * macs == 3 * 20_217_856
    gated = lookalike.create("descriptor", "hardnet_gated", width=16)
    assert _convs(gated)[:2] == [(16, 1, 3), (16, 1, 3)] and gated.dim == 129
    for bad in (0, 1.5, -16):
        with pytest.raises(OptionError):
            lookalike.create("descriptor", "hardnet", width=bad)


def test_width_survives_the_weights_file(tmp_path):
    net = lookalike.create("descriptor", "hardnet", width=8)
    _randomise_bn(net)
    path = save_weights(net, tmp_path / "slim.safetensors")
    back = lookalike.create("descriptor", "hardnet", weights=str(path)).eval()
    assert back.width == 8
    x = _patches(2)
    with torch.no_grad():
        assert_close(back(x), net.eval()(x))


@pytest.mark.parametrize("name", ["hardnet", "sosnet", "tfeat"])
def test_bad_input_raises(name):
    net = _make(name)
    with pytest.raises(ShapeError):
        net(torch.rand(2, 3, 32, 32))
    with pytest.raises(ShapeError):
        net(torch.rand(1, 32, 32))
    with pytest.raises(DTypeError):
        net(torch.randint(0, 255, (2, 1, 32, 32)))


def test_bad_options_raise():
    with pytest.raises(OptionError):
        lookalike.create("descriptor", "hardnet", patch_size=40)
    with pytest.raises(OptionError):
        lookalike.create("descriptor", "hardnet", dropout=1.0)
    with pytest.raises(OptionError):
        lookalike.create("descriptor", "sosnet", dim=0)
    with pytest.raises(OptionError):
        HardNet8(dim=600)
    with pytest.raises(TypeError):  # keyword-only
        HardNet8(128)  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(KORNIA))
def test_matches_kornia(name):
    ref, ours = _kornia_pair(name)
    x = _patches(6, seed=1)
    with torch.no_grad():
        assert_close(ours(x), _kornia_out(ref, name, x))


@pytest.mark.parametrize("name", sorted(KORNIA))
def test_registry_loads_kornia_checkpoint(name, tmp_path):
    ref, _ = _kornia_pair(name)
    state = ref.state_dict()
    # The original HardNet checkpoints wrap the weights in {"state_dict": ...}; the others do not.
    payload = {"state_dict": state} if name == "hardnet" else state
    path = tmp_path / f"{name}.pth"
    torch.save(payload, path)
    net = lookalike.create("descriptor", name, weights=str(path)).eval()
    x = _patches(5, seed=2)
    with torch.no_grad():
        assert_close(net(x), _kornia_out(ref, name, x))


@pytest.mark.parametrize("name", ["sosnet", "tfeat"])
def test_adapt_state_dict_passes_our_layout_through(name):
    net = _make(name)
    state = net.state_dict()
    assert net.adapt_state_dict(state).keys() == state.keys()


def test_safetensors_round_trip_keeps_kwargs(tmp_path):
    net = lookalike.create("descriptor", "hardnet9", patch_size=48, dim=64)
    _randomise_bn(net)
    path = save_weights(net, tmp_path / "h9.safetensors")
    back = lookalike.create("descriptor", "hardnet9", weights=str(path)).eval()
    assert (back.patch_size, back.dim) == (48, 64)
    x = _patches(2, 48)
    with torch.no_grad():
        assert_close(back(x), net.eval()(x))


@pytest.mark.parametrize("name", sorted(NETS))
def test_flat_patch_gives_zero_row(name):
    net = _make(name).eval()
    _randomise_bn(net)  # trained-like statistics: the response to a zero input is not zero
    size = net.patch_size
    x = _patches(4, size)
    x[1] = 0.0
    x[2] = 0.73
    with torch.no_grad():
        out = net(x)
        alone = net(x[[0, 3]])
    assert torch.isfinite(out).all()
    assert out[1].eq(0).all() and out[2].eq(0).all()
    assert_close(out[[0, 3]], alone)  # flat rows do not disturb the others


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["hardnet", "hardnet8", "sosnet", "tfeat"])
def test_flat_and_near_flat_patches_in_every_dtype(name, dtype):
    net = _make(name).eval().to(dtype)
    flat = torch.full((2, 1, 32, 32), 0.5, dtype=dtype)
    flat[1] = 255.0
    near = torch.full((1, 1, 32, 32), 0.5) + 1e-6 * _patches(1)
    with torch.no_grad():
        out_flat = net(flat)
        out_near = net(near.to(dtype))
    assert out_flat.dtype == dtype and out_flat.eq(0).all()
    assert torch.isfinite(out_near).all()


@pytest.mark.parametrize("name", ["hardnet", "hardnet8", "sosnet", "tfeat"])
def test_devices_and_dtypes(name, device, dtype):
    net = _make(name).eval()
    _randomise_bn(net)
    x = _patches(4)
    with torch.no_grad():
        ref = net(x)
        net = net.to(device=device, dtype=dtype)
        out = net(x.to(device=device, dtype=dtype))
    assert out.dtype == dtype and out.device.type == device.type
    assert_close(out.norm(dim=1).cpu(), torch.ones(4, dtype=dtype))
    # cuDNN runs float32 convolutions in TF32 by default (Ampere and later): rows differ by ~4e-5
    # there (measured on an H200); CPU float32 and float64 must agree to 1e-5.
    tf32 = device.type == "cuda" and dtype == torch.float32 and torch.backends.cudnn.allow_tf32
    assert_close(out.cpu().float(), ref, atol=3e-4 if tf32 else 1e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models(dtype):
    net = _make("hardnet").eval()
    _randomise_bn(net)
    x = _patches(8)
    with torch.no_grad():
        ref = net(x)
        out = net.to(dtype)(x)  # float32 patches are cast to the weights' dtype
    assert out.dtype == dtype
    assert float((out.float() * ref).sum(1).min()) > 0.995


def test_affine_intensity_invariance():
    _, net = _kornia_pair("hardnet")
    x = _patches(4)
    with torch.no_grad():
        assert_close(net(0.5 * x + 0.2), net(x), atol=1e-4, rtol=1e-4)
        assert_close(net(255.0 * x), net(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["sosnet", "tfeat"])
def test_gradcheck_wrt_patches(name):
    # SOSNet and TFeat let gradients flow through the standardisation, so the input gradient is exact.
    net = _make(name).eval().double()
    x = _patches(2, dtype=torch.float64)
    assert gradcheck(net, x, fast_mode=True)


@pytest.mark.parametrize("name", ["hardnet", "hardnet8"])
def test_gradcheck_wrt_first_convolution(name):
    # HardNet detaches its standardisation statistics (kornia's convention), so check a weight instead.
    net = _make(name).eval().double()
    _randomise_bn(net)
    x = _patches(2, dtype=torch.float64)
    params = dict(net.named_parameters())

    def f(weight):
        return torch.func.functional_call(net, {**params, "features.0.weight": weight}, (x,))

    assert gradcheck(f, params["features.0.weight"], fast_mode=True)


def test_standardize_patches_matches_kornia_formulas():
    x = _patches(3) * 3 + 1
    z, flat = standardize_patches(x, eps=1e-6, kind="std")
    std, mean = torch.std_mean(x, dim=(1, 2, 3), keepdim=True)
    assert_close(z, (x - mean) / (std + 1e-6))
    z, _ = standardize_patches(x, eps=1e-5, kind="instance")
    assert_close(z, F.instance_norm(x, eps=1e-5))
    assert not flat.any()


def test_standardize_and_normalise_gradients():
    x = _patches(2, 8, dtype=torch.float64)
    x[1] = 0.25  # flat patch: finite gradients too

    def std(p):
        return standardize_patches(p, eps=1e-6, kind="std", detach=False)[0]

    def inst(p):
        return standardize_patches(p, eps=1e-5, kind="instance", detach=False)[0]

    assert gradcheck(inst, x)
    assert gradcheck(std, x[:1])
    x.requires_grad_(True)
    std(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    d = torch.randn(3, 5, dtype=torch.float64)
    assert gradcheck(normalize_descriptors, d)


def test_pca_project_and_set_pca():
    net = HardNet8(dim=4, trunk_dim=512).eval()
    gen = torch.Generator().manual_seed(0)
    mean = torch.rand(512, generator=gen) * 0.01
    comps = torch.linalg.qr(torch.randn(512, 4, generator=gen))[0]
    net.set_pca(mean, comps)
    feats = torch.randn(3, 512, generator=gen)
    expected = (F.normalize(feats, dim=1) - mean) @ comps
    assert_close(pca_project(feats, net.mean, net.components), expected)
    with pytest.raises(ShapeError):
        net.set_pca(mean, comps[:, :3])
    with torch.no_grad():
        assert net(_patches(2)).shape == (2, 4)


def test_variant_table_drives_the_registered_variants():
    from lookalike.descriptors.patch.hardnet8 import VARIANTS

    assert {"hardnet7x2", "hardnet8", "hardnet8x2", "hardnet9"} <= set(VARIANTS)
    for name, spec in VARIANTS.items():
        net = _make(name)
        convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
        assert [c.out_channels for c in convs[:-1]] == list(spec.widths)
        assert convs[-1].out_channels == spec.dim
        assert net._norm_eps == spec.eps
    assert lookalike.create("descriptor", "hardnet9", dim=64).dim == 64


def test_hardnet8_pca_fitted_on_forward_features():
    # The training helper's flow: trunk rows from forward_features, L2-normalised, PCA, set_pca.
    net = HardNet8(dim=8).eval()
    _randomise_bn(net)
    with torch.no_grad():
        feats = net.forward_features(_patches(64, seed=3))
    rows = F.normalize(feats.double(), dim=1)
    mean = rows.mean(0)
    comps = torch.linalg.svd(rows - mean, full_matrices=False)[2][:8].T
    net.set_pca(mean.float(), comps.float())
    x = _patches(5, seed=4)
    with torch.no_grad():
        got = net(x)
        raw = (F.normalize(net.forward_features(x).double(), dim=1) - mean) @ comps
    assert_close(got, F.normalize(raw, dim=1).float(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("shape", [(8, 8), (128, 128, 1, 1), (4, 2, 3, 3), (64, 8)])
@pytest.mark.parametrize("fallback", [False, True])
def test_orthogonal_init_rows_or_columns_are_orthonormal(shape, fallback, monkeypatch):
    from lookalike.descriptors.patch.hardnet import orthogonal_

    if fallback:  # as if Cholesky failed: the QR path must give the same kind of matrix
        real = torch.linalg.cholesky_ex
        monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda a: (real(a)[0], torch.tensor(1)))
    torch.manual_seed(0)
    w = orthogonal_(torch.empty(shape), gain=0.5).flatten(1)
    small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    torch.testing.assert_close(small, 0.25 * torch.eye(small.shape[0]), atol=1e-5, rtol=0)
