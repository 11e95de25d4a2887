"""``python -m pipeline train``: train the bundle, then evaluate its best checkpoint in the same MLflow run."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from pipeline.cli import _bundle
from pipeline.tracking import load_run_info, resolve_tracking_uri

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a classifier from a datalist, then evaluate it on the test split",
        description="Train the cxr_ral bundle on a datalist (see 'prepare'), validating every epoch and keeping "
        "the checkpoint with the best validation macro AUROC; then evaluate that checkpoint on the test split "
        "and log everything to one MLflow run.",
    )
    parser.add_argument("--datalist", required=True, help="datalist JSON written by 'prepare'")
    parser.add_argument("--output-dir", required=True, help="folder for checkpoints, reports and the MLflow store")
    parser.add_argument("--epochs", type=int, help="training epochs (bundle default: 10)")
    parser.add_argument("--image-size", type=int, help="square input size in pixels (bundle default: 224)")
    parser.add_argument("--batch-size", type=int, help="images per batch (bundle default: 16)")
    parser.add_argument("--learning-rate", type=float, help="AdamW learning rate (bundle default: 1e-4)")
    parser.add_argument("--network", help="densenet121, convnext_tiny, convnext_small or convnext_base")
    parser.add_argument("--pretrained", help="local state-dict file to initialise the network from")
    parser.add_argument("--loss", help="loss by name: a file configs/loss/<name>.json (ral, bce, asl, focal, ...)")
    parser.add_argument("--seed", type=int, help="random seed (bundle default: 0)")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoints/latest.pt")
    parser.add_argument("--no-evaluate", action="store_true", help="skip the test-split evaluation after training")
    _bundle.add_common_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = _bundle.bundle_root(args.bundle_root)
    output_dir = Path(args.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    datalist = Path(args.datalist).resolve()
    if not datalist.is_file():
        raise FileNotFoundError(f"datalist not found: {datalist}")
    tracking_uri = resolve_tracking_uri(output_dir, args.tracking_uri)
    # MONAI's MLflow handler reads the environment first; keep every component on the same store.
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri

    config_files = [root / "configs" / "train.json"]
    if args.loss:
        config_files.append(_bundle.loss_override(args.loss))
    config_files.extend(Path(c) for c in args.config)

    overrides = {
        "datalist": str(datalist),
        "output_dir": str(output_dir),
        "tracking_uri": tracking_uri,
        "resume": bool(args.resume),
        "mlflow::run::config_file": str(output_dir / "resolved_train_config.json"),
        "mlflow::run::reuse_recorded_run": bool(args.resume),
        **_bundle.common_overrides(args),
    }
    for option, key in (
        ("epochs", "epochs"), ("image_size", "image_size"), ("batch_size", "batch_size"), ("seed", "seed"),
        ("learning_rate", "learning_rate"), ("network", "network_name"), ("pretrained", "pretrained"),
    ):  # fmt: skip
        value = getattr(args, option)
        if value is not None:
            overrides[key] = value
    if not args.no_evaluate:
        overrides["finalize"] = [
            "$@mlflow::run.log_skipped(@skip_log)",
            "$@mlflow::run.finish_training(@train::trainer, @ckpt_dir, keep_open=True)",
        ]
    overrides.update(_bundle.parse_set(args.set))

    _bundle.run_workflow(
        root, config_files, overrides, workflow_type="train",
        resolved_config=output_dir / "resolved_train_config.json",
    )  # fmt: skip
    info = load_run_info(output_dir)
    print(f"checkpoints: {output_dir / 'checkpoints'}")
    if args.no_evaluate:
        return 0

    from pipeline.cli import evaluate

    eval_args = argparse.Namespace(
        **{**vars(args), "checkpoint": str(output_dir / "checkpoints" / "best.pt"), "split": "test",
           "run_id": info["run_id"] if info else None, "tracking_uri": tracking_uri}
    )  # fmt: skip
    return evaluate.run(eval_args)
