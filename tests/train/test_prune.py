"""Channel pruning of HardNet trunks (lookalike.train.prune), against a masked copy of the wide network."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import lookalike
from lookalike.core.errors import OptionError
from lookalike.core.weights import read_metadata, save_weights
from lookalike.descriptors.patch.hardnet import HardNet
from lookalike.train.prune import channel_importance, prune_hardnet, prune_weights


def _trained_like(width: int, seed: int = 0) -> HardNet:
    """A HardNet with non-trivial batch-norm statistics (a few training-mode passes)."""
    torch.manual_seed(seed)
    net = HardNet(width=width, dropout=0.0)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(64, 1, 32, 32))
    return net.eval()


def _masked_copy(net: HardNet, width: int) -> HardNet:
    """The wide network with the input weights of every dropped channel zeroed (brute-force choice)."""
    masked = copy.deepcopy(net)
    convs = [m for m in masked.features if isinstance(m, nn.Conv2d)]
    widths = (width, width, 2 * width, 2 * width, 4 * width, 4 * width)
    with torch.no_grad():
        for i, keep_count in enumerate(widths):
            nxt = convs[i + 1].weight
            norms = [float(nxt[:, c].abs().sum()) for c in range(nxt.shape[1])]
            ranked = sorted(range(len(norms)), key=lambda c: -norms[c])
            for c in ranked[keep_count:]:
                nxt[:, c] = 0.0
    return masked


def test_the_pruned_network_computes_the_wide_one_with_the_weakest_channels_cut() -> None:
    wide = _trained_like(8)
    slim = prune_hardnet(wide, width=4)
    x = torch.rand(16, 1, 32, 32)
    with torch.no_grad():
        expected = _masked_copy(wide, 4)(x)
        got = slim(x)
        unpruned = wide(x)
    assert slim.width == 4 and got.shape == (16, 128)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert (got - unpruned).abs().max() > 1e-3  # cutting channels changes the function


def test_pruning_to_the_same_width_is_the_identity() -> None:
    wide = _trained_like(8, seed=1)
    same = prune_hardnet(wide, width=8)
    x = torch.rand(8, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(same(x), wide(x), atol=1e-6, rtol=1e-6)


def test_channel_importance_is_the_next_layers_input_l1() -> None:
    net = _trained_like(4)
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    scores = channel_importance(net)
    assert len(scores) == len(convs) - 1
    for i, score in enumerate(scores):
        w = convs[i + 1].weight.detach()
        for c in range(w.shape[1]):
            assert float(score[c]) == pytest.approx(float(w[:, c].abs().sum()), rel=1e-6)


@pytest.mark.parametrize("width", [0, 9, 2.5, True])
def test_bad_widths_are_refused(width: object) -> None:
    with pytest.raises(OptionError, match="width"):
        prune_hardnet(_trained_like(8), width=width)  # type: ignore[arg-type]


def test_a_trunk_narrower_than_hardnets_stages_is_refused() -> None:
    from lookalike.descriptors.patch.hardnet import HardNetFamily

    flat = HardNetFamily(
        widths=(8,) * 6, strides=(1, 1, 2, 1, 2, 1), dim=128, dropout=0.3, patch_size=32, eps=1e-6
    )
    with pytest.raises(OptionError, match="needs layer widths"):
        prune_hardnet(flat, width=4)


def test_a_network_without_a_hardnet_trunk_is_refused() -> None:
    with pytest.raises(OptionError, match="features"):
        prune_hardnet(nn.Linear(3, 3), width=4)


def test_pruned_weights_load_by_name_with_their_width_and_provenance(tmp_path) -> None:
    wide = _trained_like(8, seed=2)
    base = save_weights(
        wide,
        tmp_path / "wide.safetensors",
        kind="descriptor",
        name="hardnet",
        kwargs={"width": 8, "dropout": 0.0},
        training={"patch_geometry": {"patch_extent": 6.0, "patch_size": 32}},
    )
    out = tmp_path / "slim.safetensors"
    training = prune_weights(out, base=f"hardnet:{base}", width=4)
    loaded = lookalike.create("descriptor", "hardnet", weights=str(out))
    assert loaded.width == 4 and loaded.patch_extent == 6.0
    assert training["pruned_from"] == f"hardnet:{base}"
    assert read_metadata(out)["training"]["width"] == 4
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), prune_hardnet(wide, width=4)(x))
    with pytest.raises(OptionError, match="NAME:WEIGHTS"):
        prune_weights(tmp_path / "x.safetensors", base="hardnet", width=4)


def test_cli_prune_cuts_the_shipped_gated_trunk(tmp_path, capsys):
    from lookalike.cli.main import main
    from lookalike.descriptors.patch.gated import HARDNET_GATED_WEIGHTS

    out = tmp_path / "pruned.safetensors"
    assert main(["prune", "--width", "8", "--out", str(out)]) == 0
    assert "width 8" in capsys.readouterr().out
    net = lookalike.create("descriptor", "hardnet", weights=str(out))
    source = lookalike.create("descriptor", "hardnet_gated", weights="bundled")
    assert net.width == 8 and net.patch_extent == source.patch_extent
    training = read_metadata(out)["training"]
    assert training["pruned_from"] == "hardnet_gated:bundled"
    assert training["source_sha256"] == HARDNET_GATED_WEIGHTS["bundled"].sha256
    trunk = HardNet(width=32).eval()
    trunk.load_state_dict(
        {k: v for k, v in source.state_dict().items() if k.startswith("features.")}
    )
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), prune_hardnet(trunk, width=8)(x))


def test_cli_prune_refuses_bad_arguments(tmp_path, capsys):
    from lookalike.cli.main import main

    assert main(["prune", "--out", str(tmp_path / "p.txt")]) == 1
    assert "safetensors" in capsys.readouterr().err
    assert main(["prune", "--base", "hardnet", "--out", str(tmp_path / "p.safetensors")]) == 1
    assert "weights" in capsys.readouterr().err
    assert main(["prune", "--width", "64", "--out", str(tmp_path / "p.safetensors")]) == 1
    assert "width" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
