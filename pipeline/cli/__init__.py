"""Command-line face of the pipeline: ``python -m pipeline <command>``.

Each sub-module registers one verb with ``register(subparsers)``; the verb turns its options into bundle
overrides (or calls a library function) and runs it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        # User errors: one clear line, no traceback.
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
