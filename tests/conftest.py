"""Shared fixtures: the repository root, the shared real-data folder, and a tiny synthetic data set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m pipeline ARGS`` in a subprocess from the repository root and return the result."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None) if "MLFLOW_TRACKING_URI" not in (env or {}) else None
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def synthetic_datalist(tmp_path_factory) -> Path:
    """A tiny synthetic set (120 images, 32x32, 4 findings) prepared into a patient-level datalist."""
    from pipeline.data import build_csv_datalist, write_datalist
    from pipeline.synthetic import SYNTHETIC_LABELS, SyntheticSpec, generate

    folder = tmp_path_factory.mktemp("synthetic")
    spec = SyntheticSpec(num_images=120, image_size=32, num_labels=4, head_prevalence=0.5, decay=0.6, seed=1)
    csv = generate(folder, spec)
    datalist = build_csv_datalist(
        csv, path_column="path", patient_column="patient", label_columns=list(SYNTHETIC_LABELS[:4]), seed=0
    )
    return write_datalist(datalist, folder / "datalist.json")


FAST_TRAIN = ("--epochs", "1", "--image-size", "32", "--batch-size", "16", "--num-workers", "0")


@pytest.fixture(scope="session")
def trained_run(synthetic_datalist, tmp_path_factory):
    """One short training + evaluation through the CLI, shared by the tests that only read its outputs."""
    out = tmp_path_factory.mktemp("train")
    result = run_cli(
        "train", "--datalist", str(synthetic_datalist), "--output-dir", str(out), "--loss", "ral", *FAST_TRAIN,
        "--set", "n_bootstrap=20",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out
