"""Sweep configuration: a YAML file that names the base training options and the settings to vary.

A sweep file looks like this (every path relative to the folder the command runs in)::

    name: my_study                    # also the default MLflow experiment
    description: BCE vs RAL           # optional, shown on the parent run
    budget: {wall_minutes: 45, note: "2 shared CPU cores"}   # optional, printed before the sweep starts
    parallel: 1                       # children at a time (default 1)
    threads: 1                        # torch threads per child (default: CPUs / parallel)
    base:                             # options of every child
      datalist: runs/data/datalist.json
      output_root: runs/sweeps/my_study
      tracking_uri: null              # default: sqlite:///<output_root>/mlflow.db
      experiment: my_study
      epochs: 8
      image_size: 64
      set: {n_bootstrap: 200}         # bundle overrides, as --set
    grid:                             # crossed with every variant
      seed: [0, 1, 2]
    variants:                         # one entry per family of settings, each with its own optional grid
      - {loss: bce}
      - loss: asl
        grid: {"loss::gamma_neg": [2, 4]}

Keys of ``base``, ``grid`` and a variant are options of ``python -m pipeline train`` written with underscores
(``epochs``, ``image_size``, ``batch_size``, ``learning_rate``, ``network``, ``pretrained``, ``loss``, ``seed``,
``device``, ``num_workers``, ``config``) or bundle ids containing ``::`` or ``#``, which become ``--set``
overrides; any other bundle id goes under ``set``. A plain key that is not a train option is an error, so a typo
cannot silently do nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

# Options of ``python -m pipeline train`` a sweep may set, with their flags.
TRAIN_OPTIONS = {
    "epochs": "--epochs",
    "image_size": "--image-size",
    "batch_size": "--batch-size",
    "learning_rate": "--learning-rate",
    "network": "--network",
    "pretrained": "--pretrained",
    "loss": "--loss",
    "seed": "--seed",
    "device": "--device",
    "num_workers": "--num-workers",
    "bundle_root": "--bundle-root",
    "config": "--config",
}
_BASE_ONLY = {"datalist", "output_root", "tracking_uri", "experiment", "set"}
_TOP_LEVEL = {"name", "description", "budget", "parallel", "threads", "base", "grid", "variants"}
_SLUG_UNSAFE = re.compile(r"[^0-9A-Za-z._+-]")


def is_bundle_id(key: str) -> bool:
    """True for a bundle config id written with a separator (``loss::gamma_neg``, ``loss#gamma_neg``)."""
    return "::" in key or "#" in key


def short_key(key: str) -> str:
    """Last component of a bundle id (``loss::gamma_neg`` -> ``gamma_neg``); train options are unchanged."""
    return re.split(r"::|#", key)[-1]


@dataclass(frozen=True)
class Budget:
    """Compute budget stated in the sweep file; printed up front and compared with the time estimate."""

    wall_minutes: float | None = None
    note: str | None = None

    def describe(self) -> str:
        parts = []
        if self.wall_minutes is not None:
            parts.append(f"{self.wall_minutes:g} min wall time")
        if self.note:
            parts.append(self.note)
        return "; ".join(parts) if parts else "none stated"


@dataclass(frozen=True)
class ChildSpec:
    """One training of a sweep.

    Attributes:
        key: canonical identity built from the varied settings, e.g. ``loss=asl, loss::gamma_neg=2, seed=0``; it
            is what the sweep state and the MLflow tag ``sweep.key`` record.
        name: folder-safe short name, e.g. ``asl_gamma_neg-2_seed-0``.
        varied: the settings that distinguish this child (from the grid and its variant).
        options: train options (base merged with the varied ones that are options).
        overrides: bundle overrides (``--set``), base merged with the varied bundle ids.
    """

    key: str
    name: str
    varied: dict[str, Any]
    options: dict[str, Any]
    overrides: dict[str, Any]

    def train_arguments(self) -> list[str]:
        """Options and ``--set`` pairs of ``python -m pipeline train`` for this child (no datalist or paths)."""
        args: list[str] = []
        for option, value in self.options.items():
            flag = TRAIN_OPTIONS[option]
            for item in value if isinstance(value, list) else [value]:
                args += [flag, str(item)]
        for key, value in self.overrides.items():
            args += ["--set", f"{key}={json.dumps(value)}"]
        return args


@dataclass
class SweepConfig:
    """A parsed sweep file.

    Attributes:
        name: sweep name (parent run name, default experiment).
        datalist: absolute path of the datalist every child trains on.
        output_root: folder of the sweep: state file, children's outputs, default MLflow store.
        tracking_uri: MLflow tracking URI of the parent and children.
        experiment: MLflow experiment of the parent and children.
        children: the expanded children, in run order.
        base_options: train options shared by every child.
        base_overrides: bundle overrides shared by every child.
        parallel: children run at a time.
        threads: torch threads per child, or None for CPUs / parallel.
        budget: stated compute budget.
        description: free text for the parent run.
        source: the YAML text, logged on the parent run.
        source_path: where it was read from.
    """

    name: str
    datalist: Path
    output_root: Path
    tracking_uri: str
    experiment: str
    children: list[ChildSpec]
    base_options: dict[str, Any] = field(default_factory=dict)
    base_overrides: dict[str, Any] = field(default_factory=dict)
    parallel: int = 1
    threads: int | None = None
    budget: Budget = field(default_factory=Budget)
    description: str = ""
    source: str = ""
    source_path: Path | None = None

    def fingerprint(self) -> str:
        """Hash of what every child shares; a sweep can only be resumed with the same fingerprint."""
        shared = {
            "datalist": str(self.datalist),
            "tracking_uri": self.tracking_uri,
            "experiment": self.experiment,
            "options": self.base_options,
            "overrides": self.base_overrides,
        }
        return hashlib.sha256(json.dumps(shared, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def shared_settings(self) -> dict[str, Any]:
        """Flat description of the shared settings, for the parent run's parameters."""
        settings: dict[str, Any] = {"datalist": str(self.datalist), "experiment": self.experiment}
        settings.update({f"base.{k}": v for k, v in self.base_options.items()})
        settings.update({f"base.set.{k}": v for k, v in self.base_overrides.items()})
        return settings


def _check_mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a mapping, got {type(value).__name__}: {value!r}")
    return dict(value)


def _check_key(key: Any, where: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"{where}: keys must be non-empty strings, got {key!r}")
    if key in TRAIN_OPTIONS or is_bundle_id(key):
        return key
    raise ValueError(
        f"{where}: unknown key {key!r}; use a train option ({', '.join(TRAIN_OPTIONS)}), a bundle id with '::' "
        "(e.g. loss::gamma_neg), or put other bundle ids under 'set'"
    )


def _expand_grid(grid: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    keys = []
    values = []
    for key, options in grid.items():
        keys.append(_check_key(key, where))
        if not isinstance(options, list) or not options:
            raise ValueError(f"{where}: {key!r} must list at least one value, got {options!r}")
        if len({json.dumps(v, sort_keys=True) for v in options}) != len(options):
            raise ValueError(f"{where}: {key!r} lists a value twice: {options!r}")
        values.append(options)
    return [dict(zip(keys, point, strict=True)) for point in itertools.product(*values)]


def _split(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate train options from bundle overrides."""
    options = {k: v for k, v in settings.items() if k in TRAIN_OPTIONS}
    overrides = {k: v for k, v in settings.items() if k not in TRAIN_OPTIONS}
    return options, overrides


def _sort_varied(varied: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Loss first, seed last, the rest by name: the order of keys and folder names."""

    def rank(key: str) -> tuple[int, str]:
        return (0 if key == "loss" else 2 if key == "seed" else 1, key)

    return sorted(varied.items(), key=lambda item: rank(item[0]))


def child_key(varied: Mapping[str, Any]) -> str:
    """Canonical identity of a child from its varied settings."""
    return ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in _sort_varied(varied)) or "base"


def _slug(varied: Mapping[str, Any]) -> str:
    parts = []
    for key, value in _sort_varied(varied):
        text = _SLUG_UNSAFE.sub("", str(value).replace(" ", ""))
        parts.append(text if key == "loss" else f"{_SLUG_UNSAFE.sub('', short_key(key))}-{text}")
    return "_".join(parts) or "base"


def expand_children(
    base: Mapping[str, Any], grid: Mapping[str, Any], variants: Sequence[Mapping[str, Any]] | None
) -> list[ChildSpec]:
    """Children of a sweep: every variant crossed with its own grid and with the common grid.

    Args:
        base: shared settings (train options and bundle ids; ``set`` already merged in).
        grid: common grid, ``{key: [values]}``.
        variants: list of ``{key: value, ..., "grid": {key: [values]}}``; None or empty means one plain variant.

    Returns:
        The children in order: common grid points (outer loop), then variants in file order, then the points
        of each variant's own grid.

    Raises:
        ValueError: for unknown keys, empty value lists, a key set twice, or two identical children.
    """
    common = _expand_grid(grid, "grid")
    families = []
    for index, variant in enumerate(variants or [{}]):
        where = f"variants[{index}]"
        variant = _check_mapping(variant, where)
        own_grid = _check_mapping(variant.pop("grid", None), f"{where}.grid")
        fixed = {_check_key(k, where): v for k, v in variant.items()}
        clash = (set(fixed) & set(own_grid)) | ((set(fixed) | set(own_grid)) & set(grid))
        if clash:
            raise ValueError(f"{where}: {sorted(clash)} set both here and in a grid; set each key in one place")
        families.append((fixed, _expand_grid(own_grid, f"{where}.grid")))

    # The common grid is the outer loop, so that a sweep stopped early has every setting at the first seeds.
    children: list[ChildSpec] = []
    names: dict[str, str] = {}
    for point in common:
        for fixed, own_points in families:
            for own_point in own_points:
                varied = {**fixed, **own_point, **point}
                options, overrides = _split({**base, **varied})
                key = child_key(varied)
                if key in names:
                    raise ValueError(f"two children share the settings {key!r}; remove the duplicate")
                names[key] = _slug(varied)
                children.append(ChildSpec(key, names[key], dict(_sort_varied(varied)), options, overrides))

    # Folder names must be unique too; a clash after slugging gets a short hash of the key.
    seen: dict[str, int] = {}
    for child in children:
        seen[child.name] = seen.get(child.name, 0) + 1
    return [
        child
        if seen[child.name] == 1
        else ChildSpec(
            child.key,
            f"{child.name}-{hashlib.sha1(child.key.encode()).hexdigest()[:6]}",
            child.varied,
            child.options,
            child.overrides,
        )  # fmt: skip
        for child in children
    ]


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where} must be a positive integer, got {value!r}")
    return value


def _budget(value: Any) -> Budget:
    if value is None:
        return Budget()
    if isinstance(value, str):
        return Budget(note=value)
    value = _check_mapping(value, "budget")
    unknown = set(value) - {"wall_minutes", "note"}
    if unknown:
        raise ValueError(f"budget: unknown keys {sorted(unknown)}; allowed: wall_minutes, note")
    minutes = value.get("wall_minutes")
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int | float) or minutes <= 0):
        raise ValueError(f"budget.wall_minutes must be a positive number, got {minutes!r}")
    return Budget(float(minutes) if minutes is not None else None, value.get("note"))


def parse_sweep_config(
    data: Mapping[str, Any], *, source: str = "", cwd: str | os.PathLike | None = None
) -> SweepConfig:
    """Build a :class:`SweepConfig` from the parsed YAML mapping (see the module docstring for the format).

    Raises:
        ValueError: naming the offending key or value.
    """
    data = _check_mapping(data, "sweep file")
    unknown = set(data) - _TOP_LEVEL
    if unknown:
        raise ValueError(f"sweep file: unknown top-level keys {sorted(unknown)}; allowed: {sorted(_TOP_LEVEL)}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"sweep file: 'name' must be a non-empty string, got {name!r}")
    root = Path(cwd) if cwd is not None else Path.cwd()

    base = _check_mapping(data.get("base"), "base")
    for key in ("datalist", "output_root"):
        if not base.get(key):
            raise ValueError(f"base.{key} is required")
    datalist = (root / str(base.pop("datalist"))).resolve()
    output_root = (root / str(base.pop("output_root"))).resolve()
    tracking_uri = base.pop("tracking_uri", None) or f"sqlite:///{output_root / 'mlflow.db'}"
    experiment = str(base.pop("experiment", None) or name)
    bundle_set = _check_mapping(base.pop("set", None), "base.set")
    shared = {_check_key(k, "base"): v for k, v in base.items()}
    if "config" in shared and not isinstance(shared["config"], list):
        shared["config"] = [shared["config"]]
    shared = {**{str(k): v for k, v in bundle_set.items()}, **shared}
    base_options, base_overrides = _split(shared)

    if data.get("variants") is not None and not isinstance(data.get("variants"), list):
        raise ValueError(f"variants must be a list, got {type(data.get('variants')).__name__}")
    children = expand_children(shared, _check_mapping(data.get("grid"), "grid"), data.get("variants"))
    threads = data.get("threads")
    return SweepConfig(
        name=name.strip(),
        datalist=datalist,
        output_root=output_root,
        tracking_uri=str(tracking_uri),
        experiment=experiment,
        children=children,
        base_options=base_options,
        base_overrides=base_overrides,
        parallel=_positive_int(data.get("parallel", 1), "parallel"),
        threads=_positive_int(threads, "threads") if threads is not None else None,
        budget=_budget(data.get("budget")),
        description=str(data.get("description") or ""),
        source=source,
    )


def load_sweep_config(path: str | os.PathLike, cwd: str | os.PathLike | None = None) -> SweepConfig:
    """Read and expand a sweep YAML file; relative paths in it are resolved against ``cwd`` (default: here).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not valid YAML or not a valid sweep (the message names the problem).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file not found: {path}")
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from err
    config = parse_sweep_config(data, source=text, cwd=cwd)
    config.source_path = path.resolve()
    return config
