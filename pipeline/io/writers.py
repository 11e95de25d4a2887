"""Writing radiographs as DICOM files, for synthetic data, tests and benchmarks.

:func:`write_dicom` builds a minimal single-frame (or multi-frame) DICOM dataset around a stored-value array and
encodes it uncompressed or with a lossless codec:

* RLE Lossless, JPEG-LS Lossless and JPEG 2000 Lossless through pydicom's ``Dataset.compress`` (JPEG-LS needs the
  ``pyjpegls`` package, JPEG 2000 ``pylibjpeg-openjpeg``);
* JPEG Lossless, first-order prediction (process 14 SV1), for which pydicom has no encoder, through ``imagecodecs``
  (libjpeg-turbo's lossless mode), encapsulated by pydicom.

The encoders are development dependencies; reading needs none of them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

__all__ = ["LOSSLESS_SYNTAXES", "write_dicom"]

LOSSLESS_SYNTAXES = {
    "uncompressed": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg-ls": JPEGLSLossless,
    "jpeg2000": JPEG2000Lossless,
    "jpeg-lossless": JPEGLosslessSV1,
}


def write_dicom(
    path: str | os.PathLike,
    stored: np.ndarray,
    *,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    syntax: str = "uncompressed",
    attributes: dict[str, Any] | None = None,
) -> Path:
    """Write a grayscale DICOM (CR image storage) whose stored pixel values are ``stored``.

    Args:
        path: the file to write.
        stored: stored values, shape (rows, cols) or (frames, rows, cols); uint8/int8 give 8 bits allocated,
            (u)int16 give 16; a signed dtype sets PixelRepresentation 1.
        bits_stored: BitsStored (defaults to BitsAllocated). For uncompressed data, bits above it are written as
            they are in ``stored``, as real files with overlay bits do.
        photometric: ``"MONOCHROME1"`` or ``"MONOCHROME2"``.
        syntax: a key of :data:`LOSSLESS_SYNTAXES`.
        attributes: extra top-level attributes by keyword (``RescaleSlope``, ``WindowCenter``, ``PatientName``...).

    Returns:
        The path written.

    Raises:
        ValueError: unsupported dtype, shape, BitsStored or syntax.
        RuntimeError: the encoder package for ``syntax`` is not installed.
    """
    stored = np.asarray(stored)
    if stored.dtype not in (np.uint8, np.int8, np.uint16, np.int16):
        raise ValueError(f"stored must be (u)int8 or (u)int16, got dtype {stored.dtype}")
    if stored.ndim not in (2, 3):
        raise ValueError(f"stored must have shape (rows, cols) or (frames, rows, cols), got {stored.shape}")
    if syntax not in LOSSLESS_SYNTAXES:
        raise ValueError(f"syntax must be one of {sorted(LOSSLESS_SYNTAXES)}, got {syntax!r}")
    bits_allocated = stored.dtype.itemsize * 8
    bits_stored = bits_allocated if bits_stored is None else int(bits_stored)
    if not 1 <= bits_stored <= bits_allocated:
        raise ValueError(f"bits_stored must be in [1, {bits_allocated}], got {bits_stored}")

    ds = _base_dataset(stored, bits_allocated, bits_stored, photometric)
    for keyword, value in (attributes or {}).items():
        setattr(ds, keyword, value)

    transfer_syntax = LOSSLESS_SYNTAXES[syntax]
    if transfer_syntax == JPEGLosslessSV1:
        _encode_jpeg_lossless(ds, stored, bits_stored)
    elif transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax, stored, generate_instance_uid=False)

    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path


def _base_dataset(stored: np.ndarray, bits_allocated: int, bits_stored: int, photometric: str) -> Dataset:
    sop_instance = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = sop_instance
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = stored.shape[-2:]
    if stored.ndim == 3:
        ds.NumberOfFrames = stored.shape[0]
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(stored.dtype.kind == "i")
    ds.PixelData = np.ascontiguousarray(stored.astype(stored.dtype.newbyteorder("<"))).tobytes()
    return ds


def _encode_jpeg_lossless(ds: Dataset, stored: np.ndarray, bits_stored: int) -> None:
    try:
        import imagecodecs
    except ImportError as exc:
        raise RuntimeError("JPEG Lossless encoding needs the 'imagecodecs' package (a development dependency)") from exc
    if stored.dtype.kind == "i":
        raise ValueError("JPEG Lossless encoding here supports unsigned pixels only")
    frames = stored[None] if stored.ndim == 2 else stored
    # Bits above BitsStored are not part of the image; the codec's precision is BitsStored.
    mask = (1 << bits_stored) - 1
    encoded = [
        imagecodecs.jpeg8_encode(frame & mask, lossless=True, predictor=1, bitspersample=max(bits_stored, 2))
        for frame in frames
    ]
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = UID(JPEGLosslessSV1)
