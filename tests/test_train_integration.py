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


def test_best_model_is_registered_and_loadable(trained, monkeypatch):
    out, _ = trained
    uri = f"sqlite:///{out / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    versions = client.search_model_versions("name='cxr_ral_densenet121'")
    assert len(versions) >= 1
    _, runs = _runs(out)
    assert {v.run_id for v in versions} == {runs[0].info.run_id}, "registered from the training run itself"
    import torch
    from mlflow import pytorch as mlflow_pytorch

    model = mlflow_pytorch.load_model(f"models:/cxr_ral_densenet121/{versions[0].version}")
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 4)


def test_config_only_switch_to_convnext_and_cxr_lt_labels(tmp_path):
    """A CXR-LT style CSV (26 findings) and a ConvNeXt override file train without code changes."""
    import numpy as np

    from pipeline.data import load_label_set
    from pipeline.synthetic import SyntheticSpec, generate
    from tests.conftest import REPO_ROOT

    csv = generate(tmp_path / "data", SyntheticSpec(num_images=60, image_size=32, num_labels=4, seed=3))
    frame = pd.read_csv(csv)
    labels = load_label_set("cxr_lt_2023").labels
    rng = np.random.default_rng(0)
    challenge = pd.DataFrame(
        {"dicom_id": [f"d{i}" for i in range(len(frame))], "subject_id": frame["patient"],
         "study_id": [f"s{i}" for i in range(len(frame))], "fpath": frame["path"]}
    )  # fmt: skip
    for label in labels:
        challenge[label] = (rng.random(len(frame)) < 0.3).astype(int)
    challenge.to_csv(tmp_path / "data" / "cxr_lt.csv", index=False)
    datalist = tmp_path / "datalist.json"
    result = run_cli("prepare", "cxr-lt", "--labels", str(tmp_path / "data" / "cxr_lt.csv"), "--out", str(datalist))
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "run"
    result = run_cli(
        "train", "--datalist", str(datalist), "--output-dir", str(out), "--epochs", "1", "--image-size", "32",
        "--batch-size", "8", "--num-workers", "0", "--config", str(REPO_ROOT / "configs/network/convnext_tiny.json"),
        "--set", "n_bootstrap=0", "--set", "log_model=false",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = _runs(out)[1][0]
    assert run.data.params["network"] == "convnext_tiny"
    assert run.data.params["num_labels"] == "26"
    assert (
        "test/auroc/Calcification_of_the_Aorta" in run.data.metrics
        or "Calcification of the Aorta" in run.data.tags.get("test/undefined_labels", "")
    )


def test_same_seed_same_data_gives_the_same_metrics(trained, synthetic_datalist, tmp_path):
    out, _ = trained
    again = tmp_path / "again"
    result = run_cli(
        "train", "--datalist", str(synthetic_datalist), "--output-dir", str(again), "--loss", "ral",
        "--epochs", "1", "--image-size", "32", "--batch-size", "16", "--num-workers", "0", "--set", "n_bootstrap=20",
        "--set", "log_model=false",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = _runs(out)[1][0].data.metrics, _runs(again)[1][0].data.metrics
    for name in ("val/macro_auroc", "test/macro_auroc", "test/map", "test/auroc_ci_low/Synthetic_Opacity"):
        assert second[name] == pytest.approx(first[name], abs=1e-9), name
    artifacts = {a.path for a in _client(again).list_artifacts(_runs(again)[1][0].info.run_id, "run_info")}
    assert {"run_info/environment.json", "run_info/resolved_train_config.json"} <= artifacts
