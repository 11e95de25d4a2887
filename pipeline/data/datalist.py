"""Datalist builders: turn a dataset's label CSV into the project's datalist JSON.

A datalist (MONAI decathlon style) holds ``training``, ``validation`` and ``test`` lists of
``{"image": <absolute path>, "label": [1.0, 0.0, -1.0, ...], "patient": <id>}`` plus ``labels`` (the output order),
``label_set`` and ``metadata``. Label values are 1.0 (positive), 0.0 (negative) and -1.0 (unknown; masked out of
the loss and the metrics).

Each builder reads one format (NIH ChestX-ray14, CXR-LT, CheXpert, or any CSV), keeps the rows whose image
exists, assigns patient-level splits (or keeps an official split column) and refuses a result where one patient
lands in two splits. The work is vectorised with pandas so a 380k-row CSV takes seconds.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import __version__
from pipeline.data.files import existing_files_mask, index_by_name
from pipeline.data.labels import LabelSet, load_label_set
from pipeline.data.splits import SPLITS, carve_validation, check_patient_leakage, normalise_split_names, patient_split

logger = logging.getLogger(__name__)

POSITIVE, NEGATIVE, UNKNOWN = 1.0, 0.0, -1.0
UNCERTAIN_POLICIES = ("ignore", "zeros", "ones")
BLANK_POLICIES = ("zeros", "ignore")
_POLICY_VALUE = {"ignore": UNKNOWN, "zeros": NEGATIVE, "ones": POSITIVE}
_MAX_LISTED_COLUMNS = 40


# --------------------------------------------------------------------------------------------------------------------
# Reading and checking CSV files


def _describe_columns(columns: Sequence[str]) -> str:
    shown = list(columns[:_MAX_LISTED_COLUMNS])
    more = f" and {len(columns) - len(shown)} more" if len(columns) > len(shown) else ""
    return f"{shown}{more}"


def read_header(path: str | os.PathLike[str]) -> list[str]:
    """Column names of a CSV file.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: when it cannot be read as CSV.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {path} does not exist")
    try:
        return [str(column) for column in pd.read_csv(path, nrows=0).columns]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable CSV file: {err}") from err


def read_csv_columns(
    path: str | os.PathLike[str], required: Sequence[str], optional: Sequence[str] = ()
) -> pd.DataFrame:
    """Read only the named columns of a CSV, checking first that the required ones exist.

    Args:
        path: the CSV file.
        required: columns that must be present.
        optional: columns read when present.

    Returns:
        A frame with the required and the present optional columns.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: naming the file, the missing columns and the columns found.
    """
    path = Path(path)
    found = read_header(path)
    missing = [column for column in required if column not in found]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}; columns found: {_describe_columns(found)}")
    wanted = list(dict.fromkeys([*required, *(column for column in optional if column in found)]))
    try:
        return pd.read_csv(path, usecols=wanted, low_memory=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path} could not be parsed as CSV: {err}") from err


