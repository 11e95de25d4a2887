"""A small, clearly synthetic chest-X-ray-like data set for the demo and the fast tests.

Each image is a smooth thorax-like intensity field (two dark lung fields, a bright mediastinum, a soft border)
with noise. Each of the synthetic findings adds its own learnable pattern at its own place: a bright blob, a
dark patch, stripes, or a ring. Prevalences fall geometrically from the first to the last finding, so the set
is long-tailed and multi-label, and patients own several images so patient-level splits can be tested.
Nothing here is, or resembles, patient data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

logger = logging.getLogger(__name__)

SYNTHETIC_LABELS = (
    "Synthetic_Opacity",
    "Synthetic_Effusion",
    "Synthetic_Nodule",
    "Synthetic_Stripes",
    "Synthetic_Ring",
    "Synthetic_Lucency",
    "Synthetic_Mass",
    "Synthetic_Line",
)


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate.

    Args:
        num_images: number of PNG files.
        image_size: side of the square images in pixels.
        num_labels: number of synthetic findings (at most ``len(SYNTHETIC_LABELS)``).
        head_prevalence: prevalence of the most frequent finding; each next one is ``decay`` times rarer.
        decay: ratio between the prevalences of consecutive findings.
        images_per_patient: mean number of images a synthetic patient has.
        seed: random seed; the same seed gives the same files.
    """

    num_images: int = 600
    image_size: int = 64
    num_labels: int = 6
    head_prevalence: float = 0.45
    decay: float = 0.55
    images_per_patient: float = 2.0
    seed: int = 0


def _thorax(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    base = 0.55 + 0.1 * rng.standard_normal()
    image = np.full((size, size), base, dtype=np.float64)
    for cx in (0.3, 0.7):
        lung = ((xx - cx) / 0.17) ** 2 + ((yy - 0.5) / 0.33) ** 2
        image -= 0.3 * np.exp(-(lung**2))
    image += 0.15 * np.exp(-(((xx - 0.5) / 0.08) ** 2))
    return image


def _add_finding(image: np.ndarray, index: int, rng: np.random.Generator) -> None:
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    jitter = rng.uniform(-0.04, 0.04, size=2)
    kind = index % 8
    if kind == 0:  # diffuse bright opacity in the lower right lung
        image += 0.25 * np.exp(-(((xx - 0.3 - jitter[0]) / 0.12) ** 2 + ((yy - 0.7 - jitter[1]) / 0.1) ** 2))
    elif kind == 1:  # bright band at the bottom (fluid level)
        image += 0.25 * (yy > 0.8 + jitter[1])
    elif kind == 2:  # small bright nodule in the upper left lung
        image += 0.4 * np.exp(-(((xx - 0.7 - jitter[0]) / 0.04) ** 2 + ((yy - 0.3 - jitter[1]) / 0.04) ** 2))
    elif kind == 3:  # horizontal stripes over the upper half
        image += 0.12 * np.sin(yy * 50) * (yy < 0.5)
    elif kind == 4:  # ring in the centre
        radius = np.hypot(xx - 0.5 - jitter[0], yy - 0.55 - jitter[1])
        image += 0.25 * np.exp(-(((radius - 0.15) / 0.02) ** 2))
    elif kind == 5:  # dark lucency at the apex
        image -= 0.25 * np.exp(-(((xx - 0.3 - jitter[0]) / 0.08) ** 2 + ((yy - 0.2) / 0.06) ** 2))
    elif kind == 6:  # large mass on the right border
        image += 0.3 * np.exp(-(((xx - 0.85) / 0.1) ** 2 + ((yy - 0.5 - jitter[1]) / 0.15) ** 2))
    else:  # vertical line (a tube)
        image += 0.35 * np.exp(-(((xx - 0.45 - jitter[0]) / 0.01) ** 2)) * (yy < 0.7)


def generate(out_dir: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write ``spec.num_images`` PNGs under ``out_dir/images`` and a label CSV ``out_dir/labels.csv``.

    The CSV has columns ``path`` (relative to ``out_dir``), ``patient`` and one 0/1 column per finding, the layout
    ``python -m pipeline prepare csv`` reads.

    Returns:
        Path of the CSV.
    """
    if not 1 <= spec.num_labels <= len(SYNTHETIC_LABELS):
        raise ValueError(f"num_labels must be between 1 and {len(SYNTHETIC_LABELS)}, got {spec.num_labels}")
    if spec.num_images < 1 or spec.image_size < 16:
        raise ValueError(f"need num_images >= 1 and image_size >= 16, got {spec.num_images}, {spec.image_size}")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    labels = SYNTHETIC_LABELS[: spec.num_labels]
    prevalence = spec.head_prevalence * spec.decay ** np.arange(spec.num_labels)
    targets = (rng.random((spec.num_images, spec.num_labels)) < prevalence).astype(np.int8)
    num_patients = max(1, round(spec.num_images / spec.images_per_patient))
    patients = rng.integers(0, num_patients, size=spec.num_images)

    rows = []
    for i in range(spec.num_images):
        image = _thorax(spec.image_size, rng)
        for k in np.flatnonzero(targets[i]):
            _add_finding(image, int(k), rng)
        image += 0.04 * rng.standard_normal(image.shape)
        pixels = np.clip(image * 255, 0, 255).astype(np.uint8)
        name = f"images/synthetic_{i:05d}.png"
        Image.fromarray(pixels, mode="L").save(out_dir / name)
        rows.append({"path": name, "patient": f"synthetic_patient_{patients[i]:04d}"})

    frame = pd.DataFrame(rows)
    for k, label in enumerate(labels):
        frame[label] = targets[:, k]
    csv = out_dir / "labels.csv"
    frame.to_csv(csv, index=False)
    logger.info("wrote %d synthetic images with %d findings to %s", spec.num_images, spec.num_labels, out_dir)
    return csv
