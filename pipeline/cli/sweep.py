"""``python -m pipeline sweep``: run a grid of trainings as MLflow child runs of one parent run, resumably."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

from pipeline.study import ChildSpec, SweepRunner, load_sweep_config
from pipeline.study import estimate as estimates

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run a sweep of trainings (losses x hyper-parameters x seeds) under one MLflow parent run",
        description="Expand the sweep YAML into children and train each with 'python -m pipeline train' in its "
        "own MLflow child run of one parent run. Finished children are recorded in OUTPUT_ROOT/sweep_state.json: "
        "running the same command again skips them and starts the unfinished ones afresh. Exits 1 if a child "
        "failed (the others still run).",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="SWEEP.yaml", help="sweep file (see configs/sweeps/)")
    parser.add_argument("--parallel", type=int, help="children at a time (default: the file's 'parallel', else 1)")
    parser.add_argument("--threads", type=int, help="torch threads per child (default: the file's, else CPUs/parallel)")
    parser.add_argument("--max-children", type=int, help="run at most this many children now, leave the rest")
    parser.add_argument("--no-retry-failed", action="store_true", help="do not rerun children that failed before")
    parser.add_argument(
        "--estimate", choices=("auto", "timing", "none"), default="auto",
        help="time estimate: from finished children if any, else a quick timing of the network (auto); always "
        "the timing; or none",
    )  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="list the children and their commands, run nothing")


def _describe(child: ChildSpec) -> str:
    return child.name + "  (" + " ".join(child.train_arguments()) + ")"


def run(args: argparse.Namespace) -> int:
    config = load_sweep_config(args.config)
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    bar: Any = None
    running: list[str] = []

    def on_event(kind: str, child: ChildSpec, record: dict) -> None:
        if bar is None:
            return
        if kind == "start":
            running.append(child.name)
        elif child.name in running:
            running.remove(child.name)
        bar.set_postfix_str("running " + ", ".join(running) if running else "", refresh=True)
        if kind != "start":
            duration = estimates.format_duration(record.get("duration_s"))
            word = "finished" if kind == "finish" else f"FAILED ({record.get('failure')}), log: {record.get('log')}"
            bar.write(f"{child.name}: {word} in {duration}")
            bar.update(1)

    argv = ["python", "-m", "pipeline", "sweep", *_arguments(args)]
    with SweepRunner(
        config, parallel=args.parallel, threads=args.threads, max_children=args.max_children,
        retry_failed=not args.no_retry_failed, on_event=on_event, argv=argv,
    ) as runner:  # fmt: skip
        plan = runner.plan(dry_run=args.dry_run)
        total = len(config.children)
        todo = plan.todo if args.max_children is None else plan.todo[: args.max_children]
        print(f"sweep {config.name}: {total} children; {len(plan.done)} finished before, {len(todo)} to run now"
              + (f", {len(plan.failed_kept)} failed and not retried" if plan.failed_kept else "")
              + (f", {len(plan.todo) - len(todo)} left for later (--max-children)" if len(todo) < len(plan.todo)
                 else ""))  # fmt: skip
        print(f"output: {config.output_root}   MLflow: {config.tracking_uri}   experiment: {config.experiment}")
        print(f"{runner.parallel} at a time, {runner.threads} torch thread(s) each")
        print(f"compute budget (from the sweep file): {config.budget.describe()}")
        if args.dry_run:
            for child in config.children:
                mark = "done" if child in plan.done else "todo" if child in plan.todo else "failed"
                print(f"  [{mark}] {_describe(child)}")
            return 0

        estimate = _estimate(args.estimate, config, plan, todo, runner)
        if estimate is not None:
            print(f"estimated time for the {len(todo)} child(ren) to run: {estimates.format_duration(estimate.total_s)}"
                  f" ({estimate.method})")  # fmt: skip
            budget = config.budget.wall_minutes
            if budget is not None and estimate.total_s is not None and estimate.total_s > budget * 60:
                print(f"warning: the estimate is above the budget of {budget:g} min")
        print(f"parent run: {plan.parent_run_id}")
        if not todo:
            summary = runner.execute(plan)
        else:
            bar = tqdm(total=total, initial=len(plan.done), desc=config.name, unit="child", dynamic_ncols=True)
            previous = signal.signal(signal.SIGTERM, _raise_interrupt)
            try:
                with logging_redirect_tqdm():
                    summary = runner.execute(plan)
            finally:
                signal.signal(signal.SIGTERM, previous)
                bar.close()

    took = estimates.format_duration(summary.wall_s)
    print(f"sweep {config.name}: {len(summary.finished)} finished now, {len(summary.skipped)} finished before, "
          f"{len(summary.failed)} failed, {len(summary.not_run)} not run; this run took {took}")  # fmt: skip
    for key in summary.failed:
        record = runner.state.child(key) if runner.state else None
        print(f"  failed: {key}  log: {(record or {}).get('log')}")
    print(f"parent run: {summary.parent_run_id}   report: python -m pipeline report --parent {summary.parent_run_id} "
          f"--tracking-uri {config.tracking_uri} --out REPORT_DIR")  # fmt: skip
    if summary.interrupted:
        return 130
    return 1 if summary.failed else 0


def _estimate(method: str, config, plan, todo, runner) -> estimates.TimeEstimate | None:
    if method == "none" or not todo:
        return None
    if method == "auto" and plan.durations:
        return estimates.from_durations(plan.durations, len(todo), runner.parallel)
    print("timing the network for the estimate (a few steps on random batches)...", flush=True)
    return estimates.from_timing(
        [child.options for child in todo], config.datalist, runner.parallel, runner.threads,
        bundle_root=config.base_options.get("bundle_root"),
    )  # fmt: skip


def _arguments(args: argparse.Namespace) -> list[str]:
    """The command line of this sweep as options, for the parent run's ``sweep.command`` tag."""
    out = ["--config", args.config]
    for option in ("parallel", "threads", "max_children"):
        if getattr(args, option) is not None:
            out += ["--" + option.replace("_", "-"), str(getattr(args, option))]
    return out + (["--no-retry-failed"] if args.no_retry_failed else [])


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m pipeline.cli.sweep``, the same as ``python -m pipeline sweep``."""
    from pipeline.cli import standalone

    return standalone("python -m pipeline.cli.sweep", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
