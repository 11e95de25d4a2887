"""Datasets with an on-disk preprocessing cache that follows changes to the transforms and to the files.

:func:`make_dataset` builds a MONAI ``PersistentDataset``: the deterministic prefix of the transform chain (up to
the first random transform) runs once per item and its output is saved under ``cache_dir``. The cache file name
joins two hashes:

* the item hash (:class:`FileStatHash`): the datalist entry plus the size and modification time of its image file,
  so a file replaced in place is decoded again;
* the transform hash (``hash_transform``, MONAI's ``pickle_hashing`` by default): the pickled deterministic
  transforms, so changing a parameter such as the resize size or the reader's ``apply_voi`` writes new cache files
  instead of serving stale arrays.

Old cache files are not deleted; point ``cache_dir`` at a per-experiment folder or clean it by hand.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from monai.data import Dataset, PersistentDataset
from monai.data.utils import pickle_hashing
from monai.transforms import Compose

from pipeline.io.skip import SkipBadFiles

__all__ = ["FileStatHash", "make_dataset"]

logger = logging.getLogger(__name__)


class FileStatHash:
    """``PersistentDataset`` item hash: the item itself plus size and mtime of the files it names.

    Args:
        keys: item keys holding a file path (or a list of paths) to fingerprint.
    """

    def __init__(self, keys: Sequence[str] = ("image",)) -> None:
        if isinstance(keys, str):
            keys = (keys,)
        self.keys = tuple(keys)

    def __call__(self, item: Any) -> bytes:
        files = {}
        if isinstance(item, dict):
            for key in self.keys:
                if key in item:
                    paths = item[key] if isinstance(item[key], list | tuple) else [item[key]]
                    files[key] = [_file_stamp(path) for path in paths]
        return pickle_hashing({"item": item, "files": files})


def _file_stamp(path: Any) -> tuple:
    try:
        stat = os.stat(path)
    except (OSError, TypeError, ValueError):
        return (str(path), "unavailable")
    return (str(path), stat.st_size, stat.st_mtime_ns)


def make_dataset(
    items: Sequence[dict],
    transform: Compose | Sequence[Callable] | Callable,
    cache_dir: str | os.PathLike | None = None,
    *,
    bad_file_policy: str = "stop",
    hash_keys: Sequence[str] = ("image",),
    hash_transform: Callable[..., bytes] | None = pickle_hashing,
    **persistent_kwargs: Any,
) -> SkipBadFiles:
    """Build the dataset for a datalist split: cached when ``cache_dir`` is set, always under a bad-file policy.

    Args:
        items: datalist entries, e.g. ``{"image": path, "label": [...], "patient": id}``.
        transform: the item transforms (a ``Compose`` or a list of transforms). Put deterministic transforms
            (``LoadImaged`` with ``XRayReader``, channel, intensity scaling, resize) before the first random one:
            only that prefix is cached.
        cache_dir: folder for the ``PersistentDataset`` cache; ``None`` for a plain MONAI ``Dataset``.
        bad_file_policy: ``"stop"`` or ``"skip"`` (see :class:`~pipeline.io.skip.SkipBadFiles`).
        hash_keys: item keys whose files' size and mtime enter the cache key.
        hash_transform: hash of the deterministic transforms appended to every cache key; ``None`` disables it.
        persistent_kwargs: further ``PersistentDataset`` arguments (``pickle_protocol``, ``track_meta``...).

    Returns:
        The dataset wrapped in :class:`~pipeline.io.skip.SkipBadFiles`; use ``collate_fn=collate_skipping``.
    """
    if not isinstance(transform, Compose):
        transform = Compose(list(transform) if isinstance(transform, Sequence) else [transform])
    if cache_dir is None:
        base = Dataset(data=items, transform=transform)
    else:
        base = PersistentDataset(
            data=items,
            transform=transform,
            cache_dir=cache_dir,
            hash_func=FileStatHash(hash_keys),
            hash_transform=hash_transform,
            **persistent_kwargs,
        )
        logger.debug("Persistent cache in %s, transform hash %s", cache_dir, base.transform_hash)
    return SkipBadFiles(base, policy=bad_file_policy)
