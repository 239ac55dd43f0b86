"""SIFT / RootSIFT: kornia oracle (random and real patches), a slow per-bin reference for every other
setting, float64 gradcheck, a hand-computed toy edge, degenerate and low-precision inputs, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lookalike
from conftest import gradcheck
from lookalike.core.errors import DTypeError, OptionError, ShapeError, ValueRangeError
from lookalike.descriptors.patch import sift as sift_module
from lookalike.descriptors.patch.sift import (
    SIFTDescriptor,
    sift_describe,
    sift_grid,
    sift_pooling_matrix,
)

kornia_feature = pytest.importorskip("kornia.feature")

ALL_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _rand(batch: int, size: int, seed: int = 0, dtype=torch.float32, device="cpu") -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, size, size, generator=gen, dtype=torch.float64).to(device, dtype)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double().to(a.device)).abs().max().item()


# --------------------------------------------------------------------------------------------------
# Slow reference, straight from the formulas: explicit window, per-bin masks, one convolution per bin.
# --------------------------------------------------------------------------------------------------


def _reference_window(P: int, mask_type: str, sigma_type: str) -> torch.Tensor:
    c = (P - 1) / 2.0
    radius = P / 2.0
    sigma = P / math.sqrt(2.0) if sigma_type == "vlfeat" else math.sqrt(0.45) * radius
    win = torch.empty(P, P, dtype=torch.float64)
    for p in range(P):
        for q in range(P):
            r2 = (p - c) ** 2 + (q - c) ** 2
            if mask_type == "Uniform":
                w = 1.0
            else:
                w = math.exp(-r2 / (2.0 * sigma**2))
                if mask_type == "CircularGauss" and r2 > radius**2:
                    w = 0.0
            win[p, q] = w
    return win / win.sum()


def _reference(
    x: torch.Tensor,
    *,
    A: int = 8,
    S: int = 4,
    clipval: float = 0.2,
    rootsift: bool = False,
    mask_type: str = "Gauss",
    sigma_type: str = "vlfeat",
    layout: str = "kornia",
) -> torch.Tensor:
    x = x.double()
    B, _, P, _ = x.shape
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = xp[..., 1:-1, 2:] - xp[..., 1:-1, :-2]
    gy = xp[..., 2:, 1:-1] - xp[..., :-2, 1:-1]
    mag = torch.sqrt(gx**2 + gy**2)
    o = torch.remainder(torch.atan2(gy, gx), 2.0 * math.pi) * A / (2.0 * math.pi)
    b0 = torch.floor(o)
    frac = o - b0
    b0 = b0.long() % A
    b1 = (b0 + 1) % A
    weighted = mag * _reference_window(P, mask_type, sigma_type).to(x.device)
    # centred cell grid: kernel 2 * int(P / (S + 1)) (+1 for parity), stride P // S
    stride = P // S
    ks = 2 * int(P / (S + 1))
    if (ks + (S - 1) * stride - P) % 2:
        ks += 1
    pad = (ks + (S - 1) * stride - P) // 2
    h = ks / 2.0
    k1 = torch.tensor([(h - abs(i + 0.5 - h)) / h for i in range(ks)], dtype=torch.float64)
    kernel = torch.outer(k1, k1).view(1, 1, ks, ks).to(x.device)
    bins = []
    for a in range(A):
        plane = weighted * ((b0 == a) * (1.0 - frac) + (b1 == a) * frac)
        bins.append(F.conv2d(plane, kernel, stride=stride, padding=pad))
    hist = torch.cat(bins, 1)  # (B, A, S, S)
    assert hist.shape[-1] == S
    if layout == "opencv":
        hist = hist[:, [(-a) % A for a in range(A)]].permute(0, 2, 3, 1)
    d = hist.reshape(B, -1)
    d = d / d.norm(dim=1, keepdim=True)
    d = d.clamp(max=clipval)
    d = d / d.norm(dim=1, keepdim=True)
    if rootsift:
        d = torch.sqrt(d / d.sum(dim=1, keepdim=True) + 1e-10)
        d = d / d.norm(dim=1, keepdim=True)
    return d


# --------------------------------------------------------------------------------------------------
# Registry and attributes
# --------------------------------------------------------------------------------------------------


def test_registered_names_and_attributes():
    sift = lookalike.create("descriptor", "sift")
    root = lookalike.create("descriptor", "rootsift", patch_size=32)
    assert isinstance(sift, SIFTDescriptor) and isinstance(root, SIFTDescriptor)
    assert (sift.patch_size, sift.dim, sift.in_channels, sift.rootsift) == (32, 128, 1, False)
    assert (root.patch_size, root.dim, root.rootsift) == (32, 128, True)
    assert not lookalike.create("descriptor", "rootsift", rootsift=False).rootsift
    assert SIFTDescriptor(num_ang_bins=6, num_spatial_bins=3).dim == 54
    assert sift.state_dict() == {} and list(sift.parameters()) == []
    assert "layout='kornia'" in repr(sift)


def test_geometry_is_kornias_centred_grid():
    assert sift_grid(41, 4) == kornia_feature.siftdesc.get_sift_bin_ksize_stride_pad(41, 4)
    assert sift_grid(32, 4) == kornia_feature.siftdesc.get_sift_bin_ksize_stride_pad(32, 4)
    for P, S in [(41, 4), (32, 4), (33, 3), (20, 2)]:
        ks, stride, pad = sift_grid(P, S)
        centres = [k * stride - pad + (ks - 1) / 2 for k in range(S)]
        assert sum(centres) / S == pytest.approx((P - 1) / 2)  # grid centred on the patch
    K = sift_pooling_matrix(41, mask_type="Uniform")
    assert K.shape == (16, 41 * 41) and bool((K.sum(0) > 0).all())  # every pixel is pooled


# --------------------------------------------------------------------------------------------------
# Oracle (a): kornia.feature.SIFTDescriptor (vlfeat sigma, Gauss window, centred grid)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("P", [32, 41])
@pytest.mark.parametrize("rootsift", [False, True])
def test_matches_kornia_on_random_patches(device, dtype, P, rootsift):
    x = _rand(16, P, seed=P, dtype=dtype, device=device)
    ours = SIFTDescriptor(patch_size=P, rootsift=rootsift).to(device)(x)
    theirs = kornia_feature.SIFTDescriptor(P, rootsift=rootsift).to(device)(x)
    assert ours.dtype == dtype and ours.shape == (16, 128)
    assert _max_diff(ours, theirs) <= 1e-5


def _real_patches(data_root, size: int, count: int = 600) -> torch.Tensor:
    cv2 = pytest.importorskip("cv2")
    path = data_root / "hpatches-patches-ref" / "ref.png"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    tiles = image.reshape(-1, 65, 65)[:count]
    if size != 65:
        tiles = np.stack([cv2.resize(t, (size, size), interpolation=cv2.INTER_AREA) for t in tiles])
    return torch.from_numpy(tiles.astype(np.float32) / 255.0).unsqueeze(1)


@pytest.mark.data
@pytest.mark.parametrize("P", [32, 41])
@pytest.mark.parametrize("rootsift", [False, True])
def test_matches_kornia_on_real_patches(data_root, P, rootsift):
    x = _real_patches(data_root, P)
    with torch.no_grad():
        ours = sift_describe(x, rootsift=rootsift)
        theirs = kornia_feature.SIFTDescriptor(P, rootsift=rootsift)(x)
    assert _max_diff(ours, theirs) <= 1e-5
    assert _max_diff(ours.norm(dim=1), torch.ones(len(x))) <= 1e-5


def test_opencv_layout_is_kornias_conversion():
    x = _rand(16, 32, seed=3)
    kornia_order = sift_describe(x)
    opencv_order = sift_describe(x, layout="opencv")
    expected = kornia_feature.convert_sift_descriptor_layout(kornia_order, "kornia", "opencv")
    assert _max_diff(opencv_order, expected) <= 1e-6


# --------------------------------------------------------------------------------------------------
# Oracle (b): the slow reference, for the settings kornia does not have
# --------------------------------------------------------------------------------------------------

SETTINGS = [
    dict(mask_type="CircularGauss", sigma_type="hesamp"),
    dict(mask_type="CircularGauss", sigma_type="vlfeat"),
    dict(mask_type="Gauss", sigma_type="hesamp"),
    dict(mask_type="Uniform"),
    dict(layout="opencv"),
    dict(layout="opencv", mask_type="CircularGauss", sigma_type="hesamp", rootsift=True),
    dict(A=4, S=2, rootsift=True),
    dict(A=6, S=3, mask_type="Gauss", sigma_type="hesamp", layout="opencv"),
    dict(A=12, S=5, clipval=0.15),
    dict(A=7, S=3, rootsift=True, mask_type="CircularGauss"),
    dict(A=1, S=1),
]


@pytest.mark.parametrize("P", [32, 41])
@pytest.mark.parametrize(
    "setting", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items())
)
def test_matches_slow_reference(P, setting):
    x = _rand(8, P, seed=P + len(setting))
    expected = _reference(x, **setting)
    kwargs = dict(setting)
    kwargs["num_ang_bins"] = kwargs.pop("A", 8)
    kwargs["num_spatial_bins"] = kwargs.pop("S", 4)
    ours64 = sift_describe(x.double(), **kwargs)
    ours32 = SIFTDescriptor(patch_size=P, **kwargs)(x)
    assert _max_diff(ours64, expected) <= 1e-10
    assert _max_diff(ours32, expected) <= 1e-5


def test_reference_agrees_with_kornia():
    """The slow reference itself reproduces kornia: it checks the same thing as the module does."""
    x = _rand(8, 41, seed=5)
    expected = kornia_feature.SIFTDescriptor(41, rootsift=True)(x)
    assert _max_diff(_reference(x, rootsift=True), expected) <= 1e-5


# --------------------------------------------------------------------------------------------------
# Oracle (c): gradients
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_ang_bins=4, num_spatial_bins=2),
        dict(num_ang_bins=8, num_spatial_bins=2, rootsift=True, layout="opencv"),
        dict(num_ang_bins=6, num_spatial_bins=2, mask_type="CircularGauss", sigma_type="hesamp"),
    ],
)
def test_gradcheck_float64(kwargs):
    x = _rand(1, 12, seed=11, dtype=torch.float64)  # random: no exactly-zero gradient
    full = kwargs.get("num_ang_bins") == 4  # the full Jacobian once, random projections otherwise
    assert gradcheck(lambda p: sift_describe(p, **kwargs), x, fast_mode=not full)


def test_gradient_through_module_and_flat_patch(device):
    model = SIFTDescriptor(patch_size=32, rootsift=True).to(device)
    x = torch.cat([_rand(2, 32, device=device), torch.full((1, 1, 32, 32), 0.3, device=device)])
    x.requires_grad_(True)
    out = model(x)
    (out * torch.randn_like(out)).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[:2].abs().sum() > 0
    assert x.grad[2].abs().sum() == 0  # a flat patch has a zero descriptor and a zero gradient


def test_grad_and_no_grad_paths_agree():
    x = _rand(4, 41, seed=2)
    with torch.no_grad():
        plain = sift_describe(x, rootsift=True)
    tracked = sift_describe(x.clone().requires_grad_(True), rootsift=True)
    assert _max_diff(tracked.detach(), plain) <= 1e-6


# --------------------------------------------------------------------------------------------------
# Oracle (d): a hand-computed toy patch
# --------------------------------------------------------------------------------------------------


def _step_edge(P: int, vertical: bool = True, rising: bool = True) -> torch.Tensor:
    x = torch.zeros(1, 1, P, P)
    if vertical:
        x[..., P // 2 :] = 1.0
    else:
        x[..., P // 2 :, :] = 1.0
    return x if rising else 1.0 - x


def test_toy_vertical_edge_hand_computed():
    """8x8, 2x2 cells, 4 angle bins, uniform window: dark left half, bright right half.

    Gradients: gx = 1 in columns 3 and 4, zero elsewhere, gy = 0: angle 0, so bin 0 with weight 1.
    Cells: stride 4, kernel 4, no padding, tap weights (0.25, 0.75, 0.75, 0.25). Column 3 is tap 3 of
    column-cell 0, column 4 tap 0 of column-cell 1, so every cell gets (sum of row taps = 2) * 0.25 / 64
    in bin 0 and nothing elsewhere: after L2 each of the four bin-0 entries is 0.5 (clipping at 0.2
    and renormalising keeps 0.5).
    """
    assert sift_grid(8, 2) == (4, 4, 0)
    x = _step_edge(8)
    kw = dict(num_ang_bins=4, num_spatial_bins=2, mask_type="Uniform")
    expected = torch.zeros(1, 16)
    expected[0, :4] = 0.5  # kornia layout: angle-major, bin 0 = entries 0..3
    assert _max_diff(sift_describe(x, **kw), expected) <= 1e-6
    expected_cv = torch.zeros(1, 16)
    expected_cv[0, ::4] = 0.5  # opencv layout: spatial-major, bin 0 of each cell
    assert _max_diff(sift_describe(x, layout="opencv", **kw), expected_cv) <= 1e-6
    # RootSIFT: L1 -> 0.25, sqrt -> 0.5; empty bins read sqrt(1e-10) = 1e-5
    root = sift_describe(x, rootsift=True, **kw)
    assert _max_diff(root, expected.clamp_min(1e-5)) <= 1e-6


@pytest.mark.parametrize(
    ("vertical", "rising", "bin_"),
    [(True, True, 0), (False, True, 2), (True, False, 4), (False, False, 6)],
)
def test_toy_edges_have_one_active_orientation_bin(vertical, rising, bin_):
    """Default settings: a step edge votes into exactly one of the 8 orientation bins.

    Angles are measured from +x towards +y (rows grow downwards): bright-right is bin 0, bright-below
    bin 2, bright-left bin 4, bright-above bin 6.
    """
    desc = sift_describe(_step_edge(41, vertical, rising)).view(8, 16)
    active = (desc.abs().sum(dim=1) > 0).nonzero().flatten().tolist()
    assert active == [bin_]
    assert desc[bin_].norm().item() == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------------------------------
# Degenerate and low-precision inputs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("low", ALL_DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("rootsift", [False, True])
def test_constant_patch_gives_all_zero_descriptor(device, low, rootsift):
    x = torch.full((3, 1, 32, 32), 0.5, dtype=low, device=device)
    x[1] = 0.0
    x[2] = 1.0
    out = SIFTDescriptor(patch_size=32, rootsift=rootsift).to(device)(x)
    assert out.dtype == low and out.device.type == device.type
    assert torch.isfinite(out).all()
    assert (out == 0).all()


@pytest.mark.parametrize("low", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_low_precision_inputs_close_to_float32(device, low):
    x = _rand(16, 41, seed=7, device=device).to(low)
    out = SIFTDescriptor(patch_size=41, rootsift=True).to(device)(x)
    ref = SIFTDescriptor(patch_size=41, rootsift=True).to(device)(x.float())
    assert out.dtype == low and torch.isfinite(out).all()
    assert _max_diff(out, ref) <= 1e-2
    assert _max_diff(out.float().norm(dim=1), torch.ones(16)) <= 1e-2


def test_intensity_affine_invariance():
    x = _rand(8, 32, seed=9, dtype=torch.float64)
    assert _max_diff(sift_describe(255.0 * x - 3.0), sift_describe(x)) <= 1e-10


def test_empty_batch():
    out = SIFTDescriptor(patch_size=32)(torch.zeros(0, 1, 32, 32))
    assert out.shape == (0, 128)


def test_cpu_blocks_match_single_pass(monkeypatch):
    x = _rand(40, 32, seed=4)
    whole = sift_describe(x, rootsift=True)
    monkeypatch.setattr(sift_module, "_CPU_BLOCK_ELEMS", 9 * 32 * 32 * 3)  # blocks of a few patches
    assert _max_diff(sift_describe(x, rootsift=True), whole) <= 1e-7
    assert _max_diff(sift_describe(x.requires_grad_(True), rootsift=True).detach(), whole) <= 1e-6


def test_function_and_module_agree(device):
    x = _rand(5, 41, device=device)
    kw = dict(rootsift=True, mask_type="CircularGauss", sigma_type="hesamp", layout="opencv")
    assert (
        _max_diff(SIFTDescriptor(patch_size=41, **kw).to(device)(x), sift_describe(x, **kw)) <= 1e-7
    )


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


def test_wrong_shape_raises_shape_error():
    model = SIFTDescriptor(patch_size=32)
    for bad in [torch.rand(2, 1, 41, 41), torch.rand(2, 3, 32, 32), torch.rand(1, 32, 32)]:
        with pytest.raises(ShapeError):
            model(bad)
    with pytest.raises(ShapeError):
        sift_describe(torch.rand(2, 1, 32, 31))


def test_non_float_input_raises_dtype_error():
    with pytest.raises(DTypeError):
        SIFTDescriptor(patch_size=32)(torch.zeros(1, 1, 32, 32, dtype=torch.uint8))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_raises(bad):
    x = _rand(2, 32)
    x[1, 0, 5, 7] = bad
    with pytest.raises(ValueRangeError, match="patches: expected finite values"):
        SIFTDescriptor(patch_size=32)(x)
    with pytest.raises(ValueError):
        sift_describe(x.half())
    SIFTDescriptor(patch_size=32, validate=False)(x)  # the check can be skipped


def test_large_finite_values_are_accepted():
    x = _rand(2, 32) * 3e38  # the fast sum check overflows; the exact check must still pass
    assert torch.isfinite(sift_describe(x)).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(mask_type="gauss"),
        dict(sigma_type="opencv"),
        dict(layout="cv2"),
        dict(num_ang_bins=0),
        dict(num_spatial_bins=0),
        dict(num_ang_bins=8.0),
        dict(clipval=0.0),
        dict(patch_size=3),
        dict(patch_size=41, num_spatial_bins=30),
        dict(patch_size=True),
    ],
)
def test_bad_options_raise_option_error(kwargs):
    with pytest.raises(OptionError):
        SIFTDescriptor(**kwargs)
    call = {k: v for k, v in kwargs.items() if k != "patch_size"}
    if call:
        with pytest.raises(OptionError):
            sift_describe(_rand(1, 41), **call)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["sift", "rootsift"])
def test_flat_patches_zero_without_the_base_class_pass(name, dtype):
    # SIFT skips Descriptor.forward's flat-input pass (zeroes_flat_input): its own normalisation must
    # give the same all-zero rows, in every dtype, and leave textured rows as they were.
    sift = lookalike.create("descriptor", name, patch_size=32)
    assert sift.zeroes_flat_input
    x = torch.rand(5, 1, 32, 32, generator=torch.Generator().manual_seed(3)).to(dtype)
    x[1], x[2], x[3] = 0.0, 0.37, 1.0
    out = sift(x)
    assert out.dtype == dtype and out[1:4].eq(0).all() and out[[0, 4]].ne(0).any(dim=1).all()
    from lookalike.descriptors._functional import flat_rows, zero_rows

    torch.testing.assert_close(out, zero_rows(out, flat_rows(x)), atol=0, rtol=0)
