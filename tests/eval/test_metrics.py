"""Metrics: hand-computed toy values (ties included), scikit-learn oracles, degenerate inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_curve

from lookalike.core.errors import EmptyInputError, OptionError, ShapeError, ValueRangeError
from lookalike.eval.metrics import (
    average_precision,
    average_precision_step,
    fpr_at_recall,
    pairwise_distances,
    snn_map,
)


# ---------------------------------------------------------------- FPR at 95 % recall
def _fpr_oracle(distances, labels, recall=0.95):
    fpr, tpr, _ = roc_curve(labels, -np.asarray(distances), drop_intermediate=False)
    return float(fpr[np.argmax(tpr >= recall - 1e-12)])


def _hardnet_fpr(distances, labels, recall=0.95):
    """HardNet's ErrorRateAt95Recall, re-derived from its definition (valid without ties)."""
    labels = np.asarray(labels)[np.argsort(distances, kind="stable")]
    idx = int(np.argmax(np.cumsum(labels) >= recall * labels.sum()))
    return float(np.sum(labels[:idx] == 0) / np.sum(labels == 0))


def test_fpr_hand_values():
    # recall 95 % of 2 positives needs both: threshold at 0.3, negatives below: one of two
    assert fpr_at_recall([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0]) == 0.5
    assert fpr_at_recall([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 0]) == 0.0
    assert fpr_at_recall([0.4, 0.3, 0.2, 0.1], [1, 1, 0, 0]) == 1.0
    # 20 positives: 95 % = 19 of them; the 20th (farthest) positive is not needed
    d = np.r_[np.arange(19), 100.0, 50.0, 60.0]
    y = np.r_[np.ones(20), 0, 0]
    assert fpr_at_recall(d, y) == 0.0
    assert fpr_at_recall(d, y, recall=1.0) == 1.0


def test_fpr_ties_count_tied_negatives():
    # the positive at 0.2 completes the recall; the negative tied with it crosses too
    assert fpr_at_recall([0.1, 0.2, 0.2, 0.9], [1, 1, 0, 0]) == 0.5
    # all tied: every negative is crossed
    assert fpr_at_recall([1.0, 1.0, 1.0], [1, 0, 0]) == 1.0
    # order of tied entries does not matter
    assert fpr_at_recall([0.2, 0.2, 0.1, 0.9], [0, 1, 1, 0]) == 0.5


def test_fpr_matches_hardnet_without_ties_and_sklearn_always():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(5, 300))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        d = rng.random(n) + 0.3 * (1 - y)
        assert fpr_at_recall(d, y) == pytest.approx(_hardnet_fpr(d, y))
        assert fpr_at_recall(d, y) == pytest.approx(_fpr_oracle(d, y))
        dq = np.round(d, 1)  # many ties
        assert fpr_at_recall(dq, y) == pytest.approx(_fpr_oracle(dq, y))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=2, max_size=40),
    st.sampled_from([0.5, 0.8, 0.95, 1.0]),
)
def test_fpr_property_against_roc_curve(items, recall):
    d = np.array([float(a) for a, _ in items])
    y = np.array([int(b) for _, b in items])
    if y.sum() == 0 or y.sum() == y.size:
        with pytest.raises(EmptyInputError):
            fpr_at_recall(d, y, recall=recall)
        return
    assert fpr_at_recall(d, y, recall=recall) == pytest.approx(_fpr_oracle(d, y, recall))


def test_fpr_accepts_tensors_and_inf():
    assert fpr_at_recall(torch.tensor([0.1, 0.5, float("inf")]), torch.tensor([1, 0, 0])) == 0.0


def test_fpr_degenerate_inputs():
    with pytest.raises(EmptyInputError, match="no positive"):
        fpr_at_recall([0.1, 0.2], [0, 0])
    with pytest.raises(EmptyInputError, match="no negative"):
        fpr_at_recall([0.1, 0.2], [1, 1])
    with pytest.raises(EmptyInputError):
        fpr_at_recall([], [])
    with pytest.raises(ValueRangeError):
        fpr_at_recall([0.1, float("nan")], [1, 0])
    with pytest.raises(ValueRangeError):
        fpr_at_recall([0.1, 0.2], [1, 2])
    with pytest.raises(ShapeError):
        fpr_at_recall([0.1, 0.2], [1, 0, 1])
    with pytest.raises(ShapeError):
        fpr_at_recall([[0.1, 0.2]], [[1, 0]])
    with pytest.raises(OptionError):
        fpr_at_recall([0.1, 0.2], [1, 0], recall=0.0)


