"""Inference with a trained model: load a checkpoint or a TorchScript export, apply the per-disease thresholds
chosen on validation, and write one CSV row per image."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from pipeline.checkpoint import load_checkpoint, network_state
from pipeline.evaluation import load_thresholds
from pipeline.metrics import OperatingPoints

logger = logging.getLogger(__name__)


def is_torchscript(path: str | os.PathLike) -> bool:
    """True for a TorchScript archive (as written by ``monai.bundle ckpt_export``), False for a checkpoint."""
    path = Path(path)
    if path.suffix == ".ts":
        return True
    try:
        import zipfile

        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def model_labels(checkpoint: str | os.PathLike, thresholds_path: str | os.PathLike) -> list[str]:
    """Label names of a model: from its checkpoint, or from its thresholds file for a TorchScript export."""
    if not is_torchscript(checkpoint):
        labels = load_checkpoint(checkpoint).get("labels")
        if labels:
            return list(labels)
    if Path(thresholds_path).is_file():
        return list(OperatingPoints.load(thresholds_path).thresholds)
    raise ValueError(
        f"cannot tell the label names of {checkpoint}: it holds none and there is no thresholds file {thresholds_path}"
    )


def load_model(checkpoint: str | os.PathLike, network_def: torch.nn.Module | None, device: Any) -> torch.nn.Module:
    """The network in eval mode: a TorchScript export as is, or ``network_def`` with the checkpoint's weights."""
    if is_torchscript(checkpoint):
        model = torch.jit.load(str(checkpoint), map_location=device)
    else:
        if network_def is None:
            raise ValueError(f"{checkpoint} is a checkpoint, so a network definition is needed to load it into")
        network_def.load_state_dict(network_state(load_checkpoint(checkpoint)))
        model = network_def.to(device)
    return model.eval()


class PredictionWriter:
    """Ignite handler: collect the sigmoid outputs of an evaluator and write them with decisions to a CSV file.

    Columns: ``path``, ``prob/<Label>`` for every label, then ``decision/<Label>`` (1 when the probability reaches
    the label's threshold).

    Args:
        output_csv: the file to write.
        labels: label names in output order.
        thresholds_path: JSON written at evaluation; without it every threshold is 0.5, with a warning.
    """

    def __init__(self, output_csv: str | os.PathLike, labels: Sequence[str], thresholds_path: str | os.PathLike):
        self.output_csv = Path(output_csv)
        self.labels = list(labels)
        if Path(thresholds_path).is_file():
            self.thresholds = load_thresholds(thresholds_path, self.labels)
        else:
            logger.warning("no thresholds file at %s: deciding at probability 0.5 for every label", thresholds_path)
            self.thresholds = dict.fromkeys(self.labels, 0.5)
        self.rows = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._open)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._write)
        engine.add_event_handler(Events.COMPLETED, self._close)

    def _open(self, engine: Engine) -> None:
        self.output_csv.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.output_csv.open("w", newline="")
        self._writer = csv.writer(self._handle)
        header = ["path"] + [f"prob/{n}" for n in self.labels] + [f"decision/{n}" for n in self.labels]
        self._writer.writerow(header)
        self._cut = np.asarray([self.thresholds[n] for n in self.labels])
        self.rows = 0

    def _write(self, engine: Engine) -> None:
        output = engine.state.output
        batch = engine.state.batch
        if not isinstance(output, dict) or "pred" not in output:
            return  # a batch whose every file was skipped
        probs = output["pred"].detach().float().cpu().numpy().reshape(len(batch["path"]), -1)
        for path, row in zip(batch["path"], probs, strict=True):
            decisions = (row >= self._cut).astype(int)
            self._writer.writerow([path, *(f"{p:.6f}" for p in row), *decisions.tolist()])
            self.rows += 1
        self._handle.flush()

    def _close(self, engine: Engine) -> None:
        self._handle.close()
        logger.info("wrote %d predictions to %s", self.rows, self.output_csv)
