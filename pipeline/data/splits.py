"""Patient-level train/validation/test splits and the check that no patient crosses a split.

Images of one patient are correlated (follow-up studies, several views), so a split that puts a patient in both
training and test inflates every metric. Splits here assign whole patients; the leakage check refuses a datalist
where the same patient appears in two splits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

SPLITS = ("training", "validation", "test")
"""Datalist keys of the three splits, in order."""

SPLIT_ALIASES: dict[str, str] = {
    "train": "training",
    "training": "training",
    "trn": "training",
    "val": "validation",
    "valid": "validation",
    "validate": "validation",
    "validation": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
    "tst": "test",
}
"""Spellings accepted in an official split column, mapped to datalist keys."""


class PatientLeakageError(ValueError):
    """A patient appears in more than one split."""


def normalise_split_names(values: pd.Series, *, source: str = "split column") -> pd.Series:
    """Map official split spellings (``train``, ``valid``, ``dev``, ...) to datalist keys.

    Args:
        values: split names per row.
        source: what to call the column in error messages.

    Returns:
        A series of ``"training"``, ``"validation"`` or ``"test"``.

    Raises:
        ValueError: naming the values that are not a known split.
    """
    lowered = values.astype("string").str.strip().str.lower()
    mapped = lowered.map(SPLIT_ALIASES)
    unknown = lowered[mapped.isna()]
    if len(unknown):
        examples = sorted({str(x) for x in unknown.unique()[:10]})
        raise ValueError(
            f"{source} has {len(unknown)} rows with unknown split names {examples}; "
            f"accepted names are {sorted(SPLIT_ALIASES)}"
        )
    return mapped.astype(object)


def patient_split(
    patients: Sequence[str] | pd.Series | np.ndarray,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> np.ndarray:
    """Assign every row to a split so that all rows of one patient share it.

    Patients are shuffled with ``seed`` and taken in that order: test receives patients until it holds about
    ``test_fraction`` of the images, validation the next ``val_fraction``, training the rest. A patient goes to
    the earlier split when the middle of its block of images falls inside that split's share, so each split
    misses its target by at most half of one patient's images. The unique patient ids are sorted before
    shuffling, so the result depends on the data and the seed, not on the row order.

    Args:
        patients: patient id per row.
        val_fraction: share of images in validation.
        test_fraction: share of images in test.
        seed: seed of the shuffle.

    Returns:
        An object array of ``"training"``, ``"validation"`` or ``"test"``, one per row.

    Raises:
        ValueError: for fractions outside ``[0, 1)`` or summing to 1 or more, or rows without a patient id.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be below 1 to leave training data, got {val_fraction} + {test_fraction}"
        )

    codes, unique = pd.factorize(pd.Series(patients, dtype="string"), sort=True)
    if (codes < 0).any():
        raise ValueError(f"{int((codes < 0).sum())} rows have no patient id")
    n_rows = len(codes)
    sizes = np.bincount(codes, minlength=len(unique))

    # Walk the shuffled patients and place each by the middle of its block of images.
    order = np.random.default_rng(seed).permutation(len(unique))
    ends = np.cumsum(sizes[order])
    middles = ends - sizes[order] / 2.0
    shuffled_code = np.where(
        middles <= test_fraction * n_rows, 2, np.where(middles <= (test_fraction + val_fraction) * n_rows, 1, 0)
    ).astype(np.int8)

    patient_split_code = np.empty(len(unique), dtype=np.int8)
    patient_split_code[order] = shuffled_code
    return np.asarray(SPLITS, dtype=object)[patient_split_code[codes]]


