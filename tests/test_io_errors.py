"""Bad files: every failure is an ImageReadError naming the file and the reason; the 'stop' and 'skip' policies;
the skip CSV; and no identifying DICOM value in any message, traceback, log line or warning."""

from __future__ import annotations

import csv
import logging
import re
import traceback
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    BasicTextSRStorage,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

import pipeline.io.dicom as dicom_module
from pipeline.io import ImageReadError, read_xray
from pipeline.io.writers import write_dicom

MPEG2_MAIN_PROFILE = "1.2.840.10008.1.2.4.100"
IDENTIFYING = {
    "PatientName": "Doe^Jane",
    "PatientID": "PID-987654",
    "PatientBirthDate": "19610203",
    "AccessionNumber": "ACC-55501",
    "InstitutionName": "Saint Gerontius Infirmary",
    "ReferringPhysicianName": "Quill^Ambrose",
    "StudyID": "STUDY-4242",
}
FRAGMENTS = ("Doe", "Jane", "PID-987654", "19610203", "ACC-55501", "Gerontius", "Quill", "Ambrose", "STUDY-4242")


def image12() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 4096, (48, 40)).astype(np.uint16)


def non_image_dicom(path: Path, sop_class: str, **attributes) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    for keyword, value in {**IDENTIFYING, **attributes}.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def with_transfer_syntax(path: Path, syntax: str, fragment: bytes) -> Path:
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([fragment])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.save_as(path)
    return path


