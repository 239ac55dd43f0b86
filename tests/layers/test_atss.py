"""ATSS assignment: hand-computed cases and a brute-force loop written from the paper's steps."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from conftest import assert_close
from lookalike.core.errors import ShapeError, ValueRangeError
from lookalike.layers.atss import ATSSAssigner, atss_assign, box_iou

ROW0 = [[0.0, 0, 4, 4], [4.0, 0, 8, 4], [8.0, 0, 12, 4], [12.0, 0, 16, 4]]
ROW1 = [[0.0, 0, 8, 8], [8.0, 0, 16, 8]]


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _atss_loop(anchors, gts, counts, topk, eps=0.01):
    """The paper's algorithm with Python lists: per gt, per level top-k by centre distance, mean + std."""
    positive_of: dict[int, list[tuple[float, int]]] = {}
    for g, gt in enumerate(gts):
        gc = ((gt[0] + gt[2]) / 2, (gt[1] + gt[3]) / 2)
        candidates, start = [], 0
        for n in counts:
            level = list(range(start, start + n))
            level.sort(
                key=lambda i: math.dist(
                    ((anchors[i][0] + anchors[i][2]) / 2, (anchors[i][1] + anchors[i][3]) / 2), gc
                )
            )
            candidates += level[: min(topk, n)]
            start += n
        ious = [_iou(anchors[i], gt) for i in candidates]
        thr = statistics.mean(ious) + (statistics.stdev(ious) if len(ious) > 1 else 0.0)
        for i, v in zip(candidates, ious):
            cx, cy = (anchors[i][0] + anchors[i][2]) / 2, (anchors[i][1] + anchors[i][3]) / 2
            inside = min(cx - gt[0], cy - gt[1], gt[2] - cx, gt[3] - cy) > eps
            if v >= thr and inside:
                positive_of.setdefault(i, []).append((v, g))
    index = [-1] * len(anchors)
    for i, hits in positive_of.items():
        best = max(v for v, _ in hits)
        index[i] = min(g for v, g in hits if v == best)
    return index


def test_hand_computed_two_levels():
    anchors = torch.tensor(ROW0 + ROW1)
    gt = torch.tensor([[3.0, 0, 10, 4]])
    # level 0 candidates (top-2 by centre distance to (6.5, 2)): anchors 1, 2; level 1: both (4, 5)
    ious = [16 / 28, 8 / 36, 20 / 72, 8 / 84]
    thr = statistics.mean(ious) + statistics.stdev(ious)  # 0.2917 + 0.2016 = 0.4932
    assert ious[0] >= thr > max(ious[1:])
    result = atss_assign(anchors, gt, [4, 2], topk=2, gt_labels=torch.tensor([7]))
    assert result.gt_index.tolist() == [-1, 0, -1, -1, -1, -1]
    assert result.labels.tolist() == [-1, 7, -1, -1, -1, -1]
    assert_close(result.overlaps, torch.tensor([0, 16 / 28, 0, 0, 0, 0]))


def test_centre_inside_check_rejects_an_anchor_above_the_threshold():
    anchors = torch.tensor(ROW0[:3])
    # B = [4, 0, 8, 4] has IoU 8/18 = 0.444 >= mean + std = 0.412 but its centre x = 6 is on the edge
    assert atss_assign(anchors, torch.tensor([[3.5, 0, 6, 4]]), [3], topk=3).gt_index.tolist() == [
        -1,
        -1,
        -1,
    ]
    # move the right edge out by 0.5: B's centre is inside and it becomes positive
    assert atss_assign(
        anchors, torch.tensor([[3.5, 0, 6.5, 4]]), [3], topk=3
    ).gt_index.tolist() == [-1, 0, -1]


def test_anchor_positive_for_two_boxes_goes_to_the_higher_iou():
    anchors = torch.tensor(ROW0 + ROW1)
    gts = torch.tensor([[3.0, 0, 10, 4], [4.0, 0, 9, 4]])  # anchor 1: IoU 0.571 and 0.8
    index = atss_assign(anchors, gts, [4, 2], topk=2).gt_index.tolist()
    assert index[1] == 1
    assert index == _atss_loop(anchors.tolist(), gts.tolist(), [4, 2], 2)


def _random_boxes(n, gen, low=2.0, high=20.0, extent=100.0):
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * extent
    wh = low + torch.rand(n, 2, generator=gen, dtype=torch.float64) * (high - low)
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_loop_on_random_boxes(seed):
    gen = torch.Generator().manual_seed(seed)
    counts = [60, 30, 10]
    anchors = torch.cat(
        [_random_boxes(n, gen, 4.0 * 2**i, 8.0 * 2**i) for i, n in enumerate(counts)]
    )
    gts = _random_boxes(6, gen, 10.0, 40.0)
    result = atss_assign(anchors, gts, counts, topk=5)
    assert result.gt_index.tolist() == _atss_loop(anchors.tolist(), gts.tolist(), counts, 5)
    assert (result.gt_index >= 0).any()
    hit = result.gt_index >= 0
    assert_close(
        result.overlaps[hit], box_iou(anchors, gts)[hit.nonzero()[:, 0], result.gt_index[hit]]
    )


def test_dense_forward_gradients_and_degenerate_cases():
    anchors = torch.tensor(ROW0 + ROW1, requires_grad=True)
    gts = torch.tensor([[3.0, 0, 10, 4]])
    out = ATSSAssigner(topk=2)(anchors, gts, [4, 2])
    assert out.shape == (6, 1)
    assert_close(out[:, 0], torch.tensor([0, 16 / 28, 0, 0, 0, 0]))
    out.sum().backward()
    assert anchors.grad[1].abs().sum() > 0 and anchors.grad[0].abs().sum() == 0
    empty = atss_assign(anchors.detach(), torch.zeros(0, 4), [4, 2])
    assert empty.gt_index.tolist() == [-1] * 6 and empty.overlaps.abs().sum() == 0
    single = atss_assign(torch.tensor([ROW0[1]]), torch.tensor([[3.0, 0, 10, 4]]), [1])
    assert single.gt_index.tolist() == [0]  # one candidate: threshold = its IoU


def test_atss_errors():
    anchors = torch.tensor(ROW0)
    with pytest.raises(ShapeError):
        atss_assign(anchors, torch.tensor([[0.0, 0, 1]]), [4])
    with pytest.raises(ShapeError):
        atss_assign(anchors, torch.tensor([[0.0, 0, 1, 1]]), [3])
    with pytest.raises(ValueRangeError):
        atss_assign(anchors, torch.tensor([[2.0, 0, 1, 1]]), [4])
    with pytest.raises(ValueRangeError):
        atss_assign(anchors, torch.tensor([[0.0, 0, float("nan"), 1]]), [4])
