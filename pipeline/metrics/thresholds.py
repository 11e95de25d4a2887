"""Per-disease operating thresholds chosen on validation predictions, saved and loaded as JSON.

Methods (a sample is predicted positive when ``prob >= threshold``; candidates are the distinct validation scores):

- ``"f1"``: the threshold with the largest F1.
- ``"youden"``: the threshold with the largest Youden index, sensitivity + specificity - 1.
- ``"sensitivity"``: the largest threshold whose sensitivity reaches ``target``, i.e. the most specific one that
  keeps the required sensitivity.

A label without a positive or without a negative validation sample gets the fallback threshold 0.5 and a note.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from pipeline.metrics.per_disease import check_inputs

logger = logging.getLogger(__name__)

METHODS = ("f1", "youden", "sensitivity")
FALLBACK_THRESHOLD = 0.5


@dataclass
class OperatingPoints:
    """Per-label thresholds and how they were chosen.

    Attributes:
        method: ``"f1"``, ``"youden"``, ``"sensitivity"`` or ``"fixed"`` (given by the user).
        thresholds: label -> threshold.
        target: required sensitivity for ``"sensitivity"``, else None.
        notes: label -> why its threshold is a fallback.
    """

    method: str
    thresholds: dict[str, float]
    target: float | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = {"method": self.method, "thresholds": {k: float(v) for k, v in self.thresholds.items()}}
        if self.target is not None:
            data["target"] = float(self.target)
        if self.notes:
            data["notes"] = dict(self.notes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> OperatingPoints:
        """Build from the JSON layout ``{"method": ..., "thresholds": {label: float}, ...}``.

        Raises:
            ValueError: if keys are missing or a threshold is not a finite number.
        """
        if not isinstance(data, Mapping) or "method" not in data or not isinstance(data.get("thresholds"), Mapping):
            raise ValueError(f"operating points need 'method' and a 'thresholds' mapping, got {data!r:.200}")
        thresholds = {}
        for name, value in data["thresholds"].items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"threshold for {name!r} must be a finite number, got {value!r}")
            thresholds[str(name)] = float(value)
        target = data.get("target")
        return cls(
            method=str(data["method"]),
            thresholds=thresholds,
            target=None if target is None else float(target),
            notes={str(k): str(v) for k, v in data.get("notes", {}).items()},
        )

    def save(self, path: str | Path) -> Path:
        """Write the JSON file and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> OperatingPoints:
        """Read a file written by :meth:`save`.

        Raises:
            FileNotFoundError: if the file does not exist.
            ValueError: if it is not valid operating-point JSON.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
        return cls.from_dict(data)

    @classmethod
    def fixed(cls, labels: Sequence[str], value: float = FALLBACK_THRESHOLD) -> OperatingPoints:
        """The same threshold for every label."""
        if not math.isfinite(value):
            raise ValueError(f"threshold must be finite, got {value}")
        return cls(method="fixed", thresholds={name: float(value) for name in labels})


def best_f1_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """Threshold with the largest F1 (the highest such threshold on ties). Needs both classes in ``y``."""
    precision, recall, thresholds = precision_recall_curve(y, scores)
    # The last precision/recall pair (recall 0) has no threshold.
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = np.flatnonzero(f1 == f1.max())
    return float(thresholds[best[-1]])


def youden_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """Threshold with the largest sensitivity + specificity - 1 (the highest such threshold on ties)."""
    fpr, tpr, thresholds = roc_curve(y, scores, drop_intermediate=False)
    finite = np.isfinite(thresholds)
    j = np.where(finite, tpr - fpr, -np.inf)
    return float(thresholds[int(np.argmax(j))])


def sensitivity_threshold(y: np.ndarray, scores: np.ndarray, target: float) -> float:
    """Largest threshold whose sensitivity is at least ``target``."""
    fpr, tpr, thresholds = roc_curve(y, scores, drop_intermediate=False)
    reaching = np.flatnonzero((tpr >= target) & np.isfinite(thresholds))
    # roc_curve lists thresholds in decreasing order and tpr reaches 1 at the lowest score, so one exists.
    return float(thresholds[reaching[0]])


def select_thresholds(
    probs: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    method: str = "f1",
    *,
    target: float | None = None,
) -> OperatingPoints:
    """Choose one threshold per label on validation predictions.

    Args:
        probs: validation probabilities, shape (N, C).
        targets: validation targets, shape (N, C), 1/0 and -1 or NaN for unknown (masked per label).
        labels: C label names.
        method: ``"f1"``, ``"youden"`` or ``"sensitivity"``.
        target: required sensitivity in (0, 1], only for ``"sensitivity"``.

    Returns:
        The operating points; labels lacking a class in validation get 0.5 and a note.

    Raises:
        ValueError: for an unknown method or a missing/out-of-range target.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "sensitivity":
        if target is None or not 0.0 < float(target) <= 1.0:
            raise ValueError(f"method 'sensitivity' needs a target in (0, 1], got {target!r}")
        target = float(target)
    elif target is not None:
        raise ValueError(f"target is only used with method 'sensitivity', got target={target} for {method!r}")

    probs, valid, positive = check_inputs(probs, targets, labels)
    thresholds: dict[str, float] = {}
    notes: dict[str, str] = {}
    for j, name in enumerate(labels):
        rows = valid[:, j]
        y = positive[rows, j].astype(int)
        scores = probs[rows, j]
        n_pos = int(y.sum())
        if n_pos == 0 or n_pos == y.size:
            thresholds[name] = FALLBACK_THRESHOLD
            notes[name] = (
                f"fallback {FALLBACK_THRESHOLD}: validation has {n_pos} positive and {y.size - n_pos} negative samples"
            )
            continue
        if method == "f1":
            thresholds[name] = best_f1_threshold(y, scores)
        elif method == "youden":
            thresholds[name] = youden_threshold(y, scores)
        else:
            thresholds[name] = sensitivity_threshold(y, scores, target)
    if notes:
        logger.warning("fallback threshold %.2f for labels without both classes: %s", FALLBACK_THRESHOLD, list(notes))
    return OperatingPoints(method=method, thresholds=thresholds, target=target, notes=notes)
