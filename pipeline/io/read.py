"""``read_xray``: one entry point for chest radiographs in DICOM, PNG and JPEG.

The file type is recognised from its content (the DICM marker, the PNG and JPEG signatures), not from its name;
DICOM files written without the 128-byte preamble are accepted when their suffix is a DICOM one or absent.
This module does not import MONAI or torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.io.dicom import BODY_PART_POLICIES, CHEST_BODY_PARTS, MULTIFRAME_POLICIES, read_dicom
from pipeline.io.errors import ImageReadError
from pipeline.io.raster import read_raster

__all__ = ["DICOM_SUFFIXES", "SUPPORTED_SUFFIXES", "read_xray"]

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
SUPPORTED_SUFFIXES = (*DICOM_SUFFIXES, ".png", ".jpg", ".jpeg")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_DICOM_MARKER_OFFSET = 128


def read_xray(
    path: str | os.PathLike,
    *,
    apply_voi: bool = True,
    body_part_policy: str = "warn",
    chest_body_parts: Sequence[str] = CHEST_BODY_PARTS,
    multiframe: str = "reject",
) -> np.ndarray:
    """Read a chest radiograph (DICOM, PNG or JPEG) as a float32 (rows, cols) array in display polarity.

    DICOM values go through the Modality LUT and, when ``apply_voi``, the VOI LUT or window; ``MONOCHROME1`` is
    inverted so that bone is bright (see :mod:`pipeline.io.dicom` for the exact rules). PNG/JPEG are converted to
    one luminance channel. Values are not normalised: scale intensities in the transforms.

    Args:
        path: the image file.
        apply_voi: apply the DICOM VOI LUT Sequence or WindowCenter/WindowWidth when present.
        body_part_policy: ``"warn"``, ``"reject"`` or ``"ignore"`` a DICOM whose BodyPartExamined is set and is
            not one of ``chest_body_parts``.
        chest_body_parts: BodyPartExamined values accepted as chest.
        multiframe: ``"reject"`` a multi-frame DICOM, or read its ``"first"`` frame.

    Returns:
        float32 array of shape (rows, cols).

    Raises:
        ImageReadError: missing, empty, truncated or corrupt file, not an image, no decoder, multi-frame or
            non-image DICOM, or rejected body part; the message is ``"<path>: <reason>"``.
        ValueError: an option value is not one of the allowed choices.
    """
    if body_part_policy not in BODY_PART_POLICIES:
        raise ValueError(f"body_part_policy must be one of {BODY_PART_POLICIES}, got {body_part_policy!r}")
    if multiframe not in MULTIFRAME_POLICIES:
        raise ValueError(f"multiframe must be one of {MULTIFRAME_POLICIES}, got {multiframe!r}")
    if isinstance(chest_body_parts, str):
        raise ValueError(f"chest_body_parts must be a sequence of strings, got the string {chest_body_parts!r}")
    path = os.fspath(path)

    head = _read_head(path)
    dicom_options = {
        "apply_voi": apply_voi,
        "body_part_policy": body_part_policy,
        "chest_body_parts": chest_body_parts,
        "multiframe": multiframe,
    }
    if head[_DICOM_MARKER_OFFSET : _DICOM_MARKER_OFFSET + 4] == b"DICM":
        return read_dicom(path, **dicom_options)
    if head.startswith(_PNG_SIGNATURE) or head.startswith(_JPEG_SIGNATURE):
        return read_raster(path)
    if Path(path).suffix.lower() in (*DICOM_SUFFIXES, ""):
        # DICOM written without the preamble and marker (older archives): let pydicom try.
        return read_dicom(path, force=True, **dicom_options)
    raise ImageReadError(path, "not a DICOM, PNG or JPEG file (unrecognised content)")


def _read_head(path: str) -> bytes:
    """First bytes of the file, after the checks that need no decoding."""
    if not os.path.exists(path):
        raise ImageReadError(path, "file not found")
    if os.path.isdir(path):
        raise ImageReadError(path, "is a directory, not an image file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(_DICOM_MARKER_OFFSET + 4)
    except OSError as exc:
        raise ImageReadError(path, f"file cannot be opened ({type(exc).__name__}: {exc.strerror})") from exc
    if not head:
        raise ImageReadError(path, "file is empty (0 bytes)")
    return head
