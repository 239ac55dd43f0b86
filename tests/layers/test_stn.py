"""Spatial transformer: identity at initialisation, similarity parametrisation, learning to undo a rotation."""

from __future__ import annotations

import math

import kornia.geometry.transform as kornia_geometry
import pytest
import torch
import torch.nn.functional as F

import lookalike
from conftest import assert_close
from lookalike.core.errors import OptionError, ShapeError
from lookalike.layers.stn import SpatialTransformer, similarity_theta


@pytest.mark.parametrize("transform", ["affine", "similarity"])
def test_untrained_stn_is_the_identity(transform):
    stn = SpatialTransformer(1, transform=transform)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 32, 32, generator=gen)
    assert (stn(x) - x).abs().max() <= 1e-6
    x3 = torch.rand(4, 3, 40, 56, generator=gen, dtype=torch.float64)
    stn3 = SpatialTransformer(3, transform=transform).double()
    assert (stn3(x3) - x3).abs().max() <= 1e-12
    theta = stn.theta(x)
    assert_close(theta, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(16, 2, 3))


def test_similarity_theta_is_a_scaled_rotation():
    angle, scale = 0.7, 1.3
    params = torch.tensor([[scale * math.cos(angle), scale * math.sin(angle), 0.1, -0.2]])
    theta = similarity_theta(params)[0]
    lin = theta[:, :2]
    assert_close(lin @ lin.T, scale**2 * torch.eye(2))  # orthogonal up to scale
    assert float(torch.linalg.det(lin)) > 0  # no reflection
    assert_close(theta[:, 2], torch.tensor([0.1, -0.2]))


def test_stn_output_size_and_errors():
    stn = SpatialTransformer(2, out_size=(8, 12))
    assert stn(torch.rand(3, 2, 20, 20)).shape == (3, 2, 8, 12)
    with pytest.raises(ShapeError):
        stn(torch.rand(3, 1, 20, 20))
    with pytest.raises(OptionError):
        SpatialTransformer(1, transform="projective")
    with pytest.raises(OptionError):
        SpatialTransformer(1, padding_mode="wrap")


def _blobs(n: int, size: int, seed: int) -> torch.Tensor:
    """Smooth random images: upsampled noise, so a rotation changes them and is recoverable."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 6, 6, generator=gen)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)


@pytest.mark.slow
def test_stn_learns_to_undo_a_known_rotation():
    torch.manual_seed(0)
    size, degrees = 32, 30.0
    stn = SpatialTransformer(1, transform="similarity", padding_mode="border")
    opt = torch.optim.Adam(stn.parameters(), lr=1e-2)
    centre = slice(8, 24)  # compare the centre, away from the corners rotated in from outside
    for step in range(150):
        x = _blobs(8, size, seed=step)
        rotated = kornia_geometry.rotate(x, torch.full((8,), degrees), padding_mode="border")
        loss = F.mse_loss(stn(rotated)[..., centre, centre], x[..., centre, centre])
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = _blobs(32, size, seed=1000)
    rotated = kornia_geometry.rotate(x, torch.full((32,), degrees), padding_mode="border")
    with torch.no_grad():
        before = F.mse_loss(rotated[..., centre, centre], x[..., centre, centre])
        after = F.mse_loss(stn(rotated)[..., centre, centre], x[..., centre, centre])
        theta = stn.theta(rotated).mean(0)
    learned = math.degrees(math.atan2(float(theta[1, 0]), float(theta[0, 0])))
    assert abs(abs(learned) - degrees) < 3.0, learned
    assert after < 0.1 * before


def test_stn_hardnet_untrained_describes_like_hardnet_and_trains_end_to_end():
    torch.manual_seed(0)
    net = lookalike.create("descriptor", "stn_hardnet").eval()
    x = torch.rand(8, 1, 32, 32)
    assert_close(net(x), net.descriptor(x))
    assert net.dim == 128 and net.patch_size == 32 and net.input_spec == net.descriptor.input_spec
    net.train()
    net(x).sum().backward()
    assert net.stn.head.bias.grad is not None and net.stn.head.bias.grad.abs().sum() > 0


def test_stn_wraps_another_descriptor_by_name_or_instance():
    sift = lookalike.create("descriptor", "sift", patch_size=32)
    net = lookalike.create("descriptor", "stn_hardnet", descriptor=sift)
    x = torch.rand(4, 1, 32, 32)
    assert_close(net(x), sift(x))
    by_name = lookalike.create("descriptor", "stn_hardnet", descriptor="hardnet", patch_size=64)
    assert by_name(torch.rand(2, 1, 64, 64)).shape == (2, 128)
    with pytest.raises(OptionError):
        lookalike.create("descriptor", "stn_hardnet", descriptor=3)