def _normalised(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def match_label_columns(labels: Sequence[str], columns: Sequence[str], *, source: str) -> dict[str, str]:
    """Find the CSV column of each label: exact name first, then ignoring case, spaces and punctuation.

    Returns:
        ``{label: column}`` for every label.

    Raises:
        ValueError: naming ``source``, the labels without a column, and the columns found.
    """
    by_normalised: dict[str, str] = {}
    for column in columns:
        by_normalised.setdefault(_normalised(str(column)), str(column))
    matched: dict[str, str] = {}
    missing: list[str] = []
    for label in labels:
        if label in columns:
            matched[label] = label
        elif _normalised(label) in by_normalised:
            matched[label] = by_normalised[_normalised(label)]
            logger.info("%s: label %r read from column %r", source, label, matched[label])
        else:
            missing.append(label)
    if missing:
        raise ValueError(
            f"{source} lacks label columns {missing}; columns found: {_describe_columns([str(c) for c in columns])}"
        )
    return matched


def label_matrix(
    frame: pd.DataFrame,
    columns: Sequence[str],
    *,
    uncertain: str = "ignore",
    blank: str = "zeros",
    source: str = "CSV",
) -> np.ndarray:
    """Convert label columns holding 1, 0, -1 (uncertain) or blank into a float32 matrix of 1, 0, -1.

    Args:
        frame: the table.
        columns: label columns, in output order.
        uncertain: what -1 becomes: ``"ignore"`` (-1, masked later), ``"zeros"`` or ``"ones"``.
        blank: what an empty cell becomes: ``"zeros"`` or ``"ignore"`` (-1).
        source: file name for error messages.

    Returns:
        Array of shape ``(len(frame), len(columns))``.

    Raises:
        ValueError: for an unknown policy or cells holding anything but 1, 0, -1 or blank.
    """
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain must be one of {UNCERTAIN_POLICIES}, got {uncertain!r}")
    if blank not in BLANK_POLICIES:
        raise ValueError(f"blank must be one of {BLANK_POLICIES}, got {blank!r}")

    values = np.empty((len(frame), len(columns)), dtype=np.float32)
    for position, column in enumerate(columns):
        raw = frame[column]
        numeric = raw if pd.api.types.is_numeric_dtype(raw) else pd.to_numeric(raw, errors="coerce")
        numbers = numeric.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        unparsable = np.isnan(numbers) & raw.notna().to_numpy() & (raw.astype("string").str.strip() != "").to_numpy()
        bad = unparsable | ~(np.isnan(numbers) | np.isin(numbers, (1.0, 0.0, -1.0)))
        if bad.any():
            examples = sorted({str(value) for value in raw[bad].unique()[:5]})
            raise ValueError(
                f"{source}: column {column!r} has {int(bad.sum())} cells that are not 1, 0, -1 or blank, "
                f"e.g. {examples}"
            )
        blank_cells, uncertain_cells = np.isnan(numbers), numbers == -1.0
        numbers[blank_cells] = _POLICY_VALUE[blank]
        numbers[uncertain_cells] = _POLICY_VALUE[uncertain]
        values[:, position] = numbers
    return values


# --------------------------------------------------------------------------------------------------------------------
# Paths and existence checks


def _join_root(relative: pd.Series, root: Path) -> pd.Series:
    """Absolute path strings: ``root/relative`` unless the value is already absolute."""
    text = relative.astype("string").str.replace("\\", "/", regex=False).str.removeprefix("./")
    root_text = str(root.resolve()).rstrip("/")
    absolute = text.str.startswith("/")
    return text.where(absolute, root_text + "/" + text)


def _drop_missing(frame: pd.DataFrame, mask: np.ndarray, *, what: str, root: Path | str) -> pd.DataFrame:
    dropped = int((~mask).sum())
    if dropped:
        examples = frame.loc[~mask, "image"].head(3).tolist()
        logger.warning(
            "dropped %d of %d rows whose image is not under %s (e.g. %s)", dropped, len(frame), root, examples
        )
    if dropped == len(frame):
        raise ValueError(f"none of the {len(frame)} images named in {what} exists under {root}")
    return frame.loc[mask].reset_index(drop=True)


# --------------------------------------------------------------------------------------------------------------------
# Splits and assembly


def _resolve_splits(
    frame: pd.DataFrame,
    *,
    split_column: str | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    source: str,
) -> tuple[np.ndarray, dict[str, object]]:
    """Split per row: official values from ``split_column`` when given, else a seeded patient-level split."""
    if split_column is None:
        splits = patient_split(frame["patient"], val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
        info = {"method": "patient", "val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed}
        return splits, info

    official = normalise_split_names(frame[split_column], source=f"{source} column {split_column!r}")
    splits = official.to_numpy(dtype=object)
    info: dict[str, object] = {"method": "official", "column": split_column}
    if not (splits == "validation").any() and val_fraction > 0:
        splits = carve_validation(frame["patient"].to_numpy(), splits, val_fraction=val_fraction, seed=seed)
        info.update({"validation_carved_from_training": True, "val_fraction": val_fraction, "seed": seed})
        logger.info(
            "the official split has no validation rows; moved about %.0f%% of the images (whole patients) from "
            "training to validation",
            100 * val_fraction,
        )
    if not (splits == "test").any():
        logger.warning("the official split in %s has no test rows", source)
    return splits, info


def _split_counts(labels: Sequence[str], values: np.ndarray, splits: np.ndarray, patients: pd.Series) -> dict:
    counts: dict[str, dict[str, object]] = {}
    for split in SPLITS:
        rows = splits == split
        block = values[rows]
        counts[split] = {
            "images": int(rows.sum()),
            "patients": int(patients[rows].nunique()),
            "positives": {label: int(n) for label, n in zip(labels, (block == POSITIVE).sum(axis=0), strict=True)},
            "unknown": {label: int(n) for label, n in zip(labels, (block == UNKNOWN).sum(axis=0), strict=True)},
        }
    return counts


def _warn_empty_labels(counts: Mapping[str, Mapping[str, object]]) -> None:
    for split in SPLITS:
        if not counts[split]["images"]:
            continue
        empty = [label for label, n in counts[split]["positives"].items() if n == 0]
        if empty:
            logger.warning(
                "%s has no positive image for %d labels: %s (their AUROC/AP will be undefined there)",
                split,
                len(empty),
                empty,
            )


def _label_lists(values: np.ndarray) -> list[list[float]]:
    """One Python list per row, built from the distinct rows only.

    Large datasets have few distinct label vectors, so converting those once and copying the small lists is much
    cheaper than creating a float object per cell. Each row still gets its own list.
    """
    if len(values) == 0:
        return []
    values = np.ascontiguousarray(values)
    rows = values.view(np.dtype((np.void, values.dtype.itemsize * values.shape[1]))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    distinct = values[first].tolist()
    return [list(distinct[code]) for code in inverse.ravel().tolist()]


def assemble_datalist(
    *,
    name: str,
    label_set: LabelSet,
    images: pd.Series,
    patients: pd.Series,
    values: np.ndarray,
    splits: np.ndarray,
    allow_leakage: bool = False,
    source: str = "datalist",
    metadata: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """Put per-row arrays together as a datalist dict, after the patient leakage check.

    Args:
        name: dataset name stored in the datalist.
        label_set: gives the label order.
        images: absolute image path per row.
        patients: patient id per row.
        values: ``(N, C)`` label matrix.
        splits: split name per row.
        allow_leakage: warn instead of raising when a patient is in two splits.
        source: names the input in messages.
        metadata: extra metadata entries.

    Returns:
        The datalist dict (see the module docstring); ``metadata["counts"]`` holds images, patients, positives
        and unknowns per split.

    Raises:
        ValueError: on shape mismatches or patient leakage.
    """
    n_rows = len(images)
    if values.shape != (n_rows, len(label_set)) or len(patients) != n_rows or len(splits) != n_rows:
        raise ValueError(
            f"row counts disagree: {n_rows} images, {len(patients)} patients, {len(splits)} splits, label matrix "
            f"{values.shape} for {len(label_set)} labels"
        )
    unknown_splits = set(pd.unique(np.asarray(splits, dtype=object))) - set(SPLITS)
    if unknown_splits:
        raise ValueError(f"split names must be among {SPLITS}, got {sorted(map(str, unknown_splits))}")
    patients = pd.Series(patients, dtype="string").reset_index(drop=True)
    check_patient_leakage(patients, splits, allow_leakage=allow_leakage, source=source)

    counts = _split_counts(label_set.labels, values, splits, patients)
    _warn_empty_labels(counts)

    image_list = images.astype("string").tolist()
    patient_list = patients.tolist()
    label_rows = _label_lists(values)
    datalist: dict[str, object] = {"name": name, "labels": list(label_set.labels), "label_set": label_set.name}
    for split in SPLITS:
        rows = np.flatnonzero(splits == split)
        datalist[split] = [
            {"image": image_list[i], "label": label_rows[i], "patient": patient_list[i]} for i in rows.tolist()
        ]
    datalist["metadata"] = {**(metadata or {}), "counts": counts, "pipeline_version": __version__}
    return datalist


def _finish(
    frame: pd.DataFrame,
    values: np.ndarray,
    *,
    name: str,
    label_set: LabelSet,
    split_column: str | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    allow_leakage: bool,
    source: str,
    metadata: dict[str, object],
) -> dict[str, object]:
    """Shared tail of the builders: drop duplicate images, split, check and assemble."""
    if frame["patient"].isna().any():
        raise ValueError(f"{source}: {int(frame['patient'].isna().sum())} rows have no patient id")
    duplicated = frame["image"].duplicated(keep="first").to_numpy()
    if duplicated.any():
        logger.warning("%s: %d rows repeat an image already listed; keeping the first", source, int(duplicated.sum()))
        frame = frame.loc[~duplicated].reset_index(drop=True)
        values = values[~duplicated]
    splits, split_info = _resolve_splits(
        frame,
        split_column=split_column,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        source=source,
    )
    metadata = {**metadata, "split": split_info}
    return assemble_datalist(
        name=name,
        label_set=label_set,
        images=frame["image"],
        patients=frame["patient"],
        values=values,
        splits=splits,
        allow_leakage=allow_leakage,
        source=source,
        metadata=metadata,
    )


# --------------------------------------------------------------------------------------------------------------------
# Format-specific builders


def _nih_label_file(labels_csv: str | os.PathLike[str]) -> Path:
    path = Path(labels_csv)
    if path.is_dir():
        candidates = sorted(path.glob("Data_Entry_2017*.csv"))
        if not candidates:
            raise FileNotFoundError(f"no Data_Entry_2017*.csv in {path}")
        return candidates[-1]
    return path


def _read_split_file(path: str | os.PathLike[str], key_candidates: Sequence[str]) -> pd.DataFrame:
    """Read an official split table with an image-name column and a ``split`` column."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} does not exist")
    header = read_header(path)
    key = next((c for c in key_candidates if c in header), None)
    if key is None or "split" not in header:
        raise ValueError(
            f"split file {path} needs an image column (one of {list(key_candidates)}) and a 'split' column; "
            f"columns found: {_describe_columns(header)}"
        )
    table = pd.read_csv(path, usecols=[key, "split"], dtype="string")
    table[key] = table[key].str.strip().str.rsplit("/", n=1).str[-1]
    repeated = table[key].duplicated(keep="first")
    if repeated.any():
        logger.warning("split file %s lists %d images more than once; using the first", path, int(repeated.sum()))
        table = table.loc[~repeated]
    return table.rename(columns={key: "_image_name", "split": "_official_split"})


def build_nih_datalist(
    labels_csv: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    *,
    label_set: str | LabelSet = "nih14",
    keep_no_finding: bool = False,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    split_file: str | os.PathLike[str] | None = None,
    test_list: str | os.PathLike[str] | None = None,
    check_files: bool = True,
    allow_leakage: bool = False,
    name: str = "nih",
) -> dict[str, object]:
    """Datalist from NIH ChestX-ray14's ``Data_Entry_2017*.csv``.

    ``Finding Labels`` holds pipe-separated findings; "No Finding" is the absence of all findings. Images are
    looked up by file name anywhere under ``images_dir`` (the release spreads them over ``images_001/images``
    and so on); rows without an image are dropped with a warning.

    Args:
        labels_csv: the Data_Entry CSV, or the folder holding it.
        images_dir: folder searched recursively for the PNG files.
        label_set: label set name, path or object (default ``nih14``).
        keep_no_finding: add the label set's "no finding" class as the last output.
        val_fraction: share of patients in validation (also used to carve validation from an official split
            that has none).
        test_fraction: share of patients in test.
        seed: seed of the patient shuffle.
        split_file: optional CSV with an image column (``Image Index`` or ``image``) and ``split``
            (train/valid/test); rows it does not list are dropped.
        test_list: optional text file listing test images one per line (NIH's ``test_list.txt``); all other
            rows are training, with validation carved from them by patient.
        check_files: look for the images and drop rows whose file is missing.
        allow_leakage: keep an official split that puts a patient in two splits (with a warning).
        name: dataset name stored in the datalist.

    Returns:
        The datalist dict.

    Raises:
        FileNotFoundError: for a missing CSV, image folder or split file.
        ValueError: for missing columns, bad split names or patient leakage.
    """
    if split_file is not None and test_list is not None:
        raise ValueError("give either split_file or test_list, not both")
    labels_path = _nih_label_file(labels_csv)
    source = str(labels_path)
    labels = load_label_set(label_set)
    if keep_no_finding:
        labels = labels.with_no_finding()
    no_finding = labels.no_finding_label or "No Finding"

    frame = read_csv_columns(labels_path, ["Image Index", "Finding Labels", "Patient ID"])
    frame = frame.rename(columns={"Image Index": "image_name", "Patient ID": "patient"})
    frame["image_name"] = frame["image_name"].astype("string").str.strip()
    frame["patient"] = frame["patient"].astype("string").str.strip()

    # One indicator column per finding name that occurs in the file.
    findings = frame["Finding Labels"].fillna("").astype("string").str.replace(r"\s*\|\s*", "|", regex=True)
    dummies = findings.str.strip().str.get_dummies(sep="|")
    finding_labels = [label for label in labels.labels if label != no_finding]
    unknown = sorted(set(dummies.columns) - set(finding_labels) - {no_finding, ""})
    if unknown:
        logger.warning("%s: findings not in label set %r are ignored: %s", source, labels.name, unknown)
    values = np.zeros((len(frame), len(labels)), dtype=np.float32)
    for position, label in enumerate(labels.labels):
        if label != no_finding and label in dummies.columns:
            values[:, position] = dummies[label].to_numpy(dtype=np.float32)
    any_finding = values.max(axis=1) > 0 if len(finding_labels) else np.zeros(len(frame), dtype=bool)
    if no_finding in dummies.columns:
        conflicting = int((dummies[no_finding].to_numpy() > 0)[any_finding].sum())
        if conflicting:
            logger.warning("%s: %d rows say %r together with a finding", source, conflicting, no_finding)
    if no_finding in labels.labels:
        values[:, labels.index(no_finding)] = (~any_finding).astype(np.float32)

    metadata: dict[str, object] = {"format": "nih", "source": source, "images_root": str(Path(images_dir).resolve())}
    split_column: str | None = None
    if split_file is not None:
        table = _read_split_file(split_file, ("Image Index", "image", "Image", "image_name", "path", "Path"))
        frame = frame.merge(table, how="left", left_on="image_name", right_on="_image_name").drop(columns="_image_name")
        unlisted = frame["_official_split"].isna().to_numpy()
        if unlisted.all():
            raise ValueError(f"split file {split_file} lists none of the images of {source}")
        if unlisted.any():
            logger.warning(
                "%d rows of %s are not in split file %s and are dropped", int(unlisted.sum()), source, split_file
            )
            frame, values = frame.loc[~unlisted].reset_index(drop=True), values[~unlisted]
        split_column = "_official_split"
        metadata["split_file"] = str(split_file)
        source = f"{labels_path} split by {split_file}"
    elif test_list is not None:
        path = Path(test_list)
        if not path.is_file():
            raise FileNotFoundError(f"test list {path} does not exist")
        listed = {line.strip().rsplit("/", 1)[-1] for line in path.read_text().splitlines() if line.strip()}
        frame["_official_split"] = np.where(frame["image_name"].isin(listed), "test", "train")
        split_column = "_official_split"
        metadata["test_list"] = str(path)

    images_root = Path(images_dir)
    if check_files:
        by_name = index_by_name(images_root)
        relative = frame["image_name"].map(by_name)
        frame["image"] = _join_root(relative.fillna(frame["image_name"]), images_root)
        frame = _drop_missing(frame, relative.notna().to_numpy(), what=source, root=images_root)
        values = values[relative.notna().to_numpy()]
    else:
        frame["image"] = _join_root(frame["image_name"], images_root)

    metadata["options"] = {"keep_no_finding": keep_no_finding, "check_files": check_files}
    return _finish(
        frame,
        values,
        name=name,
        label_set=labels,
        split_column=split_column,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        allow_leakage=allow_leakage,
        source=source,
        metadata=metadata,
    )


def build_csv_datalist(
    csv_path: str | os.PathLike[str],
    *,
    path_column: str,
    patient_column: str | None = None,
    patient_pattern: str | None = None,
    label_columns: Sequence[str] | None = None,
    label_set: str | LabelSet | None = None,
    images_root: str | os.PathLike[str] | None = None,
    split_column: str | None = None,
    uncertain: str = "ignore",
    blank: str = "zeros",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    check_files: bool = True,
    allow_leakage: bool = False,
    name: str | None = None,
    row_filter: Callable[[pd.DataFrame], np.ndarray] | None = None,
    extra_columns: Sequence[str] = (),
    fmt: str = "csv",
) -> dict[str, object]:
    """Datalist from any CSV with an image path column, a patient column and one column per label.

    Label cells hold 1, 0, -1 (uncertain) or blank; ``uncertain`` and ``blank`` choose what -1 and blank
    become. Relative paths are joined to ``images_root`` (default: the CSV's folder).

    Args:
        csv_path: the CSV file.
        path_column: column with the image path.
        patient_column: column with the patient id.
        patient_pattern: regular expression with one group that extracts the patient id from the path, used
            when ``patient_column`` is not given.
        label_columns: label columns in output order; the label set is then ad hoc (named after the file).
        label_set: label set name, path or object whose labels name the columns (alternative to
            ``label_columns``).
        images_root: folder that relative paths start from.
        split_column: optional column with an official split (train/valid/test); otherwise a seeded
            patient-level split.
        uncertain: ``"ignore"`` (-1 kept, masked later), ``"zeros"`` or ``"ones"``.
        blank: ``"zeros"`` or ``"ignore"``.
        val_fraction: share of patients in validation.
        test_fraction: share of patients in test.
        seed: seed of the patient shuffle.
        check_files: drop rows whose image file is missing.
        allow_leakage: keep an official split that puts a patient in two splits (with a warning).
        name: dataset name stored in the datalist (default: the CSV's stem).
        row_filter: callable taking the frame and returning a boolean mask of the rows to keep (format wrappers
            use it, e.g. for frontal views only).
        extra_columns: further columns to read for ``row_filter``.
        fmt: format name stored in the metadata.

    Returns:
        The datalist dict.

    Raises:
        FileNotFoundError: for a missing CSV or image folder.
        ValueError: for missing columns, bad label cells, bad split names or patient leakage.
    """
    csv_path = Path(csv_path)
    source = str(csv_path)
    if (label_columns is None) == (label_set is None):
        raise ValueError("give exactly one of label_columns or label_set")
    if patient_column is None and patient_pattern is None:
        raise ValueError("give patient_column, or patient_pattern to read the patient id from the path")
    if label_set is not None:
        labels = load_label_set(label_set)
    else:
        labels = LabelSet(name=csv_path.stem, labels=tuple(label_columns), source=f"columns of {csv_path.name}")

    header = read_header(csv_path)
    columns = match_label_columns(labels.labels, header, source=source)
    required = [path_column, *([patient_column] if patient_column else []), *columns.values()]
    optional = [*([split_column] if split_column else []), *extra_columns]
    frame = read_csv_columns(csv_path, required, optional)
    if split_column and split_column not in frame.columns:
        raise ValueError(f"{source} has no split column {split_column!r}; columns found: {_describe_columns(header)}")

    if row_filter is not None:
        keep = np.asarray(row_filter(frame), dtype=bool)
        frame = frame.loc[keep].reset_index(drop=True)
        if frame.empty:
            raise ValueError(f"{source}: no rows left after filtering")

    values = label_matrix(
        frame, [columns[label] for label in labels.labels], uncertain=uncertain, blank=blank, source=source
    )
    paths = frame[path_column]
    if paths.isna().any():
        raise ValueError(f"{source}: column {path_column!r} is empty in {int(paths.isna().sum())} rows")
    paths = paths.astype("string").str.strip()
    if patient_column is not None:
        frame["patient"] = frame[patient_column].astype("string").str.strip()
    else:
        extracted = paths.str.extract(patient_pattern, expand=False)
        extracted = extracted.iloc[:, 0] if isinstance(extracted, pd.DataFrame) else extracted
        if extracted.isna().any():
            examples = paths[extracted.isna()].head(3).tolist()
            raise ValueError(
                f"{source}: cannot read a patient id with pattern {patient_pattern!r} from "
                f"{int(extracted.isna().sum())} paths, e.g. {examples}"
            )
        frame["patient"] = extracted.astype("string")

    root = Path(images_root) if images_root is not None else csv_path.parent
    if check_files and not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    frame["image"] = _join_root(paths, root)
    if check_files:
        mask = existing_files_mask(frame["image"])
        frame = _drop_missing(frame, mask, what=source, root=root)
        values = values[mask]

    metadata: dict[str, object] = {
        "format": fmt,
        "source": source,
        "images_root": str(root.resolve()),
        "options": {"uncertain": uncertain, "blank": blank, "check_files": check_files, "path_column": path_column},
    }
    return _finish(
        frame,
        values,
        name=name or csv_path.stem,
        label_set=labels,
        split_column=split_column,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        allow_leakage=allow_leakage,
        source=source,
        metadata=metadata,
    )


CXR_LT_PATH_COLUMNS = ("fpath", "path")


def build_cxr_lt_datalist(
    csv_path: str | os.PathLike[str],
    images_root: str | os.PathLike[str] | None = None,
    *,
    label_set: str | LabelSet = "cxr_lt_2023",
    path_column: str | None = None,
    patient_column: str = "subject_id",
    split_column: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    check_files: bool = True,
    allow_leakage: bool = False,
    name: str = "cxr-lt",
) -> dict[str, object]:
    """Datalist from a CXR-LT challenge CSV (``dicom_id``, ``subject_id``, ``study_id``, path, 0/1 per label).

    Args:
        csv_path: the challenge's labelled CSV.
        images_root: folder the path column is relative to (default: the CSV's folder).
        label_set: ``cxr_lt_2023`` (26 labels, default), ``cxr_lt_2024`` (40) or another set.
        path_column: relative image path column; default the first of ``fpath``, ``path`` present.
        patient_column: patient id column.
        split_column: optional official split column.
        val_fraction: share of patients in validation.
        test_fraction: share of patients in test.
        seed: seed of the patient shuffle.
        check_files: drop rows whose image file is missing.
        allow_leakage: keep an official split that puts a patient in two splits (with a warning).
        name: dataset name stored in the datalist.

    Returns:
        The datalist dict.
    """
    csv_path = Path(csv_path)
    if path_column is None:
        header = read_header(csv_path)
        path_column = next((c for c in CXR_LT_PATH_COLUMNS if c in header), None)
        if path_column is None:
            raise ValueError(
                f"{csv_path} has none of the path columns {list(CXR_LT_PATH_COLUMNS)} (choose one with "
                f"--path-column); columns found: {_describe_columns(header)}"
            )
    return build_csv_datalist(
        csv_path,
        path_column=path_column,
        patient_column=patient_column,
        label_set=label_set,
        images_root=images_root,
        split_column=split_column,
        uncertain="ignore",
        blank="zeros",
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        check_files=check_files,
        allow_leakage=allow_leakage,
        name=name,
        fmt="cxr-lt",
    )


CHEXPERT_PATIENT_PATTERN = r"(patient\d+)"


def _default_chexpert_root(csv_path: Path) -> Path:
    """CheXpert paths start with the release folder (``CheXpert-v1.0/train/...``) that also holds the CSV."""
    first = pd.read_csv(csv_path, usecols=["Path"], nrows=1)
    if not first.empty:
        head = str(first["Path"].iloc[0]).replace("\\", "/").split("/", 1)[0]
        if head == csv_path.parent.name:
            return csv_path.parent.parent
    return csv_path.parent


def build_chexpert_datalist(
    csv_path: str | os.PathLike[str],
    images_root: str | os.PathLike[str] | None = None,
    *,
    label_set: str | LabelSet = "chexpert",
    uncertain: str = "ignore",
    blank: str = "zeros",
    frontal_only: bool = False,
    split_column: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    check_files: bool = True,
    allow_leakage: bool = False,
    name: str = "chexpert",
) -> dict[str, object]:
    """Datalist from a CheXpert ``train.csv``/``valid.csv`` (``Path`` plus 1/0/-1/blank per observation).

    The patient id is read from the path (``patientNNNNN``).

    Args:
        csv_path: the CheXpert CSV.
        images_root: folder the ``Path`` values start from; default the folder above the CSV when the paths begin
            with the CSV folder's name (as in the release), else the CSV's folder.
        label_set: default ``chexpert`` (14 observations).
        uncertain: what -1 (uncertain) becomes: ``"ignore"`` (-1, masked), ``"zeros"`` or ``"ones"``.
        blank: what a blank (not mentioned) becomes: ``"zeros"`` (usual practice) or ``"ignore"``.
        frontal_only: keep only rows whose ``Frontal/Lateral`` is ``Frontal``.
        split_column: optional official split column.
        val_fraction: share of patients in validation.
        test_fraction: share of patients in test.
        seed: seed of the patient shuffle.
        check_files: drop rows whose image file is missing.
        allow_leakage: keep an official split that puts a patient in two splits (with a warning).
        name: dataset name stored in the datalist.

    Returns:
        The datalist dict.
    """
    csv_path = Path(csv_path)
    header = read_header(csv_path)
    if "Path" not in header:
        raise ValueError(f"{csv_path} lacks the column 'Path'; columns found: {_describe_columns(header)}")
    root = Path(images_root) if images_root is not None else _default_chexpert_root(csv_path)

    row_filter = None
    extra: tuple[str, ...] = ()
    if frontal_only:
        if "Frontal/Lateral" not in header:
            raise ValueError(
                f"{csv_path} lacks the column 'Frontal/Lateral' needed by frontal_only; columns found: "
                f"{_describe_columns(header)}"
            )
        extra = ("Frontal/Lateral",)

        def row_filter(frame: pd.DataFrame) -> np.ndarray:
            return (frame["Frontal/Lateral"].astype("string").str.strip().str.lower() == "frontal").to_numpy()

    datalist = build_csv_datalist(
        csv_path,
        path_column="Path",
        patient_pattern=CHEXPERT_PATIENT_PATTERN,
        label_set=label_set,
        images_root=root,
        split_column=split_column,
        uncertain=uncertain,
        blank=blank,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        check_files=check_files,
        allow_leakage=allow_leakage,
        name=name,
        row_filter=row_filter,
        extra_columns=extra,
        fmt="chexpert",
    )
    datalist["metadata"]["options"]["frontal_only"] = frontal_only
    return datalist


# --------------------------------------------------------------------------------------------------------------------
# Files


def _entry_encoder() -> Callable[[Mapping[str, object]], str]:
    """JSON encoder for datalist entries that formats each distinct label vector once.

    Label vectors repeat a lot (most images share a handful of patterns), and formatting floats dominates the cost
    of writing a large datalist, so their text is cached. Entries with keys other than image/label/patient go
    through the plain encoder.
    """
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    quote = json.encoder.encode_basestring
    label_text: dict[tuple, str] = {}
    standard = {"image", "label", "patient"}

    def encode_entry(item: Mapping[str, object]) -> str:
        if item.keys() != standard:
            return encode(item)
        key = tuple(item["label"])
        text = label_text.get(key)
        if text is None:
            text = label_text[key] = encode(list(key))
        return f'{{"image":{quote(str(item["image"]))},"label":{text},"patient":{quote(str(item["patient"]))}}}'

    return encode_entry


def write_datalist(datalist: Mapping[str, object], path: str | os.PathLike[str]) -> Path:
    """Write a datalist as JSON, one entry per line, creating parent folders.

    The file is written next to its target and renamed into place, so a failed run never leaves half a datalist.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    encode_entry = _entry_encoder()
    header = {key: value for key, value in datalist.items() if key not in SPLITS and key != "metadata"}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("{\n")
        for key, value in header.items():
            handle.write(f"{encode(key)}:{encode(value)},\n")
        for split in SPLITS:
            handle.write(f"{encode(split)}:[")
            handle.write(",\n".join(map(encode_entry, datalist.get(split) or [])))
            handle.write("],\n")
        handle.write(f'"metadata":{json.dumps(datalist.get("metadata", {}), ensure_ascii=False, indent=1)}\n}}\n')
    os.replace(tmp, path)
    return path


def load_datalist(
    path: str | os.PathLike[str], *, check_leakage: bool = True, allow_leakage: bool = False
) -> dict[str, object]:
    """Read a datalist JSON, resolve relative image paths against its folder and check it.

    Args:
        path: the datalist file.
        check_leakage: run the patient leakage check when entries carry ``patient``.
        allow_leakage: warn instead of raising on leakage.

    Returns:
        The datalist dict with absolute image paths.

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: for invalid JSON, label vectors of the wrong length, or patient leakage.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"datalist {path} does not exist")
    try:
        datalist = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"datalist {path} is not valid JSON: {err}") from err
    labels = datalist.get("labels")
    if not isinstance(labels, list) or not labels:
        raise ValueError(f"datalist {path} has no 'labels' list")

    base = path.resolve().parent
    n_labels = len(labels)
    patients: list[str] = []
    splits: list[str] = []
    for split in SPLITS:
        items = datalist.setdefault(split, [])
        bad = [i for i, item in enumerate(items) if "image" not in item or len(item.get("label", ())) != n_labels]
        if bad:
            raise ValueError(
                f"datalist {path}: {len(bad)} entries of {split!r} lack 'image' or have a label vector whose length "
                f"is not {n_labels} (first at index {bad[0]})"
            )
        for item in (item for item in items if not os.path.isabs(item["image"])):
            item["image"] = str(base / item["image"])
        if check_leakage and all("patient" in item for item in items):
            patients.extend(str(item["patient"]) for item in items)
            splits.extend([split] * len(items))
    if check_leakage and patients:
        check_patient_leakage(patients, splits, allow_leakage=allow_leakage, source=f"datalist {path}")
    return datalist


def count_table(datalist: Mapping[str, object]) -> pd.DataFrame:
    """Positives per label and split (plus image and patient totals) as a frame for printing.

    Unknown (-1) counts get their own columns when any label has some. Uses ``metadata["counts"]`` when present,
    else counts the entries.
    """
    labels = list(datalist["labels"])
    counts = (datalist.get("metadata") or {}).get("counts")
    if counts is None:
        counts = {}
        for split in SPLITS:
            items = datalist.get(split) or []
            values = np.asarray([item["label"] for item in items], dtype=np.float32).reshape(-1, len(labels))
            patients = pd.Series([str(item.get("patient", i)) for i, item in enumerate(items)], dtype="string")
            counts[split] = {
                "images": len(items),
                "patients": int(patients.nunique()),
                "positives": dict(zip(labels, (values == POSITIVE).sum(axis=0).tolist(), strict=True)),
                "unknown": dict(zip(labels, (values == UNKNOWN).sum(axis=0).tolist(), strict=True)),
            }
    columns = {split: counts[split]["positives"] for split in SPLITS}
    totals = {split: [counts[split]["images"], counts[split]["patients"]] for split in SPLITS}
    if any(any(counts[split].get("unknown", {}).values()) for split in SPLITS):
        for split in SPLITS:
            columns[f"{split} unknown"] = counts[split]["unknown"]
            totals[f"{split} unknown"] = [pd.NA, pd.NA]
    table = pd.DataFrame(columns).reindex(labels)
    return pd.concat([table, pd.DataFrame(totals, index=["(images)", "(patients)"])]).astype("Int64")
