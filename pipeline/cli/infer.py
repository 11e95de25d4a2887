"""``python -m pipeline infer``: predict every DICOM/PNG/JPEG file under the given paths into a CSV file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pipeline.cli import _bundle

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "infer",
        help="run a trained model on files or folders (recursively) and write predictions.csv",
        description="Run a trained model (best.pt from 'train', or a TorchScript export from 'monai.bundle "
        "ckpt_export') on DICOM, PNG and JPEG files; folders are searched recursively. Writes one row per image: "
        "path, probability per disease and the 0/1 decision at the thresholds chosen on validation "
        "(thresholds.json beside the model).",
    )
    parser.add_argument("--input", nargs="+", required=True, help="files and/or folders")
    parser.add_argument("--output", required=True, help="CSV file to write")
    parser.add_argument("--model", help="best.pt or a TorchScript file (default: runs/cxr_ral/checkpoints/best.pt)")
    parser.add_argument("--thresholds", help="thresholds JSON (default: thresholds.json beside the model)")
    parser.add_argument("--network", help="network the checkpoint was trained as (default: densenet121)")
    parser.add_argument("--image-size", type=int, help="input size the model was trained at (default: 224)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--bad-files", choices=("stop", "skip"), default="stop",
        help="stop at the first unreadable file (default) or skip it and list it in skipped_files.csv",
    )  # fmt: skip
    _bundle.add_common_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = _bundle.bundle_root(args.bundle_root)
    model = Path(args.model or "runs/cxr_ral/checkpoints/best.pt").resolve()
    if not model.is_file():
        raise FileNotFoundError(f"model not found: {model}")
    output = Path(args.output).resolve()
    for entry in args.input:
        if not Path(entry).exists():
            raise FileNotFoundError(f"input not found: {entry}")
    config_files = [
        root / "configs" / "train.json",
        *(Path(c) for c in args.config),
        root / "configs" / "inference.json",
    ]
    overrides = {
        "checkpoint": str(model),
        "input": [str(Path(p).resolve()) for p in args.input],
        "output_csv": str(output),
        "output_dir": str(output.parent),
        "batch_size": args.batch_size,
        "bad_file_policy": args.bad_files,
        # Inference needs no datalist and no MLflow store.
        "datalist": "",
        "tracking_uri": "unused",
        **_bundle.common_overrides(args),
    }
    if args.thresholds:
        overrides["thresholds_path"] = str(Path(args.thresholds).resolve())
    if args.network:
        overrides["network_name"] = args.network
    if args.image_size:
        overrides["image_size"] = args.image_size
    overrides.update(_bundle.parse_set(args.set))
    workflow = _bundle.run_workflow(root, config_files, overrides, workflow_type="infer")
    skipped = workflow.parser.get_parsed_content("skip_log")
    writer_rows = sum(getattr(h, "rows", 0) for h in workflow.parser.get_parsed_content("handlers"))
    print(f"wrote {writer_rows} predictions to {output}")
    if skipped.count:
        print(f"skipped {skipped.count} unreadable file(s), listed in {skipped.csv_path}")
    return 0
