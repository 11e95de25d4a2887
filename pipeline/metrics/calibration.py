"""Calibration of predicted probabilities: reliability bins, expected calibration error (ECE) and Brier score.

ECE uses equal-width bins over [0, 1]: ``ECE = sum_b (n_b / n) * |mean(y in b) - mean(p in b)|``. Bins follow
scikit-learn's ``calibration_curve(strategy="uniform")``: a probability on an inner edge falls in the lower bin.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss

from pipeline.metrics.per_disease import check_inputs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width reliability bins of one label.

    Attributes:
        edges: bin edges, shape (n_bins + 1,).
        counts: samples per bin, shape (n_bins,).
        mean_prob: mean predicted probability per bin, NaN for empty bins.
        frac_pos: fraction of positives per bin, NaN for empty bins.
    """

    edges: np.ndarray
    counts: np.ndarray
    mean_prob: np.ndarray
    frac_pos: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error; NaN when there are no samples."""
        total = self.counts.sum()
        if total == 0:
            return math.nan
        filled = self.counts > 0
        gaps = np.abs(self.frac_pos[filled] - self.mean_prob[filled])
        return float(np.sum(self.counts[filled] / total * gaps))


def _check_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


def reliability_bins(probs: np.ndarray, y: np.ndarray, n_bins: int = 10) -> ReliabilityBins:
    """Equal-width bins of predicted probability for one label.

    Args:
        probs: probabilities of the known samples, shape (n,).
        y: their 0/1 targets, shape (n,).
        n_bins: number of equal-width bins over [0, 1].

    Returns:
        The bins.
    """
    n_bins = _check_bins(n_bins)
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_ids = np.searchsorted(edges[1:-1], probs)
    counts = np.bincount(bin_ids, minlength=n_bins)
    sum_prob = np.bincount(bin_ids, weights=probs, minlength=n_bins)
    sum_pos = np.bincount(bin_ids, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.where(counts > 0, sum_prob / counts, np.nan)
        frac_pos = np.where(counts > 0, sum_pos / counts, np.nan)
    return ReliabilityBins(edges=edges, counts=counts, mean_prob=mean_prob, frac_pos=frac_pos)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """ECE of one label over equal-width bins; NaN for no samples."""
    return reliability_bins(probs, y, n_bins).ece


def calibration_table(
    probs: np.ndarray, targets: np.ndarray, labels: Sequence[str], n_bins: int = 10
) -> tuple[pd.DataFrame, dict[str, ReliabilityBins]]:
    """Per-label ECE and Brier score over the known targets.

    Args:
        probs: shape (N, C).
        targets: shape (N, C), 1/0 and -1 or NaN for unknown (masked per label).
        labels: C label names.
        n_bins: equal-width bins for ECE.

    Returns:
        ``(frame, bins)``: frame indexed by label with ``ece`` and ``brier`` (NaN for a label with no known
        target), and the reliability bins per label.
    """
    n_bins = _check_bins(n_bins)
    probs, valid, positive = check_inputs(probs, targets, labels)
    rows = []
    bins = {}
    for j, name in enumerate(labels):
        known = valid[:, j]
        y = positive[known, j].astype(int)
        p = probs[known, j]
        bins[name] = reliability_bins(p, y, n_bins)
        brier = float(brier_score_loss(y, p, pos_label=1)) if y.size else math.nan
        rows.append((bins[name].ece, brier))
    frame = pd.DataFrame(rows, columns=["ece", "brier"], index=pd.Index(list(labels), name="label"))
    return frame, bins
