"""One call from predictions to the full evaluation: per-disease table, summary, intervals, groups, artifacts."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.metrics.bootstrap import BootstrapReplicates, bootstrap_replicates, percentile_interval
from pipeline.metrics.calibration import ReliabilityBins, calibration_table
from pipeline.metrics.groups import check_groups, frequency_groups, group_summary
from pipeline.metrics.per_disease import check_inputs, markdown_table, per_disease_metrics
from pipeline.metrics.plots import plot_reliability, plot_roc_pr, save_figure
from pipeline.metrics.thresholds import OperatingPoints

logger = logging.getLogger(__name__)

PER_DISEASE_COLUMNS = (
    "auroc",
    "auroc_ci_low",
    "auroc_ci_high",
    "ap",
    "ap_ci_low",
    "ap_ci_high",
    "n_pos",
    "n_neg",
    "threshold",
    "sensitivity",
    "specificity",
    "ppv",
    "f1",
    "ece",
    "brier",
)


@dataclass
class EvaluationResult:
    """Everything :func:`evaluate_predictions` computed.

    Attributes:
        labels: label names in column order.
        per_disease: one row per label (index ``label``) with the columns of ``PER_DISEASE_COLUMNS``; CI columns
            are NaN without bootstrap or where the metric is undefined.
        summary: macro and micro AUROC / AP (``macro_auroc``, ``macro_ap`` = mAP, ``micro_auroc``, ``micro_ap``)
            with ``*_ci_low``/``*_ci_high``, ``excluded`` labels and reasons, counts, bootstrap settings and
            ``groups`` (group -> macro figures).
        operating_points: thresholds used for the threshold metrics.
        groups: group name -> labels (``{"all": labels}`` when no grouping was asked for).
        reliability: reliability bins per label.
        replicates: bootstrap replicates, or None when ``n_bootstrap`` was 0.
    """

    labels: list[str]
    per_disease: pd.DataFrame
    summary: dict
    operating_points: OperatingPoints
    groups: dict[str, list[str]]
    reliability: dict[str, ReliabilityBins]
    replicates: BootstrapReplicates | None = None
    probs: np.ndarray | None = field(default=None, repr=False)
    targets: np.ndarray | None = field(default=None, repr=False)

    def to_markdown(self, digits: int = 3) -> str:
        """The per-disease table as Markdown with a note naming labels excluded from macro averages."""
        return markdown_table(self.per_disease, excluded=self.summary["excluded"], digits=digits)

    def group_table(self) -> pd.DataFrame:
        """Macro figures per group as a frame (one row per group)."""
        keys = ["n_labels", "n_defined"]
        for metric in ("auroc", "ap"):
            keys += [f"macro_{metric}", f"macro_{metric}_ci_low", f"macro_{metric}_ci_high"]
        rows = {name: {k: entry.get(k, math.nan) for k in keys} for name, entry in self.summary["groups"].items()}
        return pd.DataFrame.from_dict(rows, orient="index", columns=keys).rename_axis("group")

    def summary_line(self, digits: int = 3) -> str:
        """Macro and micro AUROC / AP with their intervals, as one sentence."""

        def figure(key: str) -> str:
            value = self.summary[key]
            low, high = self.summary[f"{key}_ci_low"], self.summary[f"{key}_ci_high"]
            text = "NaN" if math.isnan(value) else f"{value:.{digits}f}"
            if math.isfinite(low) and math.isfinite(high):
                text += f" ({self.summary['ci_level']:.0%} CI {low:.{digits}f}-{high:.{digits}f})"
            return text

        parts = [
            f"macro AUROC {figure('macro_auroc')}",
            f"mAP {figure('macro_ap')}",
            f"micro AUROC {figure('micro_auroc')}",
            f"micro AP {figure('micro_ap')}",
        ]
        boot = self.summary["n_bootstrap"]
        setting = f"{boot} {self.summary['bootstrap_unit']} bootstrap resamples" if boot else "no bootstrap"
        return f"{self.summary['n_images']} images, {setting}: " + ", ".join(parts) + "."

    def write(self, folder: str | Path, *, plots: bool = True) -> dict[str, Path]:
        """Write the artifacts into ``folder`` (created if needed).

        Files: ``per_disease.csv``, ``per_disease.md``, ``summary.json`` (NaN written as null),
        ``thresholds.json``, and with ``plots`` ``roc_pr_<group>.png`` per group and ``reliability.png``.

        Returns:
            Artifact name -> path.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}

        paths["per_disease.csv"] = folder / "per_disease.csv"
        self.per_disease.to_csv(paths["per_disease.csv"], float_format="%.6g")
        paths["per_disease.md"] = folder / "per_disease.md"
        markdown = f"# Evaluation\n\n{self.summary_line()}\n\n## Per disease\n\n{self.to_markdown()}"
        markdown += "\n## Groups\n\n" + markdown_table(self.group_table(), note=False)
        paths["per_disease.md"].write_text(markdown, encoding="utf-8")
        paths["summary.json"] = folder / "summary.json"
        paths["summary.json"].write_text(json.dumps(_json_safe(self.summary), indent=2) + "\n", encoding="utf-8")
        paths["thresholds.json"] = self.operating_points.save(folder / "thresholds.json")

        if plots:
            if self.probs is None or self.targets is None:
                raise ValueError("this result holds no predictions to plot; call write(..., plots=False)")
            for group, members in self.groups.items():
                if not members:
                    continue
                figure = plot_roc_pr(
                    self.probs, self.targets, self.labels, subset=members, title=f"{group} ({len(members)} labels)"
                )
                key = f"roc_pr_{_slug(group)}.png"
                paths[key] = save_figure(figure, folder / key)
            figure = plot_reliability(self.probs, self.targets, self.labels, bins=self.reliability)
            paths["reliability.png"] = save_figure(figure, folder / "reliability.png")
        logger.info("evaluation artifacts written to %s", folder)
        return paths


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(name))


