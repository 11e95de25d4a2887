"""Head / medium / tail label groups by training-set frequency, and macro figures per group.

A label's frequency is its number of positive training images divided by the number of training images. By
default a label is "head" above 10 %, "tail" below 1 % and "medium" otherwise; both cut-offs are arguments, and
explicit groups (for example from a label-set file) can be given instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline.metrics.bootstrap import BootstrapReplicates, percentile_interval

logger = logging.getLogger(__name__)

GROUP_ORDER = ("head", "medium", "tail")


def frequency_groups(
    labels: Sequence[str],
    train_counts: Mapping[str, int] | Sequence[int],
    train_total: int,
    *,
    head_above: float = 0.10,
    tail_below: float = 0.01,
) -> dict[str, list[str]]:
    """Split labels into head, medium and tail by training frequency.

    Args:
        labels: label names.
        train_counts: positive training images per label, by name or in label order.
        train_total: number of training images.
        head_above: a label with frequency strictly above this is "head".
        tail_below: a label with frequency strictly below this is "tail".

    Returns:
        ``{"head": [...], "medium": [...], "tail": [...]}`` in label order (groups may be empty).

    Raises:
        ValueError: on missing counts, a non-positive total, negative counts or ``tail_below > head_above``.
    """
    labels = list(labels)
    if train_total is None or train_total <= 0:
        raise ValueError(f"train_total must be a positive number of training images, got {train_total!r}")
    if not 0.0 <= tail_below <= head_above <= 1.0:
        raise ValueError(
            f"need 0 <= tail_below <= head_above <= 1, got tail_below={tail_below}, head_above={head_above}"
        )
    if isinstance(train_counts, Mapping):
        missing = [name for name in labels if name not in train_counts]
        if missing:
            raise ValueError(f"train_counts has no entry for labels {missing}")
        counts = np.array([train_counts[name] for name in labels], dtype=np.float64)
    else:
        counts = np.asarray(train_counts, dtype=np.float64).reshape(-1)
        if counts.size != len(labels):
            raise ValueError(f"{counts.size} train_counts given for {len(labels)} labels")
    if (counts < 0).any() or not np.isfinite(counts).all():
        raise ValueError(f"train_counts must be finite and non-negative, got {counts.tolist()}")

    frequency = counts / float(train_total)
    groups: dict[str, list[str]] = {name: [] for name in GROUP_ORDER}
    for name, freq in zip(labels, frequency, strict=True):
        key = "head" if freq > head_above else "tail" if freq < tail_below else "medium"
        groups[key].append(name)
    logger.debug("frequency groups: %s", {k: len(v) for k, v in groups.items()})
    return groups


def check_groups(groups: Mapping[str, Sequence[str]], labels: Sequence[str]) -> dict[str, list[str]]:
    """Validate explicit groups: known labels, each in at most one group; order kept as given.

    Raises:
        ValueError: naming unknown labels or labels listed in more than one group.
    """
    known = set(labels)
    seen: dict[str, str] = {}
    clean: dict[str, list[str]] = {}
    for group, members in groups.items():
        if isinstance(members, str):
            raise ValueError(f"group {group!r} must list label names, got the string {members!r}")
        unknown = [name for name in members if name not in known]
        if unknown:
            raise ValueError(f"group {group!r} names unknown labels {unknown}")
        for name in members:
            if name in seen:
                raise ValueError(f"label {name!r} is in both group {seen[name]!r} and group {group!r}")
            seen[name] = group
        clean[str(group)] = list(members)
    return clean


def group_summary(
    per_disease: pd.DataFrame,
    groups: Mapping[str, Sequence[str]],
    replicates: BootstrapReplicates | None = None,
    level: float = 0.95,
) -> dict[str, dict]:
    """Macro AUROC and mAP per group, over the group's labels with defined metrics.

    Args:
        per_disease: frame with ``auroc`` and ``ap`` columns, indexed by label.
        groups: group name -> label names.
        replicates: bootstrap replicates for intervals; None for point estimates only.
        level: interval coverage.

    Returns:
        group -> ``{"labels", "excluded", "n_labels", "n_defined", "macro_auroc", "macro_ap"}`` plus
        ``*_ci_low``/``*_ci_high`` when replicates are given. Empty or fully undefined groups have NaN figures.
    """
    out: dict[str, dict] = {}
    for group, members in groups.items():
        members = list(members)
        rows = per_disease.loc[members] if members else per_disease.iloc[0:0]
        defined = [name for name in members if math.isfinite(rows.loc[name, "auroc"])]
        entry = {
            "labels": members,
            "excluded": [name for name in members if name not in defined],
            "n_labels": len(members),
            "n_defined": len(defined),
            "macro_auroc": float(rows.loc[defined, "auroc"].mean()) if defined else math.nan,
            "macro_ap": float(rows.loc[defined, "ap"].mean()) if defined else math.nan,
        }
        if replicates is not None:
            for metric in ("auroc", "ap"):
                if defined:
                    low, high = percentile_interval(replicates.macro(metric, defined), level)
                    low, high = float(low), float(high)
                else:
                    low = high = math.nan
                entry[f"macro_{metric}_ci_low"] = low
                entry[f"macro_{metric}_ci_high"] = high
        out[group] = entry
    return out
