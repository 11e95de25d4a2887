"""DICOM decoding: LUTs, polarity, bit depths, padding, compressed syntaxes and policies, checked pixel by pixel
against values computed here from the DICOM definitions."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.io import ImageReadError, read_xray
from pipeline.io.writers import write_dicom

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples"
RNG = np.random.default_rng(20240601)
SHAPE = (40, 56)  # rows != cols, so a transpose cannot pass unnoticed; >= 32 for the JPEG 2000 encoder


def stored_12bit() -> np.ndarray:
    return RNG.integers(0, 4096, SHAPE).astype(np.uint16)


def linear_window(values: np.ndarray, center: float, width: float, y_min: float, y_max: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 'LINEAR' windowing, written out independently."""
    values = values.astype(np.float64)
    low = center - 0.5 - (width - 1) / 2
    high = center - 0.5 + (width - 1) / 2
    out = ((values - (center - 0.5)) / (width - 1) + 0.5) * (y_max - y_min) + y_min
    out[values <= low] = y_min
    out[values > high] = y_max
    return out


def test_unused_high_bits_are_ignored(tmp_path):
    image = stored_12bit()
    overlay_bits = RNG.integers(0, 16, SHAPE).astype(np.uint16) << 12
    path = write_dicom(tmp_path / "a.dcm", image | overlay_bits, bits_stored=12)

    result = read_xray(path)

    assert result.dtype == np.float32 and result.shape == SHAPE
    np.testing.assert_array_equal(result, image.astype(np.float32))


def test_signed_12bit_is_sign_extended(tmp_path):
    values = RNG.integers(-2048, 2048, SHAPE)
    raw = (values & 0x0FFF).astype(np.uint16) | (RNG.integers(0, 16, SHAPE).astype(np.uint16) << 12)
    path = write_dicom(tmp_path / "s.dcm", raw.view(np.int16), bits_stored=12)

    np.testing.assert_array_equal(read_xray(path), values.astype(np.float32))


def test_8bit_stored(tmp_path):
    image = RNG.integers(0, 256, SHAPE).astype(np.uint8)
    path = write_dicom(tmp_path / "b.dcm", image)

    np.testing.assert_array_equal(read_xray(path), image.astype(np.float32))


def test_rescale_slope_and_intercept(tmp_path):
    image = stored_12bit()
    attributes = {"RescaleSlope": 2, "RescaleIntercept": -1024}
    path = write_dicom(tmp_path / "r.dcm", image, bits_stored=12, attributes=attributes)

    np.testing.assert_array_equal(read_xray(path), (image * 2.0 - 1024).astype(np.float32))


def test_window_center_width_and_apply_voi_false(tmp_path):
    image = stored_12bit()
    attributes = {"WindowCenter": 1500, "WindowWidth": 1001}
    path = write_dicom(tmp_path / "w.dcm", image, bits_stored=12, attributes=attributes)

    expected = linear_window(image, 1500, 1001, 0, 4095)
    np.testing.assert_allclose(read_xray(path), expected.astype(np.float32), rtol=0, atol=1e-3)
    np.testing.assert_array_equal(read_xray(path, apply_voi=False), image.astype(np.float32))


def test_window_after_rescale_uses_rescaled_range(tmp_path):
    image = stored_12bit()
    attributes = {"RescaleSlope": 1, "RescaleIntercept": -1000, "WindowCenter": 0, "WindowWidth": 2000}
    path = write_dicom(tmp_path / "wr.dcm", image, bits_stored=12, attributes=attributes)

    expected = linear_window(image - 1000.0, 0, 2000, -1000, 3095)
    np.testing.assert_allclose(read_xray(path), expected.astype(np.float32), rtol=0, atol=1e-3)


def add_voi_lut(path: Path, lut: np.ndarray, first_map: int, bits: int = 16) -> None:
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(path)
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [len(lut), first_map, bits])
    item.add_new("LUTData", "US", [int(v) for v in lut])
    ds.VOILUTSequence = Sequence([item])
    ds.WindowCenter, ds.WindowWidth = 100, 50  # must lose to the LUT
    ds.save_as(path)


def test_voi_lut_sequence(tmp_path):
    image = stored_12bit()
    path = write_dicom(tmp_path / "v.dcm", image, bits_stored=12)
    first_map, n_entries = 1000, 2048
    lut = (np.sqrt(np.arange(n_entries) / (n_entries - 1)) * 65535).astype(np.uint16)
    add_voi_lut(path, lut, first_map)

    expected = lut[np.clip(image.astype(np.int64) - first_map, 0, n_entries - 1)]
    np.testing.assert_array_equal(read_xray(path), expected.astype(np.float32))
    np.testing.assert_array_equal(read_xray(path, apply_voi=False), image.astype(np.float32))


def test_monochrome1_is_inverted_about_the_stored_range(tmp_path):
    image = stored_12bit()
    path = write_dicom(tmp_path / "m1.dcm", image, bits_stored=12, photometric="MONOCHROME1")

    np.testing.assert_array_equal(read_xray(path), (4095.0 - image).astype(np.float32))


