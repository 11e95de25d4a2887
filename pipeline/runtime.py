"""Small functions the bundle configs call at run time: reading datalists, choosing devices and distributed
back-ends, and recording what a run ran with (versions, git commit, resolved config).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

SPLITS = ("training", "validation", "test")
_VERSIONED_PACKAGES = (
    "torch", "torchvision", "monai", "pytorch-ignite", "pydicom", "numpy", "pandas", "scikit-learn", "mlflow",
)  # fmt: skip


def read_datalist(path: str | os.PathLike) -> dict[str, Any]:
    """Read a datalist JSON written by ``python -m pipeline prepare``; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"datalist not found: {path}")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"datalist {path} is not valid JSON: {err}") from err
    labels = content.get("labels")
    if not isinstance(labels, list) or not labels:
        raise ValueError(f"datalist {path} has no 'labels' list naming the classes in output order")
    return content


def label_names(path: str | os.PathLike) -> list[str]:
    """Label names of a datalist, in the network's output order."""
    return list(read_datalist(path)["labels"])


def load_split(path: str | os.PathLike, split: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Items of one split, with relative image paths resolved against the datalist's folder.

    Each item gets a ``path`` key (the image path as a string), kept through the transforms so that predictions
    and error messages name their file.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    content = read_datalist(path)
    root = Path(path).resolve().parent
    items = content.get(split)
    if not isinstance(items, list):
        raise ValueError(f"datalist {path} has no '{split}' list")
    num_labels = len(content["labels"])
    out = []
    for index, item in enumerate(items[:limit] if limit else items):
        if "image" not in item or "label" not in item:
            raise ValueError(f"datalist {path}: {split}[{index}] needs 'image' and 'label' keys, has {sorted(item)}")
        if len(item["label"]) != num_labels:
            raise ValueError(
                f"datalist {path}: {split}[{index}] has {len(item['label'])} label values, expected {num_labels}"
            )
        image = Path(item["image"])
        image = image if image.is_absolute() else root / image
        out.append({**item, "image": str(image), "path": str(image)})
    return out


def label_counts(path: str | os.PathLike, split: str = "training") -> dict[str, int]:
    """Number of positive images per label in one split."""
    content = read_datalist(path)
    counts = dict.fromkeys(content["labels"], 0)
    for item in content.get(split, []):
        for name, value in zip(content["labels"], item["label"], strict=True):
            counts[name] += int(value == 1)
    return counts


def select_device(requested: str | None = None) -> torch.device:
    """The device to run on: ``requested`` if given, else this rank's GPU when CUDA is available, else CPU."""
    import torch

    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init_distributed() -> torch.device:
    """Join the ``torchrun`` process group: NCCL on GPUs, gloo on CPU. Returns this rank's device."""
    import torch

    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
        logger.info(
            "rank %d/%d joined with %s", torch.distributed.get_rank(), torch.distributed.get_world_size(), backend
        )
    device = select_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def is_rank_zero() -> bool:
    """True outside ``torch.distributed`` and on rank 0 inside it."""
    import torch

    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
        torch.distributed.get_rank() == 0
    )


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on, plus Python's."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(start: str | os.PathLike = ".") -> str:
    """The current git commit of the checkout around ``start`` (with ``-dirty`` if modified), or ``unknown``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=start, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=start,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg")


def _looks_like_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def find_images(inputs: str | os.PathLike | list[str | os.PathLike]) -> list[dict[str, Any]]:
    """Inference items for files and folders (searched recursively) of DICOM, PNG and JPEG images.

    Files named explicitly are always kept (a bad one then fails or is skipped by the bad-file policy); inside
    folders, files with an image suffix are kept, and files without a suffix when they carry the DICOM preamble.
    """
    paths = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    found: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            for path in sorted(entry.rglob("*")):
                if not path.is_file() or path.name.startswith("."):
                    continue
                if path.suffix.lower() in IMAGE_SUFFIXES or (not path.suffix and _looks_like_dicom(path)):
                    found.append(path)
        elif entry.exists():
            found.append(entry)
        else:
            raise FileNotFoundError(f"input not found: {entry}")
    if not found:
        raise ValueError(f"no DICOM, PNG or JPEG files found in {', '.join(map(str, paths))}")
    return [{"image": str(p.resolve()), "path": str(p.resolve())} for p in found]
