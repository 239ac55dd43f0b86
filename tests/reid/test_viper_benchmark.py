"""``benchmarks/viper.py`` end to end on a VIPeR fixture, reusing a trained network (no training)."""

from __future__ import annotations

import json

import torch

import lookalike
from conftest import load_benchmark
from lookalike.core.weights import save_weights
from reid.formats import write_viper


def _viper_script():
    return load_benchmark("viper")


def test_reused_network_gets_its_xqda_and_fused_rows(tmp_path, capsys):
    write_viper(tmp_path / "viper", n_ids=10)
    run = tmp_path / "runs" / "20260101-000000-viper_relation_net_split0"
    run.mkdir(parents=True)
    torch.manual_seed(0)
    net = lookalike.create(
        "descriptor", "relation_net", backbone="resnet18", width=0.25, input_size=(64, 32), parts=4
    )
    save_weights(net, run / "weights.safetensors")
    (run / "config.yaml").write_text("model:\n  name: relation_net\n")
    (run / "metrics.json").write_text(json.dumps({"train_seconds": 90.0}))
    viper = _viper_script()
    assert viper.trained_network("relation_net", 1, tmp_path / "runs") is None  # no such split
    args = ["--data", str(tmp_path), "--splits", "1", "--networks", "relation_net"]
    assert viper.main([*args, "--trained", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "reused, trained in 1.50 min" in out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    labels = [row.split(" | ")[0][2:] for row in rows[2:]]  # after the header and its rule
    assert labels == [
        "lomo-xqda",
        "stripe-hsv",
        "relation_net (trained)",
        "relation_net + xqda (trained)",
        "relation_net + xqda on its strips (trained)",
        f"lomo-xqda + relation_net (fused, w={viper.FUSION_WEIGHT})",
    ]
    assert all(row.rstrip().endswith("| 1.50 | 1 |") for row in rows[-4:])
