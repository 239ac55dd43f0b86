"""Contract examples of the building-block layers (issue 14) and the RGA modules (issue 12)."""

from __future__ import annotations

import torch

from contract_examples import Example


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _anchors() -> tuple[torch.Tensor, list[int]]:
    """Two levels of square anchors on a 16×16 image: 4×4 of side 4, then 2×2 of side 8."""
    boxes = []
    for side in (4, 8):
        for y in range(0, 16, side):
            for x in range(0, 16, side):
                boxes.append([x, y, x + side, y + side])
    return torch.tensor(boxes, dtype=torch.float32), [16, 4]


def _atss_inputs(_) -> tuple:
    anchors, counts = _anchors()
    return anchors, torch.tensor([[1.0, 1.0, 7.0, 6.0], [8.0, 9.0, 15.0, 15.0]]), counts


def _atss_bad(_) -> tuple:
    anchors, counts = _anchors()
    return anchors, torch.tensor([[1.0, 1.0, 7.0]]), counts


_PYRAMID = ((2, 4, 8, 8), (2, 8, 4, 4), (2, 16, 2, 2))


def _unit_rows(n: int, d: int) -> torch.Tensor:
    return torch.nn.functional.normalize(_rand(n, d) - 0.5, dim=1)


EXAMPLES = {
    "layer": {
        "matchability_gate": Example(
            kwargs={"dim": 8, "gamma": 2.0},
            inputs=lambda _: (_unit_rows(3, 8),),
            bad=lambda _: (_unit_rows(3, 7),),
            out_shape=(3, 9),
        ),
        "se": Example(
            kwargs={"channels": 8, "rd_channels": 2},
            inputs=lambda _: (_rand(2, 8, 5, 5),),
            bad=lambda _: (_rand(2, 7, 5, 5),),
            out_shape=(2, 8, 5, 5),
        ),
        "cbam": Example(
            kwargs={"channels": 16},
            inputs=lambda _: (_rand(2, 16, 6, 6),),
            bad=lambda _: (_rand(2, 16, 6),),
            out_shape=(2, 16, 6, 6),
        ),
        "attention_pool": Example(
            kwargs={"channels": 8, "num_heads": 2, "key_dim": 4},
            inputs=lambda _: (_rand(3, 8, 5, 5),),
            bad=lambda _: (_rand(3, 6, 5, 5),),
            out_shape=(3, 8),
        ),
        "stn": Example(
            kwargs={"in_channels": 1},
            inputs=lambda _: (_rand(2, 1, 16, 16),),
            bad=lambda _: (_rand(2, 3, 16, 16),),
            out_shape=(2, 1, 16, 16),
        ),
        "dense_block": Example(
            kwargs={"in_channels": 4, "num_layers": 2, "growth_rate": 3},
            inputs=lambda _: (_rand(2, 4, 6, 6),),
            bad=lambda _: (_rand(2, 5, 6, 6),),
            out_shape=(2, 10, 6, 6),
        ),
        "transition": Example(
            kwargs={"in_channels": 10},
            inputs=lambda _: (_rand(2, 10, 6, 6),),
            bad=lambda _: (_rand(2, 10, 6, 6).long(),),
            out_shape=(2, 5, 3, 3),
        ),
        "asff": Example(
            kwargs={"in_channels": (4, 8, 16), "level": 1},
            inputs=lambda _: tuple(_rand(*s, seed=i) for i, s in enumerate(_PYRAMID)),
            bad=lambda _: tuple(_rand(*s, seed=i) for i, s in enumerate(_PYRAMID[:2])),
            out_shape=(2, 8, 4, 4),
        ),
        "msffrb": Example(
            kwargs={"channels": 4},
            inputs=lambda _: (_rand(2, 4, 7, 7),),
            bad=lambda _: (_rand(2, 3, 7, 7),),
            out_shape=(2, 4, 7, 7),
        ),
        "aspconv": Example(
            kwargs={"channels": 8, "dilations": (1, 2)},
            inputs=lambda _: (_rand(2, 8, 7, 7),),
            bad=lambda _: (_rand(8, 7, 7),),
            out_shape=(2, 8, 7, 7),
        ),
        "fmf": Example(
            kwargs={"in_channels": (4, 8)},
            inputs=lambda _: (_rand(2, 4, 8, 8), _rand(2, 8, 4, 4, seed=1)),
            bad=lambda _: (_rand(2, 4, 8, 8), _rand(2, 8, 3, 3, seed=1)),
            out_shape=(2, 4, 8, 8),
        ),
        "cat_fusion": Example(
            kwargs={"in_channels": (4, 3), "out_channels": 5},
            inputs=lambda _: (_rand(2, 4, 5, 5), _rand(2, 3, 5, 5, seed=1)),
            bad=lambda _: (_rand(2, 4, 5, 5), _rand(2, 3, 4, 5, seed=1)),
            out_shape=(2, 5, 5, 5),
        ),
        "add_fusion": Example(
            kwargs={"in_channels": (4, 3)},
            inputs=lambda _: (_rand(2, 4, 5, 5), _rand(2, 3, 5, 5, seed=1)),
            bad=lambda _: (_rand(2, 4, 5, 5),),
            out_shape=(2, 4, 5, 5),
        ),
        "atss_assigner": Example(
            kwargs={"topk": 3},
            inputs=_atss_inputs,
            bad=_atss_bad,
            out_shape=(20, 2),
        ),
        "yolov4_head": Example(
            kwargs={"in_channels": (4, 8, 16), "num_classes": 2, "num_anchors": 1, "head_width": 4},
            inputs=lambda _: tuple(_rand(*s, seed=i) for i, s in enumerate(_PYRAMID)),
            bad=lambda _: (_rand(*_PYRAMID[0]), _rand(2, 8, 3, 3), _rand(*_PYRAMID[2])),
            out_shape=(2, 64 + 16 + 4, 7),
        ),
        "rga_s": Example(
            kwargs={"channels": 16, "feat_size": (8, 8)},
            inputs=lambda _: (_rand(2, 16, 8, 8),),
            bad=lambda _: (_rand(2, 16, 8, 4),),
            out_shape=(2, 16, 8, 8),
        ),
        "rga_c": Example(
            kwargs={"channels": 64, "feat_size": (4, 4)},
            inputs=lambda _: (_rand(2, 64, 4, 4),),
            bad=lambda _: (_rand(2, 32, 4, 4),),
            out_shape=(2, 64, 4, 4),
        ),
    }
}
