"""Ignite pieces that connect MONAI engines to the metrics library: per-disease AUROC during validation and
collection of every prediction for evaluation.

Both gather results from all ranks under ``torch.distributed`` without padding duplicates, so metrics computed
by ``torchrun`` runs equal those of a single-process run on the same data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.metrics import Metric
from monai.utils import evenly_divisible_all_gather

from pipeline.tracking import metric_name

logger = logging.getLogger(__name__)


def _stack(values: Any) -> torch.Tensor:
    """Turn a batch tensor or a decollated list of per-item tensors into one (B, C) float tensor on the CPU."""
    if isinstance(values, torch.Tensor):
        tensor = values
    else:
        tensor = torch.stack([torch.as_tensor(v) for v in values])
    return tensor.detach().float().cpu().reshape(tensor.shape[0], -1)


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a per-rank tensor from every rank (first dimension may differ); identity without DDP."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return evenly_divisible_all_gather(tensor, concat=True)
    return tensor


def per_label_auroc(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """AUROC per column with scikit-learn; NaN where a column has no positive or no negative among known targets."""
    from sklearn.metrics import roc_auc_score

    scores = np.full(probs.shape[1], np.nan)
    for c in range(probs.shape[1]):
        known = np.isin(targets[:, c], (0.0, 1.0))
        y = targets[known, c]
        if y.size and 0 < y.sum() < y.size:
            scores[c] = roc_auc_score(y, probs[known, c])
    return scores


class MultiLabelAUROC(Metric):
    """Macro AUROC over labels, plus one AUROC per label, as an ignite metric.

    The value under the metric's own name is the macro AUROC over the labels whose AUROC is defined; each label's
    AUROC is also put into ``engine.state.metrics`` as ``<prefix>/auroc/<Label>`` when it is defined. Undefined
    labels are left out of both and counted in ``engine.state.undefined_labels``.

    Args:
        labels: label names, in output order.
        prefix: split name used in metric names, e.g. ``"val"``.
        output_transform: maps the engine output to ``(probs, targets)``.
    """

    def __init__(self, labels: Sequence[str], prefix: str = "val", output_transform: Callable = lambda x: x):
        self.labels = list(labels)
        self.prefix = prefix
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self._probs: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def update(self, output: tuple[Any, Any]) -> None:
        probs, targets = output
        self._probs.append(_stack(probs))
        self._targets.append(_stack(targets))

    def _gathered(self) -> tuple[np.ndarray, np.ndarray]:
        probs = gather(torch.cat(self._probs)) if self._probs else torch.zeros(0, len(self.labels))
        targets = gather(torch.cat(self._targets)) if self._targets else torch.zeros(0, len(self.labels))
        return probs.numpy(), targets.numpy()

    def compute(self) -> dict[str, float]:
        probs, targets = self._gathered()
        scores = per_label_auroc(probs, targets)
        self.last_per_label = scores
        self.last_count = probs.shape[0]
        defined = scores[~np.isnan(scores)]
        return {"macro": float(defined.mean()) if defined.size else float("nan"), "per_label": scores}

    def completed(self, engine: Engine, name: str) -> None:
        result = self.compute()
        engine.state.metrics[name] = result["macro"]
        undefined = []
        for label, score in zip(self.labels, result["per_label"], strict=True):
            if np.isnan(score):
                undefined.append(label)
            else:
                engine.state.metrics[metric_name(self.prefix, "auroc", label)] = float(score)
        engine.state.undefined_labels = undefined
        if undefined:
            logger.warning(
                "%s AUROC undefined (no positive or no negative) for %d label(s), left out of the macro: %s",
                self.prefix,
                len(undefined),
                ", ".join(undefined),
            )


class PredictionCollector:
    """Keep every probability, target and image path an evaluator produces, gathered across ranks.

    After the engine completes, ``probs`` and ``targets`` are (N, C) arrays and ``paths`` a list of N strings in
    the order of the data (rank-major under DDP). Callbacks registered with :meth:`on_complete` then run with
    the collector; under DDP they run on rank 0 only.

    Args:
        pred_key, label_key, path_key: keys of the engine output / batch.
    """

    def __init__(self, pred_key: str = "pred", label_key: str = "label", path_key: str = "path"):
        self.pred_key = pred_key
        self.label_key = label_key
        self.path_key = path_key
        self._callbacks: list[Callable[[PredictionCollector], None]] = []
        self.reset()

    def reset(self, *_: Any) -> None:
        self._probs: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._paths: list[str] = []
        self.probs = np.zeros((0, 0))
        self.targets = np.zeros((0, 0))
        self.paths: list[str] = []

    def on_complete(self, callback: Callable[[PredictionCollector], None]) -> PredictionCollector:
        self._callbacks.append(callback)
        return self

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._complete)

    def _collect(self, engine: Engine) -> None:
        output = engine.state.output
        if isinstance(output, dict):
            preds, targets = output[self.pred_key], output[self.label_key]
        else:
            preds = [item[self.pred_key] for item in output]
            targets = [item[self.label_key] for item in output]
        self._probs.append(_stack(preds))
        self._targets.append(_stack(targets))
        paths = engine.state.batch.get(self.path_key) if isinstance(engine.state.batch, dict) else None
        self._paths.extend(str(p) for p in (paths if paths is not None else [""] * len(self._probs[-1])))

    def _complete(self, engine: Engine) -> None:
        self.probs = gather(torch.cat(self._probs)).numpy() if self._probs else np.zeros((0, 0))
        self.targets = gather(torch.cat(self._targets)).numpy() if self._targets else np.zeros((0, 0))
        self.paths = _gather_strings(self._paths)
        if _is_rank_zero():
            for callback in self._callbacks:
                callback(self)


def _is_rank_zero() -> bool:
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
        torch.distributed.get_rank() == 0
    )


def _gather_strings(items: list[str]) -> list[str]:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return list(items)
    gathered: list[list[str] | None] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in (part or [])]


class ProgressBar:
    """A tqdm progress bar over an engine's iterations, shown on rank 0 only.

    Args:
        description: text before the bar.
        output_transform: maps the engine output to a number (e.g. the loss) shown beside the bar.
    """

    def __init__(self, description: str = "", output_transform: Callable | None = None):
        self.description = description
        self.output_transform = output_transform

    def attach(self, engine: Engine) -> None:
        if not _is_rank_zero():
            return
        from ignite.handlers import ProgressBar as IgniteProgressBar

        bar = IgniteProgressBar(persist=False, desc=self.description)
        if self.output_transform is None:
            bar.attach(engine)
        else:
            transform = self.output_transform
            bar.attach(engine, output_transform=lambda output: {"loss": float(transform(output))})
