"""Label sets: ordered disease names, their training counts and head/medium/tail groups.

Label sets are data, stored as JSON in ``configs/labels/<name>.json``; this module reads them and derives frequency
groups from the published counts. No class list lives in code.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

CONFIG_DIR_ENV = "PIPELINE_CONFIG_DIR"
"""Environment variable naming the ``configs`` folder (the one that holds ``labels/``)."""

GROUP_NAMES = ("head", "medium", "tail")


@dataclass(frozen=True)
class LabelSet:
    """An ordered list of findings with optional published training counts.

    Attributes:
        name: short identifier, e.g. ``"nih14"``.
        labels: finding names in model output order.
        train_counts: positives per label in the training data; empty when not published.
        train_total: number of training images the counts refer to, or ``None``.
        groups: ``{"head": [...], "medium": [...], "tail": [...]}``; empty when no counts are known.
        source: where the list and counts come from.
        no_finding_label: name of the optional "no finding" class that :meth:`with_no_finding` appends, if the
            dataset encodes normal images as the absence of all findings.
        extra: any other fields of the file, kept as read.
    """

    name: str
    labels: tuple[str, ...]
    train_counts: Mapping[str, int] = field(default_factory=dict)
    train_total: int | None = None
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = ""
    no_finding_label: str | None = None
    extra: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError(f"label set {self.name!r} has no labels")
        duplicated = sorted({label for label in self.labels if self.labels.count(label) > 1})
        if duplicated:
            raise ValueError(f"label set {self.name!r} lists these labels more than once: {duplicated}")
        unknown = sorted(set(self.train_counts) - set(self.labels) - {self.no_finding_label})
        if unknown:
            raise ValueError(f"label set {self.name!r} has train_counts for labels it does not list: {unknown}")

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, label: str) -> int:
        """Position of ``label`` in the output order."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise ValueError(f"{label!r} is not a label of {self.name!r}; labels are {list(self.labels)}") from None

    def with_no_finding(self, *, head_fraction: float = 0.1, tail_fraction: float = 0.01) -> LabelSet:
        """Return a copy with the "no finding" class appended as the last label.

        Groups are recomputed from the counts (when known) so the new class is placed too.

        Raises:
            ValueError: if the label set declares no ``no_finding_label``.
        """
        if self.no_finding_label is None:
            raise ValueError(f"label set {self.name!r} declares no 'no_finding_label' to append")
        if self.no_finding_label in self.labels:
            return self
        labels = (*self.labels, self.no_finding_label)
        groups: dict[str, tuple[str, ...]] = {}
        if self.train_counts and self.train_total:
            counted = {label: self.train_counts[label] for label in labels if label in self.train_counts}
            groups = compute_groups(counted, self.train_total, head_fraction=head_fraction, tail_fraction=tail_fraction)
        return LabelSet(
            name=f"{self.name}+{self.no_finding_label}",
            labels=labels,
            train_counts=dict(self.train_counts),
            train_total=self.train_total,
            groups=groups,
            source=self.source,
            no_finding_label=self.no_finding_label,
            extra=dict(self.extra),
        )

    def to_dict(self) -> dict[str, object]:
        """The JSON form, as stored in ``configs/labels``."""
        data: dict[str, object] = {
            "name": self.name,
            "labels": list(self.labels),
            "train_counts": dict(self.train_counts),
            "train_total": self.train_total,
            "groups": {key: list(value) for key, value in self.groups.items()},
            "source": self.source,
        }
        if self.no_finding_label is not None:
            data["no_finding_label"] = self.no_finding_label
        data.update(self.extra)
        return data


def compute_groups(
    counts: Mapping[str, int],
    total: int,
    *,
    head_fraction: float = 0.1,
    tail_fraction: float = 0.01,
) -> dict[str, tuple[str, ...]]:
    """Split labels into head, medium and tail by their share of the training images.

    A label is *head* when ``count / total > head_fraction``, *tail* when ``count / total < tail_fraction`` and
    *medium* otherwise. Labels keep the order of ``counts`` within each group.

    Args:
        counts: positives per label.
        total: number of training images the counts refer to.
        head_fraction: share above which a label is head.
        tail_fraction: share below which a label is tail.

    Returns:
        ``{"head": (...), "medium": (...), "tail": (...)}``.

    Raises:
        ValueError: for a non-positive total, negative counts, or thresholds outside ``0 <= tail <= head <= 1``.
    """
    if total is None or total <= 0:
        raise ValueError(f"total must be a positive number of images, got {total!r}")
    if not 0.0 <= tail_fraction <= head_fraction <= 1.0:
        raise ValueError(
            f"need 0 <= tail_fraction <= head_fraction <= 1, got tail_fraction={tail_fraction}, "
            f"head_fraction={head_fraction}"
        )
    negative = {label: count for label, count in counts.items() if count < 0}
    if negative:
        raise ValueError(f"counts must be >= 0, got {negative}")

    groups: dict[str, list[str]] = {name: [] for name in GROUP_NAMES}
    for label, count in counts.items():
        share = count / total
        if share > head_fraction:
            groups["head"].append(label)
        elif share < tail_fraction:
            groups["tail"].append(label)
        else:
            groups["medium"].append(label)
    return {name: tuple(members) for name, members in groups.items()}


