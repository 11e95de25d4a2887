"""``python -m pipeline report``: the comparison report of a sweep, from its MLflow parent run."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="report of a sweep: losses over seeds, per-disease AUROC, paired comparisons, sensitivity figures",
        description="Read the children of a sweep's parent run from MLflow and write report.md (and report.html) "
        "with PNG figures to OUT; the report is also logged to the parent run under 'report/'.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parent", required=True, metavar="RUN_ID", help="the sweep's parent run id")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for report.md and the figures")
    parser.add_argument("--reference", default="ral", help="loss compared with the baselines (default: ral)")
    parser.add_argument(
        "--baseline", action="append", default=None,
        help="loss the reference is compared with (repeatable; default: bce and asl)",
    )  # fmt: skip
    parser.add_argument("--seed-bootstrap", type=int, default=10000, help="resamples over seed pairs (10000)")
    parser.add_argument(
        "--image-bootstrap", type=int, default=1000,
        help="resamples of the paired bootstrap over test images (1000; 0 skips it)",
    )  # fmt: skip
    parser.add_argument("--datalist", help="datalist for the test targets (default: the one the sweep recorded)")
    parser.add_argument("--notes", help="text file whose content goes under the report's title")
    parser.add_argument("--html", action="store_true", help="also write report.html")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to the parent run")


def run(args: argparse.Namespace) -> int:
    import mlflow

    from pipeline.study.report import ReportOptions, build_report

    tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        raise ValueError("no tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI")
    if args.seed_bootstrap < 1:
        raise ValueError(f"--seed-bootstrap must be >= 1, got {args.seed_bootstrap}")
    if args.image_bootstrap < 0:
        raise ValueError(f"--image-bootstrap must be >= 0, got {args.image_bootstrap}")
    notes = Path(args.notes).read_text() if args.notes else ""
    options = ReportOptions(
        reference=args.reference, baselines=tuple(args.baseline or ("bce", "asl")),
        n_seed_bootstrap=args.seed_bootstrap, n_image_bootstrap=args.image_bootstrap,
        datalist=Path(args.datalist) if args.datalist else None, html=args.html, log_to_parent=not args.no_log,
        notes=notes,
    )  # fmt: skip
    # Artifacts are read one by one; MLflow's per-download progress bars would drown the output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    result = build_report(client, args.parent, args.out, options)
    print(f"report: {result.markdown}" + (f"  (html: {result.html})" if result.html else ""))
    for path in result.figures:
        print(f"figure: {path}")
    print(result.tables["settings"].to_string(index=False))
    if not args.no_log:
        print(f"logged to parent run {args.parent} under report/")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m pipeline.cli.report``, the same as ``python -m pipeline report``."""
    from pipeline.cli import standalone

    return standalone("python -m pipeline.cli.report", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
