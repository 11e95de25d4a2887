"""PNG and JPEG radiographs to 2-D arrays with Pillow.

Grayscale files keep their values (8-bit ``L``, 16-bit ``I;16``, 32-bit ``I``, float ``F``). Colour files are
reduced to ITU-R BT.601 luminance computed in floating point (so a gray image stored as RGB keeps its exact values);
an alpha channel is dropped and palette images are expanded first. An EXIF orientation tag is honoured, so rows run
top to bottom as the image displays. Raster files carry no polarity tag: they are taken as bone bright.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from pipeline.io.errors import ImageReadError

__all__ = ["RASTER_FORMATS", "read_raster"]

RASTER_FORMATS = ("PNG", "JPEG")
# ITU-R BT.601 luma weights, the same as Pillow's "L" conversion.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])
_GRAY_MODES = ("L", "I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_RGB_MODES = ("RGB", "RGBA", "RGBX", "RGBa")
_ALPHA_GRAY_MODES = ("LA", "La")
_CONVERT_TO_RGB = ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV")
_EXIF_ORIENTATION = 0x0112


def read_raster(path: str) -> np.ndarray:
    """Read one PNG or JPEG file as a float32 (rows, cols) array.

    Args:
        path: the image file.

    Returns:
        The image, float32, shape (rows, cols), on the file's own value scale (0-255 for 8-bit, 0-65535 for 16-bit).

    Raises:
        ImageReadError: the file is not a PNG/JPEG Pillow can decode, is truncated, or has an unsupported mode.
    """
    try:
        with Image.open(path) as img:
            if img.format not in RASTER_FORMATS:
                raise ImageReadError(path, f"unsupported image format {img.format!r}; expected DICOM, PNG or JPEG")
            img.load()
            if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                img = ImageOps.exif_transpose(img)
            return _to_luminance(img, path)
    except ImageReadError:
        raise
    except Exception as exc:  # Pillow signals corrupt data with OSError, SyntaxError, ValueError...
        raise ImageReadError(path, f"image data cannot be decoded ({type(exc).__name__}: {exc})") from exc


def _to_luminance(img: Image.Image, path: str) -> np.ndarray:
    mode = img.mode
    if mode == "1":
        img, mode = img.convert("L"), "L"
    elif mode in _CONVERT_TO_RGB:
        img, mode = img.convert("RGB"), "RGB"

    if mode in _GRAY_MODES:
        return np.asarray(img).astype(np.float32)
    if mode in _ALPHA_GRAY_MODES:
        return np.asarray(img)[..., 0].astype(np.float32)
    if mode in _RGB_MODES:
        rgb = np.asarray(img)[..., :3].astype(np.float64)
        return (rgb @ LUMA_WEIGHTS).astype(np.float32)
    raise ImageReadError(path, f"unsupported image mode {mode!r}")