def find_config_dir() -> Path:
    """Locate the project's ``configs`` folder.

    Looks, in order, at ``$PIPELINE_CONFIG_DIR``, then at ``configs/`` in every folder above this package file (the
    repository root for a source checkout), then in the current directory (for an installed package run from a
    checkout).

    Raises:
        FileNotFoundError: when no candidate holds a ``labels`` folder.
    """
    env_value = os.environ.get(CONFIG_DIR_ENV)
    if env_value:
        path = Path(env_value).expanduser()
        if not (path / "labels").is_dir():
            raise FileNotFoundError(f"{CONFIG_DIR_ENV}={env_value} has no 'labels' folder")
        return path

    candidates = [parent / "configs" for parent in Path(__file__).resolve().parents]
    candidates.append(Path.cwd() / "configs")
    for candidate in candidates:
        if (candidate / "labels").is_dir():
            return candidate
    raise FileNotFoundError(
        f"cannot find a configs/labels folder (looked above {Path(__file__).parent} and in the current directory); "
        f"set {CONFIG_DIR_ENV} to the project's configs folder"
    )


def available_label_sets() -> list[str]:
    """Names of the label sets in ``configs/labels``."""
    return sorted(path.stem for path in (find_config_dir() / "labels").glob("*.json"))


def load_label_set(name_or_path: str | os.PathLike[str] | LabelSet) -> LabelSet:
    """Read a label set by name (``"nih14"``) or from an explicit JSON path.

    A string that ends in ``.json`` or names an existing file is read as a path; anything else is looked up as
    ``configs/labels/<name>.json``. A :class:`LabelSet` is returned unchanged.

    Raises:
        FileNotFoundError: when the file does not exist (the message lists the known names).
        ValueError: when the file is not a valid label set.
    """
    if isinstance(name_or_path, LabelSet):
        return name_or_path
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if not (text.endswith(".json") or path.is_file()):
        labels_dir = find_config_dir() / "labels"
        path = labels_dir / f"{text}.json"
        if not path.is_file():
            known = sorted(p.stem for p in labels_dir.glob("*.json"))
            raise FileNotFoundError(f"no label set named {text!r} in {labels_dir}; known label sets: {known}")
    elif not path.is_file():
        raise FileNotFoundError(f"label set file {path} does not exist")

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"label set file {path} is not valid JSON: {err}") from err
    return label_set_from_dict(data, origin=str(path))


def label_set_from_dict(data: Mapping[str, object], *, origin: str = "<dict>") -> LabelSet:
    """Build a :class:`LabelSet` from its JSON form, checking field types.

    Raises:
        ValueError: naming ``origin`` and the bad field.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{origin}: a label set must be a JSON object, got {type(data).__name__}")
    labels = data.get("labels")
    if not isinstance(labels, Sequence) or isinstance(labels, str) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"{origin}: 'labels' must be a list of strings, got {labels!r}")
    counts = data.get("train_counts") or {}
    if not isinstance(counts, Mapping) or not all(isinstance(v, int) for v in counts.values()):
        raise ValueError(f"{origin}: 'train_counts' must map label names to integers, got {counts!r}")
    total = data.get("train_total")
    if total is not None and (not isinstance(total, int) or total <= 0):
        raise ValueError(f"{origin}: 'train_total' must be a positive integer or null, got {total!r}")
    groups = data.get("groups") or {}
    if not isinstance(groups, Mapping) or set(groups) - set(GROUP_NAMES):
        raise ValueError(f"{origin}: 'groups' must be an object with keys among {GROUP_NAMES}, got {groups!r}")

    known = set(labels) | {data.get("no_finding_label")}
    for group, members in groups.items():
        stray = sorted(set(members) - known)
        if stray:
            raise ValueError(f"{origin}: group {group!r} lists labels that are not in 'labels': {stray}")

    core = {"name", "labels", "train_counts", "train_total", "groups", "source", "no_finding_label"}
    try:
        return LabelSet(
            name=str(data.get("name") or Path(origin).stem),
            labels=tuple(labels),
            train_counts=dict(counts),
            train_total=total,
            groups={key: tuple(value) for key, value in groups.items()},
            source=str(data.get("source", "")),
            no_finding_label=data.get("no_finding_label"),
            extra={key: value for key, value in data.items() if key not in core},
        )
    except ValueError as err:
        raise ValueError(f"{origin}: {err}") from err
