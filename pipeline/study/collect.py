"""Read a sweep back from MLflow: the parent run, its finished children, and what each child varied.

A child's loss is named by the short name of the loss class it logged (``RobustAsymmetricLoss`` -> ``ral``).
Its setting is the hyper-parameters the sweep varied apart from loss and seed (tags ``sweep.varied.<key>``);
for runs not made by ``pipeline sweep`` the setting falls back to the ``loss.*`` parameters that differ between
runs of the same loss.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.study.config import short_key
from pipeline.study.runner import EVALUATED_METRIC, PARENT_TAG
from pipeline.tracking import metric_name

logger = logging.getLogger(__name__)

VAL_METRIC = metric_name("val", "macro_auroc")
_VARIED_PREFIX = "sweep.varied."


@dataclass
class ChildRun:
    """One finished child of a sweep.

    Attributes:
        run_id, name: the MLflow run.
        loss: short loss name (``ral``, ``bce``, ...).
        setting: hyper-parameters other than loss and seed, as sorted ``(name, value)`` pairs.
        seed: training seed (None if not logged).
        metrics: latest value of every metric.
        params, tags: the run's parameters and tags.
        best_val: best validation macro AUROC over epochs (the checkpoint that was evaluated); NaN if none.
        duration_s: run wall time in seconds, NaN if unknown.
    """

    run_id: str
    name: str
    loss: str
    setting: tuple[tuple[str, Any], ...]
    seed: int | None
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    best_val: float = math.nan
    duration_s: float = math.nan

    @property
    def setting_label(self) -> str:
        return setting_label(self.setting)

    def metric(self, name: str) -> float:
        return float(self.metrics.get(name, math.nan))


def setting_label(setting: Sequence[tuple[str, Any]]) -> str:
    """``gamma_neg=2, lamb=1.5``; ``-`` when nothing was varied."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting) or "-"


