"""MLflow conventions of the pipeline: where runs are stored, what they are called, what their metrics are named.

Every MLflow name the project writes comes from this module, so that runs from the CLI, from a plain
``python -m monai.bundle run`` and from ``torchrun`` can be compared side by side in the MLflow UI.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "cxr_ral"
RUN_INFO_FILE = "mlflow_run.json"
_UNSAFE = re.compile(r"[^0-9A-Za-z_\-. /]")


def resolve_tracking_uri(output_dir: str | os.PathLike | None = None, tracking_uri: str | None = None) -> str:
    """Return the MLflow tracking URI for a run.

    Precedence: an explicit ``tracking_uri``, then ``MLFLOW_TRACKING_URI``, then a SQLite file ``mlflow.db`` in
    ``output_dir`` (MLflow 3 refuses the old folder store, so a local default has to be a database).
    """
    if tracking_uri:
        return str(tracking_uri)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if output_dir is None:
        raise ValueError("no tracking URI: pass tracking_uri, set MLFLOW_TRACKING_URI or give an output_dir")
    db = Path(output_dir).resolve() / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def artifact_location(tracking_uri: str) -> str | None:
    """Artifact root for a new experiment: a ``mlartifacts`` folder beside a SQLite store, else MLflow's default."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
    return None


def safe_name(label: str) -> str:
    """Make a label usable inside an MLflow metric name (spaces to underscores, odd characters dropped)."""
    return _UNSAFE.sub("", str(label).strip().replace(" ", "_"))


def metric_name(split: str, metric: str, label: str | None = None) -> str:
    """``split/metric`` or ``split/metric/<Label>``, e.g. ``test/auroc/Pleural_Effusion``."""
    name = f"{split}/{metric}"
    return f"{name}/{safe_name(label)}" if label is not None else name


def default_run_name(network: str, loss: Any, seed: int) -> str:
    """Run name that says network, loss and seed, made unique by a timestamp."""
    loss_name = loss if isinstance(loss, str) else getattr(loss, "short_name", type(loss).__name__)
    return f"{network}-{loss_name}-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def describe_loss(loss: Any) -> dict[str, Any]:
    """Flat description of a loss object for ``log_params``: its class and its numeric/str hyper-parameters."""
    import dataclasses

    params: dict[str, Any] = {"loss": type(loss).__name__}
    fields = dict(vars(loss))
    # The project's losses keep their hyper-parameters in a dataclass of terms (gamma_neg, clip, lamb, ...).
    terms = fields.pop("terms", None)
    if dataclasses.is_dataclass(terms):
        fields.update(dataclasses.asdict(terms))
    for key, value in sorted(fields.items()):
        if key.startswith("_") or key == "training":
            continue
        if isinstance(value, bool | int | float | str | tuple) or value is None:
            params[f"loss.{key}"] = value
    return params


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Drop undefined (NaN/inf) values: MLflow must never show a made-up number for an undefined metric."""
    out = {}
    for key, value in metrics.items():
        value = float(value)
        if math.isfinite(value):
            out[key] = value
    return out


def save_run_info(
    output_dir: str | os.PathLike, run_id: str, run_name: str, tracking_uri: str, experiment: str
) -> Path:
    """Write the run's identity next to its checkpoints, so that ``--resume`` continues the same MLflow run."""
    path = Path(output_dir) / RUN_INFO_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"run_id": run_id, "run_name": run_name, "tracking_uri": tracking_uri, "experiment": experiment}
    path.write_text(json.dumps(info, indent=2))
    return path


def load_run_info(output_dir: str | os.PathLike) -> dict[str, str] | None:
    """Read the identity saved by :func:`save_run_info`, or ``None`` when the folder has no run yet."""
    path = Path(output_dir) / RUN_INFO_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())
