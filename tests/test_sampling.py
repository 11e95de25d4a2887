"""Repeat-factor sampling: factors, per-epoch draws, determinism and distributed shards."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pipeline.data.sampling import RepeatFactorSampler, label_frequencies, repeat_factors


def long_tailed_labels(n_images: int = 600, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n_images, 4)) < np.array([0.5, 0.1, 0.02, 0.005])).astype(np.float32)


def test_repeat_factors_match_the_lvis_formula():
    # 10 images, 3 labels: frequencies 0.5, 0.1 and 0.0; label 1 of image 9 is unknown (-1).
    labels = np.zeros((10, 3))
    labels[:5, 0] = 1
    labels[5, 1] = 1
    labels[9, 1] = -1
    threshold = 0.4

    factors = repeat_factors(labels, threshold)
    assert label_frequencies(labels).tolist() == [0.5, 0.1, 0.0]
    r_common = max(1.0, math.sqrt(threshold / 0.5))
    r_rare = max(1.0, math.sqrt(threshold / 0.1))
    expected = [r_common] * 5 + [r_rare] + [1.0] * 4
    np.testing.assert_allclose(factors, expected)
    assert r_rare == pytest.approx(2.0)


def test_image_factor_is_the_maximum_over_its_positive_labels():
    labels = np.array([[1, 1], [1, 0], [0, 0], [0, 0]] * 5, dtype=float)
    threshold = 0.9
    factors = repeat_factors(labels, threshold)
    r0, r1 = math.sqrt(threshold / 0.5), math.sqrt(threshold / 0.25)
    np.testing.assert_allclose(factors[:4], [max(r0, r1), r0, 1.0, 1.0])


def test_small_threshold_leaves_the_data_alone():
    labels = long_tailed_labels()
    rare = label_frequencies(labels)[label_frequencies(labels) > 0].min()
    np.testing.assert_array_equal(repeat_factors(labels, rare * 0.99), 1.0)


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_bad_threshold_is_rejected(threshold):
    with pytest.raises(ValueError, match="threshold"):
        RepeatFactorSampler(long_tailed_labels(), threshold=threshold)


def test_bad_label_shape_and_replica_settings_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        RepeatFactorSampler(np.ones(5), threshold=0.1)
    with pytest.raises(ValueError, match="rank"):
        RepeatFactorSampler(long_tailed_labels(), threshold=0.1, num_replicas=2, rank=2)


def test_epoch_length_is_fixed_and_copies_follow_the_factors():
    labels = long_tailed_labels()
    sampler = RepeatFactorSampler(labels, threshold=0.05, seed=3)
    factors = sampler.factors
    assert len(sampler) == round(factors.sum())

    n_epochs = 300
    totals = np.zeros(len(labels))
    for _ in range(n_epochs):
        counts = np.bincount(list(sampler), minlength=len(labels))
        assert counts.sum() == len(sampler)
        # Each image appears floor(r) or floor(r) + 1 times; whole factors give exactly r copies.
        assert np.all(counts >= np.floor(factors)) and np.all(counts <= np.floor(factors) + 1)
        whole = factors == np.floor(factors)
        np.testing.assert_array_equal(counts[whole], factors[whole])
        totals += counts
    mean_counts = totals / n_epochs
    assert np.abs(mean_counts - factors).max() < 0.12
    rare = labels[:, 3] == 1
    assert mean_counts[rare].mean() > 1.5 * mean_counts[~rare & (labels.sum(axis=1) == 0)].mean()


def test_draws_are_deterministic_per_seed_and_epoch():
    labels = long_tailed_labels()
    first = RepeatFactorSampler(labels, threshold=0.05, seed=11)
    second = RepeatFactorSampler(labels, threshold=0.05, seed=11)
    other_seed = RepeatFactorSampler(labels, threshold=0.05, seed=12)

    epoch0, epoch1 = list(first), list(first)
    assert list(second) == epoch0
    assert epoch1 != epoch0
    assert list(other_seed) != epoch0

    second.set_epoch(1)
    assert list(second) == epoch1
    second.set_epoch(0)
    assert list(second) == epoch0


def test_datalist_items_and_arrays_give_the_same_sampler():
    labels = long_tailed_labels(100)
    items = [{"image": f"{i}.png", "label": row.tolist(), "patient": str(i)} for i, row in enumerate(labels)]
    from_items = RepeatFactorSampler(items, threshold=0.1, seed=5)
    from_tensor = RepeatFactorSampler(torch.from_numpy(labels), threshold=0.1, seed=5)
    np.testing.assert_allclose(from_items.factors, from_tensor.factors)
    assert list(from_items) == list(from_tensor)


def test_unshuffled_order_keeps_copies_together():
    labels = long_tailed_labels(50)
    indices = list(RepeatFactorSampler(labels, threshold=0.2, shuffle=False))
    assert indices == sorted(indices)


def test_replicas_share_one_epoch_without_overlap():
    labels = long_tailed_labels(301)
    whole = RepeatFactorSampler(labels, threshold=0.05, seed=2)
    full_epoch = whole.epoch_indices(0)
    shards = [RepeatFactorSampler(labels, threshold=0.05, seed=2, num_replicas=3, rank=rank) for rank in range(3)]
    drawn = [list(shard) for shard in shards]

    assert all(len(part) == len(shards[0]) == math.ceil(len(full_epoch) / 3) for part in drawn)
    combined = np.sort(np.concatenate(drawn))
    padding = len(combined) - len(full_epoch)
    assert 0 <= padding < 3
    expected = np.sort(np.concatenate([full_epoch, full_epoch[:padding]]))
    np.testing.assert_array_equal(combined, expected)


def test_works_inside_a_dataloader():
    labels = torch.from_numpy(long_tailed_labels(64))
    dataset = TensorDataset(torch.arange(len(labels)), labels)
    sampler = RepeatFactorSampler(labels, threshold=0.1, seed=0)
    loader = DataLoader(dataset, batch_size=16, sampler=sampler)
    seen = torch.cat([index for index, _ in loader])
    assert len(seen) == len(sampler)
    assert len(list(loader)) == math.ceil(len(sampler) / 16)
