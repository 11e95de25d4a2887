"""Time estimates for a sweep: from the durations of finished children, or from a quick timing of the network.

The quick timing builds the network, runs a few optimisation steps and forward passes on random batches of the
sweep's image size with the children's thread count, and measures how long a fresh Python takes to import the
training code. A child's time is then estimated as start-up + epochs x (training steps + validation passes) +
the final validation and test passes. It leaves out image decoding, augmentation and MLflow logging, so it
tends to be low; once a child has finished its measured duration replaces it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import runtime

logger = logging.getLogger(__name__)

_BUNDLE_ENV = "PIPELINE_BUNDLE_ROOT"
_BUNDLE_PATH = Path("bundles") / "cxr_ral"
# Bundle ids that the timing needs, with the train option that overrides each.
_TIMED_SETTINGS = {"epochs": "epochs", "batch_size": "batch_size", "image_size": "image_size",
                   "network": "network_name"}  # fmt: skip


@dataclass(frozen=True)
class TimeEstimate:
    """Estimated wall time of the children still to run.

    Attributes:
        total_s: seconds for all remaining children (accounting for parallel runs), or None when unknown.
        per_child_s: seconds of one child, or None.
        method: one sentence saying how the estimate was made.
    """

    total_s: float | None
    per_child_s: float | None
    method: str


def format_duration(seconds: float | None) -> str:
    """``1 h 05 min``, ``12 min 30 s`` or ``40 s``; ``unknown`` for None/NaN."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def from_durations(durations: Sequence[float], remaining: int, parallel: int) -> TimeEstimate:
    """Estimate from measured child durations: their mean times the remaining children, over parallel slots."""
    if not durations:
        return TimeEstimate(None, None, "no finished child to estimate from")
    mean = float(sum(durations) / len(durations))
    total = mean * math.ceil(remaining / max(parallel, 1))
    return TimeEstimate(total, mean, f"mean duration of {len(durations)} finished child(ren): {format_duration(mean)}")


def find_bundle_root(explicit: str | os.PathLike | None = None) -> Path | None:
    """The bundle folder: ``explicit``, ``$PIPELINE_BUNDLE_ROOT``, or ``bundles/cxr_ral`` above here."""
    candidate = explicit or os.environ.get(_BUNDLE_ENV)
    if candidate:
        return Path(candidate)
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / _BUNDLE_PATH / "configs" / "train.json").is_file():
                return folder / _BUNDLE_PATH
    return None


def bundle_defaults(bundle_root: Path | None) -> dict[str, Any]:
    """Literal defaults of the timed settings in the bundle's ``train.json`` (expressions are skipped)."""
    if bundle_root is None or not (bundle_root / "configs" / "train.json").is_file():
        return {}
    config = json.loads((bundle_root / "configs" / "train.json").read_text())
    defaults = {}
    for option, bundle_id in _TIMED_SETTINGS.items():
        value = config.get(bundle_id)
        if value is not None and not (isinstance(value, str) and value.startswith("$")):
            defaults[option] = value
    return defaults


def time_network(
    network: str, num_classes: int, image_size: int, batch_size: int, threads: int | None, repeats: int = 2
) -> tuple[float, float]:
    """Seconds per image of one training step (forward, backward, AdamW) and of one forward pass.

    One warm-up step is run first and left out; the rest are averaged.
    """
    import torch

    from pipeline.networks import build_network

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model = build_network(network, num_classes, in_channels=1)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        images = torch.rand(batch_size, 1, image_size, image_size)
        targets = (torch.rand(batch_size, num_classes) > 0.5).float()
        loss_fn = torch.nn.BCEWithLogitsLoss()
        train_times = []
        for step in range(repeats + 1):
            start = time.perf_counter()
            optimizer.zero_grad()
            loss_fn(model(images), targets).backward()
            optimizer.step()
            if step:
                train_times.append(time.perf_counter() - start)
        model.eval()
        eval_times = []
        with torch.no_grad():
            for step in range(repeats + 1):
                start = time.perf_counter()
                model(images)
                if step:
                    eval_times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return sum(train_times) / len(train_times) / batch_size, sum(eval_times) / len(eval_times) / batch_size


def time_startup(python: str = sys.executable, threads: int | None = None) -> float:
    """Seconds a fresh interpreter takes to import the training and evaluation code."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    code = "import pipeline.cli.train, pipeline.cli.evaluate, pipeline.evaluation, pipeline.tracking.handlers, mlflow"
    start = time.perf_counter()
    subprocess.run([python, "-c", code], check=True, capture_output=True, env=env, timeout=600)
    return time.perf_counter() - start


def from_timing(
    children_options: Sequence[Mapping[str, Any]],
    datalist: Path,
    parallel: int,
    threads: int | None,
    bundle_root: str | os.PathLike | None = None,
) -> TimeEstimate:
    """Estimate by timing the network on random batches (see the module docstring).

    Args:
        children_options: train options of each remaining child (``epochs``, ``batch_size``, ``image_size``,
            ``network``; bundle defaults fill what is missing).
        datalist: the datalist, for the split sizes and the number of labels.
        parallel: children run at a time.
        threads: torch threads per child.
        bundle_root: bundle folder for the defaults.

    Returns:
        The estimate; ``total_s`` is None when a needed setting is unknown.
    """
    if not children_options:
        return TimeEstimate(0.0, None, "nothing left to run")
    data = runtime.read_datalist(datalist)
    sizes = {split: len(data.get(split) or []) for split in ("training", "validation", "test")}
    num_classes = len(data["labels"])
    defaults = bundle_defaults(find_bundle_root(bundle_root))
    startup = time_startup(threads=threads)
    timed: dict[tuple, tuple[float, float]] = {}
    per_child = []
    for options in children_options:
        settings = {**defaults, **{k: v for k, v in options.items() if k in _TIMED_SETTINGS}}
        missing = sorted(set(_TIMED_SETTINGS) - set(settings))
        if missing:
            return TimeEstimate(None, None, f"no estimate: settings {missing} unknown (bundle defaults not found)")
        shape = (str(settings["network"]), int(settings["image_size"]), int(settings["batch_size"]))
        if shape not in timed:
            timed[shape] = time_network(shape[0], num_classes, shape[1], shape[2], threads)
        train_per_image, eval_per_image = timed[shape]
        epochs = int(settings["epochs"])
        seconds = (
            startup
            + epochs * (sizes["training"] * train_per_image + sizes["validation"] * eval_per_image)
            + (sizes["validation"] + sizes["test"]) * eval_per_image
        )
        per_child.append(seconds)
    mean = sum(per_child) / len(per_child)
    total = sum(per_child) / max(parallel, 1)
    shapes = ", ".join(f"{n} {s}x{s} batch {b}: {t * 1000:.0f} ms/image train" for (n, s, b), (t, _) in timed.items())
    method = (
        f"quick timing on random batches ({shapes}; start-up {startup:.0f} s), leaving out image decoding and "
        "logging, so likely low"
    )
    return TimeEstimate(total, mean, method)