@dataclass
class SweepRuns:
    """A sweep as read back from MLflow.

    Attributes:
        parent: the parent ``mlflow.entities.Run``.
        children: finished and evaluated children.
        excluded: ``(name, run_id, reason)`` of children left out (failed, interrupted, no evaluation).
        labels: label names in output order.
        hyperparameters: names of the varied hyper-parameters (over all losses).
    """

    parent: Any
    children: list[ChildRun]
    excluded: list[tuple[str, str, str]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    hyperparameters: list[str] = field(default_factory=list)

    def losses(self) -> list[str]:
        """Loss names in first-seen order."""
        return list(dict.fromkeys(child.loss for child in self.children))

    def settings(self, loss: str) -> list[tuple[tuple[str, Any], ...]]:
        return sorted({child.setting for child in self.children if child.loss == loss}, key=_setting_order)

    def runs(self, loss: str, setting: tuple | None = None) -> list[ChildRun]:
        """Children of ``loss`` (and ``setting``), sorted by seed."""
        runs = [c for c in self.children if c.loss == loss and (setting is None or c.setting == setting)]
        return sorted(runs, key=lambda c: (c.seed is None, c.seed))


def _setting_order(setting: tuple) -> tuple:
    return tuple((k, (0, v) if isinstance(v, int | float) else (1, str(v))) for k, v in setting)


def loss_short_names() -> dict[str, str]:
    """Loss class name -> short name, from the loss registry."""
    from pipeline.losses import LOSSES

    return {cls.__name__: name for name, cls in LOSSES.items()}


def _parse(value: str) -> Any:
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


def _number(value: Any) -> Any:
    """Parameters arrive as strings: turn ``"2.0"`` back into 2.0 so that settings compare and plot as numbers."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def _search_children(client: Any, parent: Any) -> list[Any]:
    from mlflow.entities import ViewType

    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'",
            run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token,
        )  # fmt: skip
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def collect_sweep(client: Any, parent_run_id: str) -> SweepRuns:
    """Read the parent run and its active children; children without a finished evaluation are excluded.

    Raises:
        ValueError: if the parent run does not exist or has no child runs.
    """
    from mlflow.exceptions import MlflowException

    try:
        parent = client.get_run(parent_run_id)
    except MlflowException as err:
        raise ValueError(f"no run {parent_run_id!r} in {client.tracking_uri}") from err
    # In the order they were started, which is the sweep's order: losses are listed as the sweep file lists them.
    runs = sorted(_search_children(client, parent), key=lambda run: (run.info.start_time or 0, run.info.run_id))
    if not runs:
        raise ValueError(f"run {parent_run_id} has no child runs (tag {PARENT_TAG}) in {client.tracking_uri}")

    short = loss_short_names()
    children: list[ChildRun] = []
    excluded: list[tuple[str, str, str]] = []
    for run in runs:
        name = run.info.run_name or run.info.run_id
        if run.info.status != "FINISHED" or EVALUATED_METRIC not in run.data.metrics:
            reason = "no test evaluation" if run.info.status == "FINISHED" else f"status {run.info.status}"
            excluded.append((name, run.info.run_id, reason))
            continue
        params = dict(run.data.params)
        tags = dict(run.data.tags)
        loss_class = params.get("loss") or tags.get("loss") or "unknown"
        varied = {
            key[len(_VARIED_PREFIX) :]: _parse(value) for key, value in tags.items() if key.startswith(_VARIED_PREFIX)
        }
        # The loss (by option or by class) and the seed are not part of a setting.
        setting = tuple(
            sorted(
                (short_key(k), v) for k, v in varied.items() if k not in ("loss", "seed") and short_key(k) != "_target_"
            )
        )
        seed = _number(params.get("seed")) if params.get("seed") is not None else varied.get("seed")
        history = client.get_metric_history(run.info.run_id, VAL_METRIC)
        best_val = max((m.value for m in history), default=math.nan)
        end, start = run.info.end_time, run.info.start_time
        children.append(
            ChildRun(
                run_id=run.info.run_id, name=name, loss=short.get(loss_class, loss_class.lower()), setting=setting,
                seed=seed if isinstance(seed, int) else None, metrics=dict(run.data.metrics), params=params,
                tags=tags, best_val=float(best_val), duration_s=(end - start) / 1000 if end and start else math.nan,
            )
        )  # fmt: skip
    if children and not any(c.setting for c in children) and not any(_VARIED_PREFIX in k for c in children
                                                                      for k in c.tags):  # fmt: skip
        _settings_from_params(children)
    labels = children[0].params.get("labels", "").split("|") if children and children[0].params.get("labels") else []
    hyper = sorted({k for c in children for k, _ in c.setting})
    logger.info("sweep %s: %d finished children, %d excluded", parent_run_id, len(children), len(excluded))
    return SweepRuns(parent, children, excluded, [label for label in labels if label], hyper)


def _settings_from_params(children: list[ChildRun]) -> None:
    """For runs without sweep tags: the ``loss.*`` parameters that differ between runs of one loss."""
    by_loss: dict[str, list[ChildRun]] = defaultdict(list)
    for child in children:
        by_loss[child.loss].append(child)
    for runs in by_loss.values():
        keys = sorted({k for c in runs for k in c.params if k.startswith("loss.")})
        varying = [k for k in keys if len({c.params.get(k) for c in runs}) > 1]
        for child in runs:
            child.setting = tuple((k[len("loss.") :], _number(child.params.get(k))) for k in varying)


def label_metric(split: str, metric: str, label: str) -> str:
    """Metric name of one label, e.g. ``test/auroc/Pleural_Thickening``."""
    return metric_name(split, metric, label)


def download_artifact(client: Any, run_id: str, path: str, folder: str | os.PathLike) -> Path | None:
    """Download one artifact of a run into ``folder``; None when it does not exist or cannot be read."""
    from mlflow.exceptions import MlflowException

    try:
        return Path(client.download_artifacts(run_id, path, str(folder)))
    except (MlflowException, OSError) as err:
        logger.debug("artifact %s of run %s not available: %s", path, run_id, err)
        return None


def read_json_artifact(client: Any, run_id: str, path: str) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        local = download_artifact(client, run_id, path, tmp)
        if local is None or not local.is_file():
            return None
        return json.loads(local.read_text())
