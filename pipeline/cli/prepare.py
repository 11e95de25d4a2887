"""``prepare``: build a datalist JSON from a dataset's label CSV.

    python -m pipeline prepare nih --images DIR --labels Data_Entry_2017.csv --out datalist.json
    python -m pipeline prepare cxr-lt --labels train.csv --images MIMIC_ROOT --out datalist.json
    python -m pipeline prepare chexpert --labels CheXpert-v1.0/train.csv --uncertain ignore --out datalist.json
    python -m pipeline prepare csv --labels my.csv --path-column file --patient-column pid \\
        --label-columns A,B,C --out datalist.json

Splits are patient-level (seeded) unless an official split is given; a split that puts one patient in two splits is
refused unless ``--allow-patient-overlap``. A table of positives per label and split is printed.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _column_list(text: str) -> list[str]:
    columns = [column.strip() for column in text.split(",") if column.strip()]
    if not columns:
        raise argparse.ArgumentTypeError("expected comma-separated column names")
    return columns


def _add_common(parser: argparse.ArgumentParser, *, split_column: bool = True) -> None:
    parser.add_argument("--labels", required=True, type=Path, metavar="CSV", help="label CSV file")
    parser.add_argument("--out", required=True, type=Path, metavar="DATALIST.json", help="datalist file to write")
    parser.add_argument("--val-fraction", type=_fraction, default=0.1, help="share of images in validation (0.1)")
    parser.add_argument("--test-fraction", type=_fraction, default=0.2, help="share of images in test (0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient shuffle (0)")
    if split_column:
        parser.add_argument(
            "--split-column",
            metavar="NAME",
            help="keep the official split in this column (train/valid/test) instead of a random patient split",
        )
    parser.add_argument(
        "--allow-patient-overlap",
        action="store_true",
        help="keep a split where one patient appears in two splits (leaky; evaluation will be optimistic)",
    )
    parser.add_argument(
        "--no-check-files",
        dest="check_files",
        action="store_false",
        help="do not look for the image files (faster for huge sets; missing files fail later, at loading)",
    )
    parser.add_argument("--name", help="dataset name stored in the datalist")


def _add_policies(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--uncertain",
        choices=("ignore", "zeros", "ones"),
        default="ignore",
        help="uncertain (-1) labels: ignore = keep -1, masked out of loss and metrics (default); zeros; ones",
    )
    parser.add_argument(
        "--blank",
        choices=("zeros", "ignore"),
        default="zeros",
        help="blank labels: zeros = negative (default, usual CheXpert practice); ignore = -1",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``prepare`` and its per-format sub-commands."""
    parser = subparsers.add_parser(
        "prepare",
        help="build a datalist JSON from a label CSV",
        description="Build a datalist JSON (patient-level splits, leakage check) from a dataset's label CSV.",
    )
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)

    nih = formats.add_parser("nih", help="NIH ChestX-ray14 Data_Entry_2017*.csv")
    nih.add_argument("--images", required=True, type=Path, metavar="DIR", help="image folder (searched recursively)")
    _add_common(nih, split_column=False)
    nih.add_argument("--label-set", default="nih14", help="label set name or JSON path (nih14)")
    nih.add_argument("--keep-no-finding", action="store_true", help="add 'No Finding' as the last output class")
    official = nih.add_mutually_exclusive_group()
    official.add_argument(
        "--split-file", type=Path, metavar="CSV", help="official split: CSV with an image column and 'split'"
    )
    official.add_argument(
        "--test-list", type=Path, metavar="TXT", help="official test images, one per line (NIH test_list.txt)"
    )
    nih.set_defaults(func=run_nih)

    cxr_lt = formats.add_parser("cxr-lt", help="CXR-LT challenge CSV (MIMIC-CXR)")
    _add_common(cxr_lt)
    cxr_lt.add_argument("--images", type=Path, metavar="DIR", help="root of the relative image paths (CSV folder)")
    cxr_lt.add_argument("--label-set", default="cxr_lt_2023", help="cxr_lt_2023 (default), cxr_lt_2024 or a path")
    cxr_lt.add_argument("--path-column", help="relative image path column (default: fpath or path)")
    cxr_lt.add_argument("--patient-column", default="subject_id", help="patient id column (subject_id)")
    cxr_lt.set_defaults(func=run_cxr_lt)

    chexpert = formats.add_parser("chexpert", help="CheXpert train.csv/valid.csv")
    _add_common(chexpert)
    chexpert.add_argument(
        "--images", type=Path, metavar="DIR", help="folder the Path column starts from (default: above the CSV)"
    )
    chexpert.add_argument("--label-set", default="chexpert", help="label set name or JSON path (chexpert)")
    _add_policies(chexpert)
    chexpert.add_argument("--frontal-only", action="store_true", help="keep frontal views only")
    chexpert.set_defaults(func=run_chexpert)

    generic = formats.add_parser("csv", help="any CSV with path, patient and label columns")
    _add_common(generic)
    generic.add_argument("--images", type=Path, metavar="DIR", help="root of relative image paths (CSV folder)")
    generic.add_argument("--path-column", required=True, help="image path column")
    patient = generic.add_mutually_exclusive_group(required=True)
    patient.add_argument("--patient-column", help="patient id column")
    patient.add_argument("--patient-pattern", help="regex with one group extracting the patient id from the path")
    labels = generic.add_mutually_exclusive_group(required=True)
    labels.add_argument("--label-columns", type=_column_list, help="comma-separated label columns, in output order")
    labels.add_argument("--label-set", help="label set whose names are the label columns")
    _add_policies(generic)
    generic.set_defaults(func=run_csv)


