"""End to end: the bundle trains on tiny synthetic images through the CLI, evaluates its best checkpoint, and
everything lands in one MLflow run of a SQLite store that the MLflow client reads back."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def trained(trained_run):
    return trained_run, None


def _client(out: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")


def _runs(out: Path):
    client = _client(out)
    experiment = client.get_experiment_by_name("cxr_ral")
    return client, client.search_runs([experiment.experiment_id])


def test_train_writes_checkpoints_and_thresholds(trained):
    out, _ = trained
    assert (out / "mlflow.db").is_file()
    for name in ("best.pt", "latest.pt", "thresholds.json"):
        assert (out / "checkpoints" / name).is_file(), name
    thresholds = json.loads((out / "checkpoints" / "thresholds.json").read_text())
    assert thresholds["method"] == "f1"
    assert len(thresholds["thresholds"]) == 4


def test_one_run_holds_training_validation_and_test_metrics(trained, synthetic_datalist):
    out, _ = trained
    client, runs = _runs(out)
    assert len(runs) == 1, "training and evaluation must share one MLflow run"
    run = runs[0]
    assert run.info.status == "FINISHED"
    labels = json.loads(Path(synthetic_datalist).read_text())["labels"]
    metrics = run.data.metrics
    assert "val/macro_auroc" in metrics and "test/macro_auroc" in metrics and "test/map" in metrics
    assert len(client.get_metric_history(run.info.run_id, "val/macro_auroc")) == 1
    assert client.get_metric_history(run.info.run_id, "train/loss"), "iteration losses are logged"
    table = pd.read_csv(out / "evaluation" / "test" / "per_disease.csv", index_col="label")
    for label in labels:
        name = label.replace(" ", "_")
        if pd.isna(table.loc[label, "auroc"]):
            assert f"test/auroc/{name}" not in metrics, "an undefined AUROC is never logged as a number"
        else:
            assert metrics[f"test/auroc/{name}"] == pytest.approx(table.loc[label, "auroc"], rel=1e-5)
            assert metrics[f"test/ap/{name}"] == pytest.approx(table.loc[label, "ap"], rel=1e-5)
        assert metrics[f"test/n_pos/{name}"] == table.loc[label, "n_pos"]
    params = run.data.params
    assert params["network"] == "densenet121"
    assert params["loss"] == "RobustAsymmetricLoss"
    assert params["image_size"] == "32" and params["seed"] == "0" and params["epochs"] == "1"
    assert run.data.tags["label_set"] and run.data.tags["dataset"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation/test")}
    assert "evaluation/test/per_disease.csv" in artifacts
    assert "evaluation/test/predictions.csv" in artifacts


def test_evaluate_cli_attaches_to_the_training_run(trained, synthetic_datalist, tmp_path):
    out, _ = trained
    result = run_cli(
        "evaluate", "--datalist", str(synthetic_datalist), "--checkpoint", str(out / "checkpoints" / "best.pt"),
        "--output-dir", str(out), "--image-size", "32", "--num-workers", "0", "--bootstrap", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    _, runs = _runs(out)
    assert len(runs) == 1, "evaluating a checkpoint must not create a stray run"


def test_bad_datalist_path_is_a_clear_error(tmp_path):
    result = run_cli("train", "--datalist", str(tmp_path / "missing.json"), "--output-dir", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "missing.json" in result.stderr and "not found" in result.stderr
