"""End to end: a two-child sweep of real (tiny) trainings is killed after its first child, resumed, and reported.

One sweep serves every test here: BCE and RAL at seed 0 on the synthetic 32x32 set, one epoch each. The sweep
process is SIGKILLed while the second child trains; running the same command again must keep the first child,
replace the interrupted one, and leave the parent with exactly the two children. The report's numbers are then
checked against the children's metrics read back from MLflow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow.entities import ViewType

from pipeline.study.report import ReportOptions, build_report
from pipeline.study.runner import KEY_TAG, PARENT_TAG, RETIRED_TAG
from pipeline.study.state import FINISHED, RUNNING, STATE_FILE
from pipeline.tracking import metric_name
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

KEYS = ['loss="bce", seed=0', 'loss="ral", seed=0']


def _sweep_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli.sweep", "--config", str(config), "--estimate", "none"]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _read_state(root: Path) -> dict:
    try:
        return json.loads((root / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"children": {}}


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its dead parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


@pytest.fixture(scope="module")
def killed_and_resumed(synthetic_datalist, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    root = folder / "out"
    config = folder / "sweep.yaml"
    config.write_text(yaml.safe_dump({
        "name": "resumable",
        "budget": {"wall_minutes": 3, "note": "test"},
        "threads": 1,
        "base": {"datalist": str(synthetic_datalist), "output_root": str(root), "epochs": 1, "image_size": 32,
                 "batch_size": 16, "num_workers": 0, "set": {"n_bootstrap": 0}},
        "grid": {"seed": [0]},
        "variants": [{"loss": "bce"}, {"loss": "ral"}],
    }))  # fmt: skip

    log = (folder / "first.log").open("w")
    first = subprocess.Popen(_sweep_command(config), cwd=REPO_ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: _read_state(root)["children"].get(KEYS[0], {}).get("status") == FINISHED, 300,
                  "the first child to finish")  # fmt: skip
        _wait_for(lambda: "pid" in _read_state(root)["children"].get(KEYS[1], {}), 60, "the second child to start")
        time.sleep(3)  # let it get going
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    killed_state = _read_state(root)
    orphan = killed_state["children"][KEYS[1]]["pid"]
    # The killed sweep's running child is told to stop (parent-death signal) and must not train on alone.
    _wait_for(lambda: not _alive(orphan), 90, "the orphaned child to stop")

    second = subprocess.run(_sweep_command(config), cwd=REPO_ROOT, env=_env(), capture_output=True, text=True,
                            timeout=400)  # fmt: skip
    return {"root": root, "killed_state": killed_state, "second": second, "state": _read_state(root),
            "client": mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")}  # fmt: skip


def _children(client, parent_id, view=ViewType.ACTIVE_ONLY):
    experiment = client.get_experiment_by_name("resumable")
    return client.search_runs([experiment.experiment_id], f"tags.`{PARENT_TAG}` = '{parent_id}'", run_view_type=view)


def test_the_killed_sweep_left_one_finished_child_and_one_interrupted(killed_and_resumed):
    children = killed_and_resumed["killed_state"]["children"]
    assert children[KEYS[0]]["status"] == FINISHED
    assert children[KEYS[1]]["status"] == RUNNING, "the sweep was killed, it could not record anything else"


def test_the_rerun_skips_the_finished_child_and_completes_the_sweep(killed_and_resumed):
    second = killed_and_resumed["second"]
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "2 children; 1 finished before, 1 to run now" in second.stdout
    assert "compute budget (from the sweep file): 3 min wall time; test" in second.stdout
    state, killed = killed_and_resumed["state"], killed_and_resumed["killed_state"]
    assert state["children"][KEYS[0]]["run_id"] == killed["children"][KEYS[0]]["run_id"]
    assert state["children"][KEYS[0]]["attempts"] == 1 and state["children"][KEYS[1]]["attempts"] == 2
    assert [s.get("outcome") for s in state["sessions"]] == [None, "complete"], "the killed session never ended"


def test_the_parent_has_exactly_the_two_children_each_one_run_of_training_and_evaluation(killed_and_resumed):
    client, state, killed = (
        killed_and_resumed["client"],
        killed_and_resumed["state"],
        killed_and_resumed["killed_state"],
    )
    parent = client.get_run(state["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.status"] == "complete"
    runs = _children(client, state["parent_run_id"])
    assert sorted(r.data.tags[KEY_TAG] for r in runs) == KEYS
    assert {r.info.run_id for r in runs} == {state["children"][k]["run_id"] for k in KEYS}
    for run in runs:
        assert run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "val/macro_auroc")) == 1, "training logged here"
        assert "test/macro_auroc" in run.data.metrics, "evaluation logged in the same run"
    assert {r.data.params["loss"] for r in runs} == {"BinaryCrossEntropyLoss", "RobustAsymmetricLoss"}
    interrupted = client.get_run(killed["children"][KEYS[1]]["run_id"])
    assert interrupted.info.lifecycle_stage == "deleted" and interrupted.info.status == "FAILED"
    assert RETIRED_TAG in interrupted.data.tags
    # Nothing else was created in the experiment: no stray run from the trainings.
    experiment = client.get_experiment_by_name("resumable")
    assert len(client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)) == 4


def test_the_report_matches_the_metrics_in_mlflow(killed_and_resumed, synthetic_datalist, tmp_path):
    client, state = killed_and_resumed["client"], killed_and_resumed["state"]
    options = ReportOptions(reference="ral", baselines=("bce", "asl"), n_seed_bootstrap=200, n_image_bootstrap=100,
                            html=True)  # fmt: skip
    result = build_report(client, state["parent_run_id"], tmp_path / "report", options)
    runs = {r.data.params["loss"]: r for r in _children(client, state["parent_run_id"])}
    ral, bce = runs["RobustAsymmetricLoss"], runs["BinaryCrossEntropyLoss"]
    labels = json.loads(Path(synthetic_datalist).read_text())["labels"]

    settings = result.tables["settings"].set_index("loss")
    for loss, run in (("ral", ral), ("bce", bce)):
        assert settings.loc[loss, "test macro AUROC"] == f"{run.data.metrics['test/macro_auroc']:.3f}"
        assert settings.loc[loss, "test mAP"] == f"{run.data.metrics['test/map']:.3f}"
        assert settings.loc[loss, "seeds"] == 1
    disease = result.tables["per_disease"].set_index("label")
    assert list(disease.index) == labels
    for label in labels:
        name = metric_name("test", "auroc", label)
        for loss, run in (("ral", ral), ("bce", bce)):
            if name in run.data.metrics:
                assert disease.loc[label, loss] == pytest.approx(run.data.metrics[name], abs=1e-12)
            else:
                assert disease.loc[label, loss] != disease.loc[label, loss], "undefined stays NaN"

    (comparison,) = result.comparisons
    expected = ral.data.metrics["test/macro_auroc"] - bce.data.metrics["test/macro_auroc"]
    assert comparison["baseline"] == "bce" and comparison["seeds"] == [0]
    assert comparison["macro_auroc"]["per_seed"] == [pytest.approx(expected, abs=1e-12)]
    image = comparison["image"]["auroc"]
    # predictions.csv keeps 6 decimals, so the image-level point estimate matches the logged metrics closely.
    assert image.difference == pytest.approx(expected, abs=1e-3) and image.unit == "patient"

    text = result.markdown.read_text()
    assert "ral vs asl: not possible, no finished run of asl." in text
    assert f"{expected:+.3f}" in text
    assert result.html is not None and result.html.read_text().startswith("<!DOCTYPE html>")
    assert {p.name for p in result.figures} == {"paired_differences.png", "spread.png"}
    assert all(p.stat().st_size > 5000 for p in result.figures)
    logged = {a.path for a in client.list_artifacts(state["parent_run_id"], "report")}
    assert {"report/report.md", "report/spread.png", "report/paired_differences.png"} <= logged
