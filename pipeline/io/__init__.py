"""Chest radiograph ingestion: DICOM/PNG/JPEG reading, the MONAI reader, the bad-file policy and the cache.

Entry points:

* :func:`read_xray` and :class:`ImageReadError`: one file to a float32 (rows, cols) array, bone bright.
* :class:`XRayReader`: the MONAI ``ImageReader`` for ``LoadImaged`` (same code path as ``read_xray``).
* :class:`SkipBadFiles`, :class:`SkippingDataLoader` (or :func:`collate_skipping`), :class:`SkipLog`: the
  ``"stop"``/``"skip"`` bad-file policy.
* :func:`make_dataset`: a (persistent-cached) MONAI dataset wrapped with the bad-file policy.

``read_xray`` needs neither MONAI nor torch; the MONAI-based names are imported on first use, so that reading a
file (e.g. while preparing a datalist) does not pay for importing MONAI.

Wiring in a MONAI bundle (ignite workflows)::

    "load": {"_target_": "LoadImaged", "keys": "image", "reader": {"_target_": "pipeline.io.XRayReader"},
             "image_only": true, "ensure_channel_first": true}          # image: (1, rows, cols), rows top-down
    "dataset": {"_target_": "pipeline.io.make_dataset", "items": ..., "transform": "@preprocessing",
                "cache_dir": "@cache_dir", "bad_file_policy": "@bad_file_policy"}   # "stop" | "skip"
    "dataloader": {"_target_": "pipeline.io.SkippingDataLoader", "dataset": "@dataset", "batch_size": ...,
                   "num_workers": ..., "skip_log": "@skip_log"}       # collate_fn defaults to collate_skipping
    "skip_log": {"_target_": "pipeline.io.SkipLog", "csv_path": "<output_dir>/skipped_files.csv"}
    handlers: ["@skip_log", ...]                                      # trainer and evaluator alike

Each batch carries the files skipped while it was built under ``SKIPPED_KEY`` ("skipped_files", a JSON string);
``SkipLog`` collects them at ``GET_BATCH_COMPLETED``, exposes ``count``/``records`` and writes the CSV file at each
epoch end. Under ``"skip"`` the loader has no length (batches left empty are dropped), so ``epoch_length`` stays
unknown until the loader is exhausted.
"""

from __future__ import annotations

import importlib
from typing import Any

from pipeline.io.dicom import BODY_PART_POLICIES, CHEST_BODY_PARTS, MULTIFRAME_POLICIES
from pipeline.io.errors import ImageReadError, find_image_read_error
from pipeline.io.read import read_xray

_LAZY = {
    "XRayReader": "pipeline.io.reader",
    "BAD_FILE_POLICIES": "pipeline.io.skip",
    "SKIPPED_KEY": "pipeline.io.skip",
    "SkipBadFiles": "pipeline.io.skip",
    "SkipLog": "pipeline.io.skip",
    "SkippedFile": "pipeline.io.skip",
    "SkippingDataLoader": "pipeline.io.skip",
    "collate_skipping": "pipeline.io.skip",
    "skipped_records": "pipeline.io.skip",
    "FileStatHash": "pipeline.io.cache",
    "make_dataset": "pipeline.io.cache",
}

__all__ = [
    "BAD_FILE_POLICIES",
    "BODY_PART_POLICIES",
    "CHEST_BODY_PARTS",
    "MULTIFRAME_POLICIES",
    "SKIPPED_KEY",
    "FileStatHash",
    "ImageReadError",
    "SkipBadFiles",
    "SkipLog",
    "SkippedFile",
    "SkippingDataLoader",
    "XRayReader",
    "collate_skipping",
    "find_image_read_error",
    "make_dataset",
    "read_xray",
    "skipped_records",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
