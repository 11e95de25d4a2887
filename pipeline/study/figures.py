"""Figures of a sweep report: sensitivity to hyper-parameters, spread over each loss's grid, paired differences.

Every function takes the report's tidy frame (one row per child run: ``loss``, ``setting``, ``seed``, one column
per hyper-parameter and per metric) and returns a ``matplotlib.figure.Figure`` drawn on the Agg canvas, so
nothing touches pyplot's global state or needs a display. Each loss keeps its colour across figures.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

_NOTE = {"fontsize": 8, "color": "0.35"}


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def loss_colours(losses: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {loss: cmap(i % cmap.N) for i, loss in enumerate(losses)}


def _sorted_values(values: pd.Series) -> list:
    unique = list(dict.fromkeys(values.dropna().tolist()))
    try:
        return sorted(unique)
    except TypeError:
        return sorted(unique, key=str)


def plot_sensitivity(
    frame: pd.DataFrame,
    hyperparameters: Sequence[str],
    metrics: Sequence[tuple[str, str]],
    losses: Sequence[str],
    reference_settings: Mapping[str, str] | None = None,
) -> Figure | None:
    """Metric against each varied hyper-parameter: one line per loss (mean over seeds, bars: std over seeds).

    Losses that do not vary a hyper-parameter appear in its panels as a dashed horizontal line at the mean of
    their reference setting (``reference_settings[loss]``, a setting label; default: all their runs).

    Args:
        frame: tidy frame of runs.
        hyperparameters: column names of the varied hyper-parameters (one column of panels each).
        metrics: ``(column, axis label)`` pairs (one row of panels each).
        losses: loss names in legend order.
        reference_settings: setting label per loss for its horizontal line.

    Returns:
        The figure, or None when no hyper-parameter was varied.
    """
    if not hyperparameters:
        return None
    colours = loss_colours(losses)
    figure = _figure(4.2 * len(hyperparameters) + 1.8, 3.2 * len(metrics))
    axes = figure.subplots(len(metrics), len(hyperparameters), squeeze=False)
    for col, name in enumerate(hyperparameters):
        for row, (metric, label) in enumerate(metrics):
            ax = axes[row][col]
            varying = [loss for loss in losses if frame.loc[frame["loss"] == loss, name].dropna().nunique() > 1]
            for loss in varying:
                runs = frame[(frame["loss"] == loss) & frame[name].notna()]
                others = [h for h in hyperparameters if h != name and runs[h].notna().any()]
                for other_values, group in runs.groupby(others, dropna=False) if others else [((), runs)]:
                    stats = group.groupby(name)[metric].agg(["mean", "std"]).reindex(_sorted_values(group[name]))
                    suffix = ""
                    if others:
                        values = other_values if isinstance(other_values, tuple) else (other_values,)
                        suffix = " (" + ", ".join(f"{h}={v}" for h, v in zip(others, values, strict=True)) + ")"
                    ax.errorbar(stats.index.astype(float), stats["mean"], yerr=stats["std"].fillna(0.0), marker="o",
                                capsize=3, color=colours[loss], label=loss + suffix)  # fmt: skip
            for loss in losses:
                if loss in varying:
                    continue
                runs = frame[frame["loss"] == loss]
                if reference_settings and loss in reference_settings:
                    runs = runs[runs["setting"] == reference_settings[loss]]
                level = runs[metric].mean()
                if math.isfinite(level):
                    ax.axhline(level, color=colours[loss], linestyle="--", linewidth=1.2, label=f"{loss} (not varied)")
            grid_values = _sorted_values(frame.loc[frame["loss"].isin(varying), name]) if varying else []
            if grid_values and all(isinstance(v, int | float) for v in grid_values):
                ax.set_xticks([float(v) for v in grid_values], [f"{v:g}" for v in grid_values])
            ax.set_xlabel(name)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            if not varying:
                ax.text(0.5, 0.5, f"no loss varies {name}", transform=ax.transAxes, ha="center", **_NOTE)
            if row == 0:
                ax.set_title(f"sensitivity to {name}")
    handles, names = [], []
    for ax in axes.ravel():
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            if text not in names:
                handles.append(handle)
                names.append(text)
    figure.legend(handles, names, loc="outside right center", fontsize=8)
    return figure


def plot_spread(frame: pd.DataFrame, metrics: Sequence[tuple[str, str]], losses: Sequence[str]) -> Figure:
    """Per loss: every run (small dots), each setting's mean over seeds (large dots) and their range (bar).

    A loss whose large dots sit close together is insensitive to its grid; compare the bar with the scatter of
    the small dots of one setting (seed noise) before reading much into it.
    """
    colours = loss_colours(losses)
    figure = _figure(max(4.0, 1.1 * len(losses) + 1.5) * len(metrics), 3.6)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    rng = np.random.default_rng(0)
    for ax, (metric, label) in zip(axes, metrics, strict=True):
        for x, loss in enumerate(losses):
            runs = frame[frame["loss"] == loss]
            jitter = rng.uniform(0.12, 0.3, size=len(runs))
            ax.scatter(x + jitter, runs[metric], s=12, color=colours[loss], alpha=0.55, linewidths=0)
            means = runs.groupby("setting")[metric].mean().dropna()
            if means.empty:
                continue
            ax.scatter(np.full(len(means), x), means, s=55, color=colours[loss], edgecolors="black", zorder=3)
            if len(means) > 1:
                ax.vlines(x, means.min(), means.max(), color=colours[loss], linewidth=3, alpha=0.6)
                ax.annotate(f"range {means.max() - means.min():.3f}", (x, means.max()), textcoords="offset points",
                            xytext=(0, 6), ha="center", **_NOTE)  # fmt: skip
        ax.set_xticks(range(len(losses)), losses)
        ax.set_ylabel(label)
        ax.set_title(f"{label}: spread over each loss's grid")
        ax.grid(axis="y", alpha=0.3)
    return figure


def plot_paired(comparisons: Sequence[Mapping], metrics: Sequence[tuple[str, str, str]]) -> Figure | None:
    """Per comparison: the per-seed differences (grey, just below), their mean with the bootstrap interval over
    seeds (red), and the paired bootstrap interval over test images when there is one (blue, just above).

    Args:
        comparisons: mappings with ``title``, ``image`` (None or ``{image_key: PairedDifference}``) and, per
            metric column, ``<column>`` -> dict with ``per_seed`` (list of differences), ``mean``, ``low``,
            ``high``.
        metrics: ``(column, axis label, image_key)`` triples, one panel each.

    Returns:
        The figure, or None without comparisons.
    """
    if not comparisons:
        return None
    from matplotlib.ticker import MaxNLocator

    figure = _figure(4.8 * len(metrics), 0.8 * len(comparisons) + 1.8)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for ax, (metric, label, image_key) in zip(axes, metrics, strict=True):
        for y, comparison in enumerate(comparisons):
            image = (comparison.get("image") or {}).get(image_key)
            if image is not None and math.isfinite(image.low) and math.isfinite(image.high):
                xerr = [[max(image.difference - image.low, 0.0)], [max(image.high - image.difference, 0.0)]]
                ax.errorbar(image.difference, y + 0.25, xerr=xerr, fmt="o", color="tab:blue", capsize=4, zorder=3,
                            label="paired bootstrap over test images")  # fmt: skip
            entry = comparison[metric]
            per_seed = [v for v in entry["per_seed"] if math.isfinite(v)]
            ax.scatter(per_seed, np.full(len(per_seed), y - 0.22), s=18, color="0.4", zorder=2, label="one seed pair")
            if math.isfinite(entry["mean"]):
                low, high = entry["low"], entry["high"]
                if math.isfinite(low) and math.isfinite(high):
                    xerr = [[max(entry["mean"] - low, 0.0)], [max(high - entry["mean"], 0.0)]]
                    ax.errorbar(entry["mean"], y, xerr=xerr, fmt="D", color="tab:red", capsize=4, zorder=3,
                                label="mean over seeds, bootstrap over seeds")  # fmt: skip
                else:
                    ax.scatter(entry["mean"], y, marker="D", color="tab:red", zorder=3, label="mean over seeds")
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(comparisons)), [c["title"] for c in comparisons])
        ax.set_ylim(-0.6, len(comparisons) - 0.4)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.set_xlabel(f"difference in {label}")
        ax.grid(axis="x", alpha=0.3)
    handles, names = [], []
    for handle, text in zip(*axes[0].get_legend_handles_labels(), strict=True):
        if text not in names:
            handles.append(handle)
            names.append(text)
    figure.legend(handles, names, loc="outside lower center", ncols=max(1, len(names)), fontsize=8)
    return figure