# ---------------------------------------------------------------- HPatches average precision
def _ap_naive(scores, labels, num_positives=None):
    """The benchmark's AP written as a loop (stable order, -inf never retrieved)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # Python's sort is stable
    n_pos = num_positives if num_positives is not None else int(sum(labels))
    tp = fp = 0
    points = [(0.0, 1.0)]
    for i in order:
        if scores[i] == -np.inf:
            break
        tp += labels[i]
        fp += 1 - labels[i]
        points.append((tp / n_pos, max(tp, 1e-10) / max(tp + fp, 1e-10)))
    return sum((r1 - r0) * (p1 + p0) / 2 for (r0, p0), (r1, p1) in itertools.pairwise(points))


def test_ap_hand_values():
    assert average_precision([0.9, 0.8, 0.7], [1, 1, 0]) == pytest.approx(1.0)
    # points (0,1) (.5,1) (.5,.5) (1,2/3): area .5 + 0 + .5 * (.5 + 2/3) / 2
    assert average_precision([0.9, 0.8, 0.7], [1, 0, 1]) == pytest.approx(0.5 + 0.5 * 7 / 12)
    # a negative first: (0,1) (0,~0) (1,.5): area .5 * (0 + .5) ... = 0.25
    assert average_precision([0.9, 0.8], [0, 1]) == pytest.approx(0.25)


def test_ap_ties():
    # one tied block of a positive and a negative: points (0,1) (1,.5) -> 0.75, whatever the order
    assert average_precision([1.0, 1.0], [1, 0]) == pytest.approx(0.75)
    assert average_precision([1.0, 1.0], [0, 1]) == pytest.approx(0.75)
    # "stable" follows the input order, as the benchmark's mergesort
    assert average_precision([1.0, 1.0], [1, 0], ties="stable") == pytest.approx(1.0)
    assert average_precision([1.0, 1.0], [0, 1], ties="stable") == pytest.approx(0.25)
    # tie after a retrieved positive: (0,1) (1/2,1) (1,2/3): .5 + .5 * (1 + 2/3) / 2
    assert average_precision([3.0, 2.0, 2.0], [1, 1, 0]) == pytest.approx(0.5 + 5 / 12)


def test_ap_group_is_permutation_invariant_and_stable_matches_loop():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(2, 60))
        s = np.round(rng.random(n), 1)
        y = rng.integers(0, 2, n)
        y[0] = 1
        perm = rng.permutation(n)
        assert average_precision(s, y) == pytest.approx(average_precision(s[perm], y[perm]))
        assert average_precision(s, y, ties="stable") == pytest.approx(_ap_naive(list(s), list(y)))
        s_unique = s + np.arange(n) * 1e-6  # no ties: both conventions agree
        assert average_precision(s_unique, y) == pytest.approx(
            average_precision(s_unique, y, ties="stable")
        )


def test_ap_never_retrieved_and_num_positives():
    # -inf entries are never retrieved; the positive among them only costs recall
    assert average_precision([1.0, -np.inf], [1, 1]) == pytest.approx(0.5)
    # matching-style: 2 correct matches of 4 reference patches
    s, y = [0.9, 0.8, 0.7], [1, 0, 1]
    assert average_precision(s, y, num_positives=4) == pytest.approx(_ap_naive(s, y, 4))
    assert average_precision([0.5], [0], num_positives=3) == 0.0
    assert average_precision([-np.inf], [1]) == 0.0


def test_ap_degenerate_inputs():
    with pytest.raises(EmptyInputError):
        average_precision([0.1, 0.2], [0, 0])
    with pytest.raises(EmptyInputError):
        average_precision([], [])
    with pytest.raises(OptionError):
        average_precision([0.1], [1], num_positives=0)
    with pytest.raises(OptionError):
        average_precision([0.1], [1], ties="random")
    with pytest.raises(ValueRangeError):
        average_precision([np.nan], [1])


def test_ap_step_matches_sklearn_with_ties():
    assert average_precision_step([0.9, 0.8, 0.7], [1, 0, 1]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision_step([1.0, 1.0], [0, 1]) == pytest.approx(0.5)
    rng = np.random.default_rng(2)
    for _ in range(30):
        n = int(rng.integers(2, 80))
        s = np.round(rng.random(n), 1)
        y = rng.integers(0, 2, n)
        y[0] = 1
        assert average_precision_step(s, y) == pytest.approx(average_precision_score(y, s))


# ---------------------------------------------------------------- distances and SNN mAP
def test_pairwise_distances():
    rng = np.random.default_rng(3)
    a, b = rng.random((7, 5)), rng.random((4, 5))
    expected = np.linalg.norm(a[:, None] - b[None], axis=2)
    np.testing.assert_allclose(pairwise_distances(a, b, chunk=3), expected, atol=1e-12)
    with pytest.raises(ShapeError):
        pairwise_distances(a, rng.random((4, 3)))


def test_snn_map_hand_values():
    # two points x 2 views, far apart: every match correct, AP 1
    desc = np.array([[0.0], [0.1], [1.0], [1.2]])
    assert snn_map(desc, [0, 0, 1, 1], [0, 0, 0, 0]) == pytest.approx(1.0)
    # anchor 0 (x=0): positive 0.6 away, hardest negative (x=0.5) 0.5 away -> wrong, ratio 5/6
    # anchor 1 (x=0.6): positive 0.6, negative 0.1 -> wrong, ratio 1/6
    # anchor 2 (x=0.5): positive 0.4 (x=0.9), negative 0.1 -> wrong
    # anchor 3 (x=0.9): positive 0.4, negative 0.3 (x=0.6) -> wrong
    desc = np.array([[0.0], [0.6], [0.5], [0.9]])
    assert snn_map(desc, [0, 0, 1, 1], [0, 0, 0, 0]) == 0.0
    # anchor 0 correct (pos 0.1, neg 1.0: score .9); anchor 1 correct (pos .1, neg .9: score 8/9);
    # anchors 2, 3 (x=1.0, 1.6): pos .6, negs .9 and 1.5 -> correct, scores 1/3 and .6;
    # all correct -> AP 1 in group 0; group 1 has no positive pair and is skipped
    desc = np.array([[0.0], [0.1], [1.0], [1.6], [9.0]])
    assert snn_map(desc, [0, 0, 1, 1, 2], [0, 0, 0, 0, 1]) == pytest.approx(1.0)


def test_snn_map_ranks_by_ratio():
    # group of 3 points: one confusing point makes one match wrong with a high score
    # x: a0=0, a1=0.2 (label 0); b0=0.3, b1=2.0 (label 1)
    desc = np.array([[0.0], [0.2], [0.3], [2.0]])
    labels = [0, 0, 1, 1]
    # anchor a0: pos .2, neg .3 -> correct, score 1 - 2/3 = 1/3
    # anchor a1: pos .2, neg .1 -> wrong, score 1 - 1/2 = 1/2
    # anchor b0: pos 1.7, neg .1 -> wrong, score 1 - 1/17
    # anchor b1: pos 1.7, neg 1.8 -> correct, score 1 - 17/18 = 1/18
    # ranking by score: b0 (wrong), a1 (wrong), a0 (correct), b1 (correct) -> AP = .5 * 1/3 + .5 * 2/4
    assert snn_map(desc, labels, [0] * 4) == pytest.approx(0.5 / 3 + 0.5 * 0.5)


def test_snn_map_degenerate():
    with pytest.raises(EmptyInputError):
        snn_map(np.zeros((3, 2)), [0, 1, 2], [0, 0, 0])  # no positive pair
    with pytest.raises(EmptyInputError):
        snn_map(np.zeros((2, 2)), [0, 0], [0, 0])  # no negative
    with pytest.raises(ShapeError):
        snn_map(np.zeros((3, 2)), [0, 0], [0, 0, 0])
    # identical descriptors: ties count as correct, ratio 0/0 -> 1 (score 0)
    assert snn_map(np.zeros((4, 2)), [0, 0, 1, 1], [0] * 4) == pytest.approx(1.0)
