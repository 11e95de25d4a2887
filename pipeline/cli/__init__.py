"""Command-line face of the pipeline: ``python -m pipeline <command>``.

Each sub-module registers one verb with ``register(subparsers)``; the verb turns its options into bundle
overrides (or calls a library function) and runs it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable

from pipeline import __version__

# Modules under pipeline.cli, in the order their verbs appear in --help.
COMMANDS = ("prepare", "train", "evaluate", "infer", "compare", "sweep", "report", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Train, evaluate and run chest X-ray classifiers with the Robust Asymmetric Loss.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"pipeline.cli.{name}").register(subparsers)
    return parser


def _run(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace, verbose: bool = False) -> int:
    """Run a verb with logging set up; user errors become one clear line and exit status 2, no traceback."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return _run(args.func, args, verbose=args.verbose)


def standalone(
    prog: str,
    description: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int | None],
    argv: list[str] | None = None,
) -> int:
    """Run one verb as its own program (``python -m pipeline.cli.<verb>``), the same as through ``main``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    return _run(run, parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
