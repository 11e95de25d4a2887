"""Loading speed of full-size chest radiographs: first epoch (decode + transforms) against cached epochs.

Generates realistic files in a temporary folder (default 2500 x 2048, 16 bits allocated with 12 stored: DICOM
uncompressed, DICOM JPEG Lossless, 16-bit PNG), then measures, side by side in one run:

* images/s of a first epoch without cache: ``read_xray`` through ``LoadImaged`` + scale intensity + resize to 224 +
  light augmentation;
* images/s of the epoch that fills the ``PersistentDataset`` cache, and of a later, cached epoch (a new dataset
  object reading the cache from disk; best of two), with the cached/first ratio (goal: >= 10x);
* images/s through a DataLoader with 0, 1 and 2 workers, uncached and cached (the cached items repeated so that
  worker start-up does not dominate).

The main process runs with one torch thread (``--threads``), as each DataLoader worker does.

Usage: ``python bench/io_speed.py [--count 16] [--rows 2500 --cols 2048] [--workers 0 1 2] [--threads 1]``.
JPEG Lossless files need the ``imagecodecs`` development dependency.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.io import SkippingDataLoader, XRayReader, make_dataset  # noqa: E402
from pipeline.io.writers import write_dicom  # noqa: E402

BITS_STORED = 12
CACHED_REPEATS = 8


def synthetic_chest(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth chest-like picture (dark lungs, bright mediastinum and ribs) with quantum noise, 12-bit values."""
    y, x = np.mgrid[0:1:256j, 0:1:208j]
    body = np.exp(-(((x - 0.5) / 0.42) ** 6 + ((y - 0.55) / 0.5) ** 6))
    lungs = sum(np.exp(-(((x - cx) / 0.14) ** 2 + ((y - 0.45) / 0.28) ** 2)) for cx in (0.3 + rng.normal(0, 0.01), 0.7))
    ribs = 0.15 * (np.sin(y * 60 + rng.uniform(0, np.pi)) > 0.6) * lungs
    small = 600 + 2600 * body - 1500 * lungs + 700 * ribs
    large = torch.nn.functional.interpolate(
        torch.from_numpy(small)[None, None].float(), size=(rows, cols), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    noisy = large + rng.normal(0, 25, (rows, cols)).astype(np.float32)
    return np.clip(noisy, 0, 2**BITS_STORED - 1).astype(np.uint16)


def generate(folder: Path, count: int, rows: int, cols: int) -> dict[str, list[dict]]:
    rng = np.random.default_rng(0)
    kinds: dict[str, list[dict]] = {"DICOM uncompressed": [], "DICOM JPEG Lossless": [], "PNG 16-bit": []}
    for index in range(count):
        image = synthetic_chest(rows, cols, rng)
        window = {"WindowCenter": 2048, "WindowWidth": 4096}
        paths = {
            "DICOM uncompressed": write_dicom(
                folder / f"u{index}.dcm", image, bits_stored=BITS_STORED, attributes=window
            ),
            "DICOM JPEG Lossless": write_dicom(
                folder / f"j{index}.dcm", image, bits_stored=BITS_STORED, syntax="jpeg-lossless", attributes=window
            ),
            "PNG 16-bit": folder / f"p{index}.png",
        }
        Image.fromarray(image << (16 - BITS_STORED)).save(paths["PNG 16-bit"], compress_level=1)
        for kind, path in paths.items():
            kinds[kind].append({"image": str(path), "label": [float(index % 2)]})
    return kinds


def train_transforms(size: int):
    from monai.transforms import Compose, EnsureTyped, LoadImaged, RandAffined, RandFlipd, Resized, ScaleIntensityd

    return Compose(
        [
            LoadImaged(keys="image", reader=XRayReader(), image_only=True, ensure_channel_first=True),
            ScaleIntensityd(keys="image"),
            Resized(keys="image", spatial_size=(size, size), mode="area"),
            EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
            RandFlipd(keys="image", prob=0.5, spatial_axis=1),
            RandAffined(keys="image", prob=0.5, rotate_range=0.1, scale_range=(0.1, 0.1), padding_mode="zeros"),
        ]
    )


def images_per_second(dataset) -> float:
    start = time.perf_counter()
    for index in range(len(dataset)):
        dataset[index]
    return len(dataset) / (time.perf_counter() - start)


def loader_images_per_second(dataset, workers: int, batch_size: int) -> float:
    loader = SkippingDataLoader(dataset, batch_size=batch_size, num_workers=workers)
    start = time.perf_counter()
    images = sum(batch["image"].shape[0] for batch in loader)
    return images / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=16, help="images per kind")
    parser.add_argument("--rows", type=int, default=2500)
    parser.add_argument("--cols", type=int, default=2048)
    parser.add_argument("--size", type=int, default=224, help="training resolution")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads in the main process (DataLoader workers use one each)"
    )
    args = parser.parse_args()
    # Small per-item tensor operations gain nothing from several threads and suffer badly from oversubscription on a
    # shared machine; one thread is also what each DataLoader worker gets.
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="io_speed_") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        kinds = generate(folder, args.count, args.rows, args.cols)
        elapsed = time.perf_counter() - start
        print(f"generated {args.count} x {len(kinds)} files of {args.rows}x{args.cols} in {elapsed:.0f} s")

        print(f"\nper-item loading, main process, transforms: read + scale + resize {args.size} + flip/affine")
        header = f"{'kind':<22}{'MB/file':>9}{'first epoch':>13}{'cache fill':>12}{'cached':>10}{'cached/first':>14}"
        print(header + "\n" + "-" * len(header))
        ratios = {}
        for kind, items in kinds.items():
            megabytes = np.mean([Path(item["image"]).stat().st_size for item in items]) / 2**20
            first = images_per_second(make_dataset(items, train_transforms(args.size), None))
            cache_dir = folder / "cache" / kind.replace(" ", "_")
            fill = images_per_second(make_dataset(items, train_transforms(args.size), cache_dir))
            # Best of two cached epochs, each through a new dataset object reading the cache from disk.
            cached = max(images_per_second(make_dataset(items, train_transforms(args.size), cache_dir)) for _ in "ab")
            ratios[kind] = cached / first
            print(f"{kind:<22}{megabytes:>9.1f}{first:>13.1f}{fill:>12.1f}{cached:>10.1f}{ratios[kind]:>13.1f}x")
        print("(images/s)")

        kind = "DICOM JPEG Lossless"
        items = kinds[kind]
        cache_dir = folder / "cache" / kind.replace(" ", "_")
        print(
            f"\nDataLoader, {kind}, batch size {args.batch_size}, images/s including worker start-up "
            f"({len(items)} images uncached, {len(items) * CACHED_REPEATS} cached)"
        )
        header = f"{'workers':<10}{'uncached':>10}{'cached':>10}"
        print(header + "\n" + "-" * len(header))
        for workers in args.workers:
            uncached = loader_images_per_second(
                make_dataset(items, train_transforms(args.size), None), workers, args.batch_size
            )
            # Cached items cost milliseconds: repeat them so worker start-up does not dominate the figure.
            cached = loader_images_per_second(
                make_dataset(items * CACHED_REPEATS, train_transforms(args.size), cache_dir), workers, args.batch_size
            )
            print(f"{workers:<10}{uncached:>10.1f}{cached:>10.1f}")

        worst = min(ratios.values())
        print(f"\ncached epochs are {worst:.1f}x to {max(ratios.values()):.1f}x faster than the first (goal >= 10x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