def truncate(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def make_bad_files(folder: Path, identifying: dict | None = None) -> dict[str, tuple[Path, str]]:
    """Each bad case: (path, regular expression the reason must match)."""
    attrs = dict(identifying or {})
    cases: dict[str, tuple[Path, str]] = {}
    cases["missing"] = (folder / "missing.dcm", "file not found")
    (folder / "empty.dcm").write_bytes(b"")
    cases["zero_byte"] = (folder / "empty.dcm", r"file is empty \(0 bytes\)")
    plain = write_dicom(folder / "cut_native.dcm", image12(), bits_stored=12, attributes=attrs)
    cases["truncated_dicom"] = (truncate(plain, 0.7), "pixel data cannot be decoded.*less than expected")
    lossless = write_dicom(folder / "cut_lossless.dcm", image12(), bits_stored=12, syntax="rle", attributes=attrs)
    cases["truncated_compressed_dicom"] = (truncate(lossless, 0.8), "file is truncated")
    Image.fromarray(image12().astype(np.uint8)).save(folder / "cut.png")
    cases["truncated_png"] = (truncate(folder / "cut.png", 0.5), "image data cannot be decoded")
    Image.fromarray(image12().astype(np.uint8)).save(folder / "cut.jpg")
    cases["truncated_jpeg"] = (truncate(folder / "cut.jpg", 0.5), "image data cannot be decoded")
    (folder / "notes.png").write_text("radiology notes, not pixels\n")
    cases["text_as_png"] = (folder / "notes.png", r"not a DICOM, PNG or JPEG file")
    (folder / "notes.dcm").write_text("radiology notes, not pixels\n" * 20)
    cases["text_as_dicom"] = (folder / "notes.dcm", r"not a DICOM, PNG or JPEG file|DICOM header is truncated")
    Image.fromarray(image12().astype(np.uint8)).save(folder / "scan.gif")
    cases["gif"] = (folder / "scan.gif", r"not a DICOM, PNG or JPEG file")
    mpeg = write_dicom(folder / "video.dcm", image12().astype(np.uint8), attributes=attrs)
    cases["unsupported_compression"] = (
        with_transfer_syntax(mpeg, MPEG2_MAIN_PROFILE, b"\x00\x00\x01\xb3" + b"\x00" * 60),
        "unsupported compression: no pixel data decoder for transfer syntax 'MPEG2",
    )
    corrupt = write_dicom(folder / "corrupt_jpeg.dcm", image12().astype(np.uint8), attributes=attrs)
    cases["corrupt_jpeg_stream"] = (
        with_transfer_syntax(corrupt, JPEGBaseline8Bit, b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2),
        "pixel data cannot be decoded",
    )
    frames = np.stack([image12(), image12()])
    cases["multi_frame"] = (
        write_dicom(folder / "cine.dcm", frames, bits_stored=12, attributes=attrs),
        "multi-frame DICOM with 2 frames",
    )
    cases["structured_report"] = (
        non_image_dicom(folder / "report.dcm", BasicTextSRStorage, **attrs),
        "no PixelData: not an image.*Basic Text SR Storage",
    )
    cases["encapsulated_pdf"] = (
        non_image_dicom(folder / "letter.dcm", EncapsulatedPDFStorage, EncapsulatedDocument=b"%PDF-1.4\n", **attrs),
        "no PixelData: not an image.*Encapsulated PDF Storage",
    )
    (folder / "a_folder.png").mkdir()
    cases["directory"] = (folder / "a_folder.png", "is a directory")
    return cases


BAD_CASES = [
    "missing",
    "zero_byte",
    "truncated_dicom",
    "truncated_compressed_dicom",
    "truncated_png",
    "truncated_jpeg",
    "text_as_png",
    "text_as_dicom",
    "gif",
    "unsupported_compression",
    "corrupt_jpeg_stream",
    "multi_frame",
    "structured_report",
    "encapsulated_pdf",
    "directory",
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    return make_bad_files(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_file_raises_image_read_error_naming_file_and_reason(bad_files, case):
    path, reason = bad_files[case]
    with pytest.raises(ImageReadError) as caught:
        read_xray(path)
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.path == str(path)
    assert str(error).startswith(f"{path}: ")
    assert re.search(reason, error.reason), error.reason


def test_missing_decoder_plugin_is_reported(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "jls.dcm", image12(), bits_stored=12, syntax="rle")

    class Unavailable:
        is_available = False
        missing_dependencies = ["pylibjpeg-rle - requires pylibjpeg-rle>=2.0"]

    monkeypatch.setattr(dicom_module, "get_decoder", lambda uid: Unavailable())
    with pytest.raises(ImageReadError, match="no decoder installed for transfer syntax 'RLE Lossless'.*pylibjpeg-rle"):
        read_xray(path)


def test_error_survives_pickling():
    import pickle

    error = pickle.loads(pickle.dumps(ImageReadError("/x/y.dcm", "file not found")))
    assert (error.path, error.reason, str(error)) == ("/x/y.dcm", "file not found", "/x/y.dcm: file not found")


# --- identifying values never leak -------------------------------------------------------------------------------


def assert_no_identifying_text(text: str) -> None:
    leaked = [fragment for fragment in FRAGMENTS if fragment in text]
    assert not leaked, f"identifying values {leaked} in: {text}"


def test_no_identifying_values_in_errors_logs_or_warnings(tmp_path, caplog):
    cases = make_bad_files(tmp_path, identifying=IDENTIFYING)
    hand_attributes = {**IDENTIFYING, "BodyPartExamined": "HAND"}
    hand = write_dicom(tmp_path / "hand.dcm", image12(), bits_stored=12, attributes=hand_attributes)
    checks = [(path, {}) for name, (path, _) in cases.items() if name not in ("missing", "zero_byte", "directory")]
    checks.append((hand, {"body_part_policy": "reject"}))

    texts = []
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        read_xray(hand)  # body_part_policy="warn" logs a warning
        for path, options in checks:
            assert b"Doe^Jane" in Path(path).read_bytes() or path.suffix != ".dcm" or path.name == "notes.dcm"
            with pytest.raises(ImageReadError) as caught:
                read_xray(path, **options)
            texts.append("".join(traceback.format_exception(caught.value)))
    texts.extend(record.getMessage() for record in caplog.records)
    texts.extend(str(warning.message) for warning in caught_warnings)
    assert any("HAND" in record.getMessage() for record in caplog.records)
    for text in texts:
        assert_no_identifying_text(text)


def test_decoder_message_quoting_a_name_is_redacted_and_not_chained(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "quoted.dcm", image12(), bits_stored=12, attributes=IDENTIFYING)

    def failing_pixel_array(self):
        raise RuntimeError("decoder choked near 'Doe^Jane' and PID-987654")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(failing_pixel_array))
    with pytest.raises(ImageReadError, match="<redacted>") as caught:
        read_xray(path)
    assert caught.value.__cause__ is None
    assert_no_identifying_text("".join(traceback.format_exception(caught.value)))


# --- policies -----------------------------------------------------------------------------------------------------


def good_items(folder: Path, count: int) -> list[dict]:
    items = []
    for index in range(count):
        image = np.full((20, 24), index * 10, np.uint8)
        image[0, 0] = 255
        path = write_dicom(folder / f"good_{index}.dcm", image) if index % 2 else folder / f"good_{index}.png"
        if not index % 2:
            Image.fromarray(image).save(path)
        items.append({"image": str(path), "label": [float(index % 2)], "id": f"good_{index}"})
    return items


def chain():
    from monai.transforms import Compose, EnsureTyped, LoadImaged, Resized

    return Compose(
        [
            LoadImaged(keys="image", reader="pipeline.io.XRayReader", image_only=True, ensure_channel_first=True),
            Resized(keys="image", spatial_size=(8, 8)),
            EnsureTyped(keys="image", track_meta=False),
        ]
    )


@pytest.fixture(scope="module")
def mixed_items(tmp_path_factory, bad_files):
    folder = tmp_path_factory.mktemp("good")
    good = good_items(folder, 5)
    bad = [{"image": str(path), "label": [0.0], "id": name} for name, (path, _) in bad_files.items()]
    # Interleave, with a run of bad files long enough to empty a whole batch of 3.
    return good[:2] + bad[:4] + good[2:4] + bad[4:] + good[4:], good, bad


def test_stop_policy_raises_the_reader_error(mixed_items):
    from pipeline.io import SkippingDataLoader, make_dataset

    items, _, bad = mixed_items
    loader = SkippingDataLoader(make_dataset(items, chain(), bad_file_policy="stop"), batch_size=3)
    assert len(loader) == -(-len(items) // 3)
    with pytest.raises(ImageReadError) as caught:
        list(loader)
    assert caught.value.path == bad[0]["image"]
    assert caught.value.reason == "file not found"


def test_stop_policy_through_worker_processes(mixed_items):
    from pipeline.io import SkippingDataLoader, make_dataset

    items, _, bad = mixed_items
    loader = SkippingDataLoader(make_dataset(items, chain(), bad_file_policy="stop"), batch_size=3, num_workers=1)
    with pytest.raises(ImageReadError, match="file not found") as caught:
        list(loader)
    assert bad[0]["image"] in str(caught.value)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_skip_policy_drops_and_records_with_ignite(tmp_path, mixed_items, bad_files, num_workers):
    from ignite.engine import Engine

    from pipeline.io import SKIPPED_KEY, SkipLog, SkippingDataLoader, make_dataset

    items, good, bad = mixed_items
    dataset = make_dataset(items, chain(), bad_file_policy="skip")
    skip_log = SkipLog(csv_path=tmp_path / "skipped.csv")
    loader = SkippingDataLoader(dataset, batch_size=3, num_workers=num_workers, skip_log=skip_log)
    with pytest.raises(TypeError):
        len(loader)

    seen_ids, batch_sizes = [], []

    def step(engine, batch):
        assert "image" in batch, "an empty batch reached the engine"
        batch_sizes.append(batch["image"].shape[0])
        seen_ids.extend(batch["id"])
        assert isinstance(batch[SKIPPED_KEY], str)

    engine = Engine(step)
    skip_log.attach(engine)
    engine.run(loader, max_epochs=1)

    assert sorted(seen_ids) == sorted(item["id"] for item in good)
    assert skip_log.count == len(bad) == len(BAD_CASES)
    with open(tmp_path / "skipped.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["path"] for row in rows} == {item["image"] for item in bad}
    for name, (path, reason) in bad_files.items():
        (row,) = [row for row in rows if row["path"] == str(path)]
        assert re.search(reason, row["reason"]), (name, row["reason"])
        assert row["occurrences"] == "1"


def test_skip_log_counts_each_file_once_over_epochs(mixed_items):
    from pipeline.io import SkipLog, SkippingDataLoader, make_dataset

    items, good, bad = mixed_items
    skip_log = SkipLog()
    loader = SkippingDataLoader(make_dataset(items, chain(), bad_file_policy="skip"), batch_size=4)
    for _ in range(2):
        images = sum(batch["image"].shape[0] for batch in skip_log.iterate(loader))
        assert images == len(good)
    assert skip_log.count == len(bad)
    assert {record.path for record in skip_log.records} == {item["image"] for item in bad}
    with pytest.raises(ValueError, match="csv_path"):
        skip_log.write_csv()


def test_collate_of_an_all_skipped_batch_and_plain_dataloader(mixed_items):
    from torch.utils.data import DataLoader

    from pipeline.io import SKIPPED_KEY, SkipLog, collate_skipping, make_dataset, skipped_records
    from pipeline.io.skip import is_empty_batch

    _, _, bad = mixed_items
    dataset = make_dataset(bad[:3], chain(), bad_file_policy="skip")
    batch = collate_skipping([dataset[0], dataset[1]])
    assert set(batch) == {SKIPPED_KEY} and is_empty_batch(batch)
    assert [record.path for record in skipped_records(batch)] == [bad[0]["image"], bad[1]["image"]]

    skip_log = SkipLog()
    plain = DataLoader(dataset, batch_size=2, collate_fn=collate_skipping)
    assert list(skip_log.iterate(plain)) == []
    assert skip_log.count == 3


def test_skip_policy_does_not_hide_other_errors(tmp_path):
    from pipeline.io import make_dataset

    good = good_items(tmp_path, 1)

    def broken(item):
        raise KeyError("a transform bug, not a bad file")

    dataset = make_dataset(good, [broken], bad_file_policy="skip")
    with pytest.raises(RuntimeError) as caught:
        dataset[0]
    assert isinstance(caught.value.__cause__, KeyError)


def test_invalid_policy_is_rejected():
    from pipeline.io import SkipBadFiles

    with pytest.raises(ValueError, match="'ignore'"):
        SkipBadFiles([], policy="ignore")


def test_skip_logs_name_the_file_not_the_patient(tmp_path, caplog):
    from pipeline.io import make_dataset

    path = write_dicom(tmp_path / "cine.dcm", np.stack([image12()] * 2), bits_stored=12, attributes=IDENTIFYING)
    dataset = make_dataset([{"image": str(path), "label": [1.0]}], chain(), bad_file_policy="skip")
    with caplog.at_level(logging.DEBUG):
        marker = dataset[0]
    assert marker.path == str(path) and "multi-frame" in marker.reason
    assert any(str(path) in record.getMessage() for record in caplog.records)
    for record in caplog.records:
        assert_no_identifying_text(record.getMessage())


def test_records_of_trailing_empty_batches_reach_the_skip_log(mixed_items):
    from pipeline.io import SkipLog, SkippingDataLoader, make_dataset

    items, good, bad = mixed_items
    skip_log = SkipLog()
    dataset = make_dataset(good[:1] + bad[:5], chain(), bad_file_policy="skip")
    batches = list(SkippingDataLoader(dataset, batch_size=2, skip_log=skip_log))

    assert len(batches) == 1 and batches[0]["id"] == [good[0]["id"]]
    carried = {record.path for record in skipped_records_of(batches[0])}
    assert carried == {bad[0]["image"]}  # the only bad file that shared a batch with a good one
    assert {record.path for record in skip_log.records} == {item["image"] for item in bad[1:5]}


def skipped_records_of(batch):
    from pipeline.io import skipped_records

    return skipped_records(batch)
