"""Evaluation metrics for multi-label predictions: plain arrays in, plain results out.

Per-disease AUROC / AP / counts and threshold metrics, bootstrap intervals (patient-level when patient ids are
given), head/medium/tail groups, operating thresholds, calibration and plots. Nothing here logs to MLflow.
"""

from pipeline.metrics.bootstrap import (
    BootstrapReplicates,
    bootstrap_replicates,
    build_rank_layout,
    cluster_codes,
    cluster_multiplicities,
    percentile_interval,
    resample_indices,
    weighted_auroc_ap,
)
from pipeline.metrics.calibration import (
    ReliabilityBins,
    calibration_table,
    expected_calibration_error,
    reliability_bins,
)
from pipeline.metrics.evaluate import PER_DISEASE_COLUMNS, EvaluationResult, evaluate_predictions
from pipeline.metrics.groups import check_groups, frequency_groups, group_summary
from pipeline.metrics.per_disease import (
    check_inputs,
    markdown_table,
    per_disease_metrics,
    pooled_metrics,
    ranking_metrics,
    threshold_metrics,
)
from pipeline.metrics.plots import plot_reliability, plot_roc_pr, save_figure
from pipeline.metrics.thresholds import METHODS, OperatingPoints, select_thresholds

__all__ = [
    "METHODS",
    "PER_DISEASE_COLUMNS",
    "BootstrapReplicates",
    "EvaluationResult",
    "OperatingPoints",
    "ReliabilityBins",
    "bootstrap_replicates",
    "build_rank_layout",
    "calibration_table",
    "check_groups",
    "check_inputs",
    "cluster_codes",
    "cluster_multiplicities",
    "evaluate_predictions",
    "expected_calibration_error",
    "frequency_groups",
    "group_summary",
    "markdown_table",
    "per_disease_metrics",
    "percentile_interval",
    "plot_reliability",
    "plot_roc_pr",
    "pooled_metrics",
    "ranking_metrics",
    "reliability_bins",
    "resample_indices",
    "save_figure",
    "select_thresholds",
    "threshold_metrics",
    "weighted_auroc_ap",
]
