"""``python -m pipeline demo``: the whole pipeline on generated data, no download and no real images needed."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from pipeline.cli import _bundle

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="generate a synthetic long-tailed set, train with RAL, evaluate, print the table",
        description="Generate a small synthetic, multi-label, long-tailed chest-X-ray-like data set (clearly "
        "named Synthetic_*), prepare a patient-level datalist, train DenseNet-121 with RAL for a few epochs on "
        "the CPU or GPU, evaluate on the test split and print the per-disease table.",
    )
    parser.add_argument("--output-dir", default="runs/demo", help="where data, checkpoints and MLflow go")
    parser.add_argument("--images", type=int, default=600, help="number of synthetic images")
    parser.add_argument("--image-size", type=int, default=64, help="side of the synthetic images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--loss", default="ral", help="loss by name (configs/loss/<name>.json)")
    parser.add_argument("--seed", type=int, default=0)
    _bundle.add_common_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.data import build_csv_datalist, count_table, write_datalist
    from pipeline.synthetic import SYNTHETIC_LABELS, SyntheticSpec, generate

    started = time.monotonic()
    output_dir = Path(args.output_dir).resolve()
    data_dir = output_dir / "data"
    spec = SyntheticSpec(num_images=args.images, image_size=args.image_size, seed=args.seed)
    print(f"generating {spec.num_images} synthetic {spec.image_size}x{spec.image_size} images in {data_dir}")
    csv = generate(data_dir, spec)
    labels = list(SYNTHETIC_LABELS[: spec.num_labels])
    datalist = build_csv_datalist(
        csv, path_column="path", patient_column="patient", label_columns=labels, seed=args.seed,
        name="synthetic-demo",
    )  # fmt: skip
    datalist_path = write_datalist(datalist, data_dir / "datalist.json")
    print(count_table(datalist).to_string())

    from pipeline.cli import train

    train_args = argparse.Namespace(
        **{**vars(args), "datalist": str(datalist_path), "output_dir": str(output_dir), "image_size": args.image_size,
           "batch_size": 32, "learning_rate": 1e-3, "network": "densenet121", "pretrained": None, "resume": False,
           "no_evaluate": False},
    )  # fmt: skip
    train_args.set = [*args.set, "n_bootstrap=200"]
    status = train.run(train_args)
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s; outputs in {output_dir}")
    return status
