"""Running the bundle from the CLI: finding it, turning options into overrides, and keeping one MLflow run."""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

BUNDLE_ENV = "PIPELINE_BUNDLE_ROOT"
CONFIG_ENV = "PIPELINE_CONFIG_DIR"


def _search_upwards(relative: str) -> Path | None:
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / relative).is_dir():
                return folder / relative
    return None


def bundle_root(explicit: str | None = None) -> Path:
    """The bundle folder: ``--bundle-root``, ``$PIPELINE_BUNDLE_ROOT``, or ``bundles/cxr_ral`` found upwards."""
    candidate = explicit or os.environ.get(BUNDLE_ENV)
    root = Path(candidate) if candidate else _search_upwards("bundles/cxr_ral")
    if root is None or not (root / "configs" / "train.json").is_file():
        raise FileNotFoundError(
            f"no bundle found (looked for configs/train.json under {root or 'bundles/cxr_ral'}); "
            f"pass --bundle-root or set {BUNDLE_ENV}"
        )
    return root.resolve()


def config_dir() -> Path:
    """The project's ``configs/`` folder (override files, label sets)."""
    candidate = os.environ.get(CONFIG_ENV)
    root = Path(candidate) if candidate else _search_upwards("configs")
    if root is None:
        raise FileNotFoundError(f"no configs/ folder found; set {CONFIG_ENV}")
    return root.resolve()


def loss_override(name: str) -> Path:
    """The override file that selects loss ``name`` (``configs/loss/<name>.json``)."""
    folder = config_dir() / "loss"
    path = folder / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.json"))
        raise ValueError(f"unknown loss {name!r}; choose one of {known}")
    return path


def parse_set(items: Sequence[str] | None) -> dict[str, Any]:
    """``--set key=value`` pairs; values are parsed as JSON when they can be (numbers, lists, booleans)."""
    overrides: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        try:
            overrides[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key.strip()] = text
    return overrides


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every bundle-running verb shares."""
    parser.add_argument("--bundle-root", help="bundle folder (default: bundles/cxr_ral of this checkout)")
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else OUTPUT_DIR/mlflow.db)",
    )
    parser.add_argument("--experiment", default=None, help="MLflow experiment name (default: cxr_ral)")
    parser.add_argument(
        "--config", action="append", default=[], metavar="JSON",
        help="extra bundle override file merged on top (repeatable), e.g. configs/network/convnext_tiny.json",
    )  # fmt: skip
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="any bundle override, e.g. --set learning_rate=3e-4 --set loss#gamma_neg=2 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: GPU if available)")
    parser.add_argument("--num-workers", type=int, help="data loader worker processes (default: min(4, CPUs-1))")


def common_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.experiment:
        overrides["experiment_name"] = args.experiment
    if args.device:
        overrides["device"] = f"$torch.device({args.device!r})"
    if args.num_workers is not None:
        overrides["num_workers"] = args.num_workers
    return overrides


def run_workflow(
    root: Path,
    config_files: Sequence[str | os.PathLike],
    overrides: Mapping[str, Any],
    *,
    workflow_type: str | None,
    resolved_config: Path | None = None,
) -> Any:
    """Build, initialise, run and finalise a MONAI ``ConfigWorkflow``; returns it for inspection.

    When the run fails, the MLflow run (if the workflow bound one) is marked FAILED and the error is re-raised:
    checkpoints and everything logged so far stay where they are.
    """
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=[str(f) for f in config_files],
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type=workflow_type,
        **{"bundle_root": str(root), **overrides},
    )
    if resolved_config is not None:
        resolved_config.parent.mkdir(parents=True, exist_ok=True)
        resolved_config.write_text(json.dumps(workflow.parser.config, indent=2, default=str))
    workflow.initialize()
    try:
        workflow.run()
    except BaseException:
        binding = _binding(workflow)
        if binding is not None:
            binding.finish("FAILED")
            logger.error("run failed; MLflow run %s marked FAILED, checkpoints kept", binding.run_id)
        raise
    workflow.finalize()
    return workflow


def _binding(workflow: Any) -> Any:
    try:
        return workflow.parser.get_parsed_content("mlflow::run", lazy=True)
    except Exception:  # the workflow may have failed before the binding was built
        return None
