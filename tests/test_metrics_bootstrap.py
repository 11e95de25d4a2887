"""Vectorised bootstrap: exactness against scikit-learn on explicit resamples, cluster resampling, coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from pipeline.metrics import bootstrap as boot
from pipeline.metrics import (
    bootstrap_replicates,
    build_rank_layout,
    cluster_codes,
    cluster_multiplicities,
    percentile_interval,
    resample_indices,
    weighted_auroc_ap,
)


def _tied_data(rng: np.random.Generator, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    scores = np.round(rng.random(n), 2)  # many ties, also between positives and negatives
    y = (rng.random(n) < 0.2 + 0.5 * scores).astype(int)
    return scores, y


def test_weighted_metrics_equal_sklearn_on_explicitly_resampled_arrays():
    rng = np.random.default_rng(1)
    scores, y = _tied_data(rng)
    patients = rng.integers(0, 150, scores.size)
    codes, n_clusters = cluster_codes(scores.size, patients)
    layout = build_rank_layout(scores, y, codes)
    draws = cluster_multiplicities(n_clusters, 20, rng)

    auroc, ap = weighted_auroc_ap(layout, draws)

    for r in range(draws.shape[0]):
        index = resample_indices(codes, draws[r])
        assert auroc[r] == pytest.approx(roc_auc_score(y[index], scores[index]), abs=1e-12)
        assert ap[r] == pytest.approx(average_precision_score(y[index], scores[index]), abs=1e-12)


def test_weighted_metrics_equal_sklearn_sample_weight_for_float_weights():
    rng = np.random.default_rng(2)
    scores, y = _tied_data(rng, 200)
    weights = rng.random((3, scores.size)) * 3.0
    weights[:, :20] = 0.0
    auroc, ap = weighted_auroc_ap(build_rank_layout(scores, y), weights)
    for r in range(3):
        assert auroc[r] == pytest.approx(roc_auc_score(y, scores, sample_weight=weights[r]), abs=1e-12)
        assert ap[r] == pytest.approx(average_precision_score(y, scores, sample_weight=weights[r]), abs=1e-12)


def test_unit_weights_give_the_plain_metrics_and_1d_weights_are_accepted():
    rng = np.random.default_rng(3)
    scores, y = _tied_data(rng, 150)
    auroc, ap = weighted_auroc_ap(build_rank_layout(scores, y), np.ones(scores.size, dtype=np.uint8))
    assert np.ndim(auroc) == 0
    assert auroc == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert ap == pytest.approx(average_precision_score(y, scores), abs=1e-12)


def test_resample_without_positives_is_nan():
    scores = np.array([0.9, 0.8, 0.3, 0.2])
    y = np.array([1, 0, 1, 0])
    weights = np.array([[0, 2, 0, 2], [1, 1, 1, 1], [1, 0, 1, 0]])
    auroc, ap = weighted_auroc_ap(build_rank_layout(scores, y), weights)
    assert math.isnan(auroc[0]) and math.isnan(ap[0])
    assert auroc[1] == pytest.approx(0.75)
    assert math.isnan(auroc[2]) and math.isnan(ap[2])


def test_patient_resampling_keeps_images_of_a_patient_together():
    rng = np.random.default_rng(4)
    patients = np.array([f"p{k}" for k in rng.integers(0, 40, 300)], dtype=object)
    codes, n_clusters = cluster_codes(patients.size, patients)
    assert n_clusters == len(set(patients.tolist()))
    draws = cluster_multiplicities(n_clusters, 50, rng)
    assert (draws.sum(axis=1) == n_clusters).all()

    for r in range(draws.shape[0]):
        index = resample_indices(codes, draws[r])
        per_image = np.bincount(index, minlength=patients.size)
        for patient in np.unique(patients):
            # Every image of a patient is drawn exactly as often as the patient.
            counts = per_image[patients == patient]
            assert (counts == counts[0]).all()
        assert per_image.sum() == draws[r][codes].sum()
    # Resampling actually varies: some patient is left out and some is drawn twice or more.
    assert (draws == 0).any() and (draws >= 2).any()


def test_image_resampling_without_patients_treats_each_image_as_its_own_cluster():
    codes, n_clusters = cluster_codes(7, None)
    assert n_clusters == 7
    assert codes.tolist() == list(range(7))
    with pytest.raises(ValueError, match="patients must have shape"):
        cluster_codes(7, np.arange(6))
    with pytest.raises(ValueError, match="missing ids"):
        cluster_codes(3, np.array(["a", None, "b"], dtype=object))


def _explicit_replicates(probs, targets, patients, n_resamples, seed):
    """Recompute every replicate with sklearn on explicitly resampled arrays (same draws as the library)."""
    codes, n_clusters = cluster_codes(probs.shape[0], patients)
    draws = cluster_multiplicities(n_clusters, n_resamples, np.random.default_rng(seed))
    n_labels = probs.shape[1]
    auroc = np.full((n_resamples, n_labels), np.nan)
    micro = np.full(n_resamples, np.nan)
    for r in range(n_resamples):
        index = resample_indices(codes, draws[r])
        p, t = probs[index], targets[index]
        for j in range(n_labels):
            known = t[:, j] >= 0
            y = t[known, j]
            if 0 < y.sum() < y.size:
                auroc[r, j] = roc_auc_score(y, p[known, j])
        known = t >= 0
        micro[r] = roc_auc_score(t[known], p[known])
    return auroc, micro


def test_replicates_match_explicit_resampling_and_do_not_depend_on_block_size(monkeypatch):
    rng = np.random.default_rng(5)
    n, c = 240, 4
    probs = np.round(rng.random((n, c)), 2)
    targets = (rng.random((n, c)) < [0.4, 0.2, 0.05, 0.02]).astype(float)
    targets[rng.random((n, c)) < 0.1] = -1.0
    patients = rng.integers(0, 80, n)
    # The rare label: two positives, both from one patient, so about a third of resamples miss them.
    targets[:, 3] = 0.0
    targets[[10, 20], 3] = 1.0
    patients[[10, 20]] = 7
    valid = targets >= 0
    positive = targets == 1
    labels = list("abcd")

    result = bootstrap_replicates(probs, valid, positive, labels, patients=patients, n_resamples=30, seed=9)
    expected_auroc, expected_micro = _explicit_replicates(probs, targets, patients, 30, 9)
    np.testing.assert_allclose(result.auroc, expected_auroc, atol=1e-12)
    np.testing.assert_allclose(result.micro_auroc, expected_micro, atol=1e-12)
    assert result.unit == "patient"
    # The rare label lacks positives in some resamples: those are NaN, not a sentinel.
    assert np.isnan(result.auroc[:, 3]).any()

    monkeypatch.setattr(boot, "_BLOCK_ELEMENTS", 500)
    small_blocks = bootstrap_replicates(probs, valid, positive, labels, patients=patients, n_resamples=30, seed=9)
    # Same draws whatever the block size; only the floating-point summation order may differ.
    np.testing.assert_allclose(small_blocks.auroc, result.auroc, rtol=1e-12)
    np.testing.assert_allclose(small_blocks.ap, result.ap, rtol=1e-12)
    np.testing.assert_allclose(small_blocks.micro_ap, result.micro_ap, rtol=1e-12)


def test_percentile_interval_ignores_nan_and_matches_quantiles():
    rng = np.random.default_rng(6)
    values = rng.random((101, 3))
    values[::10, 1] = np.nan
    values[:, 2] = np.nan
    low, high = percentile_interval(values, 0.9)
    finite = values[:, 1][np.isfinite(values[:, 1])]
    assert low[0] == pytest.approx(np.quantile(values[:, 0], 0.05))
    assert high[1] == pytest.approx(np.quantile(finite, 0.95))
    assert np.isnan(low[2]) and np.isnan(high[2])
    with pytest.raises(ValueError, match="confidence level"):
        percentile_interval(values, 1.5)


def test_macro_replicates_average_defined_labels_per_resample():
    rng = np.random.default_rng(7)
    n = 200
    probs = rng.random((n, 3))
    targets = (rng.random((n, 3)) < [0.5, 0.3, 0.01]).astype(float)
    result = bootstrap_replicates(probs, targets >= 0, targets == 1, ["a", "b", "c"], n_resamples=25, seed=0)
    macro = result.macro("auroc", ["a", "b", "c"])
    np.testing.assert_allclose(macro, np.nanmean(result.auroc, axis=1))
    with pytest.raises(ValueError, match="unknown labels"):
        result.macro("auroc", ["z"])


def test_bootstrap_interval_covers_the_population_auroc_at_about_the_nominal_rate():
    # Binormal model: negatives N(0, 1), positives N(d, 1), so the population AUROC is Phi(d / sqrt(2)).
    separation = 1.0
    true_auroc = 0.5 * (1.0 + math.erf(separation / 2.0))  # Phi(d / sqrt(2))
    n_pos, n_neg, n_datasets = 60, 90, 200
    rng = np.random.default_rng(2024)
    covered = 0
    for k in range(n_datasets):
        scores = np.concatenate([rng.normal(separation, 1.0, n_pos), rng.normal(0.0, 1.0, n_neg)])
        probs = (1.0 / (1.0 + np.exp(-scores)))[:, None]
        y = np.concatenate([np.ones(n_pos), np.zeros(n_neg)])[:, None]
        result = bootstrap_replicates(probs, y >= 0, y == 1, ["x"], n_resamples=300, seed=k, micro=False)
        low, high = percentile_interval(result.auroc[:, 0], 0.95)
        covered += bool(low <= true_auroc <= high)
    coverage = covered / n_datasets
    assert 0.88 <= coverage <= 0.99, coverage


def test_bad_arguments_raise():
    probs = np.zeros((4, 2))
    mask = np.ones((4, 2), dtype=bool)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_replicates(probs, mask, mask, ["a", "b"], n_resamples=0)
    with pytest.raises(ValueError, match="labels given"):
        bootstrap_replicates(probs, mask, mask, ["a"], n_resamples=3)
    with pytest.raises(ValueError, match="share one"):
        bootstrap_replicates(probs, mask[:3], mask, ["a", "b"], n_resamples=3)
