"""The bundle beyond one training: MONAI's checks, TorchScript export, inference on folders, atomic checkpoints,
resume after SIGKILL and a two-process torchrun run on the CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from pipeline import checkpoint as ckpt
from tests.conftest import REPO_ROOT, run_cli

BUNDLE = REPO_ROOT / "bundles" / "cxr_ral"
CONFIGS = BUNDLE / "configs"


def _bundle_cmd(verb: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", verb, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def _write_dicom(path: Path, pixels: np.ndarray) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PhotometricInterpretation, ds.SamplesPerPixel = "DX", "MONOCHROME2", 1
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_verify_metadata_and_net_in_out_offline():
    schema = BUNDLE / "schema" / "metadata_schema.json"
    result = _bundle_cmd("verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"), "--filepath", str(schema))
    assert result.returncode == 0, result.stderr[-2000:]
    result = _bundle_cmd(
        "verify_net_in_out", "network_def", "--meta_file", str(CONFIGS / "metadata.json"),
        "--config_file", str(CONFIGS / "train.json"), "--bundle_root", str(BUNDLE), "--num_classes", "14", "--n", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "verified with no error" in result.stderr + result.stdout


@pytest.fixture(scope="module")
def exported(trained_run, synthetic_datalist, tmp_path_factory):
    target = tmp_path_factory.mktemp("export") / "model.ts"
    result = _bundle_cmd(
        "ckpt_export", "network_def", "--filepath", str(target), "--ckpt_file",
        str(trained_run / "checkpoints" / "best.pt"), "--key_in_ckpt", "network",
        "--meta_file", str(CONFIGS / "metadata.json"), "--config_file", str(CONFIGS / "train.json"),
        "--bundle_root", str(BUNDLE), "--datalist", str(synthetic_datalist),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return target


def test_ckpt_export_matches_the_checkpoint(exported, trained_run, synthetic_datalist):
    from pipeline.networks import build_network

    labels = json.loads(Path(synthetic_datalist).read_text())["labels"]
    network = build_network("densenet121", num_classes=len(labels))
    network.load_state_dict(ckpt.network_state(ckpt.load_checkpoint(trained_run / "checkpoints" / "best.pt")))
    network.eval()
    scripted = torch.jit.load(str(exported)).eval()
    batch = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(scripted(batch), network(batch), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, synthetic_datalist) -> Path:
    """Two PNGs and a DICOM in nested folders, plus a file that only pretends to be a PNG."""
    folder = tmp_path_factory.mktemp("mixed")
    items = json.loads(Path(synthetic_datalist).read_text())["test"][:2]
    (folder / "site_a").mkdir()
    for i, item in enumerate(items):
        Image.open(item["image"]).save(folder / "site_a" / f"image_{i}.png")
    pixels = np.asarray(Image.open(items[0]["image"]), dtype=np.float64) * 16
    (folder / "site_b" / "series").mkdir(parents=True)
    _write_dicom(folder / "site_b" / "series" / "image_0.dcm", pixels)
    (folder / "site_b" / "broken.png").write_bytes(b"this is not a png")
    return folder


def test_inference_on_a_mixed_folder_skips_the_bad_file(trained_run, mixed_folder, tmp_path):
    output = tmp_path / "predictions.csv"
    result = run_cli(
        "infer", "--model", str(trained_run / "checkpoints" / "best.pt"), "--input", str(mixed_folder),
        "--output", str(output), "--image-size", "32", "--num-workers", "0", "--bad-files", "skip",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(output)
    assert sorted(Path(p).name for p in table["path"]) == ["image_0.dcm", "image_0.png", "image_1.png"]
    skipped = pd.read_csv(tmp_path / "skipped_files.csv")
    assert list(skipped["path"].map(lambda p: Path(p).name)) == ["broken.png"]
    assert skipped["reason"].iloc[0]

    # The decisions are the saved validation thresholds applied to the probabilities.
    thresholds = json.loads((trained_run / "checkpoints" / "thresholds.json").read_text())["thresholds"]
    for label, cut in thresholds.items():
        expected = (table[f"prob/{label}"] >= cut).astype(int)
        assert (table[f"decision/{label}"] == expected).all(), label

    # The DICOM holds the first PNG's pixels (scaled to 12 bits): same prediction after intensity scaling.
    by_name = table.set_index(table["path"].map(lambda p: Path(p).name))
    probs = [c for c in table.columns if c.startswith("prob/")]
    np.testing.assert_allclose(by_name.loc["image_0.dcm", probs], by_name.loc["image_0.png", probs], atol=1e-4)


def test_inference_stops_on_a_bad_file_by_default(trained_run, mixed_folder, tmp_path):
    result = run_cli(
        "infer", "--model", str(trained_run / "checkpoints" / "best.pt"), "--input", str(mixed_folder),
        "--output", str(tmp_path / "p.csv"), "--image-size", "32", "--num-workers", "0",
    )  # fmt: skip
    assert result.returncode != 0
    assert "broken.png" in result.stderr


def test_inference_from_torchscript_matches_the_checkpoint(trained_run, exported, mixed_folder, tmp_path):
    outputs = {}
    for name, model in (("ckpt", trained_run / "checkpoints" / "best.pt"), ("ts", exported)):
        outputs[name] = tmp_path / f"{name}.csv"
        result = run_cli(
            "infer", "--model", str(model), "--input", str(mixed_folder / "site_a"), "--output", str(outputs[name]),
            "--thresholds", str(trained_run / "checkpoints" / "thresholds.json"), "--image-size", "32",
            "--num-workers", "0",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
    pd.testing.assert_frame_equal(pd.read_csv(outputs["ckpt"]), pd.read_csv(outputs["ts"]), atol=1e-5)


def test_a_crash_while_saving_never_replaces_the_latest_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    ckpt.atomic_save({"epoch": 1, "weights": torch.ones(3)}, path)

    def crash(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"], "the partial temporary file is removed"


def test_a_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "best.pt"
    ckpt.atomic_save({"network": {"w": torch.ones(100)}}, path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="best.pt"):
        ckpt.load_checkpoint(path)


def _val_history(out: Path):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("cxr_ral").experiment_id])
    return client, runs


def test_sigkill_then_resume_continues_the_same_run(synthetic_datalist, tmp_path):
    out = tmp_path / "run"
    epochs = 6
    args = [
        "train", "--datalist", str(synthetic_datalist), "--output-dir", str(out), "--epochs", str(epochs),
        "--image-size", "32", "--batch-size", "8", "--num-workers", "0", "--no-evaluate",
        "--set", "checkpoint_every_n_iterations=3",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    latest = out / "checkpoints" / "latest.pt"
    deadline = time.monotonic() + 300
    # Kill in the middle of epoch 2: after epoch 1's checkpoint and a mid-epoch one exist.
    while time.monotonic() < deadline and process.poll() is None:
        if latest.exists():
            state = ckpt.load_checkpoint(latest)["trainer"]
            if state["iteration"] > state["epoch_length"] + 1:
                break
        time.sleep(0.05)
    assert process.poll() is None, "training ended before it could be killed; make the data larger"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    state = ckpt.load_checkpoint(latest)["trainer"]
    assert state["iteration"] > state["epoch_length"], "killed after epoch 1"

    result = run_cli(*args, "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    client, runs = _val_history(out)
    assert len(runs) == 1, "the resumed training continues its MLflow run"
    history = client.get_metric_history(runs[0].info.run_id, "val/macro_auroc")
    assert sorted(m.step for m in history) == list(range(1, epochs + 1)), "each epoch's validation is logged once"
    assert runs[0].info.status == "FINISHED"
    assert ckpt.load_checkpoint(latest)["trainer"]["iteration"] == epochs * state["epoch_length"]


def test_torchrun_two_processes_on_cpu(synthetic_datalist, tmp_path):
    from pipeline.handlers import per_label_auroc
    from pipeline.networks import build_network
    from pipeline.runtime import load_split

    out = tmp_path / "ddp"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["OMP_NUM_THREADS"] = "1"
    configs = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'multi_gpu_train.json'}']"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle",
         "run", "--config_file", configs, "--meta_file", str(CONFIGS / "metadata.json"), "--bundle_root", str(BUNDLE),
         "--datalist", str(synthetic_datalist), "--output_dir", str(out), "--epochs", "1", "--image_size", "32",
         "--batch_size", "8", "--num_workers", "0"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    client, runs = _val_history(out)
    assert len(runs) == 1, "only rank 0 talks to MLflow"
    logged = client.get_metric_history(runs[0].info.run_id, "val/macro_auroc")
    assert len(logged) == 1

    # The same weights evaluated in one process over the whole validation split give the same AUROC: every
    # validation image was counted exactly once across the two ranks.
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.update({"datalist": str(synthetic_datalist), "image_size": 32, "bundle_root": str(BUNDLE)})
    transform = parser.get_parsed_content("validate::preprocessing")
    items = load_split(synthetic_datalist, "validation")
    labels = json.loads(Path(synthetic_datalist).read_text())["labels"]
    network = build_network("densenet121", num_classes=len(labels))
    network.load_state_dict(ckpt.network_state(ckpt.load_checkpoint(out / "checkpoints" / "best.pt")))
    network.eval()
    batch = [transform(item) for item in items]
    images = torch.stack([b["image"] for b in batch])
    targets = torch.stack([b["label"] for b in batch]).numpy()
    with torch.no_grad():
        probs = torch.sigmoid(network(images)).numpy()
    scores = per_label_auroc(probs, targets)
    assert logged[0].value == pytest.approx(float(np.nanmean(scores)), abs=1e-6)


def test_mid_epoch_checkpoints_never_claim_an_unvalidated_epoch(tmp_path, monkeypatch):
    """An iteration-level save that falls on an epoch's last iteration is left to the epoch-end save, which runs
    after validation; otherwise a crash between the two would resume into a finished, never validated epoch."""
    from ignite.engine import Engine

    saved: list[int] = []
    real_save = ckpt.atomic_save

    def recording_save(obj, path):
        if Path(path).name == ckpt.LATEST:
            saved.append(obj["trainer"]["iteration"])
        return real_save(obj, path)

    monkeypatch.setattr(ckpt, "atomic_save", recording_save)
    network = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    engine = Engine(lambda e, b: 0.0)
    ckpt.TrainingCheckpoints(tmp_path, network, optimizer, every_n_iterations=2).attach(engine)
    engine.run(range(4), max_epochs=2)
    # Iterations 2 and 6 are mid-epoch saves; 4 and 8 are saved once each, at the end of their epochs.
    assert saved == [2, 4, 6, 8]
