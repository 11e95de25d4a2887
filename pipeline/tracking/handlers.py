"""Ignite/MONAI handlers that tie a workflow to one MLflow run.

:class:`RunBinding` creates the run (or reopens the one being resumed or evaluated), records what it ran with,
and closes it; :class:`BoundMLFlowHandler` is MONAI's ``MLFlowHandler`` writing into that run instead of
searching for one by name.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
from ignite.engine import Engine
from mlflow.entities import Metric, Param, RunStatus, RunTag
from monai.handlers import MLFlowHandler

from pipeline import runtime
from pipeline.tracking import (
    artifact_location,
    finite_metrics,
    load_run_info,
    save_run_info,
)

logger = logging.getLogger(__name__)

_MAX_PARAM_LENGTH = 6000


class RunBinding:
    """The MLflow run of one workflow.

    ``start()`` picks the run: ``run_id`` if given, else the run recorded in ``output_dir`` when ``resume`` (or
    evaluation of a finished run) asks for it, else a new run named ``run_name``. It logs tags and parameters
    (never DICOM header values: callers pass only configuration) and the package versions, git commit and
    ``config_file`` as artifacts. Only rank 0 talks to MLflow under ``torch.distributed``.

    Args:
        tracking_uri: MLflow tracking URI.
        experiment_name: experiment to create the run in.
        run_name: name of a new run.
        run_id: an existing run to continue (resume, or evaluation of a trained model).
        output_dir: folder where the run's identity is recorded (``mlflow_run.json``).
        tags, params: logged at start; params already logged with the same value are skipped.
        config_file: a resolved-config JSON to log as an artifact, if it exists.
        reuse_recorded_run: continue the run recorded in ``output_dir`` if there is one.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        run_name: str,
        run_id: str | None = None,
        output_dir: str | os.PathLike | None = None,
        tags: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        config_file: str | os.PathLike | None = None,
        reuse_recorded_run: bool = True,
    ):
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.run_id = run_id
        self.output_dir = Path(output_dir) if output_dir else None
        self.tags = {k: str(v) for k, v in (tags or {}).items()}
        self.params = dict(params or {})
        self.config_file = config_file
        self.reuse_recorded_run = reuse_recorded_run
        self.enabled = runtime.is_rank_zero()
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri) if self.enabled else None

    def _experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        return self.client.create_experiment(
            self.experiment_name, artifact_location=artifact_location(self.tracking_uri)
        )

    def start(self) -> str | None:
        """Create or reopen the run; returns its id (``None`` on ranks other than 0)."""
        if not self.enabled:
            return None
        if self.run_id is None and self.reuse_recorded_run and self.output_dir is not None:
            recorded = load_run_info(self.output_dir)
            if recorded and recorded.get("tracking_uri") == self.tracking_uri:
                self.run_id = recorded["run_id"]
        if self.run_id is not None:
            run = self.client.get_run(self.run_id)
            self.run_name = run.info.run_name
            self.client.update_run(self.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            logger.info("continuing MLflow run %s (%s)", self.run_name, self.run_id)
        else:
            run = self.client.create_run(self._experiment_id(), run_name=self.run_name)
            self.run_id = run.info.run_id
            logger.info("started MLflow run %s (%s) at %s", self.run_name, self.run_id, self.tracking_uri)
        if self.output_dir is not None:
            save_run_info(self.output_dir, self.run_id, self.run_name, self.tracking_uri, self.experiment_name)
        self.log_tags(self.tags)
        self.log_params(self.params)
        self._log_environment()
        return self.run_id

    def log_tags(self, tags: Mapping[str, Any]) -> None:
        if self.enabled and tags:
            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters not yet logged; a parameter logged earlier with another value is kept and reported."""
        if not self.enabled or not params:
            return
        existing = self.client.get_run(self.run_id).data.params
        new = []
        for key, value in params.items():
            text = str(value)[:_MAX_PARAM_LENGTH]
            if key not in existing:
                new.append(Param(key, text))
            elif existing[key] != text:
                logger.warning("param %s was logged as %r; this run now uses %r", key, existing[key], text)
        for start in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log finite metrics; undefined (NaN) values are skipped, never replaced by a number."""
        if not self.enabled:
            return
        now = int(time.time() * 1000)
        values = [Metric(k, v, now, step) for k, v in finite_metrics(metrics).items()]
        for start in range(0, len(values), 500):
            self.client.log_batch(self.run_id, metrics=values[start : start + 500])

    def log_artifacts(self, folder: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.enabled:
            self.client.log_artifacts(self.run_id, str(folder), artifact_path)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self.enabled:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def _log_environment(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            info = {"packages": runtime.package_versions(), "git_commit": runtime.git_commit()}
            (tmp_path / "environment.json").write_text(json.dumps(info, indent=2))
            self.log_artifact(tmp_path / "environment.json", "run_info")
        self.log_tags({"git_commit": info["git_commit"]})
        if self.config_file and Path(self.config_file).is_file():
            self.log_artifact(self.config_file, "run_info")

    def log_skipped(self, skip_log: Any, stage: str = "train") -> None:
        """Record unreadable files skipped under the ``skip`` policy in one stage (``train``, ``test``...): a
        ``<stage>/skipped_files`` count and the CSV listing them with their reasons, under ``skipped_files/<stage>``.
        """
        if not self.enabled or skip_log is None:
            return
        self.log_metrics({f"{stage}/skipped_files": float(skip_log.count)})
        if skip_log.count:
            logger.warning("%s: %d unreadable file(s) were skipped; see %s", stage, skip_log.count, skip_log.csv_path)
        if skip_log.csv_path is not None:
            self.log_artifact(skip_log.write_csv(), f"skipped_files/{stage}")

    def log_model(
        self, network: Any, image_size: int, registered_name: str | None = None, in_channels: int = 1
    ) -> None:
        """Log the network as an MLflow PyTorch model with an input example, and register it under a name.

        The model is logged as ``model`` in the run; with ``registered_name`` a new version of that registered
        model is created. Pip requirements are the installed versions of the packages the model needs, stated
        rather than inferred (inference would import and run the model in a subprocess). The model is pickled
        rather than exported with ``torch.export``, whose static shapes would fix the batch size to the example's.
        """
        if not self.enabled:
            return
        import numpy as np
        import torch

        module = network.module if isinstance(network, torch.nn.parallel.DistributedDataParallel) else network
        module = module.eval().cpu() if next(module.parameters()).device.type != "cpu" else module.eval()
        example = np.zeros((1, int(in_channels), int(image_size), int(image_size)), dtype=np.float32)
        versions = runtime.package_versions()
        requirements = [f"{name}=={versions[name]}" for name in ("torch", "torchvision", "monai")]
        mlflow.set_tracking_uri(self.tracking_uri)
        with mlflow.start_run(run_id=self.run_id):
            info = mlflow.pytorch.log_model(
                module, name="model", input_example=example, pip_requirements=requirements,
                registered_model_name=registered_name or None, serialization_format="pickle",
            )  # fmt: skip
        logger.info(
            "logged the model as %s%s", info.model_uri, f", registered as {registered_name}" * bool(registered_name)
        )

    def finish(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED (or FAILED)."""
        if self.enabled and self.run_id is not None:
            self.client.set_terminated(self.run_id, status)

    def finish_training(self, trainer: Engine, ckpt_dir: str | os.PathLike, keep_open: bool = False) -> None:
        """Record the best epoch and close the run unless an evaluation will follow in the same run."""
        if not self.enabled:
            return
        best = Path(ckpt_dir) / "best.pt"
        self.log_tags({"best_checkpoint": str(best.resolve()), "epochs_completed": trainer.state.epoch})
        if not keep_open:
            self.finish()


class BoundMLFlowHandler(MLFlowHandler):
    """MONAI's ``MLFlowHandler`` that writes into the run of a :class:`RunBinding`.

    The plain handler finds its run by name; binding it to a run id keeps training, validation and evaluation in
    the same run even when names repeat, and lets a resumed training continue its run. On ranks other than 0
    it does nothing.
    """

    def __init__(self, binding: RunBinding, **kwargs: Any):
        self.binding = binding
        if not binding.enabled:
            # Other ranks never open the store: concurrent first opens of a SQLite store race on its schema.
            return
        kwargs.setdefault("artifact_location", artifact_location(binding.tracking_uri))
        super().__init__(**kwargs)

    def attach(self, engine: Engine) -> None:
        if self.binding.enabled:
            super().attach(engine)

    def start(self, engine: Engine) -> None:
        if self.cur_run is None:
            if self.binding.run_id is None:
                self.binding.start()
            self.cur_run = self.client.get_run(self.binding.run_id)
        super().start(engine)

    def _log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        super()._log_metrics(finite_metrics(metrics), step)
