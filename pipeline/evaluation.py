"""Evaluation of a trained network as a bundle step: thresholds from validation, metrics on the test split,
artifacts on disk and in the MLflow run of the training that produced the network.

The numbers come from :mod:`pipeline.metrics`; this module names them (:mod:`pipeline.tracking`) and files them.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.metrics import EvaluationResult, OperatingPoints, evaluate_predictions, select_thresholds
from pipeline.tracking import metric_name

logger = logging.getLogger(__name__)

THRESHOLDS_FILE = "thresholds.json"


def metrics_for_mlflow(result: EvaluationResult, split: str) -> dict[str, float]:
    """Flat MLflow metrics of an evaluation; undefined values stay NaN (the logger drops them)."""
    metrics: dict[str, float] = {}
    table = result.per_disease
    for label in result.labels:
        row = table.loc[label]
        for column in ("auroc", "ap", "auroc_ci_low", "auroc_ci_high", "ap_ci_low", "ap_ci_high", "n_pos", "n_neg",
                       "sensitivity", "specificity", "ppv", "f1", "ece", "brier", "threshold"):  # fmt: skip
            metrics[metric_name(split, column, label)] = float(row[column])
    summary = result.summary
    for key, name in (
        ("macro_auroc", "macro_auroc"), ("macro_ap", "map"), ("micro_auroc", "micro_auroc"), ("micro_ap", "micro_ap"),
        ("macro_auroc_ci_low", "macro_auroc_ci_low"), ("macro_auroc_ci_high", "macro_auroc_ci_high"),
        ("macro_ap_ci_low", "map_ci_low"), ("macro_ap_ci_high", "map_ci_high"),
        ("micro_auroc_ci_low", "micro_auroc_ci_low"), ("micro_auroc_ci_high", "micro_auroc_ci_high"),
        ("micro_ap_ci_low", "micro_ap_ci_low"), ("micro_ap_ci_high", "micro_ap_ci_high"),
    ):  # fmt: skip
        if key in summary:
            metrics[metric_name(split, name)] = float(summary[key])
    for group, entry in summary.get("groups", {}).items():
        for key, value in entry.items():
            if key.startswith("macro_") and isinstance(value, int | float) and value is not None:
                # macro_ap -> map_<group>, macro_auroc_ci_low -> macro_auroc_<group>_ci_low, ...
                base = key.replace("macro_ap", "map")
                stem, _, ci = base.partition("_ci_")
                metrics[metric_name(split, f"{stem}_{group}" + (f"_ci_{ci}" if ci else ""))] = float(value)
    metrics[metric_name(split, "num_images")] = float(summary.get("n_images", len(result.probs)))
    return metrics


def predictions_frame(paths: Sequence[str], probs: np.ndarray, labels: Sequence[str],
                      thresholds: Mapping[str, float]) -> pd.DataFrame:  # fmt: skip
    """One row per image: its path, then the probability and the 0/1 decision per label."""
    frame = pd.DataFrame({"path": list(paths)})
    for j, label in enumerate(labels):
        frame[f"prob/{label}"] = probs[:, j]
    for j, label in enumerate(labels):
        frame[f"decision/{label}"] = (probs[:, j] >= thresholds[label]).astype(int)
    return frame


class EvaluationReport:
    """Bundle handler target: choose thresholds on validation, evaluate the test split, file the results.

    Args:
        labels: label names in output order.
        binding: the run's :class:`pipeline.tracking.handlers.RunBinding` (or None: files only).
        report_dir: folder of this evaluation's artifacts.
        thresholds_path: where the chosen thresholds are saved, beside the model they belong to.
        split: split name used in metric names (``test``).
        threshold_method: ``f1`` (default), ``youden`` or ``sensitivity``.
        threshold_target: required sensitivity for ``sensitivity``.
        items: datalist items of the evaluated split; their ``patient`` keys make the bootstrap patient-level.
        train_counts, train_total: training frequencies for head/medium/tail groups.
        groups: explicit groups instead of frequencies.
        head_above, tail_below: frequency thresholds of the groups.
        n_bootstrap, seed: bootstrap resamples and seed.
    """

    def __init__(
        self,
        labels: Sequence[str],
        binding: Any,
        report_dir: str | os.PathLike,
        thresholds_path: str | os.PathLike,
        split: str = "test",
        threshold_method: str = "f1",
        threshold_target: float | None = None,
        items: Sequence[Mapping[str, Any]] | None = None,
        train_counts: Mapping[str, int] | None = None,
        train_total: int | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        head_above: float = 0.10,
        tail_below: float = 0.01,
        n_bootstrap: int = 1000,
        seed: int = 0,
    ):
        self.labels = list(labels)
        self.binding = binding
        self.report_dir = Path(report_dir)
        self.thresholds_path = Path(thresholds_path)
        self.split = split
        self.threshold_method = threshold_method
        self.threshold_target = threshold_target
        self.patient_of = {str(item["path"]): item.get("patient") for item in (items or []) if "path" in item}
        self.train_counts = dict(train_counts) if train_counts else None
        self.train_total = train_total
        self.groups = groups
        self.head_above = head_above
        self.tail_below = tail_below
        self.n_bootstrap = n_bootstrap
        self.seed = seed
        self.operating_points: OperatingPoints | None = None
        self.result: EvaluationResult | None = None

    def fit_thresholds(self, collector: Any) -> OperatingPoints:
        """Choose per-label thresholds on validation predictions and save them beside the model."""
        points = select_thresholds(
            collector.probs, collector.targets, self.labels, method=self.threshold_method, target=self.threshold_target
        )
        points.save(self.thresholds_path)
        self.operating_points = points
        logger.info("thresholds (%s) chosen on %d validation images, saved to %s", points.method,
                    len(collector.probs), self.thresholds_path)  # fmt: skip
        if self.binding is not None:
            self.binding.log_artifact(self.thresholds_path, "model")
        return points

    def evaluate(self, collector: Any) -> EvaluationResult:
        """Compute every metric on the collected predictions, write the artifacts and log them to MLflow."""
        thresholds: Any = self.operating_points
        if thresholds is None and self.thresholds_path.is_file():
            thresholds = OperatingPoints.load(self.thresholds_path)
        patients = None
        if self.patient_of and all(self.patient_of.get(p) is not None for p in collector.paths):
            patients = np.asarray([str(self.patient_of[p]) for p in collector.paths])
        result = evaluate_predictions(
            collector.probs, collector.targets, self.labels,
            patients=patients, thresholds=thresholds,
            train_counts=None if self.groups else self.train_counts,
            train_total=self.train_total if not self.groups else None,
            groups=self.groups, head_above=self.head_above, tail_below=self.tail_below,
            n_bootstrap=self.n_bootstrap, seed=self.seed, show_progress=True,
        )  # fmt: skip
        self.result = result
        paths = result.write(self.report_dir)
        predictions = predictions_frame(collector.paths, collector.probs, self.labels,
                                        result.operating_points.thresholds)  # fmt: skip
        predictions.to_csv(self.report_dir / "predictions.csv", index=False, float_format="%.6f")
        logger.info("%s evaluation of %d images written to %s", self.split, len(collector.probs), self.report_dir)
        if self.binding is not None:
            self.binding.log_metrics(metrics_for_mlflow(result, self.split))
            undefined = sorted(result.summary.get("excluded", {}))
            self.binding.log_tags({f"{self.split}/undefined_labels": ", ".join(undefined) or "none"})
            self.binding.log_artifacts(self.report_dir, f"evaluation/{self.split}")
        _print_summary(result, self.split, paths)
        return result


def _print_summary(result: EvaluationResult, split: str, paths: Mapping[str, Path]) -> None:
    summary = result.summary

    def fmt(key: str) -> str:
        value = summary.get(key, math.nan)
        low, high = summary.get(f"{key}_ci_low", math.nan), summary.get(f"{key}_ci_high", math.nan)
        if not math.isfinite(value):
            return "undefined"
        return f"{value:.3f}" + (f" [{low:.3f}, {high:.3f}]" if math.isfinite(low) else "")

    columns = ["auroc", "auroc_ci_low", "auroc_ci_high", "ap", "n_pos", "n_neg", "threshold", "sensitivity",
               "specificity"]  # fmt: skip
    print(f"\n{split} split: {summary.get('n_images')} images (full table: per_disease.md)")
    print(result.per_disease[columns].to_string(float_format=lambda v: f"{v:.3f}", na_rep="undefined"))
    excluded = summary.get("excluded") or []
    reasons = summary.get("excluded_reasons") or {}
    if excluded:
        print(
            "left out of macro averages (undefined): "
            + ", ".join(f"{k} ({reasons.get(k, 'undefined')})" for k in excluded)
        )
    print(f"macro AUROC {fmt('macro_auroc')}   mAP {fmt('macro_ap')}   micro AUROC {fmt('micro_auroc')}")
    for group, entry in summary.get("groups", {}).items():
        auroc, ap = entry.get("macro_auroc") or math.nan, entry.get("macro_ap") or math.nan
        if not entry.get("labels"):
            continue
        print(f"  {group:>7}: {len(entry.get('labels', []))} labels, macro AUROC {auroc:.3f}, mAP {ap:.3f}")
    folder = Path(next(iter(paths.values()))).parent
    print(f"artifacts in {folder} (also in the MLflow run): {', '.join(sorted(paths))}, predictions.csv")


def load_thresholds(path: str | os.PathLike, labels: Sequence[str]) -> dict[str, float]:
    """Thresholds saved by :meth:`EvaluationReport.fit_thresholds`; a label they lack is an error."""
    points = OperatingPoints.load(path)
    missing = [label for label in labels if label not in points.thresholds]
    if missing:
        raise ValueError(f"thresholds file {path} has no threshold for {missing}")
    return {label: float(points.thresholds[label]) for label in labels}


def read_json(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())
