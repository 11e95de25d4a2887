"""Statistics of a sweep: mean and spread over seeds, and paired comparisons of two losses.

Two paired comparisons answer different questions:

- over seeds: for each seed trained with both losses, the difference of their test metrics; the mean difference
  gets a percentile bootstrap interval over the seed pairs. It measures training-to-training variation, and with
  a handful of seeds the interval is coarse (with 3 seeds there are only 10 distinct resample means).
- over test images: the same bootstrap resample of test patients (or images) is applied to both losses'
  predictions of a seed pair, and the per-resample difference of macro metrics is averaged over the seed pairs.
  It measures how much the difference depends on which test images were drawn, for the models at hand.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.metrics import bootstrap_replicates, check_inputs, percentile_interval, ranking_metrics

logger = logging.getLogger(__name__)


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1) and count of the finite values.

    The standard deviation is NaN for fewer than two values; the mean is NaN for none.
    """
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if finite.size == 0:
        return math.nan, math.nan, 0
    std = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    return float(finite.mean()), std, int(finite.size)


def bootstrap_mean_interval(
    values: Sequence[float], n_resamples: int = 10000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (e.g. per-seed differences).

    Returns:
        ``(low, high)``; both NaN for fewer than two finite values.

    Raises:
        ValueError: for a non-positive ``n_resamples`` or a level outside (0, 1).
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if finite.size < 2:
        if not 0.0 < level < 1.0:
            raise ValueError(f"confidence level must be in (0, 1), got {level}")
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = finite[rng.integers(0, finite.size, size=(n_resamples, finite.size))].mean(axis=1)
    low, high = percentile_interval(means, level)
    return float(low), float(high)


@dataclass(frozen=True)
class PairedDifference:
    """Paired bootstrap over test images of the difference ``a - b`` of one macro metric.

    Attributes:
        metric: ``auroc`` or ``ap`` (macro over the labels defined on the test split).
        difference: mean over seed pairs of the full-test-set macro difference.
        low, high: percentile interval of the resampled difference.
        share_above_zero: fraction of resamples in which ``a`` beats ``b``.
        n_resamples: resamples drawn.
        n_pairs: seed pairs averaged.
        unit: ``patient`` or ``image``, what was resampled.
        n_labels: labels in the macro average.
    """

    metric: str
    difference: float
    low: float
    high: float
    share_above_zero: float
    n_resamples: int
    n_pairs: int
    unit: str
    n_labels: int


def paired_image_bootstrap(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    targets: np.ndarray,
    labels: Sequence[str],
    *,
    patients: Sequence | np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, PairedDifference]:
    """Paired bootstrap of the macro AUROC and macro AP difference between two sets of predictions.

    Args:
        pairs: for each seed, ``(probs_a, probs_b)`` of shape (N, C) on the same test images in the same order.
        targets: shape (N, C): 1 positive, 0 negative, -1 or NaN unknown.
        labels: C label names.
        patients: patient id per image, shape (N,); when given, patients are resampled (their images together).
        n_resamples: bootstrap resamples; every pair sees the same resamples.
        seed: seed of the resampling.
        level: interval coverage.

    Returns:
        ``{"auroc": PairedDifference, "ap": PairedDifference}``.

    Raises:
        ValueError: for no pairs, mismatched shapes, or no label with both a positive and a negative.
    """
    if not pairs:
        raise ValueError("no prediction pairs to compare")
    _, valid, positive = check_inputs(pairs[0][0], targets, labels)
    defined = [name for j, name in enumerate(labels) if positive[:, j].any() and (valid[:, j] & ~positive[:, j]).any()]
    if not defined:
        raise ValueError("no label has both a positive and a negative test image; nothing to compare")

    point: dict[str, list[float]] = {"auroc": [], "ap": []}
    resampled: dict[str, list[np.ndarray]] = {"auroc": [], "ap": []}
    unit = "image"
    for probs_a, probs_b in pairs:
        if np.shape(probs_a) != np.shape(probs_b):
            raise ValueError(f"paired predictions differ in shape: {np.shape(probs_a)} vs {np.shape(probs_b)}")
        tables = [ranking_metrics(p, targets, labels).loc[defined] for p in (probs_a, probs_b)]
        replicates = [
            bootstrap_replicates(
                check_inputs(p, targets, labels)[0],
                valid,
                positive,
                labels,
                patients=patients,
                n_resamples=n_resamples,
                seed=seed,
                micro=False,
            )  # fmt: skip
            for p in (probs_a, probs_b)
        ]
        unit = replicates[0].unit
        for metric in ("auroc", "ap"):
            point[metric].append(float(tables[0][metric].mean() - tables[1][metric].mean()))
            resampled[metric].append(replicates[0].macro(metric, defined) - replicates[1].macro(metric, defined))

    out = {}
    for metric in ("auroc", "ap"):
        differences = np.mean(np.stack(resampled[metric]), axis=0)
        low, high = percentile_interval(differences, level)
        finite = differences[np.isfinite(differences)]
        out[metric] = PairedDifference(
            metric=metric, difference=float(np.mean(point[metric])), low=float(low), high=float(high),
            share_above_zero=float((finite > 0).mean()) if finite.size else math.nan,
            n_resamples=n_resamples, n_pairs=len(pairs), unit=unit, n_labels=len(defined),
        )  # fmt: skip
    return out
