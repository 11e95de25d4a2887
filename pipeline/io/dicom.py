"""DICOM radiographs to display-ready 2-D arrays with pydicom 3.

The steps follow the DICOM grayscale pipeline (PS3.3 C.11 and PS3.4 N.2): stored values (``BitsStored`` honoured,
signed or unsigned) -> Modality LUT (``RescaleSlope``/``RescaleIntercept`` or a Modality LUT Sequence) -> VOI LUT
(VOI LUT Sequence, or ``WindowCenter``/``WindowWidth``) -> polarity, so that bone is bright whatever the
``PhotometricInterpretation``. Compressed transfer syntaxes are decoded by the pylibjpeg plugins (JPEG Baseline,
JPEG Lossless, JPEG-LS, JPEG 2000, RLE) or pydicom itself.

Choices made here:

* ``MONOCHROME1`` is inverted about the output range of the last LUT applied, ``value -> low + high - value``:
  the VOI output range when a VOI was applied, otherwise the Modality LUT output range (the ``BitsStored`` range
  mapped through the rescale). Inverting about the image's own minimum and maximum would make the result depend on
  the image content.
* Pixels marked by ``PixelPaddingValue`` (and ``PixelPaddingRangeLimit``) are set, after every other step, to the
  minimum of the non-padding pixels, so padding displays as the darkest tissue value instead of an arbitrary
  extreme that would dominate intensity scaling.
* Colour DICOMs (``RGB``, ``YBR_*``, ``PALETTE COLOR``) are reduced to ITU-R BT.601 luminance, as PNG/JPEG are.
* An empty or absent ``BodyPartExamined`` passes the body-part check: many chest files leave it blank.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pipeline.io.errors import IDENTIFYING_KEYWORDS, ImageReadError, redact
from pipeline.io.raster import LUMA_WEIGHTS

__all__ = ["BODY_PART_POLICIES", "CHEST_BODY_PARTS", "MULTIFRAME_POLICIES", "read_dicom"]

logger = logging.getLogger(__name__)

BODY_PART_POLICIES = ("warn", "reject", "ignore")
MULTIFRAME_POLICIES = ("reject", "first")
# BodyPartExamined defined terms (DICOM CID 4031) that cover the chest; callers can pass their own.
CHEST_BODY_PARTS: tuple[str, ...] = ("CHEST", "THORAX", "LUNG", "CHESTABDOMEN", "CHESTABDPELVIS")
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")


def read_dicom(
    path: str,
    *,
    apply_voi: bool = True,
    body_part_policy: str = "warn",
    chest_body_parts: Sequence[str] = CHEST_BODY_PARTS,
    multiframe: str = "reject",
    force: bool = False,
) -> np.ndarray:
    """Read one DICOM radiograph as a float32 (rows, cols) array in display polarity.

    Args:
        path: the DICOM file.
        apply_voi: apply the VOI LUT Sequence or WindowCenter/WindowWidth when present; ``False`` ignores them
            and returns Modality LUT output (inverted for ``MONOCHROME1``).
        body_part_policy: what to do when ``BodyPartExamined`` is set and not in ``chest_body_parts``:
            ``"warn"`` logs a warning and reads the file, ``"reject"`` raises, ``"ignore"`` reads it silently.
        chest_body_parts: ``BodyPartExamined`` values accepted as chest (compared upper-case).
        multiframe: ``"reject"`` raises for files with more than one frame; ``"first"`` reads frame 0.
        force: read files without the DICM preamble marker.

    Returns:
        The image, float32, shape (rows, cols), bone bright.

    Raises:
        ImageReadError: the file cannot be parsed, holds no pixel data, cannot be decoded, or is rejected by a
            policy. The message names the file and the reason, never an identifying header value.
    """
    try:
        ds = pydicom.dcmread(path, force=force)
    except Exception as exc:  # any parser failure means an unreadable file
        # The parser saw the header bytes before failing, so its message is not quoted: only its type is.
        raise ImageReadError(path, f"DICOM header is truncated or corrupt ({_type_name(exc)})") from None
    identifying = _identifying_values(ds)

    if "PixelData" not in ds:
        if force:
            raise ImageReadError(path, "not a DICOM, PNG or JPEG file (no DICM marker and no pixel data)")
        # pydicom stops at the end of a file without raising: a cut inside the pixel data leaves the other
        # attributes only, or (inside encapsulated fragments) no data elements at all.
        if len(ds) == 0:
            raise ImageReadError(path, "no data elements after the file meta: the file is truncated or corrupt")
        if ("Rows" in ds and "Columns" in ds) or "Image Storage" in _sop_class_name(ds):
            raise ImageReadError(path, f"image without PixelData: the file is truncated ({_sop_class_name(ds)})")
        raise ImageReadError(path, f"DICOM holds no PixelData: not an image ({_sop_class_name(ds)})")

    n_frames = _number_of_frames(ds)
    if n_frames > 1 and multiframe == "reject":
        raise ImageReadError(path, f"multi-frame DICOM with {n_frames} frames (multiframe='reject')")

    _check_body_part(ds, path, body_part_policy, chest_body_parts)
    _set_missing_transfer_syntax(ds)
    _check_decoder(ds, path)

    try:
        if n_frames > 1:
            ds.pixel_array_options(index=0)
        pixels = ds.pixel_array
    except Exception as exc:  # decoders raise many types for truncated or corrupt streams
        reason = redact(f"pixel data cannot be decoded ({_type_name(exc)}: {exc})", identifying)
        raise ImageReadError(path, reason) from (exc if _chain_is_clean(exc, identifying) else None)

    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    try:
        if photometric in _MONOCHROME:
            image = _grayscale_to_display(pixels, ds, photometric, apply_voi, path)
        elif photometric in _COLOUR:
            image = _colour_to_luminance(pixels, ds, photometric)
        else:
            raise ImageReadError(path, f"unsupported PhotometricInterpretation {photometric!r}")
    except ImageReadError:
        raise
    except Exception as exc:  # malformed LUTs and attributes surface as assorted errors
        reason = redact(f"pixel values cannot be converted ({_type_name(exc)}: {exc})", identifying)
        raise ImageReadError(path, reason) from (exc if _chain_is_clean(exc, identifying) else None)

    if image.ndim != 2 or image.size == 0:
        raise ImageReadError(path, f"decoded pixel data has shape {image.shape}, expected one 2-D frame")
    return np.ascontiguousarray(image, dtype=np.float32)


def _grayscale_to_display(pixels: np.ndarray, ds: Dataset, photometric: str, apply_voi: bool, path: str) -> np.ndarray:
    """Stored values -> Modality LUT -> optional VOI -> bone-bright polarity -> padding at the image minimum."""
    padding = _padding_mask(pixels, ds)

    values = apply_modality_lut(pixels, ds)
    low, high = _modality_output_range(ds)

    if apply_voi and _has_voi(ds):
        voi_input = values
        if "VOILUTSequence" in ds and np.issubdtype(values.dtype, np.floating):
            # A VOI LUT indexes by integer modality values; rescaled values are integers in floating point.
            voi_input = np.rint(values).astype(np.int64)
        try:
            values = apply_voi_lut(voi_input, ds, index=0, prefer_lut=True)
            low, high = _voi_output_range(ds)
        except ValueError as exc:
            # An unusable window (e.g. width < 1) should not cost the image: fall back to the modality values.
            logger.warning("%s: VOI ignored, it cannot be applied (%s)", path, type(exc).__name__)

    values = values.astype(np.float64, copy=False)
    if photometric == "MONOCHROME1":
        values = (low + high) - values

    if padding is not None and padding.any() and not padding.all():
        values = values.copy()
        values[padding] = values[~padding].min()
    return values


def _colour_to_luminance(pixels: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray:
    """RGB (pydicom already converts YBR to RGB) or palette colour -> BT.601 luminance."""
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"expected (rows, cols, 3) colour pixels, got shape {pixels.shape}")
    return pixels.astype(np.float64) @ LUMA_WEIGHTS


def _padding_mask(pixels: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """Boolean mask of stored values marked as padding, or ``None`` without PixelPaddingValue."""
    if "PixelPaddingValue" not in ds or ds.PixelPaddingValue is None:
        return None
    first = _as_stored_value(int(ds.PixelPaddingValue), ds)
    limit = ds.get("PixelPaddingRangeLimit")
    if limit is None:
        return pixels == first
    last = _as_stored_value(int(limit), ds)
    low, high = min(first, last), max(first, last)
    return (pixels >= low) & (pixels <= high)


def _as_stored_value(value: int, ds: Dataset) -> int:
    """Reinterpret a padding value written as unsigned when the pixels are signed (VR 'US or SS')."""
    bits_allocated = int(ds.get("BitsAllocated", 16))
    if int(ds.get("PixelRepresentation", 0)) == 1 and value >= 2 ** (bits_allocated - 1):
        return value - 2**bits_allocated
    return value


def _stored_range(ds: Dataset) -> tuple[int, int]:
    bits_stored = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1
    return 0, 2**bits_stored - 1


def _modality_output_range(ds: Dataset) -> tuple[float, float]:
    """Range of Modality LUT output, as pydicom defines it for windowing (PS3.3 C.11.1.1.1)."""
    if ds.get("ModalityLUTSequence"):
        depth = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**depth - 1)
    low, high = _stored_range(ds)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        return low * slope + intercept, high * slope + intercept
    return float(low), float(high)


def _voi_output_range(ds: Dataset) -> tuple[float, float]:
    """Range of VOI output: the LUT's bit depth for a VOI LUT Sequence, else the windowing output range."""
    if ds.get("VOILUTSequence"):
        depth = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**depth - 1)
    # pydicom's windowing maps onto the Modality LUT output range.
    return _modality_output_range(ds)


