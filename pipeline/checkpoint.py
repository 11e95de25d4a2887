"""Crash-safe checkpoints: atomic writes, ``weights_only`` loads, and an ignite handler that keeps the latest and
the best model of a training run.

A checkpoint file is written to a temporary file in the same folder, flushed to disk and renamed over the old
one, so a crash while saving leaves the previous checkpoint intact and never a half-written one.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

logger = logging.getLogger(__name__)

LATEST = "latest.pt"
BEST = "best.pt"


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a clear error names the file when it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(f"cannot load checkpoint {path}: {err}") from err


def network_state(checkpoint: Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
    """The network weights inside a checkpoint written by this project (or a bare state dict)."""
    state = checkpoint.get("network", checkpoint)
    # DistributedDataParallel prefixes every key with "module.".
    return {k.removeprefix("module."): v for k, v in state.items()}


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module


class TrainingCheckpoints:
    """Save ``latest.pt`` after every epoch (and every ``every_n_iterations``) and ``best.pt`` on a new best score.

    ``latest.pt`` holds everything needed to resume (network, optimizer, scheduler, trainer state, best score);
    ``best.pt`` holds the network weights, label names and the score that made it best. Attach it to the trainer
    after the validation handler so the score of the finished epoch is known. Only rank 0 writes.

    Args:
        save_dir: folder of the checkpoints.
        network, optimizer, lr_scheduler: the objects to save and restore.
        evaluator: engine whose ``state.metrics[key_metric]`` decides the best model.
        key_metric: metric name, higher is better.
        labels: label names, saved with the best model.
        resume: load ``latest.pt`` from ``save_dir`` when the trainer starts, if it exists.
        every_n_iterations: also save ``latest.pt`` every n iterations (0: only at epoch ends).
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        evaluator: Engine | None = None,
        key_metric: str = "val/macro_auroc",
        labels: list[str] | None = None,
        lr_scheduler: Any = None,
        resume: bool = False,
        every_n_iterations: int = 0,
    ):
        self.save_dir = Path(save_dir)
        self.network = network
        self.optimizer = optimizer
        self.evaluator = evaluator
        self.key_metric = key_metric
        self.labels = list(labels or [])
        self.lr_scheduler = lr_scheduler
        self.resume = resume
        self.every_n_iterations = int(every_n_iterations)
        self.best_score = -math.inf
        self.best_epoch = 0

    def attach(self, engine: Engine) -> None:
        if self.resume:
            engine.add_event_handler(Events.STARTED, self._load_latest)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        if self.every_n_iterations > 0:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.every_n_iterations), self._save_mid_epoch)

    def _objects(self, engine: Engine) -> dict[str, Any]:
        objects = {"network": _unwrap(self.network), "optimizer": self.optimizer, "trainer": engine}
        if self.lr_scheduler is not None:
            objects["lr_scheduler"] = self.lr_scheduler
        return objects

    def _load_latest(self, engine: Engine) -> None:
        path = self.save_dir / LATEST
        if not path.is_file():
            logger.info("no checkpoint to resume from in %s; starting from scratch", self.save_dir)
            return
        checkpoint = load_checkpoint(path)
        max_epochs = engine.state.max_epochs
        for name, obj in self._objects(engine).items():
            if name in checkpoint:
                obj.load_state_dict(checkpoint[name])
        # The engine's own state dict carries the number of epochs of the interrupted run; keep this run's.
        engine.state.max_epochs = max_epochs
        self.best_score = float(checkpoint.get("best_score", -math.inf))
        self.best_epoch = int(checkpoint.get("best_epoch", 0))
        logger.info("resumed from %s at epoch %d, iteration %d", path, engine.state.epoch, engine.state.iteration)

    def _is_writer(self) -> bool:
        return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
            torch.distributed.get_rank() == 0
        )

    def _save_latest(self, engine: Engine) -> None:
        if not self._is_writer():
            return
        state = {name: obj.state_dict() for name, obj in self._objects(engine).items()}
        state.update(best_score=self.best_score, best_epoch=self.best_epoch, labels=self.labels)
        atomic_save(state, self.save_dir / LATEST)

    def _save_mid_epoch(self, engine: Engine) -> None:
        # The last iteration of an epoch is saved by the epoch-end handler, after validation: saving it here would
        # record a finished epoch whose validation, best model and scheduler step a crash could still lose.
        if engine.state.epoch_length and engine.state.iteration % engine.state.epoch_length == 0:
            return
        self._save_latest(engine)

    def _epoch_completed(self, engine: Engine) -> None:
        score = math.nan
        if self.evaluator is not None and self.evaluator.state is not None:
            score = float(self.evaluator.state.metrics.get(self.key_metric, math.nan))
        if self.evaluator is None or (math.isfinite(score) and score > self.best_score):
            self.best_score = score if math.isfinite(score) else self.best_score
            self.best_epoch = engine.state.epoch
            if self._is_writer():
                best = {
                    "network": _unwrap(self.network).state_dict(),
                    "labels": self.labels,
                    "epoch": engine.state.epoch,
                    "key_metric": self.key_metric,
                    "score": score,
                }
                atomic_save(best, self.save_dir / BEST)
                logger.info(
                    "epoch %d: new best %s = %.4f, saved %s",
                    engine.state.epoch,
                    self.key_metric,
                    score,
                    self.save_dir / BEST,
                )
        self._save_latest(engine)
