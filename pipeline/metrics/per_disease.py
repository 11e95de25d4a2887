"""Per-disease ranking and threshold metrics for multi-label predictions, with per-label masking.

Targets use the project's convention: 1 positive, 0 negative, -1 or NaN unknown. Unknown entries are left out of
every metric of their label only. A label without any positive or without any negative has an undefined AUROC and
AP: they are NaN, its counts explain why, and macro averages leave it out and name it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

logger = logging.getLogger(__name__)

RANKING_COLUMNS = ("auroc", "ap", "n_pos", "n_neg")
THRESHOLD_COLUMNS = ("threshold", "sensitivity", "specificity", "ppv", "f1")


def check_inputs(
    probs: np.ndarray, targets: np.ndarray, labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate predictions and targets and split targets into masks.

    Args:
        probs: predicted probabilities, shape (N, C), finite and within [0, 1].
        targets: shape (N, C) with 1 positive, 0 negative, -1 or NaN unknown.
        labels: C distinct label names.

    Returns:
        ``(probs, valid, positive)``: probs as float64, ``valid`` True where the target is known, ``positive``
        True where it is 1.

    Raises:
        ValueError: on mismatched shapes, duplicate labels, non-finite or out-of-range probabilities, or target
            values other than 1, 0, -1 and NaN.
    """
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    labels = list(labels)
    if probs.ndim != 2:
        raise ValueError(f"probs must have shape (N, C), got {probs.shape}")
    if targets.shape != probs.shape:
        raise ValueError(f"targets shape {targets.shape} differs from probs shape {probs.shape}")
    if len(labels) != probs.shape[1]:
        raise ValueError(f"{len(labels)} labels given for {probs.shape[1]} columns")
    duplicates = sorted({name for name in labels if labels.count(name) > 1})
    if duplicates:
        raise ValueError(f"label names must be distinct, repeated: {duplicates}")
    if not np.isfinite(probs).all():
        raise ValueError(f"probs contains {int((~np.isfinite(probs)).sum())} non-finite values")
    if probs.size and (probs.min() < 0.0 or probs.max() > 1.0):
        raise ValueError(f"probs must lie in [0, 1], got range [{probs.min()}, {probs.max()}]")

    unknown = np.isnan(targets) | (targets == -1.0)
    bad = ~unknown & (targets != 0.0) & (targets != 1.0)
    if bad.any():
        raise ValueError(f"targets must be 1, 0, -1 or NaN, found {sorted(set(targets[bad].tolist()))[:5]}")
    return probs, ~unknown, (targets == 1.0) & ~unknown


