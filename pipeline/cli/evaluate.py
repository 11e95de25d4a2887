"""``python -m pipeline evaluate``: evaluate a checkpoint on a split and log it to the run that trained it."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from pipeline.cli import _bundle
from pipeline.tracking import RUN_INFO_FILE, resolve_tracking_uri

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a checkpoint: per-disease AUROC/AP with intervals, thresholds, calibration",
        description="Choose per-disease thresholds on the validation split, then evaluate CHECKPOINT on the test "
        "split (or --split). Metrics and artifacts go to the MLflow run that trained the checkpoint when it is "
        "in the same tracking store, else to a new run.",
    )
    parser.add_argument("--datalist", required=True, help="datalist JSON written by 'prepare'")
    parser.add_argument("--checkpoint", required=True, help="best.pt (or latest.pt) written by 'train'")
    parser.add_argument("--output-dir", required=True, help="folder for the evaluation artifacts")
    parser.add_argument("--split", default="test", choices=("training", "validation", "test"))
    parser.add_argument("--network", help="network the checkpoint was trained as (default: densenet121)")
    parser.add_argument("--loss", help="loss override file name, only recorded for the run name")
    parser.add_argument("--image-size", type=int, help="input size the checkpoint was trained at (default: 224)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--threshold-method", choices=("f1", "youden", "sensitivity"), default=None)
    parser.add_argument("--target-sensitivity", type=float, help="for --threshold-method sensitivity")
    parser.add_argument("--bootstrap", type=int, help="bootstrap resamples for intervals (default 1000; 0: none)")
    parser.add_argument("--seed", type=int)
    _bundle.add_common_options(parser)
    parser.set_defaults(func=run)


def _recorded_run(checkpoint: Path, tracking_uri: str) -> str | None:
    """The run that trained ``checkpoint``, when its record sits in the training output folder."""
    record = checkpoint.resolve().parent.parent / RUN_INFO_FILE
    if record.is_file():
        info = json.loads(record.read_text())
        if info.get("tracking_uri") == tracking_uri:
            return info.get("run_id")
    return None


def run(args: argparse.Namespace) -> int:
    root = _bundle.bundle_root(args.bundle_root)
    output_dir = Path(args.output_dir).resolve()
    checkpoint = Path(args.checkpoint).resolve()
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    datalist = Path(args.datalist).resolve()
    if not datalist.is_file():
        raise FileNotFoundError(f"datalist not found: {datalist}")
    tracking_uri = resolve_tracking_uri(output_dir, getattr(args, "tracking_uri", None))
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    run_id = getattr(args, "run_id", None) or _recorded_run(checkpoint, tracking_uri)

    config_files = [root / "configs" / "train.json"]
    if getattr(args, "loss", None):
        config_files.append(_bundle.loss_override(args.loss))
    config_files.extend(Path(c) for c in args.config)
    config_files.append(root / "configs" / "evaluate.json")

    overrides = {
        "datalist": str(datalist),
        "output_dir": str(output_dir),
        "ckpt_dir": str(checkpoint.parent),
        "checkpoint": str(checkpoint),
        "eval_split": args.split,
        "tracking_uri": tracking_uri,
        "mlflow::run::run_id": run_id,
        "mlflow::run::reuse_recorded_run": False,
        **_bundle.common_overrides(args),
    }
    for option, key in (
        ("network", "network_name"), ("image_size", "image_size"), ("batch_size", "batch_size"), ("seed", "seed"),
        ("threshold_method", "threshold_method"), ("target_sensitivity", "threshold_target"),
        ("bootstrap", "n_bootstrap"),
    ):  # fmt: skip
        value = getattr(args, option, None)
        if value is not None:
            overrides[key] = value
    overrides.update(_bundle.parse_set(args.set))
    _bundle.run_workflow(root, config_files, overrides, workflow_type=None)
    print(f"MLflow store: {tracking_uri}")
    if tracking_uri.startswith("sqlite:///"):
        print(f"open the MLflow UI with:  mlflow ui --backend-store-uri {tracking_uri} --port 5000")
    return 0
