"""The bad-file policy: stop at the first unreadable file, or skip it, drop it from its batch and record why.

Pieces, all safe with DataLoader workers (records travel inside the batch, never through globals):

* :class:`SkipBadFiles` wraps any map-style dataset. Under ``"stop"`` an :class:`ImageReadError` raised anywhere in
  the item's transforms is re-raised as is (file and reason, without MONAI's ``applying transform`` wrapper); under
  ``"skip"`` the item is replaced by a :class:`SkippedFile` marker. Other exceptions always propagate.
* :func:`collate_skipping` is the DataLoader ``collate_fn``: it collates the remaining items with MONAI's
  ``list_data_collate`` and stores the markers as a JSON string under :data:`SKIPPED_KEY`. A string is kept whole by
  ``decollate_batch`` and by pinning, so the key survives every MONAI workflow step without upsetting batch sizes.
  A batch whose items were all skipped holds only that key.
* :class:`SkippingDataLoader` (a MONAI ``DataLoader`` using that collate) drops batches left empty, which an
  engine could not run; under ``"skip"`` its length is therefore unknown (see the class notes).
* :class:`SkipLog` gathers the records in the main process (by ignite handler, or by wrapping a plain loader),
  counts distinct files and writes them to a CSV file.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from monai.data import DataLoader, list_data_collate
from torch.utils.data import Dataset as TorchDataset

from pipeline.io.errors import ImageReadError, find_image_read_error

__all__ = [
    "BAD_FILE_POLICIES",
    "SKIPPED_KEY",
    "SkipBadFiles",
    "SkipLog",
    "SkippedFile",
    "SkippingDataLoader",
    "collate_skipping",
    "is_empty_batch",
    "skipped_records",
]

logger = logging.getLogger(__name__)

BAD_FILE_POLICIES = ("stop", "skip")
SKIPPED_KEY = "skipped_files"
CSV_COLUMNS = ("path", "reason", "occurrences")


class SkippedFile(NamedTuple):
    """One unreadable file: its path and why it could not be read."""

    path: str
    reason: str


class SkipBadFiles(TorchDataset):
    """Apply the bad-file policy to a map-style dataset (e.g. MONAI ``Dataset`` or ``PersistentDataset``).

    Args:
        dataset: the dataset whose items may fail with :class:`ImageReadError` (raised by ``XRayReader``/``read_xray``
            inside its transforms).
        policy: ``"stop"`` re-raises the error, naming the file and the reason; ``"skip"`` returns a
            :class:`SkippedFile` that :func:`collate_skipping` drops from the batch and records.

    Raises:
        ValueError: ``policy`` is not one of :data:`BAD_FILE_POLICIES`.
    """

    def __init__(self, dataset: Any, policy: str = "stop") -> None:
        if policy not in BAD_FILE_POLICIES:
            raise ValueError(f"policy must be one of {BAD_FILE_POLICIES}, got {policy!r}")
        self.dataset = dataset
        self.policy = policy

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except Exception as exc:
            error = find_image_read_error(exc)
            if error is None:
                raise
            if self.policy == "stop":
                # Re-raise the reader's own error; its cause (the decoder's exception, if any) is kept.
                raise ImageReadError(error.path, error.reason) from error.__cause__
            logger.warning("Skipping unreadable file %s", error)
            return SkippedFile(error.path, error.reason if error.reason is not None else str(error))


def collate_skipping(batch: Sequence[Any]) -> dict:
    """DataLoader ``collate_fn`` for :class:`SkipBadFiles` datasets of dictionaries.

    Args:
        batch: items from the dataset, dictionaries or :class:`SkippedFile` markers.

    Returns:
        The MONAI-collated dictionary of the readable items, plus :data:`SKIPPED_KEY` holding a JSON list of
        ``{"path", "reason"}`` objects (``"[]"`` when nothing was skipped; see :func:`skipped_records`). When every
        item was skipped the dictionary holds only :data:`SKIPPED_KEY`.

    Raises:
        TypeError: the readable items are not dictionaries.
    """
    kept = [item for item in batch if not isinstance(item, SkippedFile)]
    skipped = [item._asdict() for item in batch if isinstance(item, SkippedFile)]
    collated = list_data_collate(kept) if kept else {}
    if not isinstance(collated, dict):
        raise TypeError(f"collate_skipping needs dictionary items, the batch collated to {type(collated).__name__}")
    collated[SKIPPED_KEY] = json.dumps(skipped)
    return collated


def _dump_records(records: Sequence[SkippedFile]) -> str:
    return json.dumps([record._asdict() for record in records])


def skipped_records(batch: Mapping) -> list[SkippedFile]:
    """The files skipped while building ``batch`` (a :func:`collate_skipping` output); empty when none."""
    raw = batch.get(SKIPPED_KEY)
    if raw is None:
        return []
    if isinstance(raw, list | tuple):  # a batch that went through decollate/collate again
        raw = raw[0] if raw else "[]"
    return [SkippedFile(record["path"], record["reason"]) for record in json.loads(raw)]


def is_empty_batch(batch: Mapping) -> bool:
    """True when every item of a :func:`collate_skipping` batch was skipped."""
    return set(batch) <= {SKIPPED_KEY}


class SkippingDataLoader(DataLoader):
    """MONAI ``DataLoader`` for :class:`SkipBadFiles` datasets that never yields a batch whose items were all skipped.

    It collates with :func:`collate_skipping` (unless another ``collate_fn`` is given) and moves the records of a
    dropped batch onto the next batch it yields, so a :class:`SkipLog` attached to the engine still sees them;
    records left after the last batch go to ``skip_log`` directly (or to a warning when there is none).

    Under the ``"skip"`` policy the number of batches is not known in advance, so ``len()`` raises ``TypeError``,
    which MONAI workflows and ignite take as "unknown epoch length" (the epoch ends when the loader is exhausted).
    A length would make ignite restart the loader to make up a dropped batch, repeating evaluation samples.
    Under ``"stop"`` it has the usual length.

    Args:
        dataset: a :class:`SkipBadFiles` (as returned by :func:`~pipeline.io.cache.make_dataset`) or any dataset.
        skip_log: receives records that no later batch could carry.
        kwargs: ``monai.data.DataLoader`` / ``torch.utils.data.DataLoader`` arguments.
    """

    def __init__(self, dataset: Any, skip_log: SkipLog | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("collate_fn", collate_skipping)
        super().__init__(dataset, **kwargs)
        self.skip_log = skip_log

    def __len__(self) -> int:
        if getattr(self.dataset, "policy", None) == "skip":
            raise TypeError("SkippingDataLoader has no length under the 'skip' policy: empty batches are dropped")
        return super().__len__()

    def __iter__(self) -> Iterator[Any]:
        pending: list[SkippedFile] = []
        for batch in super().__iter__():
            if not isinstance(batch, Mapping) or SKIPPED_KEY not in batch:
                yield batch
                continue
            records = skipped_records(batch)
            if is_empty_batch(batch):
                pending.extend(records)
                continue
            if pending:
                batch[SKIPPED_KEY] = _dump_records([*pending, *records])
                pending = []
            yield batch
        if pending:
            if self.skip_log is not None:
                for record in pending:
                    self.skip_log.add(record.path, record.reason)
            else:
                logger.warning("%d unreadable file(s) skipped in the last batches", len(pending))


class SkipLog:
    """Collects skipped files in the main process, counts them and writes them to CSV.

    A file skipped in several epochs is listed once, with the number of times it was met.

    It is also an ignite handler: ``attach(engine)`` records every batch's skipped files as soon as the batch is
    fetched (``Events.GET_BATCH_COMPLETED``, before the iteration runs), and when ``csv_path`` is set, writes the
    CSV file at the end of every epoch and of the run. MONAI bundles can list it in ``train_handlers`` or
    ``val_handlers``.

    Args:
        csv_path: where :meth:`write_csv` writes by default (and where the ignite handler writes); ``None`` for none.
    """

    def __init__(self, csv_path: str | os.PathLike | None = None) -> None:
        self.csv_path = Path(csv_path) if csv_path is not None else None
        self._reasons: dict[str, str] = {}
        self._occurrences: Counter[str] = Counter()

    def add(self, path: str, reason: str) -> None:
        """Record one skipped file; the first reason seen for a path is kept."""
        self._reasons.setdefault(path, reason)
        self._occurrences[path] += 1

    def record_batch(self, batch: Mapping) -> int:
        """Record the skipped files carried by a :func:`collate_skipping` batch; returns how many it carried."""
        records = skipped_records(batch)
        for record in records:
            self.add(record.path, record.reason)
        return len(records)

    @property
    def count(self) -> int:
        """Number of distinct files skipped."""
        return len(self._reasons)

    def __len__(self) -> int:
        return self.count

    @property
    def records(self) -> list[SkippedFile]:
        """Distinct skipped files with their reasons, in the order first met."""
        return [SkippedFile(path, reason) for path, reason in self._reasons.items()]

    def write_csv(self, path: str | os.PathLike | None = None) -> Path:
        """Write ``path,reason,occurrences`` rows (a header row even when nothing was skipped).

        Args:
            path: the CSV file; defaults to ``csv_path``.

        Returns:
            The path written.

        Raises:
            ValueError: neither ``path`` nor ``csv_path`` is set.
        """
        target = Path(path) if path is not None else self.csv_path
        if target is None:
            raise ValueError("write_csv needs a path: none given and csv_path is None")
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for path_, reason in self._reasons.items():
                writer.writerow((path_, reason, self._occurrences[path_]))
        return target

    def iterate(self, loader: Iterable[Mapping]) -> Iterator[Mapping]:
        """Yield the batches of ``loader`` after recording their skipped files, dropping batches left empty.

        For plain training loops; ignite engines should use :meth:`attach` instead.
        """
        for batch in loader:
            self.record_batch(batch)
            if not is_empty_batch(batch):
                yield batch

    def attach(self, engine: Any) -> None:
        """Register the recording (and CSV writing, when ``csv_path`` is set) handlers on an ignite engine."""
        from ignite.engine import Events

        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._on_batch)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._on_epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self._on_completed)

    def _on_batch(self, engine: Any) -> None:
        batch = engine.state.batch
        if isinstance(batch, Mapping):
            self.record_batch(batch)

    def _on_epoch_completed(self, engine: Any) -> None:
        if self.csv_path is not None:
            self.write_csv()

    def _on_completed(self, engine: Any) -> None:
        if self.csv_path is not None:
            self.write_csv()
        if self.count:
            where = f"; listed in {self.csv_path}" if self.csv_path is not None else ""
            logger.warning("%d unreadable file(s) skipped%s", self.count, where)
