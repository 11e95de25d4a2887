"""Bootstrap confidence intervals for AUROC and average precision, vectorised over resamples.

A bootstrap resample is represented by a vector of multiplicities (how many times each image is drawn) rather than
by an explicit index array. When patient ids are given, patients are the resampling unit (a cluster bootstrap):
each resample draws as many patients as there are, with replacement, and every image of a drawn patient enters
with that patient's multiplicity, so images of one patient always travel together.

With multiplicities as weights, AUROC and AP of a resample follow from cumulative sums over one fixed ordering of
the scores:

- AUROC is the Mann-Whitney statistic. For each distinct positive score ``s_k`` with positive weight ``p_k``,
  ``AUROC = sum_k p_k * (N_neg - neg_geq(s_k) + 0.5 * neg_eq(s_k)) / (P * N_neg)``, where ``neg_geq`` and
  ``neg_eq`` are the negative weights at scores ``>= s_k`` and ``== s_k`` (ties count one half).
- AP is scikit-learn's step-wise sum ``sum_k (R_k - R_{k-1}) * Prec_k`` over descending distinct thresholds. Only
  thresholds holding positives change recall, so ``AP = sum_k p_k * TP(>= s_k) / (TP(>= s_k) + FP(>= s_k)) / P``.

With integer weights both equal scikit-learn's ``roc_auc_score`` / ``average_precision_score`` on the explicitly
resampled arrays. Resamples are processed in blocks of rows (resamples x images) with numpy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

# Upper bound on the elements of one (resamples x images) block; bounds memory per step (~4 bytes each).
_BLOCK_ELEMENTS = 8_000_000


@dataclass(frozen=True)
class RankLayout:
    """Precomputed ordering of one score vector for weighted AUROC/AP under many weight vectors.

    Attributes:
        pos_index: positions (into the weight vector) of the positives, sorted by descending score.
        pos_group_end: for each distinct positive score ``s_k`` (descending), the number of positives scoring
            ``>= s_k``, shape (K,).
        neg_index: positions of the negatives, sorted by descending score.
        neg_gt_end: number of negatives scoring ``> s_k``, shape (K,).
        neg_geq_end: number of negatives scoring ``>= s_k``, shape (K,).
    """

    pos_index: np.ndarray
    pos_group_end: np.ndarray
    neg_index: np.ndarray
    neg_gt_end: np.ndarray
    neg_geq_end: np.ndarray

    @property
    def size(self) -> int:
        return int(self.pos_index.size + self.neg_index.size)


def build_rank_layout(scores: np.ndarray, targets: np.ndarray, positions: np.ndarray | None = None) -> RankLayout:
    """Sort one label's scores once so that any weight vector can be scored with cumulative sums.

    Args:
        scores: scores of the valid samples, shape (n,).
        targets: their 0/1 targets, shape (n,).
        positions: where each sample reads its weight in the weight vectors later passed in, shape (n,); defaults
            to ``arange(n)``. With patient resampling this is the sample's patient code, so the layout reads
            patient multiplicities directly.

    Returns:
        The layout.
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_pos = np.asarray(targets) == 1
    if positions is None:
        positions = np.arange(scores.size)
    positions = np.asarray(positions)

    pos_scores = scores[is_pos]
    neg_scores = scores[~is_pos]
    pos_order = np.argsort(-pos_scores, kind="stable")
    neg_order = np.argsort(-neg_scores, kind="stable")
    pos_sorted = pos_scores[pos_order]

    # Distinct positive scores, descending, and how many positives score at or above each.
    distinct_desc = np.unique(pos_sorted)[::-1]
    pos_group_end = np.searchsorted(-pos_sorted, -distinct_desc, side="right")

    neg_ascending = np.sort(neg_scores)
    n_neg = neg_scores.size
    neg_gt_end = n_neg - np.searchsorted(neg_ascending, distinct_desc, side="right")
    neg_geq_end = n_neg - np.searchsorted(neg_ascending, distinct_desc, side="left")

    return RankLayout(
        pos_index=positions[is_pos][pos_order],
        pos_group_end=pos_group_end,
        neg_index=positions[~is_pos][neg_order],
        neg_gt_end=neg_gt_end,
        neg_geq_end=neg_geq_end,
    )


