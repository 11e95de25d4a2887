"""The evaluation step of the bundle: thresholds from validation, test metrics, files and MLflow names."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluation import EvaluationReport, metrics_for_mlflow


class RecordingBinding:
    """Stands in for the MLflow run: keeps what would be logged."""

    def __init__(self):
        self.metrics, self.tags, self.artifacts = {}, {}, []

    def log_metrics(self, metrics, step=0):
        self.metrics.update({k: v for k, v in metrics.items() if math.isfinite(v)})

    def log_tags(self, tags):
        self.tags.update(tags)

    def log_artifact(self, path, artifact_path=None):
        self.artifacts.append(str(path))

    def log_artifacts(self, folder, artifact_path=None):
        self.artifacts.append(str(folder))


def _collector(probs, targets):
    return SimpleNamespace(probs=probs, targets=targets, paths=[f"/data/img_{i}.png" for i in range(len(probs))])


def test_label_without_positives_is_reported_undefined_and_left_out(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = ["Effusion", "Hernia", "Pleural Thickening"]
    targets = (rng.random((80, 3)) < 0.3).astype(float)
    targets[:, 1] = 0.0  # no Hernia in this split
    probs = np.clip(targets * 0.4 + rng.random((80, 3)) * 0.6, 0, 1)
    binding = RecordingBinding()
    report = EvaluationReport(
        labels, binding, tmp_path / "report", tmp_path / "model" / "thresholds.json", n_bootstrap=50, seed=0
    )
    report.fit_thresholds(_collector(probs, targets))
    result = report.evaluate(_collector(probs, targets))

    assert math.isnan(result.per_disease.loc["Hernia", "auroc"])
    printed = capsys.readouterr().out
    assert "left out of macro averages" in printed and "Hernia" in printed
    assert "test/auroc/Hernia" not in binding.metrics, "an undefined AUROC is never logged as a number"
    assert binding.metrics["test/n_pos/Hernia"] == 0
    assert binding.tags["test/undefined_labels"] == "Hernia"
    defined = result.per_disease.loc[["Effusion", "Pleural Thickening"], "auroc"]
    assert binding.metrics["test/macro_auroc"] == pytest.approx(defined.mean())
    assert binding.metrics["test/auroc/Pleural_Thickening"] == pytest.approx(defined["Pleural Thickening"])
    for key in ("test/auroc_ci_low/Effusion", "test/micro_auroc_ci_low", "test/map_ci_high"):
        assert key in binding.metrics

    predictions = pd.read_csv(tmp_path / "report" / "predictions.csv")
    assert list(predictions.columns[:2]) == ["path", "prob/Effusion"]
    cut = result.operating_points.thresholds["Effusion"]
    assert (predictions["decision/Effusion"] == (predictions["prob/Effusion"] >= cut)).all()


def test_group_metrics_are_named_per_group():
    rng = np.random.default_rng(1)
    labels = ["A", "B", "C"]
    targets = (rng.random((60, 3)) < 0.4).astype(float)
    from pipeline.metrics import evaluate_predictions

    result = evaluate_predictions(
        rng.random((60, 3)), targets, labels, groups={"head": ["A"], "tail": ["B", "C"]}, n_bootstrap=20
    )
    names = metrics_for_mlflow(result, "test")
    assert {"test/map_head", "test/map_tail", "test/macro_auroc_head", "test/macro_auroc_tail"} <= set(names)
    assert "test/map_tail_ci_low" in names


def test_loss_hyper_parameters_are_described_for_mlflow():
    from pipeline.losses import AsymmetricLoss, RobustAsymmetricLoss
    from pipeline.tracking import describe_loss

    params = describe_loss(RobustAsymmetricLoss(gamma_neg=2.0, lamb=1.2))
    assert params["loss"] == "RobustAsymmetricLoss"
    assert params["loss.gamma_neg"] == 2.0 and params["loss.lamb"] == 1.2 and params["loss.reduction"] == "mean"
    assert describe_loss(AsymmetricLoss(clip=0.1))["loss.clip"] == 0.1


def test_repeat_factor_sampling_is_a_config_switch(synthetic_datalist):
    from pathlib import Path

    from monai.bundle import ConfigParser

    root = Path(__file__).resolve().parents[1]
    parser = ConfigParser()
    parser.read_config(
        [str(root / "bundles/cxr_ral/configs/train.json"), str(root / "configs/sampling/repeat_factor.json")]
    )
    parser.update({"datalist": str(synthetic_datalist), "bundle_root": str(root / "bundles/cxr_ral")})
    sampler = parser.get_parsed_content("train::sampler")
    loader = parser.get_parsed_content("train::dataloader")
    assert loader.sampler is sampler
    indices = list(iter(sampler))
    assert len(indices) == len(sampler) and max(indices) < len(parser.get_parsed_content("train::dataset::items"))
