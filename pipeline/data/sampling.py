"""Repeat-factor sampling for long-tailed multi-label data.

Follows the repeat factor sampling of "LVIS: A Dataset for Large Vocabulary Instance Segmentation" (Gupta et al.,
CVPR 2019, arXiv:1908.03195), applied to image-level labels: with ``f_c`` the share of training images that are
positive for label ``c`` and a threshold ``t``,

    r_c = max(1, sqrt(t / f_c))        (label repeat factor)
    r_i = max over positive labels c of image i of r_c, and 1 for an image with no positive label

so labels rarer than ``t`` are oversampled and the rest are left alone. Each epoch, image ``i`` is drawn
``floor(r_i)`` times plus once more with probability ``r_i - floor(r_i)``.

Where this differs from the LVIS reference: the extra copies are chosen by systematic sampling over a shuffled
order, which keeps every image's probability but makes the epoch length fixed (``round(sum r_i)``). Training
engines read ``len(sampler)`` once and expect every epoch to match it.

Use from a bundle config, for example::

    "train_sampler": {
        "_target_": "pipeline.data.sampling.RepeatFactorSampler",
        "data": "@train_datalist", "threshold": 0.01, "seed": 0
    }

The sampler moves to the next epoch by itself after each pass; ``set_epoch`` sets the epoch explicitly (as with
``DistributedSampler``), which makes a resumed run draw the same order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


def _label_array(data: object, label_key: str) -> np.ndarray:
    """Labels as an ``(N, C)`` float array from datalist items or anything array-like."""
    if isinstance(data, torch.Tensor):
        labels = data.detach().cpu().numpy()
    elif isinstance(data, Sequence) and data and isinstance(data[0], Mapping):
        missing = sum(1 for item in data if label_key not in item)
        if missing:
            raise ValueError(f"{missing} of {len(data)} items have no {label_key!r} key")
        labels = np.asarray([item[label_key] for item in data], dtype=np.float64)
    else:
        labels = np.asarray(data, dtype=np.float64)
    if labels.ndim != 2 or labels.shape[0] == 0 or labels.shape[1] == 0:
        raise ValueError(f"labels must form a non-empty (N, C) array, got shape {labels.shape}")
    return labels


def label_frequencies(labels: np.ndarray) -> np.ndarray:
    """Share of images positive (value 1) for each label; unknown (-1) counts as not positive.

    Args:
        labels: ``(N, C)`` array of 1, 0 and -1.

    Returns:
        ``(C,)`` array of frequencies in ``[0, 1]``.
    """
    return (np.asarray(labels) == 1).mean(axis=0)


def repeat_factors(labels: np.ndarray, threshold: float) -> np.ndarray:
    """Per-image repeat factors ``r_i`` (see the module docstring).

    Args:
        labels: ``(N, C)`` array of 1 (positive), 0 and -1 (unknown).
        threshold: the frequency ``t`` below which a label is oversampled, in ``(0, 1]``.

    Returns:
        ``(N,)`` float array, every value >= 1.

    Raises:
        ValueError: for a threshold outside ``(0, 1]`` or labels that are not a non-empty 2-D array.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    labels = _label_array(labels, "label")
    frequencies = label_frequencies(labels)

    # A label without positives gets factor 1: no image carries it, so it never raises r_i.
    with np.errstate(divide="ignore"):
        label_factors = np.where(frequencies > 0, np.sqrt(threshold / np.maximum(frequencies, 1e-300)), 1.0)
    label_factors = np.maximum(label_factors, 1.0)

    positive = labels == 1
    return np.where(positive, label_factors[None, :], 1.0).max(axis=1)


class RepeatFactorSampler(Sampler[int]):
    """Sampler that repeats images carrying rare labels, epoch by epoch (LVIS repeat factor sampling).

    Args:
        data: datalist items (dicts with a ``label`` list), or an ``(N, C)`` array/tensor of 1/0/-1 labels.
        threshold: frequency ``t`` below which labels are oversampled, in ``(0, 1]``.
        seed: base seed; epoch ``e`` uses the stream seeded by ``(seed, e)``.
        shuffle: shuffle the epoch's indices (otherwise copies of an image are adjacent, in dataset order).
        num_replicas: number of processes in distributed training; each gets a disjoint share.
        rank: this process's rank in ``[0, num_replicas)``.
        label_key: key of the label list in datalist items.

    Raises:
        ValueError: for bad thresholds, replicas or labels.
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, object]] | np.ndarray | torch.Tensor,
        threshold: float,
        *,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
        label_key: str = "label",
    ) -> None:
        super().__init__()
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas=}, {rank=}")
        labels = _label_array(data, label_key)
        self.threshold = float(threshold)
        self.factors = repeat_factors(labels, self.threshold)
        self.frequencies = label_frequencies(labels)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0

        self._whole = np.floor(self.factors).astype(np.int64)
        self._fraction = self.factors - self._whole
        self.epoch_size = int(self._whole.sum() + round(float(self._fraction.sum())))
        self.num_samples = math.ceil(self.epoch_size / self.num_replicas)
        logger.info(
            "repeat factor sampling (t=%g): %d images -> %d draws per epoch, %d images repeated (max factor %.2f)",
            self.threshold,
            len(self.factors),
            self.epoch_size,
            int((self.factors > 1).sum()),
            float(self.factors.max()),
        )

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose draw the next iteration yields."""
        self.epoch = int(epoch)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """All indices drawn for ``epoch`` (every replica's share, before sharding), length ``epoch_size``."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        n_images = len(self.factors)

        # Systematic sampling over a random order: image j gets its extra copy with probability fraction[j].
        order = rng.permutation(n_images)
        cumulative = np.cumsum(self._fraction[order])
        offset = rng.random()
        crossings = np.floor(cumulative - offset) - np.floor(np.concatenate(([0.0], cumulative[:-1])) - offset)
        extra = np.zeros(n_images, dtype=np.int64)
        extra[order] = crossings.astype(np.int64)

        # The draw holds floor or ceil of the fractional total; move one copy to hit the fixed epoch size.
        surplus = int(self._whole.sum() + extra.sum()) - self.epoch_size
        if surplus > 0:
            extra[rng.choice(np.flatnonzero(extra), size=surplus, replace=False)] = 0
        elif surplus < 0:
            candidates = np.flatnonzero((extra == 0) & (self._fraction > 0))
            extra[rng.choice(candidates, size=-surplus, replace=False)] = 1

        indices = np.repeat(np.arange(n_images), self._whole + extra)
        if self.shuffle:
            indices = indices[rng.permutation(len(indices))]
        return indices

    def __iter__(self) -> Iterator[int]:
        indices = self.epoch_indices(self.epoch)
        self.epoch += 1

        # Pad by wrapping so every replica gets the same number of indices, then take this rank's share.
        total = self.num_samples * self.num_replicas
        if total > len(indices):
            indices = np.resize(indices, total)
        return iter(indices[self.rank : total : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples
