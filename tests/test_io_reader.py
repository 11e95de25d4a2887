"""PNG/JPEG modes and the MONAI reader: one image written in every supported way reads back as the same array,
in the same orientation and polarity, through ``read_xray`` and through ``LoadImaged`` with ``XRayReader``."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.io import XRayReader, read_xray
from pipeline.io.writers import write_dicom

ROWS, COLS = 36, 52


@pytest.fixture(scope="module")
def base() -> np.ndarray:
    """An 8-bit image whose rows and columns differ, with a bright block in the top-left corner."""
    rng = np.random.default_rng(7)
    image = rng.integers(20, 200, (ROWS, COLS)).astype(np.uint8)
    image[:6, :10] = 255
    image[-1, :] = 0
    return image


def unit_range(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    return (array - array.min()) / (array.max() - array.min())


def write_variants(folder, base: np.ndarray) -> dict[str, str]:
    """The same picture as DICOM MONOCHROME2/MONOCHROME1 (8 and 12 bits), PNG L/RGB/RGBA/P/16-bit and JPEG."""
    paths = {
        "dicom_mono2": write_dicom(folder / "mono2.dcm", base),
        "dicom_mono1": write_dicom(folder / "mono1.dcm", 255 - base, photometric="MONOCHROME1"),
        "dicom_12bit": write_dicom(folder / "mono2_12.dcm", base.astype(np.uint16) * 16, bits_stored=12),
    }
    Image.fromarray(base, mode="L").save(folder / "gray.png")
    Image.fromarray(np.repeat(base[..., None], 3, axis=2), mode="RGB").save(folder / "rgb.png")
    alpha = np.random.default_rng(1).integers(0, 256, base.shape).astype(np.uint8)
    Image.fromarray(np.dstack([base, base, base, alpha]), mode="RGBA").save(folder / "rgba.png")
    Image.fromarray(base, mode="L").convert("P").save(folder / "palette.png")
    Image.fromarray(base.astype(np.uint16) * 257).save(folder / "gray16.png")
    Image.fromarray(base, mode="L").save(folder / "gray.jpg", quality=100, subsampling=0)
    for name in ("gray.png", "rgb.png", "rgba.png", "palette.png", "gray16.png", "gray.jpg"):
        paths[name] = folder / name
    return {key: str(value) for key, value in paths.items()}


@pytest.fixture(scope="module")
def variants(tmp_path_factory, base) -> dict[str, str]:
    return write_variants(tmp_path_factory.mktemp("variants"), base)


def test_png_modes_keep_values(variants, base):
    assert Image.open(variants["gray16.png"]).mode.startswith("I")
    assert Image.open(variants["palette.png"]).mode == "P"
    for name in ("gray.png", "rgb.png", "rgba.png", "palette.png"):
        result = read_xray(variants[name])
        assert result.dtype == np.float32 and result.shape == (ROWS, COLS), name
        np.testing.assert_array_equal(result, base.astype(np.float32), err_msg=name)
    np.testing.assert_array_equal(read_xray(variants["gray16.png"]), base.astype(np.float32) * 257)


def test_colour_png_uses_bt601_luminance(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, (ROWS, COLS, 3)).astype(np.uint8)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "colour.png")

    expected = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    np.testing.assert_allclose(read_xray(tmp_path / "colour.png"), expected, rtol=1e-6)


def test_exif_orientation_is_applied(tmp_path, base):
    image = Image.fromarray(base, mode="L")
    exif = Image.Exif()
    exif[0x0112] = 3  # rotated 180 degrees: a viewer shows the stored pixels upside down
    image.rotate(180).save(tmp_path / "rotated.jpg", quality=100, exif=exif)

    np.testing.assert_allclose(read_xray(tmp_path / "rotated.jpg"), base, atol=3)


@pytest.mark.parametrize(
    "name",
    ["dicom_mono2", "dicom_mono1", "dicom_12bit", "gray.png", "rgb.png", "rgba.png", "palette.png", "gray16.png"],
)
def test_same_image_same_array(variants, base, name):
    np.testing.assert_allclose(unit_range(read_xray(variants[name])), unit_range(base), rtol=0, atol=1e-6)


def test_jpeg_same_image_within_compression_error(variants, base):
    result = read_xray(variants["gray.jpg"])
    assert result.shape == (ROWS, COLS)
    assert np.abs(result - base).max() <= 3


@pytest.fixture(scope="module")
def loader():
    from monai.transforms import LoadImaged

    return LoadImaged(keys="image", reader=XRayReader(), image_only=True, ensure_channel_first=True)


@pytest.mark.parametrize("name", ["dicom_mono2", "dicom_mono1", "dicom_12bit", "gray.png", "rgba.png", "gray16.png"])
def test_load_imaged_gives_channel_first_rows_by_cols(loader, variants, base, name):
    image = loader({"image": variants[name]})["image"]

    assert tuple(image.shape) == (1, ROWS, COLS)
    assert image.dtype.is_floating_point
    assert list(image.meta["spatial_shape"]) == [ROWS, COLS]
    np.testing.assert_array_equal(image[0].numpy(), read_xray(variants[name]))  # same code path
    np.testing.assert_allclose(unit_range(image[0].numpy()), unit_range(base), rtol=0, atol=1e-6)
    assert image[0, :6, :10].min() == image.max()  # the bright block is top-left: no transpose, no flip


def test_monai_pil_reader_would_transpose(variants):
    """The convention XRayReader deliberately departs from, so that DICOM and PNG share one layout."""
    from monai.transforms import LoadImage

    pil = LoadImage(reader="PILReader", image_only=True, ensure_channel_first=True)(variants["gray.png"])
    assert tuple(pil.shape) == (1, COLS, ROWS)


def test_reader_with_lead_style_pipeline(variants):
    from monai.transforms import Compose, LoadImaged, Resized, ScaleIntensityd

    chain = Compose(
        [
            LoadImaged(keys="image", reader=XRayReader(apply_voi=False), image_only=True, ensure_channel_first=True),
            ScaleIntensityd(keys="image"),
            Resized(keys="image", spatial_size=(18, 26), mode="area"),
        ]
    )
    outputs = [chain({"image": variants[name]})["image"] for name in ("dicom_mono1", "gray.png", "gray16.png")]
    for output in outputs:
        assert tuple(output.shape) == (1, 18, 26)
        np.testing.assert_allclose(output.numpy(), outputs[0].numpy(), atol=1e-6)


def test_several_files_stack_as_channels(variants):
    reader = XRayReader()
    array, meta = reader.get_data(reader.read([variants["gray.png"], variants["dicom_mono1"]]))
    assert array.shape == (2, ROWS, COLS) and meta["original_channel_dim"] == 0
    np.testing.assert_array_equal(array[0], array[1])


def test_reader_options_validated_and_suffixes():
    with pytest.raises(ValueError, match="multiframe"):
        XRayReader(multiframe="middle")
    with pytest.raises(ValueError, match="body_part_policy"):
        XRayReader(body_part_policy="loud")
    reader = XRayReader()
    assert reader.verify_suffix(["a.dcm", "b.PNG", "c.jpeg", "d"])
    assert not reader.verify_suffix("e.nii.gz")