def _accumulator_dtype(weights: np.ndarray) -> np.dtype:
    """Exact accumulation dtype for cumulative sums of ``weights`` along axis 1."""
    if weights.dtype.kind == "f":
        return np.dtype(np.float64)
    if weights.dtype.kind not in "ui":
        raise ValueError(f"weights must be an integer or float array, got dtype {weights.dtype}")
    bound = int(weights.max(initial=0)) * weights.shape[1]
    return np.dtype(np.int32) if bound < np.iinfo(np.int32).max else np.dtype(np.int64)


def _cumulative_with_zero(weights: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cumulative sums along axis 1 with a leading zero column."""
    out = np.zeros((weights.shape[0], weights.shape[1] + 1), dtype=dtype)
    np.cumsum(weights, axis=1, dtype=dtype, out=out[:, 1:])
    return out


def weighted_auroc_ap(layout: RankLayout, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and average precision of one label under each row of ``weights``.

    Args:
        layout: from :func:`build_rank_layout`.
        weights: non-negative weights indexed by the layout's positions, shape (B, W) (or (W,)). Integer weights
            (multiplicities, uint8 is enough for bootstrap draws) are summed exactly in an integer accumulator.

    Returns:
        ``(auroc, ap)``, each of shape (B,) (or 0-d for 1-D weights); NaN where a row gives zero total positive
        or zero total negative weight.

    Raises:
        ValueError: if ``weights`` is not numeric.
    """
    weights = np.asarray(weights)
    squeeze = weights.ndim == 1
    weights = np.atleast_2d(weights)
    acc = _accumulator_dtype(weights)

    pos_cum = _cumulative_with_zero(np.take(weights, layout.pos_index, axis=1), acc)
    neg_cum = _cumulative_with_zero(np.take(weights, layout.neg_index, axis=1), acc)
    total_pos = pos_cum[:, -1].astype(np.float64)
    total_neg = neg_cum[:, -1].astype(np.float64)

    # Per distinct positive score: cumulative positive weight and negative weight above / at it.
    tp_geq = pos_cum[:, layout.pos_group_end].astype(np.float64)
    pos_at = np.diff(tp_geq, axis=1, prepend=0.0)
    neg_gt = neg_cum[:, layout.neg_gt_end].astype(np.float64)
    neg_geq = neg_cum[:, layout.neg_geq_end].astype(np.float64)

    with np.errstate(invalid="ignore", divide="ignore"):
        # Negatives ranked below s_k count fully, tied ones one half.
        below = total_neg[:, None] - neg_geq + 0.5 * (neg_geq - neg_gt)
        auroc = np.einsum("bk,bk->b", pos_at, below) / (total_pos * total_neg)
        denom = tp_geq + neg_geq
        precision = np.divide(tp_geq, denom, out=np.zeros_like(tp_geq), where=denom > 0)
        ap = np.einsum("bk,bk->b", pos_at, precision) / total_pos

    undefined = (total_pos <= 0) | (total_neg <= 0)
    auroc[undefined] = np.nan
    ap[undefined] = np.nan
    if squeeze:
        return auroc[0], ap[0]
    return auroc, ap


def cluster_codes(n_samples: int, clusters: Sequence | np.ndarray | None) -> tuple[np.ndarray, int]:
    """Integer cluster code per sample and the number of clusters.

    Args:
        n_samples: number of samples N.
        clusters: cluster (patient) id per sample, shape (N,), or None to make every sample its own cluster.

    Returns:
        ``(codes, n_clusters)`` with codes in ``[0, n_clusters)``.

    Raises:
        ValueError: if ``clusters`` does not have N entries or contains missing ids.
    """
    if clusters is None:
        return np.arange(n_samples), n_samples
    clusters = np.asarray(clusters)
    if clusters.shape != (n_samples,):
        raise ValueError(f"patients must have shape ({n_samples},), got {clusters.shape}")
    if clusters.dtype.kind == "f":
        missing = np.isnan(clusters)
    elif clusters.dtype == object:
        missing = np.array([c is None or (isinstance(c, float) and np.isnan(c)) for c in clusters.tolist()], bool)
    else:
        missing = np.zeros(n_samples, dtype=bool)
    if missing.any():
        raise ValueError(f"patients contains {int(missing.sum())} missing ids (None/NaN); every image needs one")
    _, codes = np.unique(clusters.astype(str) if clusters.dtype == object else clusters, return_inverse=True)
    codes = codes.reshape(-1)
    return codes, int(codes.max()) + 1 if codes.size else 0


def cluster_multiplicities(n_clusters: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n_resamples`` bootstrap resamples of clusters as multiplicities.

    Each row draws ``n_clusters`` clusters uniformly with replacement (a multinomial vector).

    Args:
        n_clusters: number of clusters.
        n_resamples: number of rows to draw.
        rng: random generator; rows are drawn in order, so splitting a run into blocks gives the same draws.

    Returns:
        Array of shape (n_resamples, n_clusters), each row summing to ``n_clusters``; uint8 when every count fits
        (it does in practice: counts follow roughly Poisson(1)), else int32.
    """
    draws = rng.integers(0, n_clusters, size=(n_resamples, n_clusters))
    draws += (np.arange(n_resamples) * n_clusters)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n_resamples * n_clusters)
    counts = counts.reshape(n_resamples, n_clusters)
    return counts.astype(np.uint8 if counts.max(initial=0) <= np.iinfo(np.uint8).max else np.int32)


def resample_indices(codes: np.ndarray, multiplicities: np.ndarray) -> np.ndarray:
    """Explicit sample indices of one resample, expanded from cluster multiplicities.

    Args:
        codes: cluster code per sample, shape (N,) (from :func:`cluster_codes`).
        multiplicities: draws per cluster for one resample, shape (n_clusters,).

    Returns:
        Indices into the N samples, each sample repeated as often as its cluster was drawn.
    """
    per_sample = np.asarray(multiplicities)[np.asarray(codes)]
    return np.repeat(np.arange(per_sample.size), per_sample)


def iter_multiplicity_blocks(
    n_clusters: int, n_resamples: int, seed: int | np.random.Generator | None, block_rows: int
) -> Iterator[np.ndarray]:
    """Yield cluster multiplicities for ``n_resamples`` resamples in blocks of at most ``block_rows`` rows."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_resamples:
        rows = min(block_rows, n_resamples - done)
        yield cluster_multiplicities(n_clusters, rows, rng)
        done += rows


@dataclass
class BootstrapReplicates:
    """Per-resample AUROC and AP for every label (and the pooled micro figures).

    Attributes:
        labels: label names, length C.
        auroc: shape (B, C); NaN where a resample has no positive or no negative for that label.
        ap: shape (B, C); NaN likewise.
        micro_auroc: shape (B,), or None when not computed.
        micro_ap: shape (B,), or None when not computed.
        unit: ``"patient"`` or ``"image"``, what was resampled.
        seed: seed used.
    """

    labels: list[str]
    auroc: np.ndarray
    ap: np.ndarray
    micro_auroc: np.ndarray | None
    micro_ap: np.ndarray | None
    unit: str
    seed: int | None

    @property
    def n_resamples(self) -> int:
        return int(self.auroc.shape[0])

    def columns(self, labels: Sequence[str]) -> np.ndarray:
        """Column indices of ``labels``; raises ValueError naming unknown labels."""
        index = {name: i for i, name in enumerate(self.labels)}
        unknown = [name for name in labels if name not in index]
        if unknown:
            raise ValueError(f"unknown labels {unknown}; known: {self.labels}")
        return np.array([index[name] for name in labels], dtype=int)

    def macro(self, metric: str, labels: Sequence[str]) -> np.ndarray:
        """Per-resample mean of ``metric`` ("auroc" or "ap") over ``labels``, ignoring labels undefined there.

        Returns:
            Shape (B,); NaN for a resample in which none of the labels is defined.
        """
        if metric not in ("auroc", "ap"):
            raise ValueError(f"metric must be 'auroc' or 'ap', got {metric!r}")
        values = getattr(self, metric)[:, self.columns(labels)]
        defined = np.isfinite(values)
        count = defined.sum(axis=1)
        total = np.where(defined, values, 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval, ignoring NaN replicates.

    Args:
        replicates: bootstrap values, shape (B,) or (B, C) with resamples along axis 0.
        level: coverage level in (0, 1).

    Returns:
        ``(low, high)``, scalars-as-arrays of shape () or (C,); NaN where no replicate is finite.

    Raises:
        ValueError: if ``level`` is outside (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    replicates = np.asarray(replicates, dtype=np.float64)
    matrix = replicates.reshape(replicates.shape[0], -1)
    alpha = (1.0 - level) / 2.0
    low = np.full(matrix.shape[1], np.nan)
    high = np.full(matrix.shape[1], np.nan)
    for j in range(matrix.shape[1]):
        column = matrix[:, j]
        column = column[np.isfinite(column)]
        if column.size:
            low[j], high[j] = np.quantile(column, [alpha, 1.0 - alpha])
    shape = replicates.shape[1:]
    return low.reshape(shape), high.reshape(shape)


def bootstrap_replicates(
    probs: np.ndarray,
    valid: np.ndarray,
    positive: np.ndarray,
    labels: Sequence[str],
    *,
    patients: Sequence | np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int | None = 0,
    micro: bool = True,
    show_progress: bool = False,
) -> BootstrapReplicates:
    """AUROC and AP of every label in each of ``n_resamples`` bootstrap resamples.

    Every label sees the same resamples, so macro figures can be formed per resample.

    Args:
        probs: scores, shape (N, C).
        valid: True where the target is known, shape (N, C).
        positive: True where the target is positive, shape (N, C) (ignored where not valid).
        labels: label names, length C.
        patients: patient id per image, shape (N,); when given, patients are resampled, else images.
        n_resamples: number of resamples B.
        seed: seed of ``numpy.random.default_rng``.
        micro: also compute the pooled (micro) AUROC and AP per resample.
        show_progress: show a tqdm bar over labels.

    Returns:
        The replicates.

    Raises:
        ValueError: on inconsistent shapes or a non-positive ``n_resamples``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    positive = np.asarray(positive, dtype=bool)
    if probs.ndim != 2 or valid.shape != probs.shape or positive.shape != probs.shape:
        raise ValueError(
            f"probs, valid and positive must share one (N, C) shape, got {probs.shape}, {valid.shape}, {positive.shape}"
        )
    if len(labels) != probs.shape[1]:
        raise ValueError(f"{len(labels)} labels given for {probs.shape[1]} columns")
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    n_resamples = int(n_resamples)
    n_samples, n_labels = probs.shape
    codes, n_clusters = cluster_codes(n_samples, patients)

    layouts: list[RankLayout] = []
    for j in range(n_labels):
        rows = np.flatnonzero(valid[:, j])
        layouts.append(build_rank_layout(probs[rows, j], positive[rows, j], codes[rows]))
    micro_layout = None
    if micro:
        rows, cols = np.nonzero(valid)
        micro_layout = build_rank_layout(probs[rows, cols], positive[rows, cols], codes[rows])

    auroc = np.full((n_resamples, n_labels), np.nan)
    ap = np.full((n_resamples, n_labels), np.nan)
    micro_auroc = np.full(n_resamples, np.nan) if micro else None
    micro_ap = np.full(n_resamples, np.nan) if micro else None

    # Multiplicities are drawn once per block and shared by every label; per-label work is split further so
    # that the gathered (rows x samples) arrays stay within the block budget.
    largest = max([layout.size for layout in layouts] + [1])
    block_rows = max(1, min(n_resamples, _BLOCK_ELEMENTS // max(largest, n_clusters)))
    progress = _progress(n_resamples, show_progress)
    start = 0
    for block in iter_multiplicity_blocks(n_clusters, n_resamples, seed, block_rows):
        stop = start + block.shape[0]
        for j, layout in enumerate(layouts):
            if layout.pos_index.size and layout.neg_index.size:
                auroc[start:stop, j], ap[start:stop, j] = weighted_auroc_ap(layout, block)
        if micro_layout is not None:
            sub_rows = max(1, _BLOCK_ELEMENTS // max(micro_layout.size, 1))
            for sub in range(0, block.shape[0], sub_rows):
                sl = slice(start + sub, min(stop, start + sub + sub_rows))
                micro_auroc[sl], micro_ap[sl] = weighted_auroc_ap(micro_layout, block[sub : sub + sub_rows])
        progress.update(block.shape[0])
        start = stop
    progress.close()

    unit = "image" if patients is None else "patient"
    logger.debug("bootstrap: %d resamples of %d %ss over %d labels", n_resamples, n_clusters, unit, n_labels)
    return BootstrapReplicates(
        labels=list(labels),
        auroc=auroc,
        ap=ap,
        micro_auroc=micro_auroc,
        micro_ap=micro_ap,
        unit=unit,
        seed=seed if not isinstance(seed, np.random.Generator) else None,
    )


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="bootstrap", unit="resample", disable=not enabled, leave=False)
