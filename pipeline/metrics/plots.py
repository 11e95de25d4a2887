"""ROC / precision-recall curves and reliability diagrams as matplotlib figures.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas, so nothing touches pyplot's global state
or needs a display. Labels whose curves are undefined (no positive or no negative) are left out and named in a
note on the figure.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

from pipeline.metrics.calibration import ReliabilityBins, calibration_table
from pipeline.metrics.per_disease import check_inputs

logger = logging.getLogger(__name__)

_NOTE_STYLE = {"fontsize": 8, "color": "0.35"}
# Up to this many curves the legend sits inside the axes; more go below the panels.
_LEGEND_INSIDE_MAX = 8


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _styles(n: int) -> list[tuple]:
    """Distinct (colour, line style) pairs: the qualitative palette first, then the same colours dash-dotted."""
    from matplotlib import colormaps

    cmap = colormaps["tab20" if n > 10 else "tab10"]
    return [(cmap(i % cmap.N), "-" if i < cmap.N else "-.") for i in range(n)]


def plot_roc_pr(
    probs: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    *,
    subset: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """ROC (left) and precision-recall (right) curves, one line per label.

    Args:
        probs: shape (N, C).
        targets: shape (N, C), 1/0 and -1 or NaN for unknown (masked per label).
        labels: C label names.
        subset: labels to draw (for example one frequency group); all by default.
        title: figure title.

    Returns:
        The figure; legends give each label's AUROC and AP, the ROC panel has the chance diagonal.
    """
    probs, valid, positive = check_inputs(probs, targets, labels)
    labels = list(labels)
    subset = labels if subset is None else list(subset)
    unknown = [name for name in subset if name not in labels]
    if unknown:
        raise ValueError(f"subset names unknown labels {unknown}")

    # Many curves: legends go below the panels so they hide no curve.
    outside = len(subset) > _LEGEND_INSIDE_MAX
    legend_rows = math.ceil((len(subset) + 1) / 2) if outside else 0
    figure = _new_figure(13.0, 6.0 + 0.17 * legend_rows)
    roc_ax, pr_ax = figure.subplots(1, 2)
    omitted = []
    for (color, style), name in zip(_styles(len(subset)), subset, strict=True):
        j = labels.index(name)
        y = positive[valid[:, j], j].astype(int)
        s = probs[valid[:, j], j]
        if y.sum() == 0 or y.sum() == y.size:
            omitted.append(name)
            continue
        fpr, tpr, _ = roc_curve(y, s)
        precision, recall, _ = precision_recall_curve(y, s)
        ap = average_precision_score(y, s)
        roc_ax.plot(fpr, tpr, color=color, ls=style, lw=1.2, label=f"{name} (AUROC {auc(fpr, tpr):.3f})")
        pr_ax.step(recall, precision, where="post", color=color, ls=style, lw=1.2, label=f"{name} (AP {ap:.3f})")

    roc_ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="chance")
    roc_ax.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity (true positive rate)")
    roc_ax.set_title("ROC")
    pr_ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)")
    pr_ax.set_title("Precision-recall")
    for ax in (roc_ax, pr_ax):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        if outside:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=7, ncol=2, frameon=False)
        else:
            ax.legend(loc="lower right" if ax is roc_ax else "upper right", fontsize=7)
    if title:
        figure.suptitle(title)
    if omitted:
        # supxlabel gets its own row from the constrained layout, so the note never overlaps an axis label.
        figure.supxlabel("Omitted (no positive or no negative samples): " + ", ".join(omitted), **_NOTE_STYLE)
    return figure


def plot_reliability(
    probs: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    *,
    n_bins: int = 10,
    bins: Mapping[str, ReliabilityBins] | None = None,
    ncols: int = 5,
    title: str | None = "Reliability",
) -> Figure:
    """Reliability diagram: one small panel per label with observed frequency against mean predicted probability.

    Args:
        probs: shape (N, C).
        targets: shape (N, C), 1/0 and -1 or NaN for unknown.
        labels: C label names.
        n_bins: equal-width bins (ignored when ``bins`` is given).
        bins: precomputed reliability bins per label.
        ncols: panels per row.
        title: figure title.

    Returns:
        The figure; each panel shows the perfect-calibration diagonal and the label's ECE.
    """
    labels = list(labels)
    if bins is None:
        _, bins = calibration_table(probs, targets, labels, n_bins)
    ncols = max(1, min(int(ncols), len(labels)))
    nrows = max(1, math.ceil(len(labels) / ncols))
    figure = _new_figure(2.6 * ncols, 2.6 * nrows + 0.4)
    axes = np.atleast_1d(figure.subplots(nrows, ncols, squeeze=False)).ravel()
    empty = []
    for ax, name in zip(axes, labels, strict=False):
        b = bins[name]
        ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1)
        filled = b.counts > 0
        if not filled.any():
            empty.append(name)
        ax.plot(b.mean_prob[filled], b.frac_pos[filled], marker="o", ms=3, lw=1.2, color="tab:blue")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{name}\nECE {b.ece:.3f}" if filled.any() else f"{name}\n(no samples)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(labels) :]:
        ax.set_visible(False)
    figure.supxlabel("mean predicted probability", fontsize=9)
    figure.supylabel("observed positive fraction", fontsize=9)
    if title:
        figure.suptitle(title)
    if empty:
        logger.info("reliability diagram: no known targets for %s", empty)
    return figure


def save_figure(figure: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save a figure as PNG (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, format="png")
    return path
