"""A real ``mlflow server`` on 127.0.0.1 (SQLite backend, proxied local artifact store): a short training and
evaluation is logged to it over HTTP, read back through the REST client, and its run page is loaded in a headless
browser to see the per-disease metrics the UI shows.

The server is started once for the module, bound to the loopback address only, and stopped by the fixture's
finaliser; every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipeline.tracking.compare import compare_runs
from tests.conftest import run_cli
from tests.test_compare import FAST

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
EXPERIMENT = "server_test"
STARTUP_TIMEOUT_S = 180
BROWSER_TIMEOUT_S = 120
CHROMIUM_INSTALL = "apt-get update && apt-get install -y chromium"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and the workers it started (its own process group)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """URL of an ``mlflow server`` with a SQLite backend and a local artifact destination, both in tmp."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    url = f"http://{HOST}:{port}"
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{root / 'db.sqlite'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", HOST, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    # Tracking and artifacts only: the background job workers (used by GenAI features) would just cost start-up time.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    log_path = root / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while not _healthy(url):
                if process.poll() is not None:
                    pytest.fail(f"mlflow server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"mlflow server not healthy after {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}"
                    )
                time.sleep(1)
            yield {"url": url, "root": root}
        finally:
            _stop(process)


@pytest.fixture(scope="module")
def logged_run(server, synthetic_datalist, tmp_path_factory):
    """A short training + evaluation logged to the server over HTTP; returns (run, output dir, client)."""
    out = tmp_path_factory.mktemp("server_train")
    result = run_cli(
        "train", "--datalist", str(synthetic_datalist), "--output-dir", str(out), "--tracking-uri", server["url"],
        "--experiment", EXPERIMENT, *FAST, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (out / "mlflow.db").exists(), "with --tracking-uri nothing is written to a local store"
    client = mlflow.MlflowClient(tracking_uri=server["url"])
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return runs[0], out, client


def test_metrics_and_artifacts_read_back_over_rest(server, logged_run, synthetic_datalist, tmp_path):
    run, out, client = logged_run
    assert run.info.status == "FINISHED"
    assert run.data.tags["network"] == "tinydensenet" and run.data.tags["seed"] == "0"
    labels = json.loads(Path(synthetic_datalist).read_text())["labels"]
    assert run.data.params["labels"] == "|".join(labels)

    table = pd.read_csv(out / "evaluation" / "test" / "per_disease.csv", index_col="label")
    metrics = run.data.metrics
    for label in labels:
        for stat in ("auroc", "ap", "auroc_ci_low", "auroc_ci_high"):
            key = f"test/{stat}/{label}"
            if pd.isna(table.loc[label, stat]):
                assert key not in metrics
            else:
                assert metrics[key] == pytest.approx(table.loc[label, stat], rel=1e-5), key
    assert "test/macro_auroc" in metrics and "test/map" in metrics
    assert len(client.get_metric_history(run.info.run_id, "val/macro_auroc")) == 1

    listed = {artifact.path for artifact in client.list_artifacts(run.info.run_id, "evaluation/test")}
    assert {"evaluation/test/per_disease.csv", "evaluation/test/summary.json"} <= listed
    downloaded = client.download_artifacts(run.info.run_id, "evaluation/test/per_disease.csv", str(tmp_path))
    assert Path(downloaded).read_bytes() == (out / "evaluation" / "test" / "per_disease.csv").read_bytes()
    # The server proxied the upload into its own artifact destination.
    stored = list((server["root"] / "artifacts").rglob("per_disease.csv"))
    assert len(stored) == 1 and run.info.run_id in str(stored[0])


def test_compare_reads_the_server(server, logged_run):
    run, out, _ = logged_run
    comparison = compare_runs(server["url"], EXPERIMENT)
    assert [column.run_id for column in comparison.runs] == [run.info.run_id]
    summary = json.loads((out / "evaluation" / "test" / "summary.json").read_text())
    cell = comparison.formatted().loc["macro AUROC"].iloc[0]
    assert cell.startswith(f"{summary['macro_auroc']:.3f} [")


def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _dump_dom(browser: str, url: str, profile: Path) -> str:
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", url,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _as_js_number(value: float) -> str:
    """How the UI prints a metric value: the shortest positional form, without a trailing ``.0``."""
    return np.format_float_positional(value, unique=True, trim="-")


def test_run_page_shows_per_disease_metrics(server, logged_run, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip(f"chromium is not installed, so the MLflow UI is not checked in a browser ({CHROMIUM_INSTALL})")
    run, _, client = logged_run
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    # The run's overview page lists every metric with its value in its "Metrics" table.
    dom = _dump_dom(browser, f"{server['url']}/#/experiments/{experiment_id}/runs/{run.info.run_id}", tmp_path)
    assert run.info.run_name in dom, "the run page did not render"
    per_disease = {k: v for k, v in run.data.metrics.items() if k.startswith(("test/auroc/", "test/ap/"))}
    assert per_disease
    for name, value in per_disease.items():
        at = dom.find(f">{name}<")
        assert at >= 0, f"{name} missing from the run page"
        row = dom[at : at + 1500].split('role="row"')[0]
        assert _as_js_number(value) in row, f"{name}: value {value} not shown beside it"
