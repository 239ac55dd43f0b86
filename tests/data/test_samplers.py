"""P×K and epoch samplers (hypothesis properties, resume) and the bundled_classes data set."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lookalike
from lookalike.core.errors import EmptyInputError, OptionError
from lookalike.data.bundled_classes import BundledClasses
from lookalike.data.bundled_pairs import VALIDATION_PHOTOS
from lookalike.data.samplers import EpochSampler, PKSampler

labels_st = st.lists(st.integers(0, 9), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(labels=labels_st, p=st.integers(1, 6), k=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_pk_batches_are_full_with_p_distinct_ids_times_k(labels, p, k, seed):
    labels = np.asarray(labels)
    if np.unique(labels).size < p:
        with pytest.raises(OptionError):
            PKSampler(labels, p=p, k=k, seed=seed)
        return
    sampler = PKSampler(labels, p=p, k=k, seed=seed)
    counts = Counter(labels.tolist())
    for batch in itertools.islice(sampler, 2 * len(sampler) + 1):
        assert len(batch) == p * k
        ids = labels[batch].reshape(p, k)
        assert (ids == ids[:, :1]).all()  # k consecutive samples of one id
        assert np.unique(ids[:, 0]).size == p  # p distinct ids
        for row, ident in zip(np.asarray(batch).reshape(p, k), ids[:, 0]):
            if counts[int(ident)] >= k:  # enough samples: drawn without replacement
                assert np.unique(row).size == k


@settings(max_examples=40, deadline=None)
@given(labels=labels_st, k=st.integers(1, 4), seed=st.integers(0, 1000), cut=st.integers(0, 12))
def test_pk_resume_continues_the_same_sequence(labels, k, seed, cut):
    labels = np.asarray(labels)
    p = min(2, np.unique(labels).size)
    whole = list(itertools.islice(PKSampler(labels, p=p, k=k, seed=seed), cut + 5))
    first = PKSampler(labels, p=p, k=k, seed=seed)
    head = list(itertools.islice(first, cut))
    again = PKSampler(labels, p=p, k=k, seed=seed)
    again.load_state_dict(first.state_dict())
    assert head + list(itertools.islice(again, 5)) == whole


def test_pk_epoch_visits_ids_without_repeat_and_seed_matters():
    labels = np.repeat(np.arange(12), 3)
    sampler = PKSampler(labels, p=4, k=3, seed=7)
    epoch = [labels[next(sampler)][::3] for _ in range(len(sampler))]
    assert sorted(np.concatenate(epoch).tolist()) == list(range(12))
    other = next(PKSampler(labels, p=4, k=3, seed=8))
    assert other != next(PKSampler(labels, p=4, k=3, seed=7))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 50), b=st.integers(1, 10), seed=st.integers(0, 1000))
def test_epoch_sampler_is_a_shuffled_partition(n, b, seed):
    if b > n:
        with pytest.raises(OptionError):
            EpochSampler(n, batch_size=b, seed=seed)
        return
    sampler = EpochSampler(n, batch_size=b, seed=seed)
    epoch = [next(sampler) for _ in range(len(sampler))]
    flat = [i for batch in epoch for i in batch]
    assert all(len(batch) == b for batch in epoch)
    assert len(set(flat)) == len(flat) == (n // b) * b and set(flat) <= set(range(n))
    state = sampler.state_dict()
    again = EpochSampler(n, batch_size=b, seed=seed)
    again.load_state_dict(state)
    assert next(again) == next(sampler)


def test_sampler_bad_input():
    with pytest.raises(EmptyInputError):
        PKSampler([], p=1, k=1)
    with pytest.raises(OptionError, match="labels: expected integers"):
        PKSampler([0.5, 1.5], p=1, k=1)
    with pytest.raises(OptionError, match="k: expected an integer >= 1"):
        PKSampler([0, 1], p=1, k=0)
    sampler = PKSampler([0, 1], p=1, k=1, seed=1)
    with pytest.raises(OptionError, match="seed"):
        sampler.load_state_dict({"seed": 2, "epoch": 0, "batch": 0})


def test_bundled_classes_labels_regions_and_held_out_photos():
    data = lookalike.create(
        "dataset", "bundled_classes", photos=["camera", "coins"], grid=2, samples_per_class=5
    )
    assert isinstance(data, BundledClasses)
    assert data.num_classes == 8 and len(data) == 40
    assert np.bincount(data.labels).tolist() == [5] * 8
    patch, label = data[7]
    assert (
        patch.shape == (1, 32, 32)
        and label == 1
        and 0 <= float(patch.min()) <= float(patch.max()) <= 1
    )
    # same class -> closer on average than different classes (the classes are learnable)
    flat = data.patches.flatten(1)
    dist = torch.cdist(flat, flat)
    same = torch.from_numpy(data.labels[:, None] == data.labels[None, :])
    assert float(dist[same].mean()) < float(dist[~same].mean())
    default = BundledClasses(samples_per_class=1, grid=1)
    assert not set(default.photos) & set(VALIDATION_PHOTOS)
    with pytest.raises(OptionError, match="held out"):
        BundledClasses(photos=[VALIDATION_PHOTOS[0]])
    val = data.validation_set()
    assert torch.equal(val.labels[val.pairs[:, 0]] == val.labels[val.pairs[:, 1]], val.is_match)
    assert int(val.is_match.sum()) == len(VALIDATION_PHOTOS) * 4
    torch.testing.assert_close(data.validation_set().patches, val.patches, rtol=0, atol=0)