def run_nih(args: argparse.Namespace) -> int:
    from pipeline.data import build_nih_datalist

    return _build_and_write(
        args,
        build_nih_datalist,
        args.labels,
        args.images,
        label_set=args.label_set,
        keep_no_finding=args.keep_no_finding,
        split_file=args.split_file,
        test_list=args.test_list,
        name=args.name or "nih",
    )


def run_cxr_lt(args: argparse.Namespace) -> int:
    from pipeline.data import build_cxr_lt_datalist

    return _build_and_write(
        args,
        build_cxr_lt_datalist,
        args.labels,
        args.images,
        label_set=args.label_set,
        path_column=args.path_column,
        patient_column=args.patient_column,
        split_column=args.split_column,
        name=args.name or "cxr-lt",
    )


def run_chexpert(args: argparse.Namespace) -> int:
    from pipeline.data import build_chexpert_datalist

    return _build_and_write(
        args,
        build_chexpert_datalist,
        args.labels,
        args.images,
        label_set=args.label_set,
        uncertain=args.uncertain,
        blank=args.blank,
        frontal_only=args.frontal_only,
        split_column=args.split_column,
        name=args.name or "chexpert",
    )


def run_csv(args: argparse.Namespace) -> int:
    from pipeline.data import build_csv_datalist

    return _build_and_write(
        args,
        build_csv_datalist,
        args.labels,
        path_column=args.path_column,
        patient_column=args.patient_column,
        patient_pattern=args.patient_pattern,
        label_columns=args.label_columns,
        label_set=args.label_set,
        images_root=args.images,
        split_column=args.split_column,
        uncertain=args.uncertain,
        blank=args.blank,
        name=args.name,
    )


def _build_and_write(args: argparse.Namespace, builder, *positional, **options) -> int:
    from pipeline.data import count_table, write_datalist

    started = time.perf_counter()
    datalist = builder(
        *positional,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        check_files=args.check_files,
        allow_leakage=args.allow_patient_overlap,
        **options,
    )
    path = write_datalist(datalist, args.out)
    elapsed = time.perf_counter() - started

    print(f"Positive images per label and split ({datalist['name']}, label set {datalist['label_set']}):")
    print(count_table(datalist).astype("string").fillna("-").to_string())
    total = sum(len(datalist[split]) for split in ("training", "validation", "test"))
    print(f"Wrote {path} ({total} images, {len(datalist['labels'])} labels) in {elapsed:.1f} s")
    return 0