def _label_arrays(probs: np.ndarray, valid: np.ndarray, positive: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
    rows = valid[:, j]
    return positive[rows, j].astype(int), probs[rows, j]


def ranking_metrics(probs: np.ndarray, targets: np.ndarray, labels: Sequence[str]) -> pd.DataFrame:
    """AUROC, average precision and class counts per label.

    Args:
        probs: shape (N, C).
        targets: shape (N, C), see :func:`check_inputs`.
        labels: C label names.

    Returns:
        DataFrame indexed by label with columns ``auroc, ap, n_pos, n_neg``; AUROC and AP are NaN for a label
        with no positive or no negative.
    """
    probs, valid, positive = check_inputs(probs, targets, labels)
    rows = []
    for j in range(len(labels)):
        y, s = _label_arrays(probs, valid, positive, j)
        n_pos = int(y.sum())
        n_neg = int(y.size - n_pos)
        if n_pos and n_neg:
            auroc, ap = float(roc_auc_score(y, s)), float(average_precision_score(y, s))
        else:
            auroc = ap = math.nan
        rows.append((auroc, ap, n_pos, n_neg))
    frame = pd.DataFrame(rows, columns=list(RANKING_COLUMNS), index=pd.Index(list(labels), name="label"))
    return frame.astype({"n_pos": int, "n_neg": int})


def threshold_metrics(
    probs: np.ndarray, targets: np.ndarray, labels: Sequence[str], thresholds: Mapping[str, float] | Sequence[float]
) -> pd.DataFrame:
    """Sensitivity, specificity, PPV and F1 per label when predicting positive at ``prob >= threshold``.

    A ratio whose denominator is zero is NaN (for example PPV when nothing is predicted positive).

    Args:
        probs: shape (N, C).
        targets: shape (N, C), see :func:`check_inputs`.
        labels: C label names.
        thresholds: one threshold per label, as a mapping by label name or a sequence in label order.

    Returns:
        DataFrame indexed by label with columns ``threshold, sensitivity, specificity, ppv, f1``.

    Raises:
        ValueError: if a label has no threshold or a threshold is not finite.
    """
    probs, valid, positive = check_inputs(probs, targets, labels)
    values = threshold_vector(thresholds, labels)
    rows = []
    for j in range(len(labels)):
        y, s = _label_arrays(probs, valid, positive, j)
        pred = (s >= values[j]).astype(int)
        if y.size == 0:
            rows.append((values[j], math.nan, math.nan, math.nan, math.nan))
            continue
        common = {"zero_division": np.nan}
        rows.append(
            (
                values[j],
                float(recall_score(y, pred, pos_label=1, **common)),
                float(recall_score(y, pred, pos_label=0, **common)),
                float(precision_score(y, pred, pos_label=1, **common)),
                float(f1_score(y, pred, pos_label=1, **common)),
            )
        )
    return pd.DataFrame(rows, columns=list(THRESHOLD_COLUMNS), index=pd.Index(list(labels), name="label"))


def threshold_vector(thresholds: Mapping[str, float] | Sequence[float] | float, labels: Sequence[str]) -> np.ndarray:
    """Thresholds in label order from a mapping, a sequence or one number for all labels.

    Raises:
        ValueError: if labels are missing from a mapping, the sequence length is wrong or a value is not finite.
    """
    labels = list(labels)
    if isinstance(thresholds, Mapping):
        missing = [name for name in labels if name not in thresholds]
        if missing:
            raise ValueError(f"no threshold for labels {missing}")
        values = np.array([float(thresholds[name]) for name in labels])
    elif np.ndim(thresholds) == 0:
        values = np.full(len(labels), float(thresholds))
    else:
        values = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        if values.size != len(labels):
            raise ValueError(f"{values.size} thresholds given for {len(labels)} labels")
    if not np.isfinite(values).all():
        raise ValueError(f"thresholds must be finite, got {values.tolist()}")
    return values


def excluded_labels(per_disease: pd.DataFrame) -> dict[str, str]:
    """Labels whose AUROC/AP is undefined, with the reason, from a frame with ``n_pos``/``n_neg`` columns."""
    reasons = {}
    for name, row in per_disease.iterrows():
        missing = [kind for kind, count in (("positive", row["n_pos"]), ("negative", row["n_neg"])) if count == 0]
        if missing:
            reasons[str(name)] = "no " + " and no ".join(missing) + " samples"
    return reasons


def pooled_metrics(probs: np.ndarray, targets: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """Micro AUROC and AP: every known (image, label) entry pooled into one binary problem.

    Returns:
        ``{"micro_auroc": ..., "micro_ap": ...}``, NaN when the pool lacks a class.
    """
    probs, valid, positive = check_inputs(probs, targets, labels)
    y = positive[valid].astype(int)
    s = probs[valid]
    if 0 < y.sum() < y.size:
        return {"micro_auroc": float(roc_auc_score(y, s)), "micro_ap": float(average_precision_score(y, s))}
    return {"micro_auroc": math.nan, "micro_ap": math.nan}


def macro_summary(per_disease: pd.DataFrame) -> dict:
    """Macro AUROC and AP (mAP) over the labels where they are defined.

    Args:
        per_disease: frame with ``auroc, ap, n_pos, n_neg`` columns.

    Returns:
        ``macro_auroc``, ``macro_ap``, ``n_labels``, ``n_defined``, ``excluded`` (label names) and
        ``excluded_reasons`` (label -> reason). Macro values are NaN when no label is defined.
    """
    reasons = excluded_labels(per_disease)
    defined = per_disease.drop(index=list(reasons))
    if reasons:
        logger.info("left out of macro averages (undefined AUROC/AP): %s", ", ".join(reasons))
    return {
        "macro_auroc": float(defined["auroc"].mean()) if len(defined) else math.nan,
        "macro_ap": float(defined["ap"].mean()) if len(defined) else math.nan,
        "n_labels": int(len(per_disease)),
        "n_defined": int(len(defined)),
        "excluded": list(reasons),
        "excluded_reasons": reasons,
    }


def per_disease_metrics(
    probs: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    thresholds: Mapping[str, float] | Sequence[float] | float = 0.5,
) -> tuple[pd.DataFrame, dict]:
    """Per-disease table and summary without bootstrap.

    Args:
        probs: shape (N, C).
        targets: shape (N, C), see :func:`check_inputs`.
        labels: C label names.
        thresholds: per-label operating thresholds (mapping, sequence, or one value).

    Returns:
        ``(per_disease, summary)``: the frame has ``auroc, ap, n_pos, n_neg, threshold, sensitivity, specificity,
        ppv, f1``; the summary holds macro and micro AUROC/AP and the excluded labels.
    """
    ranking = ranking_metrics(probs, targets, labels)
    at_threshold = threshold_metrics(probs, targets, labels, thresholds)
    summary = macro_summary(ranking)
    summary.update(pooled_metrics(probs, targets, labels))
    return ranking.join(at_threshold), summary


def markdown_table(
    frame: pd.DataFrame,
    *,
    excluded: Sequence[str] | None = None,
    digits: int = 3,
    index_name: str | None = None,
    note: bool = True,
) -> str:
    """Render a per-disease frame as a Markdown table followed by a note naming excluded labels.

    Uses ``DataFrame.to_markdown`` when the optional ``tabulate`` package is installed, else a small built-in
    formatter with the same content.

    Args:
        frame: table to render; its index becomes the first column.
        excluded: labels to name in the note; by default those with NaN ``auroc`` (when that column exists).
        digits: decimals for float cells.
        index_name: header of the index column (defaults to the index name or "label").
        note: append the note line about excluded labels.

    Returns:
        Markdown text ending in a newline.
    """
    if excluded is None:
        excluded = list(frame.index[frame["auroc"].isna()]) if "auroc" in frame.columns else []
    header = index_name or frame.index.name or "label"
    table = frame.reset_index(names=header)
    try:
        import tabulate  # noqa: F401

        text = table.to_markdown(index=False, floatfmt=f".{digits}f", missingval="NaN")
    except ImportError:
        text = _plain_markdown(table, digits)
    if not note:
        return text + "\n"
    if excluded:
        note = f"Excluded from macro averages (AUROC/AP undefined): {', '.join(map(str, excluded))}."
    else:
        note = "No label excluded from macro averages."
    return f"{text}\n\n{note}\n"


def _format_cell(value, digits: int) -> str:
    if isinstance(value, (float, np.floating)):
        return "NaN" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def _plain_markdown(table: pd.DataFrame, digits: int) -> str:
    """Minimal pipe-table formatter: numbers right-aligned, text left-aligned."""
    cells = [[_format_cell(v, digits) for v in row] for row in table.itertuples(index=False)]
    headers = [str(c) for c in table.columns]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "| " + " | ".join(parts) + " |"

    marks = [("-" * (w + 1) + ":") if num else (":" + "-" * (w + 1)) for w, num in zip(widths, numeric, strict=True)]
    rule = "|" + "|".join(marks) + "|"
    return "\n".join([line(headers), rule] + [line(r) for r in cells])
