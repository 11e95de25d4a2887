"""The persistent preprocessing cache: hits when nothing changed, new entries when a deterministic transform
parameter, a reader option or the image file itself changes."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.io import make_dataset
from pipeline.io.writers import write_dicom


def transforms(size: int = 8, apply_voi: bool = True, flip: bool = False):
    from monai.transforms import Compose, EnsureTyped, LoadImaged, RandFlipd, Resized, ScaleIntensityd

    from pipeline.io import XRayReader

    chain = [
        LoadImaged(keys="image", reader=XRayReader(apply_voi=apply_voi), image_only=True, ensure_channel_first=True),
        ScaleIntensityd(keys="image"),
        Resized(keys="image", spatial_size=(size, size), mode="area"),
    ]
    chain.append(EnsureTyped(keys="image", track_meta=False))
    if flip:
        chain.append(RandFlipd(keys="image", prob=1.0, spatial_axis=1))
    return Compose(chain)


@pytest.fixture
def items(tmp_path):
    rng = np.random.default_rng(11)
    windowed = write_dicom(
        tmp_path / "w.dcm",
        rng.integers(0, 4096, (30, 34)).astype(np.uint16),
        bits_stored=12,
        attributes={"WindowCenter": 600, "WindowWidth": 400},
    )
    png = tmp_path / "p.png"
    Image.fromarray(rng.integers(0, 256, (26, 22)).astype(np.uint8)).save(png)
    return [{"image": str(windowed), "label": [1.0]}, {"image": str(png), "label": [0.0]}]


def cache_files(folder) -> set[str]:
    return {name for name in os.listdir(folder) if name.endswith(".pt")}


def load_all(dataset) -> list[torch.Tensor]:
    return [torch.as_tensor(dataset[index]["image"]) for index in range(len(dataset))]


def test_cache_hit_when_nothing_changes(tmp_path, items):
    cache = tmp_path / "cache"
    first = load_all(make_dataset(items, transforms(), cache))
    files = cache_files(cache)
    assert len(files) == len(items)
    mtimes = {name: os.stat(cache / name).st_mtime_ns for name in files}

    again = load_all(make_dataset(items, transforms(), cache))  # a new, identical transform chain

    assert cache_files(cache) == files
    assert {name: os.stat(cache / name).st_mtime_ns for name in files} == mtimes
    for before, after in zip(first, again, strict=True):
        torch.testing.assert_close(before, after)


def test_resize_parameter_change_invalidates(tmp_path, items):
    cache = tmp_path / "cache"
    small = load_all(make_dataset(items, transforms(size=8), cache))
    files_small = cache_files(cache)

    large = load_all(make_dataset(items, transforms(size=12), cache))

    files_large = cache_files(cache) - files_small
    assert len(files_large) == len(items)
    assert all(tuple(image.shape) == (1, 8, 8) for image in small)
    assert all(tuple(image.shape) == (1, 12, 12) for image in large)


def test_reader_option_change_invalidates(tmp_path, items):
    cache = tmp_path / "cache"
    with_voi = load_all(make_dataset(items[:1], transforms(apply_voi=True), cache))
    without_voi = load_all(make_dataset(items[:1], transforms(apply_voi=False), cache))

    assert len(cache_files(cache)) == 2
    assert not torch.allclose(with_voi[0], without_voi[0])


def test_file_replaced_in_place_invalidates(tmp_path, items):
    cache = tmp_path / "cache"
    before = load_all(make_dataset(items, transforms(), cache))
    png = items[1]["image"]
    Image.fromarray(np.full((26, 22), 7, np.uint8)).save(png)
    stat = os.stat(png)
    os.utime(png, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # coarse file systems: force a new mtime

    after = load_all(make_dataset(items, transforms(), cache))

    assert len(cache_files(cache)) == len(items) + 1
    torch.testing.assert_close(after[0], before[0])
    assert not torch.allclose(after[1], before[1])


def test_random_transforms_run_after_the_cache(tmp_path, items):
    cache = tmp_path / "cache"
    plain = load_all(make_dataset(items, transforms(), cache))
    flipped = load_all(make_dataset(items, transforms(flip=True), cache))

    # The random flip is not part of the cached prefix: same cache entries, flipped outputs.
    assert len(cache_files(cache)) == len(items)
    for image, mirrored in zip(plain, flipped, strict=True):
        torch.testing.assert_close(mirrored, torch.flip(image, dims=[2]))


def test_no_cache_dir_gives_the_same_items(tmp_path, items):
    cached = load_all(make_dataset(items, transforms(), tmp_path / "cache"))
    uncached = load_all(make_dataset(items, transforms(), None))
    for a, b in zip(cached, uncached, strict=True):
        torch.testing.assert_close(a, b)