def test_monochrome1_with_window_is_inverted_about_the_window_output(tmp_path):
    image = stored_12bit()
    attributes = {"WindowCenter": 2000, "WindowWidth": 3001}
    path = write_dicom(tmp_path / "m1w.dcm", image, bits_stored=12, photometric="MONOCHROME1", attributes=attributes)

    expected = 4095.0 - linear_window(image, 2000, 3001, 0, 4095)
    np.testing.assert_allclose(read_xray(path), expected.astype(np.float32), rtol=0, atol=1e-3)


def test_monochrome1_with_voi_lut_is_inverted_about_the_lut_range(tmp_path):
    image = stored_12bit()
    path = write_dicom(tmp_path / "m1v.dcm", image, bits_stored=12, photometric="MONOCHROME1")
    lut = np.linspace(0, 1023, 4096).astype(np.uint16)
    add_voi_lut(path, lut, 0, bits=10)

    np.testing.assert_array_equal(read_xray(path), (1023.0 - lut[image]).astype(np.float32))


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_pixel_padding_value_set_to_image_minimum(tmp_path, photometric):
    image = RNG.integers(100, 4000, SHAPE).astype(np.uint16)
    image[:5, :] = 0  # collimator padding along the top
    path = write_dicom(
        tmp_path / "p.dcm", image, bits_stored=12, photometric=photometric, attributes={"PixelPaddingValue": 0}
    )

    display = image.astype(np.float64) if photometric == "MONOCHROME2" else 4095.0 - image
    expected = display.copy()
    expected[:5, :] = display[5:, :].min()
    np.testing.assert_array_equal(read_xray(path), expected.astype(np.float32))


def test_pixel_padding_range_limit(tmp_path):
    image = RNG.integers(100, 4000, SHAPE).astype(np.uint16)
    image[:, :3] = RNG.integers(4090, 4096, (SHAPE[0], 3))
    attributes = {"PixelPaddingValue": 4095, "PixelPaddingRangeLimit": 4090}
    path = write_dicom(tmp_path / "pr.dcm", image, bits_stored=12, attributes=attributes)

    expected = image.astype(np.float32)
    expected[:, :3] = image[:, 3:].min()
    np.testing.assert_array_equal(read_xray(path), expected)


def test_signed_padding_value_written_unsigned(tmp_path):
    import pydicom

    values = RNG.integers(-1000, 1000, SHAPE).astype(np.int16)
    values[-2:, :] = -32768
    path = write_dicom(tmp_path / "sp.dcm", values)
    ds = pydicom.dcmread(path)
    ds.add_new("PixelPaddingValue", "US", 32768)  # the bit pattern of -32768, as some writers store it
    ds.save_as(path)

    expected = values.astype(np.float32)
    expected[-2:, :] = values[:-2, :].min()
    np.testing.assert_array_equal(read_xray(path), expected)


@pytest.mark.parametrize("syntax", ["rle", "jpeg-lossless", "jpeg-ls", "jpeg2000"])
@pytest.mark.parametrize("bits_stored", [8, 12, 16])
def test_lossless_syntaxes_decode_exactly(tmp_path, syntax, bits_stored):
    if syntax == "jpeg-lossless":
        pytest.importorskip("imagecodecs", reason="JPEG Lossless test files are encoded with imagecodecs")
    if syntax == "jpeg-ls":
        pytest.importorskip("jpeg_ls", reason="JPEG-LS test files are encoded with pyjpegls")
    dtype = np.uint8 if bits_stored == 8 else np.uint16
    image = RNG.integers(0, 2**bits_stored, SHAPE).astype(dtype)
    path = write_dicom(tmp_path / f"{syntax}.dcm", image, bits_stored=bits_stored, syntax=syntax)

    np.testing.assert_array_equal(read_xray(path), image.astype(np.float32))


def test_signed_rle(tmp_path):
    values = RNG.integers(-2048, 2048, SHAPE).astype(np.int16)
    path = write_dicom(tmp_path / "srle.dcm", values, bits_stored=12, syntax="rle")

    np.testing.assert_array_equal(read_xray(path), values.astype(np.float32))


def test_jpeg_baseline_matches_pillow_decode(tmp_path):
    import io

    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    image = RNG.integers(0, 256, SHAPE).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="JPEG", quality=90)
    path = write_dicom(tmp_path / "jb.dcm", image)
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(path)

    buffer.seek(0)
    expected = np.asarray(Image.open(buffer)).astype(np.float32)
    np.testing.assert_allclose(read_xray(path), expected, atol=1)  # decoders may differ by one on rounding


