"""``XRayReader``: the MONAI ``ImageReader`` around :func:`pipeline.io.read_xray`.

``LoadImage(d)`` with this reader and direct ``read_xray`` calls share one code path. Its arrays are (rows, cols),
rows top to bottom as the image displays, for every format: unlike MONAI's ``PILReader`` it does not swap the two
axes, so spatial axis 0 of ``LoadImaged(..., ensure_channel_first=True)`` output is vertical and axis 1 horizontal
(``RandFlipd(spatial_axis=1)`` is a left-right flip), for DICOM and PNG/JPEG alike.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data import ImageReader
from monai.utils import MetaKeys, ensure_tuple

from pipeline.io.dicom import BODY_PART_POLICIES, CHEST_BODY_PARTS, MULTIFRAME_POLICIES
from pipeline.io.errors import ImageReadError
from pipeline.io.read import SUPPORTED_SUFFIXES, read_xray

__all__ = ["XRayReader"]


class XRayReader(ImageReader):
    """MONAI image reader for chest radiographs, backed by :func:`read_xray`.

    Use as ``LoadImaged(keys="image", reader=XRayReader(...), image_only=True, ensure_channel_first=True)``: the
    image becomes a (1, rows, cols) float32 tensor, rows top to bottom as displayed, identical for DICOM, PNG and
    JPEG. When several files are given for one key they are stacked on a leading channel axis.

    Reading is deferred to :meth:`get_data`: ``LoadImage`` catches exceptions raised by ``read()`` and silently
    retries with its default readers, which would bypass this reader's policies (a rejected multi-frame DICOM would
    load through ``PydicomReader``) and replace the :class:`ImageReadError` by a generic ``RuntimeError``.
    Errors raised by ``get_data()`` propagate unchanged.

    Args:
        apply_voi: see :func:`read_xray`.
        body_part_policy: see :func:`read_xray`.
        chest_body_parts: see :func:`read_xray`.
        multiframe: see :func:`read_xray`.
    """

    def __init__(
        self,
        apply_voi: bool = True,
        body_part_policy: str = "warn",
        chest_body_parts: Sequence[str] = CHEST_BODY_PARTS,
        multiframe: str = "reject",
    ) -> None:
        super().__init__()
        if body_part_policy not in BODY_PART_POLICIES:
            raise ValueError(f"body_part_policy must be one of {BODY_PART_POLICIES}, got {body_part_policy!r}")
        if multiframe not in MULTIFRAME_POLICIES:
            raise ValueError(f"multiframe must be one of {MULTIFRAME_POLICIES}, got {multiframe!r}")
        self.apply_voi = bool(apply_voi)
        self.body_part_policy = body_part_policy
        self.chest_body_parts = tuple(chest_body_parts)
        self.multiframe = multiframe

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(apply_voi={self.apply_voi}, body_part_policy={self.body_part_policy!r}, "
            f"chest_body_parts={self.chest_body_parts}, multiframe={self.multiframe!r})"
        )

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """True when every file name ends in a DICOM, PNG or JPEG suffix (or has none, as DICOM often does)."""
        return all(Path(name).suffix.lower() in (*SUPPORTED_SUFFIXES, "") for name in ensure_tuple(filename))

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs) -> tuple[str, ...]:
        """Return the file paths; decoding happens in :meth:`get_data` (see the class notes)."""
        if kwargs:
            raise ValueError(f"XRayReader.read takes no keyword arguments, got {sorted(kwargs)}")
        return tuple(os.fspath(name) for name in ensure_tuple(data))

    def get_data(self, img: tuple[str, ...]) -> tuple[np.ndarray, dict]:
        """Decode the files returned by :meth:`read`.

        Args:
            img: the paths returned by :meth:`read`.

        Returns:
            The (rows, cols) array, or (n_files, rows, cols) for several files, and its metadata
            (``spatial_shape`` in (rows, cols) order and ``original_channel_dim``).

        Raises:
            ImageReadError: a file cannot be read (see :func:`read_xray`).
        """
        paths = ensure_tuple(img)
        arrays = [
            read_xray(
                path,
                apply_voi=self.apply_voi,
                body_part_policy=self.body_part_policy,
                chest_body_parts=self.chest_body_parts,
                multiframe=self.multiframe,
            )
            for path in paths
        ]
        shapes = {array.shape for array in arrays}
        if len(shapes) > 1:
            raise ImageReadError(paths[0], f"files given together have different shapes {sorted(shapes)}")
        meta = {MetaKeys.SPATIAL_SHAPE: np.asarray(arrays[0].shape)}
        if len(arrays) == 1:
            meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = float("nan")  # no channel: EnsureChannelFirst adds one
            return arrays[0], meta
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
        return np.stack(arrays, axis=0), meta
