"""``python -m pipeline compare``: evaluated runs of one MLflow experiment side by side.

    python -m pipeline compare --output-dir runs/exp1                    # the store runs/exp1/mlflow.db
    python -m pipeline compare --tracking-uri http://127.0.0.1:5000 --experiment cxr_ral --format markdown
    python -m pipeline compare --output-dir runs/exp1 --runs RUN_ID RUN_ID --out table.csv

One column per run (``network-loss-seedN``), one row per disease and metric with its bootstrap interval
(``0.812 [0.77, 0.85]``), then macro AUROC, mAP, micro AUROC/AP and the head/medium/tail summaries.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from pipeline.tracking import DEFAULT_EXPERIMENT

logger = logging.getLogger(__name__)

_SUFFIX_FORMATS = {".csv": "csv", ".md": "markdown", ".markdown": "markdown"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare evaluated runs side by side (per-disease AUROC/AP with intervals, summaries)",
        description="Read the test metrics of the runs of an MLflow experiment and print them side by side: one "
        "column per run, per-disease AUROC and AP with bootstrap intervals, macro AUROC, mAP, micro and "
        "head/medium/tail summaries. 'undefined' marks a metric the run could not compute (e.g. no positives); "
        "'-' a metric the run does not have.",
    )
    store = parser.add_mutually_exclusive_group()
    store.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    store.add_argument("--output-dir", help="training output folder whose mlflow.db to read")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"experiment name ({DEFAULT_EXPERIMENT})")
    parser.add_argument(
        "--runs", nargs="+", metavar="RUN",
        help="run ids or names to compare, in column order (default: every run with test metrics, oldest first)",
    )  # fmt: skip
    parser.add_argument("--split", default="test", help="evaluated split whose metrics are compared (test)")
    parser.add_argument(
        "--format", choices=("table", "csv", "markdown"),
        help="output format (default: from the --out suffix .csv/.md, else table)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, metavar="FILE", help="write the table to FILE instead of printing it")
    parser.add_argument("--digits", type=int, default=3, help="decimals of the values (3)")
    parser.add_argument("--ci-digits", type=int, default=2, help="decimals of the interval bounds (2)")
    parser.add_argument("--counts", action="store_true", help="add the number of test positives per disease")
    parser.set_defaults(func=run)


def _tracking_uri(args: argparse.Namespace) -> str:
    if args.tracking_uri:
        return args.tracking_uri
    if args.output_dir:
        folder = Path(args.output_dir).resolve()
        if not folder.is_dir():
            raise FileNotFoundError(f"output folder not found: {folder}")
        return f"sqlite:///{folder / 'mlflow.db'}"
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    raise ValueError("no tracking store: pass --tracking-uri or --output-dir, or set MLFLOW_TRACKING_URI")


def run(args: argparse.Namespace) -> int:
    from pipeline.tracking.compare import compare_runs

    fmt = args.format
    if fmt is None:
        fmt = _SUFFIX_FORMATS.get(args.out.suffix.lower(), "table") if args.out else "table"
    comparison = compare_runs(_tracking_uri(args), args.experiment, args.runs, split=args.split, counts=args.counts)
    text = comparison.render(fmt, digits=args.digits, ci_digits=args.ci_digits)
    if args.out is None:
        print(text, end="")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"{len(comparison.runs)} run(s) compared, {fmt} table written to {args.out}")
    return 0
