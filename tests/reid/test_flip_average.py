"""``flip_average`` of the re-ID networks: against describing the crop and its mirror separately."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lookalike
from lookalike.core.errors import OptionError
from lookalike.core.weights import save_weights

SMALL = {
    "relation_net": {"backbone": "resnet18", "width": 0.25, "input_size": (64, 32), "parts": 3},
    "rga": {"backbone": "resnet18", "width": 0.25, "input_size": (64, 32), "dim": 32},
}


def _pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same random network without and with flip averaging, BatchNorm statistics not trivial."""
    torch.manual_seed(0)
    plain = lookalike.create("descriptor", name, **SMALL[name])
    plain.train()
    with torch.no_grad():  # a few forward passes move the running statistics away from (0, 1)
        for _ in range(3):
            plain(torch.rand(8, 3, 64, 32))
    flipped = lookalike.create("descriptor", name, flip_average=True, **SMALL[name])
    flipped.load_state_dict(plain.state_dict())
    return plain.eval(), flipped.eval()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_rows_are_the_normalised_sum_of_crop_and_mirror(name):
    plain, flipped = _pair(name)
    x = torch.rand(5, 3, 80, 40)  # resized inside to 64 x 32
    with torch.no_grad():
        expected = F.normalize(plain(x) + plain(x.flip(-1)), dim=1)
        got = flipped(x)
        mirrored = flipped(x.flip(-1))
        alone = plain(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mirrored, got, atol=1e-5, rtol=1e-5)  # mirror invariant
    assert (alone - got).abs().max() > 1e-3  # and not the plain descriptor
    torch.testing.assert_close(got.norm(dim=1), torch.ones(5))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_training_mode_describes_the_crop_alone(name):
    plain, flipped = _pair(name)
    x = torch.rand(6, 3, 64, 32)
    plain.train(), flipped.train()
    with torch.no_grad():
        torch.testing.assert_close(flipped(x), plain(x))


def test_flat_crop_gives_a_zero_row_and_the_option_travels_with_the_weights(tmp_path):
    _, flipped = _pair("relation_net")
    with torch.no_grad():
        rows = flipped(torch.cat([torch.full((1, 3, 64, 32), 0.5), torch.rand(1, 3, 64, 32)]))
    path = save_weights(flipped, tmp_path / "net.safetensors")
    loaded = lookalike.create("descriptor", "relation_net", weights=str(path))
    assert loaded.flip_average is True
    x = torch.rand(3, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), flipped(x))
    assert torch.equal(rows[0], torch.zeros_like(rows[0]))  # the base's flat-input rule holds
    torch.testing.assert_close(rows[1].norm(), torch.tensor(1.0))


@pytest.mark.parametrize("value", [1, "yes", None])
def test_bad_flip_average_raises_option_error(value):
    with pytest.raises(OptionError, match="flip_average"):
        lookalike.create("descriptor", "relation_net", flip_average=value, **SMALL["relation_net"])


def test_onnx_export_keeps_the_mirror_average(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from lookalike.descriptors.export import export_descriptor

    _, flipped = _pair("relation_net")
    path = export_descriptor(flipped, tmp_path / "net.onnx", name="relation_net")
    session = ort.InferenceSession(str(path))
    for batch in (1, 3, 6):  # traced with another batch: the mirrored half is split dynamically
        x = torch.rand(
            flipped.input_spec.shape(batch), generator=torch.Generator().manual_seed(batch)
        )
        with torch.no_grad():
            expected = flipped(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == expected.shape
        assert abs(got - expected).max() <= 1e-4
