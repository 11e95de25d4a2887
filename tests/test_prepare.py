"""Datalist builders, patient-level splits, the leakage check and the ``prepare`` command."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.data import (
    SPLITS,
    PatientLeakageError,
    build_chexpert_datalist,
    build_csv_datalist,
    build_cxr_lt_datalist,
    build_nih_datalist,
    check_datalist_leakage,
    check_patient_leakage,
    count_table,
    load_datalist,
    load_label_set,
    patient_split,
    write_datalist,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NIH1000 = SHARED / "nih1000"
NIH_CSV = NIH1000 / "Data_Entry_2017_v2020_subset.csv"
needs_nih1000 = pytest.mark.skipif(not NIH1000.is_dir(), reason="shared/data/nih1000 is not present")

NIH_LABELS = load_label_set("nih14").labels
LT_LABELS = load_label_set("cxr_lt_2023").labels
CHEXPERT_LABELS = load_label_set("chexpert").labels


def all_items(datalist):
    return [item for split in SPLITS for item in datalist[split]]


def split_of(datalist):
    return {Path(item["image"]).name: split for split in SPLITS for item in datalist[split]}


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


# --------------------------------------------------------------------------------------------------------------------
# NIH


def write_nih(
    tmp_path: Path, rows: list[tuple[str, str, int]], *, missing: set[str] = frozenset()
) -> tuple[Path, Path]:
    """Data_Entry-style CSV plus images spread over two sub-folders, as in the NIH release."""
    csv_path = tmp_path / "Data_Entry_2017_v2020.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "View Position"])
        for position, (image, findings, patient) in enumerate(rows):
            writer.writerow([image, findings, position, patient, 50, "PA"])
    images = tmp_path / "images"
    for position, (image, _, _) in enumerate(rows):
        if image not in missing:
            touch(images / f"images_{position % 2 + 1:03d}" / "images" / image)
    return csv_path, images


def many_nih_rows(n_patients: int = 300, seed: int = 0) -> list[tuple[str, str, int]]:
    rng = np.random.default_rng(seed)
    rows = []
    for patient in range(1, n_patients + 1):
        for follow_up in range(int(rng.integers(1, 4))):
            picked = [label for label in NIH_LABELS if rng.random() < 0.15]
            rows.append((f"{patient:08d}_{follow_up:03d}.png", "|".join(picked) or "No Finding", patient))
    return rows


def test_nih_parses_pipe_separated_findings_in_label_set_order(tmp_path):
    rows = [
        ("00000001_000.png", "Hernia|Atelectasis", 1),
        ("00000001_001.png", "No Finding", 1),
        ("00000002_000.png", "Effusion", 2),
        ("00000003_000.png", "Pleural_Thickening|Effusion|Mass", 3),
    ]
    csv_path, images = write_nih(tmp_path, rows)
    datalist = build_nih_datalist(csv_path, images, val_fraction=0.0, test_fraction=0.0)

    assert datalist["labels"] == list(NIH_LABELS)
    assert datalist["label_set"] == "nih14"
    by_name = {Path(item["image"]).name: item for item in all_items(datalist)}
    for image, findings, patient in rows:
        item = by_name[image]
        expected = [1.0 if label in findings.split("|") else 0.0 for label in NIH_LABELS]
        assert item["label"] == expected
        assert item["patient"] == str(patient)
        assert Path(item["image"]).is_absolute() and Path(item["image"]).is_file()


def test_nih_no_finding_is_dropped_by_default_and_kept_on_request(tmp_path):
    rows = [("00000001_000.png", "No Finding", 1), ("00000002_000.png", "Mass", 2), ("00000003_000.png", "", 3)]
    csv_path, images = write_nih(tmp_path, rows)

    plain = build_nih_datalist(csv_path, images, val_fraction=0.0, test_fraction=0.0)
    assert len(plain["labels"]) == 14
    normal = {Path(i["image"]).name: i["label"] for i in all_items(plain)}
    assert normal["00000001_000.png"] == [0.0] * 14

    kept = build_nih_datalist(csv_path, images, keep_no_finding=True, val_fraction=0.0, test_fraction=0.0)
    assert kept["labels"] == [*NIH_LABELS, "No Finding"]
    labels = {Path(i["image"]).name: i["label"] for i in all_items(kept)}
    assert labels["00000001_000.png"][-1] == 1.0
    assert labels["00000003_000.png"][-1] == 1.0
    assert labels["00000002_000.png"][-1] == 0.0
    assert labels["00000002_000.png"][NIH_LABELS.index("Mass")] == 1.0


def test_nih_drops_rows_whose_image_is_missing(tmp_path, caplog):
    rows = many_nih_rows(20)
    missing = {rows[0][0], rows[5][0], rows[9][0]}
    csv_path, images = write_nih(tmp_path, rows, missing=missing)

    with caplog.at_level(logging.WARNING):
        datalist = build_nih_datalist(csv_path, images)
    names = {Path(item["image"]).name for item in all_items(datalist)}
    assert names == {row[0] for row in rows} - missing
    assert any("dropped 3 of" in record.getMessage() for record in caplog.records)

    unchecked = build_nih_datalist(csv_path, images, check_files=False)
    assert len(all_items(unchecked)) == len(rows)


def test_nih_official_test_list_is_kept_and_validation_carved(tmp_path):
    rows = many_nih_rows(150)
    csv_path, images = write_nih(tmp_path, rows)
    test_patients = {row[2] for row in rows if row[2] % 4 == 0}
    test_images = {row[0] for row in rows if row[2] in test_patients}
    test_list = tmp_path / "test_list.txt"
    test_list.write_text("\n".join(sorted(test_images)) + "\n")

    datalist = build_nih_datalist(csv_path, images, test_list=test_list, val_fraction=0.1)
    assert {Path(item["image"]).name for item in datalist["test"]} == test_images
    assert datalist["validation"]
    check_datalist_leakage(datalist)


def test_nih_image_in_two_folders_uses_the_first_and_warns(tmp_path, caplog):
    rows = [("00000001_000.png", "Mass", 1), ("00000002_000.png", "Edema", 2)]
    csv_path, images = write_nih(tmp_path, rows)
    touch(images / "images_009" / "images" / "00000001_000.png")
    with caplog.at_level(logging.WARNING):
        datalist = build_nih_datalist(csv_path, images, val_fraction=0.0, test_fraction=0.0)
    by_name = {Path(item["image"]).name: item["image"] for item in datalist["training"]}
    assert by_name["00000001_000.png"] == str((images / "images_001" / "images" / "00000001_000.png").resolve())
    assert any("more than one folder" in record.getMessage() for record in caplog.records)


def test_nih_missing_image_folder_raises(tmp_path):
    csv_path, _ = write_nih(tmp_path, many_nih_rows(3))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_nih_datalist(csv_path, tmp_path / "nowhere")


def test_nih_missing_columns_are_named_with_the_columns_found(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Image Index,Labels\na.png,Mass\n")
    with pytest.raises(ValueError) as info:
        build_nih_datalist(bad, tmp_path)
    message = str(info.value)
    assert "bad.csv" in message and "Finding Labels" in message and "Patient ID" in message and "'Labels'" in message


# --------------------------------------------------------------------------------------------------------------------
# Patient-level splits


def test_split_keeps_every_patient_in_one_split_and_respects_fractions(tmp_path):
    rows = many_nih_rows(400)
    csv_path, images = write_nih(tmp_path, rows)
    datalist = build_nih_datalist(csv_path, images, val_fraction=0.15, test_fraction=0.25, seed=3)

    patient_splits = {}
    for split in SPLITS:
        for item in datalist[split]:
            patient_splits.setdefault(item["patient"], set()).add(split)
    assert all(len(splits) == 1 for splits in patient_splits.values())

    total = len(rows)
    assert len(datalist["validation"]) / total == pytest.approx(0.15, abs=0.03)
    assert len(datalist["test"]) / total == pytest.approx(0.25, abs=0.03)
    counts = datalist["metadata"]["counts"]
    assert sum(counts[split]["images"] for split in SPLITS) == total
    assert sum(counts[split]["patients"] for split in SPLITS) == 400


def test_split_is_deterministic_for_a_seed_and_independent_of_row_order(tmp_path):
    rows = many_nih_rows(200)
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir(), second_dir.mkdir()
    csv_a, images_a = write_nih(first_dir, rows)
    shuffled = [rows[i] for i in np.random.default_rng(1).permutation(len(rows))]
    csv_b, images_b = write_nih(second_dir, shuffled)

    same = split_of(build_nih_datalist(csv_a, images_a, seed=7))
    assert split_of(build_nih_datalist(csv_a, images_a, seed=7)) == same
    assert split_of(build_nih_datalist(csv_b, images_b, seed=7)) == same
    assert split_of(build_nih_datalist(csv_a, images_a, seed=8)) != same


def test_patient_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="1.2"):
        patient_split(["a", "b"], val_fraction=1.2)
    with pytest.raises(ValueError, match="below 1"):
        patient_split(["a", "b"], val_fraction=0.5, test_fraction=0.5)


def test_zero_fractions_put_everything_in_training():
    splits = patient_split([str(i % 7) for i in range(50)], val_fraction=0.0, test_fraction=0.0)
    assert set(splits) == {"training"}


# --------------------------------------------------------------------------------------------------------------------
# Leakage


def test_leakage_check_names_patients_and_splits():
    with pytest.raises(PatientLeakageError) as info:
        check_patient_leakage(["p1", "p1", "p2", "p3", "p3"], ["training", "test", "test", "training", "training"])
    message = str(info.value)
    assert "1 patients" in message and "p1 (test+training)" in message and "p3" not in message
    assert isinstance(info.value, ValueError)

    leaks = check_patient_leakage(["p1", "p1"], ["training", "validation"], allow_leakage=True)
    assert list(leaks.index) == ["p1"]
    assert check_patient_leakage(["p1", "p2"], ["training", "test"]).empty


@needs_nih1000
def test_leakage_check_catches_the_third_party_split_of_nih1000():
    entries = pd.read_csv(NIH_CSV, usecols=["Image Index", "Patient ID"])
    split = pd.read_csv(NIH1000 / "source_split.csv")
    merged = split.merge(entries, left_on="image", right_on="Image Index", how="inner")
    assert len(merged) == len(split)

    with pytest.raises(ValueError, match="appear in more than one split"):
        check_patient_leakage(merged["Patient ID"].astype(str), merged["split"])

    with pytest.raises(PatientLeakageError) as info:
        build_nih_datalist(NIH_CSV, NIH1000 / "images", split_file=NIH1000 / "source_split.csv")
    assert "source_split.csv" in str(info.value)
    leaky_patient = str(info.value).split("e.g. ")[1].split(" ")[0]
    assert merged.loc[merged["Patient ID"].astype(str) == leaky_patient, "split"].nunique() > 1

    kept = build_nih_datalist(NIH_CSV, NIH1000 / "images", split_file=NIH1000 / "source_split.csv", allow_leakage=True)
    official = dict(
        zip(
            split["image"],
            split["split"].map({"train": "training", "valid": "validation", "test": "test"}),
            strict=True,
        )
    )
    assert split_of(kept) == official


def test_load_datalist_refuses_a_leaky_file(tmp_path):
    datalist = {
        "name": "x",
        "labels": ["a"],
        "label_set": None,
        "training": [{"image": "a.png", "label": [1.0], "patient": "p"}],
        "validation": [],
        "test": [{"image": "b.png", "label": [0.0], "patient": "p"}],
    }
    path = tmp_path / "leaky.json"
    path.write_text(json.dumps(datalist))
    with pytest.raises(ValueError, match="leaky.json"):
        load_datalist(path)
    with pytest.raises(ValueError):
        check_datalist_leakage(datalist)
    loaded = load_datalist(path, allow_leakage=True)
    assert loaded["training"][0]["image"] == str(tmp_path.resolve() / "a.png")


# --------------------------------------------------------------------------------------------------------------------
# CXR-LT


def write_cxr_lt(tmp_path: Path, n_patients: int = 60, *, path_column: str = "fpath", seed: int = 0, split=None):
    rng = np.random.default_rng(seed)
    records = []
    for subject in range(10_000_000, 10_000_000 + n_patients):
        for study in range(int(rng.integers(1, 4))):
            dicom = f"{subject:x}{study:04d}"
            record = {
                "dicom_id": dicom,
                "subject_id": subject,
                "study_id": 50_000_000 + subject % 1000 * 10 + study,
                path_column: f"files/p{str(subject)[:2]}/p{subject}/s{study}/{dicom}.jpg",
            }
            record.update({label: int(rng.random() < 0.2) for label in LT_LABELS})
            records.append(record)
    frame = pd.DataFrame(records)
    if split is not None:
        frame["split"] = split(frame)
    # Label columns in an order different from the label set, to show that the label set decides the order.
    columns = ["dicom_id", "subject_id", "study_id", path_column, *reversed(LT_LABELS)]
    columns += ["split"] if split is not None else []
    csv_path = tmp_path / "cxr_lt_train.csv"
    frame[columns].to_csv(csv_path, index=False)
    root = tmp_path / "mimic"
    for relative in frame[path_column]:
        touch(root / relative)
    return csv_path, root, frame


def test_cxr_lt_builds_labels_in_label_set_order(tmp_path):
    csv_path, root, frame = write_cxr_lt(tmp_path)
    datalist = build_cxr_lt_datalist(csv_path, root)

    assert datalist["labels"] == list(LT_LABELS)
    assert datalist["label_set"] == "cxr_lt_2023"
    table = frame.set_index(frame["fpath"].map(lambda p: str((root / p).resolve())))
    assert set(table.index) == {item["image"] for item in all_items(datalist)}
    for item in all_items(datalist):
        assert item["label"] == [float(table.loc[item["image"], label]) for label in LT_LABELS]
        assert item["patient"] == str(table.loc[item["image"], "subject_id"])


def test_cxr_lt_accepts_a_path_column_and_drops_missing_images(tmp_path, caplog):
    csv_path, root, frame = write_cxr_lt(tmp_path, path_column="path")
    (root / frame["path"].iloc[0]).unlink()
    with caplog.at_level(logging.WARNING):
        datalist = build_cxr_lt_datalist(csv_path, root)
    assert len(all_items(datalist)) == len(frame) - 1
    assert any("dropped 1 of" in record.getMessage() for record in caplog.records)


def test_cxr_lt_missing_label_columns_are_listed(tmp_path):
    csv_path, root, _ = write_cxr_lt(tmp_path, n_patients=3)
    with pytest.raises(ValueError) as info:
        build_cxr_lt_datalist(csv_path, root, label_set="cxr_lt_2024")
    message = str(info.value)
    assert "cxr_lt_train.csv" in message and "Adenopathy" in message and "columns found" in message


def test_cxr_lt_official_split_is_kept(tmp_path):
    def by_patient(frame):
        return np.where(
            frame["subject_id"] % 5 == 0, "test", np.where(frame["subject_id"] % 5 == 1, "validate", "train")
        )

    csv_path, root, frame = write_cxr_lt(tmp_path, split=by_patient)
    datalist = build_cxr_lt_datalist(csv_path, root, split_column="split")
    expected = {
        Path(p).name: {"train": "training", "validate": "validation", "test": "test"}[s]
        for p, s in zip(frame["fpath"], frame["split"], strict=True)
    }
    assert split_of(datalist) == expected
    assert datalist["metadata"]["split"]["method"] == "official"


def test_official_split_without_validation_gets_one_carved_from_training(tmp_path):
    def no_validation(frame):
        return np.where(frame["subject_id"] % 4 == 0, "test", "train")

    csv_path, root, frame = write_cxr_lt(tmp_path, n_patients=200, split=no_validation)
    datalist = build_cxr_lt_datalist(csv_path, root, split_column="split", val_fraction=0.1)
    official_test = {Path(p).name for p, s in zip(frame["fpath"], frame["split"], strict=True) if s == "test"}
    assert {Path(i["image"]).name for i in datalist["test"]} == official_test
    assert len(datalist["validation"]) / len(frame) == pytest.approx(0.1, abs=0.03)
    check_datalist_leakage(datalist)


def test_leaky_official_split_is_refused_unless_allowed(tmp_path, caplog):
    def by_row(frame):
        return np.where(np.arange(len(frame)) % 2 == 0, "train", "test")

    csv_path, root, _ = write_cxr_lt(tmp_path, split=by_row)
    with pytest.raises(PatientLeakageError, match="--allow-patient-overlap"):
        build_cxr_lt_datalist(csv_path, root, split_column="split")
    with caplog.at_level(logging.WARNING):
        datalist = build_cxr_lt_datalist(csv_path, root, split_column="split", allow_leakage=True)
    assert datalist["training"] and datalist["test"]
    assert any("more than one split" in record.getMessage() for record in caplog.records)


def test_unknown_split_names_are_refused(tmp_path):
    csv_path, root, _ = write_cxr_lt(tmp_path, n_patients=5, split=lambda f: ["holdout"] * len(f))
    with pytest.raises(ValueError, match="holdout"):
        build_cxr_lt_datalist(csv_path, root, split_column="split")


# --------------------------------------------------------------------------------------------------------------------
# CheXpert

CHEXPERT_CELLS = ["1.0", "0.0", "-1.0", ""]


def write_chexpert(tmp_path: Path, n_patients: int = 12, *, seed: int = 0):
    """A CheXpert-style train.csv inside its release folder, with every cell kind in every column."""
    rng = np.random.default_rng(seed)
    release = tmp_path / "CheXpert-v1.0-small"
    rows = []
    for patient in range(1, n_patients + 1):
        for view, orientation in (("view1_frontal", "Frontal"), ("view2_lateral", "Lateral")):
            path = f"CheXpert-v1.0-small/train/patient{patient:05d}/study1/{view}.jpg"
            cells = [CHEXPERT_CELLS[int(rng.integers(0, 4))] for _ in CHEXPERT_LABELS]
            rows.append([path, "Female", 60, orientation, "AP" if orientation == "Frontal" else "", *cells])
            touch(tmp_path / path)
    csv_path = release / "train.csv"
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS])
        writer.writerows(rows)
    return csv_path, rows


@pytest.mark.parametrize("uncertain", ["ignore", "zeros", "ones"])
@pytest.mark.parametrize("blank", ["zeros", "ignore"])
def test_chexpert_uncertain_and_blank_policies(tmp_path, uncertain, blank):
    csv_path, rows = write_chexpert(tmp_path)
    datalist = build_chexpert_datalist(csv_path, uncertain=uncertain, blank=blank, val_fraction=0.2, test_fraction=0.2)

    policy = {"ignore": -1.0, "zeros": 0.0, "ones": 1.0}
    by_path = {item["image"]: item for item in all_items(datalist)}
    assert len(by_path) == len(rows)
    for row in rows:
        item = by_path[str((tmp_path / row[0]).resolve())]
        expected = []
        for cell in row[5:]:
            if cell == "":
                expected.append(policy[blank])
            elif cell == "-1.0":
                expected.append(policy[uncertain])
            else:
                expected.append(float(cell))
        assert item["label"] == expected
        assert item["patient"] == row[0].split("/")[2]
    assert datalist["labels"] == list(CHEXPERT_LABELS)

    table = count_table(datalist)
    values = np.array([item["label"] for item in all_items(datalist)])
    assert table.loc[list(CHEXPERT_LABELS), list(SPLITS)].to_numpy().sum() == (values == 1.0).sum()
    has_unknown = bool((values == -1.0).any())
    assert ("training unknown" in table.columns) == has_unknown


def test_chexpert_keeps_patients_together_and_filters_frontal(tmp_path):
    csv_path, rows = write_chexpert(tmp_path, n_patients=30)
    datalist = build_chexpert_datalist(csv_path, frontal_only=True)
    items = all_items(datalist)
    assert len(items) == 30
    assert all(item["image"].endswith("view1_frontal.jpg") for item in items)
    check_datalist_leakage(build_chexpert_datalist(csv_path))


def test_chexpert_rejects_unexpected_cells(tmp_path):
    csv_path, _ = write_chexpert(tmp_path, n_patients=2)
    text = csv_path.read_text().splitlines()
    cells = text[1].split(",")
    cells[5] = "2.0"
    text[1] = ",".join(cells)
    csv_path.write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match=r"No Finding.*2\.0"):
        build_chexpert_datalist(csv_path)


# --------------------------------------------------------------------------------------------------------------------
# Generic CSV


def test_csv_with_label_columns_and_absolute_paths(tmp_path):
    images = tmp_path / "imgs"
    rows = []
    for i in range(40):
        image = images / f"img{i}.png"
        touch(image)
        rows.append(
            {"file": str(image), "pid": f"P{i // 2}", "b": i % 2, "a": int(i % 3 == 0), "c": "" if i % 5 else -1}
        )
    csv_path = tmp_path / "anything.csv"
    pd.DataFrame(rows).to_csv(csv_path, index=False)

    datalist = build_csv_datalist(
        csv_path, path_column="file", patient_column="pid", label_columns=["a", "b", "c"], blank="ignore"
    )
    assert datalist["labels"] == ["a", "b", "c"]
    assert datalist["name"] == "anything"
    by_image = {item["image"]: item for item in all_items(datalist)}
    for row in rows:
        item = by_image[row["file"]]
        assert item["label"] == [float(row["a"]), float(row["b"]), -1.0]
        assert item["patient"] == row["pid"]
    check_datalist_leakage(datalist)


def test_csv_patient_pattern_and_missing_patient(tmp_path):
    csv_path = tmp_path / "t.csv"
    pd.DataFrame({"p": ["x/sub01/a.png", "x/sub02/b.png", "x/other/c.png"], "L": [1, 0, 1]}).to_csv(
        csv_path, index=False
    )
    with pytest.raises(ValueError, match="other"):
        build_csv_datalist(
            csv_path, path_column="p", patient_pattern=r"(sub\d+)", label_columns=["L"], check_files=False
        )


# --------------------------------------------------------------------------------------------------------------------
# Files and the command line


def test_write_and_load_round_trip_with_relative_paths(tmp_path):
    datalist = {
        "name": "tiny",
        "labels": ["a", "b"],
        "label_set": None,
        "training": [{"image": "x/1.png", "label": [1.0, -1.0], "patient": "p1"}],
        "validation": [{"image": "/abs/2.png", "label": [0.0, 1.0], "patient": "p2", "view": "PA"}],
        "test": [],
        "metadata": {"note": "é"},
    }
    path = write_datalist(datalist, tmp_path / "out" / "dl.json")
    assert json.loads(path.read_text()) == datalist
    loaded = load_datalist(path)
    assert loaded["training"][0]["image"] == str((tmp_path / "out" / "x" / "1.png").resolve())
    assert loaded["validation"][0]["image"] == "/abs/2.png"
    assert loaded["training"][0]["label"] == [1.0, -1.0]


def test_load_datalist_checks_label_length(tmp_path):
    path = tmp_path / "dl.json"
    path.write_text(json.dumps({"labels": ["a", "b"], "training": [{"image": "a", "label": [1.0]}]}))
    with pytest.raises(ValueError, match="length"):
        load_datalist(path)


def test_cli_prepare_nih_writes_datalist_and_prints_table(tmp_path, capsys, caplog):
    rows = [("00000001_000.png", "Mass", 1), ("00000002_000.png", "No Finding", 2), ("00000003_000.png", "Mass", 3)]
    csv_path, images = write_nih(tmp_path, rows)
    out = tmp_path / "dl.json"
    with caplog.at_level(logging.WARNING):
        code = main(["prepare", "nih", "--images", str(images), "--labels", str(csv_path), "--out", str(out),
                     "--val-fraction", "0", "--test-fraction", "0.3", "--seed", "1"])  # fmt: skip
    assert code == 0
    datalist = load_datalist(out)
    assert sum(len(datalist[split]) for split in SPLITS) == 3
    printed = capsys.readouterr().out
    assert "Mass" in printed and "Hernia" in printed and "training" in printed
    assert any(
        "no positive image" in record.getMessage() and "Hernia" in record.getMessage() for record in caplog.records
    )


def test_cli_bad_csv_returns_2_and_names_the_file(tmp_path, capsys):
    bad = tmp_path / "broken_labels.csv"
    bad.write_text("foo,bar\n1,2\n")
    code = main(["prepare", "nih", "--images", str(tmp_path), "--labels", str(bad), "--out", str(tmp_path / "o.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "broken_labels.csv" in err and "Finding Labels" in err
    assert not (tmp_path / "o.json").exists()


def test_cli_csv_and_overlap_flag(tmp_path, capsys):
    csv_path = tmp_path / "t.csv"
    frame = pd.DataFrame(
        {"f": [f"{i}.png" for i in range(6)], "pid": ["a", "a", "b", "b", "c", "c"], "y": [1, 0, 1, 0, 1, 0]}
    )
    frame["split"] = ["train", "test", "train", "train", "test", "test"]
    frame.to_csv(csv_path, index=False)
    args = ["prepare", "csv", "--labels", str(csv_path), "--path-column", "f", "--patient-column", "pid",
            "--label-columns", "y", "--split-column", "split", "--no-check-files",
            "--out", str(tmp_path / "o.json")]  # fmt: skip
    assert main(args) == 2
    assert "patient" in capsys.readouterr().err
    assert main([*args, "--allow-patient-overlap"]) == 0


@needs_nih1000
def test_prepare_nih_on_real_nih1000(tmp_path, capsys):
    out = tmp_path / "nih1000.json"
    code = main(["prepare", "nih", "--images", str(NIH1000 / "images"), "--labels", str(NIH_CSV), "--out", str(out)])
    assert code == 0
    datalist = load_datalist(out)
    items = all_items(datalist)
    assert len(items) == 1000
    assert all(Path(item["image"]).is_file() for item in items)
    assert len(datalist["test"]) / 1000 == pytest.approx(0.2, abs=0.05)
    check_datalist_leakage(datalist)

    # Positives per finding must match a direct reading of the CSV.
    entries = pd.read_csv(NIH_CSV)
    values = np.array([item["label"] for item in items])
    for position, label in enumerate(datalist["labels"]):
        expected = entries["Finding Labels"].str.split("|").map(lambda found, label=label: label in found).sum()
        assert values[:, position].sum() == expected
    assert "Effusion" in capsys.readouterr().out
