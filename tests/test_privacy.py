"""No identifying DICOM header value reaches the logs, MLflow params, tags, metrics or artifacts of a run, even
when a file with such values is unreadable and skipped."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from PIL import Image

from pipeline.io.writers import write_dicom
from tests.conftest import run_cli

IDENTIFYING = {
    "PatientName": "Doe^Jane",
    "PatientID": "PID-987654",
    "PatientBirthDate": "19450317",
    "AccessionNumber": "ACC-55501",
    "InstitutionName": "Saint Example Hospital",
    "ReferringPhysicianName": "Smith^Anne",
    "OtherPatientIDs": "MRN-31337",
}


def test_identifying_header_values_stay_out_of_logs_and_mlflow(synthetic_datalist, tmp_path):
    content = json.loads(Path(synthetic_datalist).read_text())
    folder = tmp_path / "dicoms"
    folder.mkdir()
    for split in ("training", "validation", "test"):
        for item in content[split]:
            pixels = np.asarray(Image.open(item["image"]), dtype=np.uint16) * 16
            target = folder / (Path(item["image"]).stem + ".dcm")
            write_dicom(target, pixels, bits_stored=12, attributes=IDENTIFYING)
            item["image"] = str(target)
    # One truncated DICOM whose header still carries the identifying values.
    broken = folder / "broken.dcm"
    broken.write_bytes((folder / (Path(content["training"][0]["image"]).stem + ".dcm")).read_bytes()[:900])
    content["training"].append({**content["training"][0], "image": str(broken)})
    datalist = tmp_path / "dicom_datalist.json"
    datalist.write_text(json.dumps(content))

    out = tmp_path / "run"
    result = run_cli(
        "--verbose", "train", "--datalist", str(datalist), "--output-dir", str(out), "--epochs", "1",
        "--image-size", "32", "--batch-size", "16", "--num-workers", "0", "--set", "bad_file_policy=skip",
        "--set", "n_bootstrap=0", "--set", "log_model=false",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]

    skipped = pd.read_csv(out / "skipped_files.csv")
    assert list(skipped["path"]) == [str(broken)], "the broken file is skipped, counted and listed"

    texts = [result.stdout, result.stderr]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("cxr_ral").experiment_id])[0]
    assert run.data.metrics["train/skipped_files"] == 1
    texts += [json.dumps(run.data.params), json.dumps(run.data.tags), json.dumps(sorted(run.data.metrics))]
    artifact_root = Path(run.info.artifact_uri.removeprefix("file://"))
    artifacts = [p for p in artifact_root.rglob("*") if p.is_file() and p.suffix in (".csv", ".json", ".md", ".txt")]
    assert any(p.name == "skipped_files.csv" for p in artifacts), "the skipped-files list is an MLflow artifact"
    texts += [p.read_text(errors="replace") for p in artifacts]
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".csv", ".json", ".md", ".log"):
            texts.append(path.read_text(errors="replace"))

    for value in IDENTIFYING.values():
        for variant in {value, value.replace("^", " ")}:
            assert not any(variant in text for text in texts), f"{variant!r} leaked"