def _has_voi(ds: Dataset) -> bool:
    has_lut = bool(ds.get("VOILUTSequence"))
    has_window = ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
    return has_lut or has_window


def _number_of_frames(ds: Dataset) -> int:
    try:
        return max(int(ds.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        return 1


def _check_body_part(ds: Dataset, path: str, policy: str, chest_body_parts: Sequence[str]) -> None:
    if policy == "ignore":
        return
    body_part = str(ds.get("BodyPartExamined") or "").strip().upper()
    if not body_part or body_part in {part.upper() for part in chest_body_parts}:
        return
    # A code string of at most 16 characters; redacted anyway in case a site misused the field.
    shown = redact(body_part[:16], _identifying_values(ds))
    message = f"BodyPartExamined {shown!r} is not a chest body part (body_part_policy={policy!r})"
    if policy == "reject":
        raise ImageReadError(path, message)
    logger.warning("%s: %s; reading it anyway", path, message)


def _set_missing_transfer_syntax(ds: Dataset) -> None:
    """Files without file meta (no preamble) hold native pixel data in the encoding pydicom detected."""
    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    if ds.file_meta.get("TransferSyntaxUID"):
        return
    implicit_vr, little_endian = ds.original_encoding
    if implicit_vr:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian


def _check_decoder(ds: Dataset, path: str) -> None:
    """Raise a clear error when the transfer syntax has no decoder, or its plugins are not installed."""
    transfer_syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    name = transfer_syntax.name
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        reason = f"unsupported compression: no pixel data decoder for transfer syntax {name!r}"
        raise ImageReadError(path, reason) from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
        raise ImageReadError(path, f"no decoder installed for transfer syntax {name!r} (needs one of: {missing})")


def _sop_class_name(ds: Dataset) -> str:
    sop_class = ds.get("SOPClassUID") or getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID")
    return f"SOP class {UID(str(sop_class)).name!r}" if sop_class else "no SOP class"


def _identifying_values(ds: Dataset) -> list[str]:
    """Raw text of the identifying attributes, read without value conversion (which could log the values)."""
    values: list[str] = []
    for keyword in IDENTIFYING_KEYWORDS:
        tag = tag_for_keyword(keyword)
        if tag is None or tag not in ds:
            continue
        value = ds.get_item(tag).value
        if value is None:
            continue
        text = value.decode("latin-1", errors="replace") if isinstance(value, bytes) else str(value)
        values.extend(text.split("\\"))
    return values


def _chain_is_clean(exc: BaseException, identifying: Sequence[str]) -> bool:
    """True when no message in ``exc``'s chain quotes an identifying value (so it may be chained and printed)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        text = str(current)
        if redact(text, identifying) != text:
            return False
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return True


def _type_name(exc: BaseException) -> str:
    module = type(exc).__module__
    return type(exc).__qualname__ if module == "builtins" else f"{module}.{type(exc).__qualname__}"