def carve_validation(
    patients: pd.Series,
    splits: np.ndarray,
    *,
    val_fraction: float,
    seed: int = 0,
) -> np.ndarray:
    """Move training patients to validation, for official splits that have none, for official splits that have none.

    Args:
        patients: patient id per row.
        splits: current split per row (``"training"``/``"validation"``/``"test"``).
        val_fraction: share of all images to move (as in :func:`patient_split`).
        seed: seed of the shuffle.

    Returns:
        A new split array.
    """
    splits = np.asarray(splits, dtype=object).copy()
    in_training = splits == "training"
    if val_fraction <= 0 or not in_training.any():
        return splits
    share = min(val_fraction * len(splits) / int(in_training.sum()), 0.99)
    sub = patient_split(np.asarray(patients)[in_training], val_fraction=share, test_fraction=0.0, seed=seed)
    splits[np.flatnonzero(in_training)] = sub
    return splits


def find_patient_leakage(patients: Iterable[str], splits: Iterable[str]) -> pd.DataFrame:
    """Patients that appear in more than one split.

    Args:
        patients: patient id per row.
        splits: split name per row.

    Returns:
        A frame indexed by patient with a ``splits`` column (sorted split names, joined by ``"+"``) and ``rows``
        (the patient's image count); empty when every patient stays within one split.
    """
    frame = pd.DataFrame({"patient": pd.Series(list(patients), dtype="string"), "split": list(splits)})
    per_patient = frame.groupby("patient", sort=True)["split"]
    n_splits = per_patient.nunique()
    leaky = n_splits[n_splits > 1].index
    if len(leaky) == 0:
        return pd.DataFrame({"splits": pd.Series(dtype=object), "rows": pd.Series(dtype=int)})
    subset = frame[frame["patient"].isin(leaky)]
    grouped = subset.groupby("patient", sort=True)["split"]
    return pd.DataFrame(
        {"splits": grouped.agg(lambda s: "+".join(sorted(set(s)))), "rows": grouped.size()},
    )


def check_patient_leakage(
    patients: Iterable[str],
    splits: Iterable[str],
    *,
    allow_leakage: bool = False,
    source: str = "datalist",
    max_examples: int = 5,
) -> pd.DataFrame:
    """Refuse (or, when allowed, warn about) patients present in more than one split.

    Args:
        patients: patient id per row.
        splits: split name per row.
        allow_leakage: log a warning instead of raising.
        source: what to call the data in the message (a file name, for instance).
        max_examples: how many patient ids the message names.

    Returns:
        The leak table of :func:`find_patient_leakage` (empty when clean).

    Raises:
        PatientLeakageError: (a ``ValueError``) when a patient is in two splits and ``allow_leakage`` is false.
    """
    leaks = find_patient_leakage(patients, splits)
    if leaks.empty:
        return leaks
    examples = ", ".join(f"{patient} ({row.splits})" for patient, row in leaks.head(max_examples).iterrows())
    message = (
        f"{source}: {len(leaks)} patients appear in more than one split ({int(leaks['rows'].sum())} images), "
        f"e.g. {examples}. A patient-level split keeps each patient in one split; pass allow_leakage=True "
        f"(CLI: --allow-patient-overlap) to keep this split anyway"
    )
    if not allow_leakage:
        raise PatientLeakageError(message)
    logger.warning("%s; kept because leakage is allowed", message.split(". A patient-level")[0])
    return leaks


def check_datalist_leakage(
    datalist: Mapping[str, object], *, allow_leakage: bool = False, source: str = "datalist"
) -> pd.DataFrame:
    """Run :func:`check_patient_leakage` on a datalist dict (entries need a ``patient`` key).

    Raises:
        ValueError: when entries lack ``patient``, or on leakage (see :func:`check_patient_leakage`).
    """
    patients: list[str] = []
    splits: list[str] = []
    for split in SPLITS:
        items = datalist.get(split) or []
        missing = sum(1 for item in items if "patient" not in item)
        if missing:
            raise ValueError(f"{source}: {missing} entries of {split!r} have no 'patient' key")
        patients.extend(str(item["patient"]) for item in items)
        splits.extend([split] * len(items))
    return check_patient_leakage(patients, splits, allow_leakage=allow_leakage, source=source)
