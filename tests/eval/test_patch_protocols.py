"""HPatches tasks, FPR95 and Brown-revisited protocols on hand-computed toy cases (ties included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lookalike
from data.formats import write_phototour
from lookalike.core.errors import EmptyInputError, OptionError
from lookalike.data.hpatches_patches import PatchSequence
from lookalike.data.phototour import PhotoTour
from lookalike.eval.protocols.hpatches import (
    DescribedSequence,
    HPatchesOptions,
    describe_sequences,
    evaluate_patch_descriptor,
    hpatches_matching,
    hpatches_retrieval,
    hpatches_verification,
    verification_pairs,
)


def flat(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.flatten(1), dim=1)


def constant(x: torch.Tensor) -> torch.Tensor:
    return torch.ones(x.shape[0], 4)


def _sequences(n_seq=2, n=20, size=8, keys=("e1", "e2", "h1", "h2"), seed=0):
    rng = np.random.default_rng(seed)
    seqs = []
    for s in range(n_seq):
        ref = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        seqs.append(PatchSequence(f"v_{s}", ref, {k: ref.copy() for k in keys}))
    return seqs


def _described(name, ref, targets):
    ref = np.asarray(ref, float).reshape(-1, 1)
    targets = {k: np.asarray(v, float).reshape(-1, 1) for k, v in targets.items()}
    return DescribedSequence(name, ref, targets, np.full(len(ref), 50.0))


# ---------------------------------------------------------------- matching
def test_matching_hand_value():
    # ref 0 -> target 0 (d .1, correct); ref 1 -> target 2 (d .6, wrong); ref 2 -> target 1 (d .05, wrong)
    # ranking: wrong, correct, wrong out of 3 positives: points (0,1) (0,0) (1/3,1/2) (1/3,1/3) -> 1/12
    seq = _described("s", [0.0, 1.0, 2.0], {"e1": [0.1, 2.05, 1.6]})
    assert hpatches_matching([seq]) == {"easy": pytest.approx(1 / 12)}


def test_matching_ties():
    # both reference patches tie between the two targets: argmin picks target 0 for both,
    # so one correct and one wrong match at the same distance: one block (0,1) -> (1/2,1/2): 0.375
    seq = _described("s", [0.0, 1.0], {"e1": [0.5, 0.5]})
    assert hpatches_matching([seq])["easy"] == pytest.approx(0.375)


def test_matching_averages_targets_then_sequences():
    perfect = _described("a", [0.0, 1.0], {"e1": [0.0, 1.0], "e2": [0.0, 1.0]})
    half = _described("b", [0.0, 1.0], {"e1": [0.0, 1.0], "e2": [1.0, 0.0]})  # e2 all wrong -> AP 0
    assert hpatches_matching([perfect, half])["easy"] == pytest.approx((1.0 + 0.5) / 2)


# ---------------------------------------------------------------- verification
def test_verification_pairs_structure():
    described = describe_sequences(flat, _sequences(n_seq=3, n=10))
    pairs = verification_pairs(described, "e", 500, seed=1)
    pos, intra, inter = pairs["pos"], pairs["intra"], pairs["inter"]
    assert (pos[:, 0] == pos[:, 3]).all() and (pos[:, 2] == pos[:, 5]).all()
    assert (pos[:, 1] != pos[:, 4]).all() and pos[:, [1, 4]].max() <= 2
    assert (intra[:, 0] == intra[:, 3]).all() and (intra[:, 2] != intra[:, 5]).all()
    assert (intra[:, [1, 4]] == pos[:, [1, 4]]).all()
    assert (inter[:, 0] != inter[:, 3]).all()
    again = verification_pairs(described, "e", 500, seed=1)
    assert all(np.array_equal(pairs[k], again[k]) for k in pairs)


def test_verification_perfect_and_constant_descriptors():
    seqs = _sequences()
    perfect = hpatches_verification(describe_sequences(flat, seqs), n_pairs=1000)
    assert set(perfect) == {"easy", "hard"}
    for res in perfect.values():
        assert res["intra"] == pytest.approx(1.0) and res["inter"] == pytest.approx(1.0)
        assert res["fpr95"] == 0.0
    # a constant descriptor ties every distance: one block of 200 positives and 1000 negatives,
    # points (0,1) -> (1, 200/1200): AP = (1 + 1/6) / 2; every negative is crossed: FPR 1
    tied = hpatches_verification(describe_sequences(constant, seqs), n_pairs=1000)
    assert tied["easy"]["intra"] == pytest.approx(7 / 12)
    assert tied["easy"]["mean"] == pytest.approx(7 / 12)
    assert tied["hard"]["fpr95"] == 1.0


def test_verification_single_sequence_has_no_inter():
    res = hpatches_verification(describe_sequences(flat, _sequences(n_seq=1)), n_pairs=100)
    assert "inter" not in res["easy"] and res["easy"]["mean"] == res["easy"]["intra"]


# ---------------------------------------------------------------- retrieval
def test_retrieval_perfect_tied_and_capped():
    seqs = _sequences(keys=("e1",))
    described = describe_sequences(flat, seqs)
    perfect = hpatches_retrieval(described, n_queries=5, pool_sizes=(10, 100, 1000))
    # 40 reference patches, 5 queries: 35 in the pool, 15 to 20 of them from the other sequence:
    # 100 is capped to everything available, 1000 would repeat it and is dropped
    assert set(perfect["easy"]) == {"pool_10", "pool_100", "mean"}
    assert perfect["easy"]["mean"] == pytest.approx(1.0)
    # constant descriptor: the positive ties with 9 distractors in the first 10: (0,1) -> (1, 1/10)
    tied = hpatches_retrieval(describe_sequences(constant, seqs), n_queries=3, pool_sizes=(10,))
    assert tied["easy"]["pool_10"] == pytest.approx((1 + 1 / 10) / 2)


def test_retrieval_filters_flat_patches():
    ref = np.full((5, 8, 8), 128, np.uint8)
    seq = PatchSequence("flat", ref, {"e1": ref})
    with pytest.raises(EmptyInputError, match="std"):
        hpatches_retrieval(describe_sequences(flat, [seq]))


# ---------------------------------------------------------------- the whole evaluation
class TinyNet(torch.nn.Module):
    patch_size = 16

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(256, 8)

    def forward(self, x):
        assert x.shape[-1] == 16
        return torch.nn.functional.normalize(self.proj(x.flatten(1)), dim=1)


def test_evaluate_patch_descriptor_keys_and_module_handling():
    seqs = _sequences(size=32, keys=("e1", "h1", "t1"))
    net = TinyNet().train()
    res = evaluate_patch_descriptor(net, seqs, HPatchesOptions(n_pairs=300, n_queries=10))
    assert net.training  # mode restored
    for task in ("fpr95", "verification", "matching", "retrieval"):
        for name in ("easy", "hard", "tough", "mean"):
            assert 0.0 <= res[f"{task}/{name}"] <= 1.0
    assert res["verification/easy/intra"] == pytest.approx(1.0)  # identical views
    assert res["n_sequences"] == 2.0 and res["n_patches"] == 40.0
    assert all(isinstance(v, float) for v in res.values())


def test_describe_sequences_scales_uint8_and_resizes_by_area():
    import cv2

    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (3, 8, 8), dtype=np.uint8)
    seq = PatchSequence("s", ref, {"e1": ref})
    out = describe_sequences(lambda x: x.flatten(1), [seq])[0]
    np.testing.assert_allclose(out.ref, ref.reshape(3, -1) / 255.0, atol=1e-6)
    half = describe_sequences(lambda x: x.flatten(1), [seq], patch_size=4)[0]
    area = np.stack([cv2.resize(p / 255.0, (4, 4), interpolation=cv2.INTER_AREA) for p in ref])
    np.testing.assert_allclose(half.ref, area.reshape(3, -1), atol=1e-5)  # the one resize rule
    np.testing.assert_allclose(out.ref_std, ref.reshape(3, -1).std(axis=1))


def test_options_are_checked():
    with pytest.raises(OptionError):
        HPatchesOptions(n_pairs=0)
    with pytest.raises(OptionError):
        HPatchesOptions(pool_sizes=())
    with pytest.raises(OptionError, match="unknown"):
        HPatchesOptions.coerce({"n_pair": 3})
    assert HPatchesOptions.coerce(HPatchesOptions(seed=1), n_pairs=5) == HPatchesOptions(5, seed=1)


def test_empty_inputs():
    with pytest.raises(EmptyInputError):
        hpatches_matching([])
    ref = np.zeros((3, 8, 8), np.uint8)
    with pytest.raises(EmptyInputError, match="difficulty"):
        hpatches_matching(describe_sequences(flat, [PatchSequence("x", ref, {})]))


# ---------------------------------------------------------------- registered wrappers
def test_registered_hpatches_protocol():
    assert {"fpr95", "brown_snn_map", "hpatches", "phototour", "homography_matching"} <= set(
        lookalike.list_registered("protocol")
    )
    res = lookalike.create("protocol", "hpatches", n_pairs=100, n_queries=5)(flat, _sequences())
    assert res["matching/easy"] == 1.0
    with pytest.raises(OptionError):
        lookalike.create("protocol", "hpatches", n_pair=100)


def _phototour(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (40, 64, 64), dtype=np.uint8)
    patches = np.repeat(base, 2, axis=0)  # two identical views per 3D point
    points = np.repeat(np.arange(40), 2)
    pairs = [(2 * i, 2 * i + 1) for i in range(20)] + [(2 * i, 2 * i + 3) for i in range(20)]
    folder = write_phototour(
        tmp_path / "yosemite", patches, points, image_ids=np.arange(80) // 20, pairs=pairs
    )
    return PhotoTour(path=folder, patch_size=32)


def test_phototour_protocols_share_one_signature(tmp_path):
    """Every patch protocol is ``protocol(describer, data) -> dict``."""
    data = _phototour(tmp_path)
    assert lookalike.create("protocol", "phototour")(flat, data) == {"fpr95": 0.0, "snn_map": 1.0}
    assert lookalike.create("protocol", "fpr95")(flat, data) == {"fpr95": 0.0}
    assert lookalike.create("protocol", "brown_snn_map")(flat, data) == {"snn_map": 1.0}
    # a constant descriptor ties every pair: every negative is crossed at 95 % recall
    assert lookalike.create("protocol", "fpr95", recall=0.5)(constant, data) == {"fpr95": 1.0}
    with pytest.raises(OptionError):
        lookalike.create("protocol", "fpr95", recall=1.5)