def test_multiframe_rejected_by_default_first_frame_on_request(tmp_path):
    frames = np.stack([stored_12bit(), stored_12bit()])
    path = write_dicom(tmp_path / "mf.dcm", frames, bits_stored=12)

    with pytest.raises(ImageReadError, match="multi-frame DICOM with 2 frames"):
        read_xray(path)
    np.testing.assert_array_equal(read_xray(path, multiframe="first"), frames[0].astype(np.float32))


def test_rgb_dicom_reduced_to_luminance(tmp_path):
    import pydicom

    rgb = RNG.integers(0, 256, (*SHAPE, 3)).astype(np.uint8)
    path = write_dicom(tmp_path / "rgb.dcm", rgb[..., 0])
    ds = pydicom.dcmread(path)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.PixelData = rgb.tobytes()
    ds.save_as(path)

    expected = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(read_xray(path), expected.astype(np.float32), rtol=1e-6)


def test_body_part_policies(tmp_path, caplog):
    image = stored_12bit()
    path = write_dicom(tmp_path / "hand.dcm", image, bits_stored=12, attributes={"BodyPartExamined": "HAND"})

    with caplog.at_level(logging.WARNING, logger="pipeline.io"):
        np.testing.assert_array_equal(read_xray(path), image.astype(np.float32))
    assert any("HAND" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.io"):
        read_xray(path, body_part_policy="ignore")
    assert not caplog.records

    with pytest.raises(ImageReadError, match="BodyPartExamined 'HAND' is not a chest body part"):
        read_xray(path, body_part_policy="reject")
    np.testing.assert_array_equal(
        read_xray(path, body_part_policy="reject", chest_body_parts=("CHEST", "HAND")), image.astype(np.float32)
    )


def test_invalid_options_raise_value_error(tmp_path):
    path = write_dicom(tmp_path / "o.dcm", stored_12bit(), bits_stored=12)
    with pytest.raises(ValueError, match="body_part_policy"):
        read_xray(path, body_part_policy="maybe")
    with pytest.raises(ValueError, match="multiframe"):
        read_xray(path, multiframe="all")


def test_dicom_without_preamble_is_read(tmp_path):
    import pydicom

    image = stored_12bit()
    path = write_dicom(tmp_path / "full.dcm", image, bits_stored=12)
    ds = pydicom.dcmread(path)
    del ds.file_meta
    ds.preamble = None
    bare = tmp_path / "bare"
    ds.save_as(bare, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert bare.read_bytes()[128:132] != b"DICM"

    np.testing.assert_array_equal(read_xray(bare), image.astype(np.float32))


# --- real data -----------------------------------------------------------------------------------------------------


def pydicom_data_file(name: str) -> str:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)  # never reach the network
    if path is None:
        pytest.skip(f"{name} is not installed locally (pip install pydicom-data)")
    return path


@pytest.mark.parametrize(("reference", "other"), [("RG1_UNCR.dcm", "RG1_J2KR.dcm"), ("RG1_UNCI.dcm", "RG1_J2KI.dcm")])
def test_pydicom_data_chest_cr_encodings_agree(reference, other):
    expected = read_xray(pydicom_data_file(reference))
    np.testing.assert_array_equal(read_xray(pydicom_data_file(other)), expected)


def test_pydicom_data_chest_cr_is_monochrome1_in_display_polarity():
    import pydicom

    path = pydicom_data_file("RG1_UNCR.dcm")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.BitsStored == 15
    stored = ds.pixel_array.astype(np.float64)

    np.testing.assert_array_equal(read_xray(path, apply_voi=False), (32767 - stored).astype(np.float32))
    windowed = linear_window(stored, float(ds.WindowCenter), float(ds.WindowWidth), 0, 32767)
    np.testing.assert_allclose(read_xray(path), (32767 - windowed).astype(np.float32), rtol=0, atol=1e-2)


@pytest.fixture
def samples() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip(f"shared sample data folder {SAMPLES} is absent")
    return SAMPLES


def test_siim_jpeg_baseline_and_its_monochrome1_twin(samples):
    mono2 = read_xray(samples / "siim_chest_pa_jpeg_baseline.dcm")
    mono1 = read_xray(samples / "siim_chest_pa_relabelled_monochrome1.dcm")

    assert mono2.shape == (1024, 1024) and mono2.dtype == np.float32
    assert mono2.min() == 0 and mono2.max() == 255  # so "inverse" = max + min - value = 255 - value
    np.testing.assert_array_equal(mono1, 255 - mono2)
    # Display polarity of a PA chest film: the lungs (centre of each half) are darker than the spine (centre).
    rows = slice(350, 650)
    lungs = (mono2[rows, 250:350].mean() + mono2[rows, 674:774].mean()) / 2
    assert lungs < mono2[rows, 482:542].mean()


@pytest.mark.parametrize("name", ["00000001_000.png", "00027426_000.png"])
def test_nih_pngs(samples, name):
    result = read_xray(samples / name)
    expected = np.asarray(Image.open(samples / name).convert("L")).astype(np.float32)
    assert result.shape == (512, 512)
    np.testing.assert_array_equal(result, expected)