def _json_safe(value):
    """Replace NaN/inf with None and numpy scalars with Python ones, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _operating_points(
    thresholds: OperatingPoints | Mapping[str, float] | float | str | Path | None, labels: Sequence[str]
) -> OperatingPoints:
    if thresholds is None:
        return OperatingPoints.fixed(labels)
    if isinstance(thresholds, OperatingPoints):
        points = thresholds
    elif isinstance(thresholds, (str, Path)):
        points = OperatingPoints.load(thresholds)
    elif isinstance(thresholds, Mapping):
        points = OperatingPoints(method="fixed", thresholds={str(k): float(v) for k, v in thresholds.items()})
    elif isinstance(thresholds, (int, float)) and not isinstance(thresholds, bool):
        return OperatingPoints.fixed(labels, float(thresholds))
    else:
        raise ValueError(
            "thresholds must be None, a number, a label->threshold mapping, OperatingPoints or a JSON path, "
            f"got {type(thresholds).__name__}"
        )
    missing = [name for name in labels if name not in points.thresholds]
    if missing:
        raise ValueError(f"thresholds lack labels {missing}")
    return points


def evaluate_predictions(
    probs: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    *,
    patients: Sequence | np.ndarray | None = None,
    thresholds: OperatingPoints | Mapping[str, float] | float | str | Path | None = None,
    train_counts: Mapping[str, int] | Sequence[int] | None = None,
    train_total: int | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    n_bootstrap: int = 1000,
    seed: int | None = 0,
    ci_level: float = 0.95,
    head_above: float = 0.10,
    tail_below: float = 0.01,
    n_bins: int = 10,
    micro_ci: bool = True,
    show_progress: bool = False,
) -> EvaluationResult:
    """Evaluate multi-label probabilities against targets.

    Args:
        probs: predicted probabilities, shape (N, C).
        targets: shape (N, C): 1 positive, 0 negative, -1 or NaN unknown (left out of that label's metrics).
        labels: C label names.
        patients: patient id per image, shape (N,); bootstrap resamples patients when given, else images.
        thresholds: operating thresholds: :class:`OperatingPoints`, a JSON file written by it, a label->value
            mapping or one number; None means 0.5 for every label.
        train_counts: positive training images per label, to form head/medium/tail groups (needs
            ``train_total``).
        train_total: number of training images.
        groups: explicit group -> labels, used instead of ``train_counts``.
        n_bootstrap: bootstrap resamples for intervals; 0 disables intervals.
        seed: bootstrap seed.
        ci_level: interval coverage.
        head_above: frequency above which a label is "head".
        tail_below: frequency below which a label is "tail".
        n_bins: equal-width bins for calibration.
        micro_ci: also bootstrap the micro figures (roughly doubles bootstrap time).
        show_progress: show a progress bar over resamples.

    Returns:
        The :class:`EvaluationResult`.

    Raises:
        ValueError: on inconsistent inputs (see the helpers named above for details).
    """
    labels = [str(name) for name in labels]
    probs, valid, positive = check_inputs(probs, targets, labels)
    targets = np.where(valid, positive.astype(np.float64), np.nan)
    if isinstance(n_bootstrap, bool) or int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level}")
    if groups is not None and train_counts is not None:
        raise ValueError("give either groups or train_counts, not both")

    points = _operating_points(thresholds, labels)
    per_disease, summary = per_disease_metrics(probs, targets, labels, points.thresholds)
    calibration, reliability = calibration_table(probs, targets, labels, n_bins)
    per_disease = per_disease.join(calibration)

    if groups is not None:
        group_map = check_groups(groups, labels)
    elif train_counts is not None:
        if train_total is None:
            raise ValueError("train_counts needs train_total (the number of training images)")
        group_map = frequency_groups(labels, train_counts, train_total, head_above=head_above, tail_below=tail_below)
    else:
        group_map = {"all": list(labels)}

    replicates = None
    defined = [name for name in labels if name not in summary["excluded"]]
    for metric in ("auroc", "ap"):
        per_disease[f"{metric}_ci_low"] = np.nan
        per_disease[f"{metric}_ci_high"] = np.nan
    for key in ("macro_auroc", "macro_ap", "micro_auroc", "micro_ap"):
        summary[f"{key}_ci_low"] = math.nan
        summary[f"{key}_ci_high"] = math.nan
    if n_bootstrap:
        replicates = bootstrap_replicates(
            probs,
            valid,
            positive,
            labels,
            patients=patients,
            n_resamples=int(n_bootstrap),
            seed=seed,
            micro=micro_ci,
            show_progress=show_progress,
        )
        for metric in ("auroc", "ap"):
            low, high = percentile_interval(getattr(replicates, metric), ci_level)
            undefined = per_disease[metric].isna().to_numpy()
            per_disease[f"{metric}_ci_low"] = np.where(undefined, np.nan, low)
            per_disease[f"{metric}_ci_high"] = np.where(undefined, np.nan, high)
            if defined:
                low, high = percentile_interval(replicates.macro(metric, defined), ci_level)
                summary[f"macro_{metric}_ci_low"], summary[f"macro_{metric}_ci_high"] = float(low), float(high)
            if replicates.micro_auroc is not None and math.isfinite(summary[f"micro_{metric}"]):
                low, high = percentile_interval(getattr(replicates, f"micro_{metric}"), ci_level)
                summary[f"micro_{metric}_ci_low"], summary[f"micro_{metric}_ci_high"] = float(low), float(high)
        # A resample without positives (or negatives) of a label says nothing about it; such resamples are
        # left out of that label's interval, which narrows it, so say where that happened.
        undefined_counts = np.isnan(replicates.auroc[:, [labels.index(name) for name in defined]]).sum(axis=0)
        partial = {name: int(c) for name, c in zip(defined, undefined_counts, strict=True) if c}
        summary["bootstrap_undefined_resamples"] = partial
        if partial:
            logger.warning("bootstrap resamples lacking a class, left out of the interval: %s", partial)

    summary.update(
        {
            "n_images": int(probs.shape[0]),
            "ci_level": float(ci_level),
            "n_bootstrap": int(n_bootstrap),
            "bootstrap_unit": None if replicates is None else replicates.unit,
            "seed": seed if isinstance(seed, int) else None,
            "threshold_method": points.method,
            "threshold_notes": dict(points.notes),
            "groups": group_summary(per_disease, group_map, replicates, ci_level),
        }
    )
    return EvaluationResult(
        labels=labels,
        per_disease=per_disease[list(PER_DISEASE_COLUMNS)],
        summary=summary,
        operating_points=points,
        groups=group_map,
        reliability=reliability,
        replicates=replicates,
        probs=probs,
        targets=targets,
    )
