"""Run the children of a sweep as ``python -m pipeline train`` subprocesses, each in its own MLflow child run.

The runner creates one parent run, and for every child a run tagged ``mlflow.parentRunId`` that the training
continues (``--set mlflow::run::run_id=<id>``), so training, validation and test evaluation of a child land in
that one run. Children run as subprocesses: a crash in one is recorded and the sweep goes on.

Resuming. The state file in the output root records each child's run and status. Running the same sweep again:

- skips children whose run is FINISHED with test metrics (also when the sweep died after the child finished but
  before it could record that);
- starts every other child afresh: a run it left behind (RUNNING after a kill, or FAILED) is marked FAILED,
  tagged ``sweep.retired`` with the reason and deleted (MLflow's soft delete: it stays in the store, restorable,
  but no longer counts as a child of the parent), and the child's output folder is cleared. Restarting rather
  than continuing from ``latest.pt`` keeps every child's metric history a single clean pass;
- with ``retry_failed=False``, leaves children that failed (non-zero exit) as they are.

A lock file keeps two sweeps from working on the same output root at once. Children get ``SIGINT`` when the
sweep process dies (Linux), so a killed sweep leaves no training running on its own.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pipeline.study.config import ChildSpec, SweepConfig
from pipeline.study.state import FAILED, FINISHED, INTERRUPTED, RUNNING, STATE_FILE, SweepState, now_iso

logger = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
KEY_TAG = "sweep.key"
NAME_TAG = "sweep.name"
ROLE_TAG = "sweep.role"
RETIRED_TAG = "sweep.retired"
# A child counts as done when its run is FINISHED and holds this metric, written by the test evaluation.
EVALUATED_METRIC = "test/num_images"
LOCK_FILE = ".sweep.lock"
CHILDREN_FOLDER = "children"
_MAX_PARAM_LENGTH = 6000
_STOP_GRACE_S = 60.0

Event = Callable[[str, ChildSpec, dict[str, Any]], None]


@dataclass
class SweepPlan:
    """What a run of the sweep will do.

    Attributes:
        todo: children to run, in order.
        done: children already finished (skipped).
        failed_kept: children that failed before and are not retried.
        parent_run_id: the parent run (None in a dry run of a new sweep).
        durations: seconds of the finished children, for the time estimate.
    """

    todo: list[ChildSpec]
    done: list[ChildSpec]
    failed_kept: list[ChildSpec]
    parent_run_id: str | None
    durations: list[float] = field(default_factory=list)


@dataclass
class SweepSummary:
    """Outcome of one run of the sweep.

    Attributes:
        parent_run_id: the parent run.
        total: children in the sweep.
        finished: keys of children finished in this run.
        skipped: keys of children finished earlier.
        failed: keys of children that failed (in this run, or earlier and not retried).
        not_run: keys left for later (``max_children``) or because the sweep was interrupted.
        wall_s: seconds this run took.
        interrupted: True if the sweep was stopped by a signal.
    """

    parent_run_id: str
    total: int
    finished: list[str]
    skipped: list[str]
    failed: list[str]
    not_run: list[str]
    wall_s: float
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        return not self.failed and not self.not_run and not self.interrupted


@dataclass
class _Running:
    child: ChildSpec
    process: subprocess.Popen
    run_id: str
    started: float
    log: IO[str]


def _child_setup(parent_pid: int) -> Callable[[], None]:
    """``preexec_fn`` of a child: restore SIGINT and (Linux) have it sent SIGINT when the sweep process dies.

    A sweep started in the background (``nohup ... &``) inherits an ignored SIGINT, and Python installs its
    KeyboardInterrupt handler only where SIGINT is not ignored; without the reset, children could not be stopped
    cleanly.
    """

    def setup() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if not sys.platform.startswith("linux"):
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != parent_pid:  # the sweep died before the call above took effect
            os._exit(1)

    return setup


class SweepRunner:
    """Plan and run a sweep; use as a context manager so that the output root is locked meanwhile.

    Args:
        config: the sweep.
        parallel: children at a time (default: the config's).
        threads: torch threads per child (default: the config's, else CPUs / parallel).
        max_children: run at most this many children now; the rest stay for a later run.
        retry_failed: run children that failed before again.
        python: interpreter of the children.
        poll_interval: seconds between checks of running children.
        on_event: called as ``on_event(kind, child, record)`` with kind ``start``, ``finish`` or ``fail``.
        argv: the command line, recorded on the parent run.
        env: extra environment variables for the children.
    """

    def __init__(
        self,
        config: SweepConfig,
        *,
        parallel: int | None = None,
        threads: int | None = None,
        max_children: int | None = None,
        retry_failed: bool = True,
        python: str = sys.executable,
        poll_interval: float = 0.5,
        on_event: Event | None = None,
        argv: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
    ):
        if parallel is not None and parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {parallel}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if max_children is not None and max_children < 0:
            raise ValueError(f"max_children must be >= 0, got {max_children}")
        self.config = config
        self.parallel = parallel or config.parallel
        self.threads = threads or config.threads or max(1, (os.cpu_count() or 1) // self.parallel)
        self.max_children = max_children
        self.retry_failed = retry_failed
        self.python = python
        self.poll_interval = poll_interval
        self.on_event = on_event
        self.argv = list(argv or [])
        self.env = dict(env or {})
        self.root = config.output_root
        self._lock: IO[str] | None = None
        self._client = None
        self._experiment_id: str | None = None
        self.state: SweepState | None = None

    # Lock ---------------------------------------------------------------------------------------------------

    def __enter__(self) -> SweepRunner:
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / LOCK_FILE, "a+")  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            handle.close()
            raise ValueError(f"another sweep is running in {self.root} (lock {LOCK_FILE} is held)") from err
        self._lock = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # MLflow ---------------------------------------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            import mlflow

            self._client = mlflow.MlflowClient(tracking_uri=self.config.tracking_uri)
        return self._client

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            from pipeline.tracking import artifact_location

            experiment = self.client.get_experiment_by_name(self.config.experiment)
            if experiment is None:
                self._experiment_id = self.client.create_experiment(
                    self.config.experiment, artifact_location=artifact_location(self.config.tracking_uri)
                )
            else:
                self._experiment_id = experiment.experiment_id
        return self._experiment_id

    def _get_run(self, run_id: str | None):
        if not run_id:
            return None
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException:
            return None

    def evaluated(self, run_id: str | None) -> bool:
        """True when the run exists, is active and FINISHED, and holds the test evaluation."""
        run = self._get_run(run_id)
        return (
            run is not None
            and run.info.lifecycle_stage == "active"
            and run.info.status == "FINISHED"
            and EVALUATED_METRIC in run.data.metrics
        )

    def _retire(self, run_id: str, reason: str) -> None:
        """Take a run out of the sweep: mark it FAILED if it was left running, tag the reason, soft-delete it."""
        run = self._get_run(run_id)
        if run is None or run.info.lifecycle_stage != "active":
            return
        if run.info.status in ("RUNNING", "SCHEDULED"):
            self.client.set_terminated(run_id, "FAILED")
        self.client.set_tag(run_id, RETIRED_TAG, reason)
        self.client.delete_run(run_id)
        logger.info("retired MLflow run %s (%s)", run_id, reason)

    def child_runs(self, parent_run_id: str) -> list[Any]:
        """Active runs whose parent is ``parent_run_id``."""
        from mlflow.entities import ViewType

        runs: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id()], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token,
            )  # fmt: skip
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _create_parent(self) -> str:
        from mlflow.entities import Param, RunTag

        config = self.config
        tags = {
            ROLE_TAG: "parent",
            NAME_TAG: config.name,
            "sweep.output_root": str(self.root),
            "sweep.budget": config.budget.describe(),
            "sweep.command": " ".join(self.argv) or "(library call)",
        }
        if config.description:
            tags["mlflow.note.content"] = config.description
        run = self.client.create_run(self.experiment_id(), run_name=config.name, tags=tags)
        params = {**config.shared_settings(), "sweep.children": len(config.children),
                  "sweep.parallel": self.parallel, "sweep.threads": self.threads}  # fmt: skip
        if config.budget.wall_minutes is not None:
            params["sweep.budget_wall_minutes"] = config.budget.wall_minutes
        batch = [Param(k, str(v)[:_MAX_PARAM_LENGTH]) for k, v in params.items()]
        for start in range(0, len(batch), 100):
            self.client.log_batch(run.info.run_id, params=batch[start : start + 100])
        self.client.log_batch(run.info.run_id, tags=[RunTag("sweep.parent_run_id", run.info.run_id)])
        with tempfile.TemporaryDirectory() as tmp:
            name = config.source_path.name if config.source_path else "sweep.yaml"
            path = Path(tmp) / name
            path.write_text(config.source or "")
            self.client.log_artifact(run.info.run_id, str(path), "sweep")
        logger.info("created parent run %s (%s) in experiment %s", config.name, run.info.run_id, config.experiment)
        return run.info.run_id

    # Plan -------------------------------------------------------------------------------------------------------

    def _load_state(self) -> SweepState:
        path = self.root / STATE_FILE
        config = self.config
        if not path.is_file():
            return SweepState.new(path, name=config.name, fingerprint=config.fingerprint(),
                                  tracking_uri=config.tracking_uri, experiment=config.experiment)  # fmt: skip
        state = SweepState.load(path)
        if state.data.get("fingerprint") != config.fingerprint():
            raise ValueError(
                f"{path} belongs to a sweep with other shared settings (datalist, store, experiment or base options "
                f"changed); use another output_root, or move {STATE_FILE} away to start afresh"
            )
        return state

    def plan(self, dry_run: bool = False) -> SweepPlan:
        """Read the state, reconcile it with MLflow and decide which children to run.

        With ``dry_run`` nothing is created or changed: the plan follows the state file alone.
        """
        self.state = state = self._load_state()
        todo, done, failed_kept = [], [], []
        if dry_run:
            for child in self.config.children:
                record = state.child(child.key) or {}
                status = record.get("status")
                if status == FINISHED:
                    done.append(child)
                elif status == FAILED and not self.retry_failed:
                    failed_kept.append(child)
                else:
                    todo.append(child)
            return SweepPlan(todo, done, failed_kept, state.parent_run_id, state.finished_durations())

        parent_id = state.parent_run_id
        if parent_id is not None:
            if self._get_run(parent_id) is None:
                raise ValueError(
                    f"the parent run {parent_id} recorded in {state.path} is not in {self.config.tracking_uri}; "
                    f"use the same tracking store, or move {STATE_FILE} away to start afresh"
                )
            self.client.update_run(parent_id, status="RUNNING")
        else:
            parent_id = self._create_parent()
            state.parent_run_id = parent_id
            state.save()

        self._adopt_or_retire_strays(parent_id)
        for child in self.config.children:
            record = state.child(child.key) or {}
            status = record.get("status")
            if self.evaluated(record.get("run_id")):
                if status != FINISHED:
                    run = self.client.get_run(record["run_id"])
                    duration = (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else None
                    state.update_child(child.key, status=FINISHED, ended=now_iso(), duration_s=duration, returncode=0)
                    logger.info("child %s finished before the sweep stopped; recorded it", child.name)
                done.append(child)
            elif status == FAILED and not self.retry_failed:
                failed_kept.append(child)
            else:
                if status == FINISHED:
                    logger.warning("child %s was recorded as finished but its run has no test evaluation", child.name)
                todo.append(child)
        return SweepPlan(todo, done, failed_kept, parent_id, state.finished_durations())

    def _adopt_or_retire_strays(self, parent_id: str) -> None:
        """Handle child runs of the parent that the state does not point at.

        A stray appears when the sweep stops between creating a child run and recording it, or when a retired run
        could not be deleted. A finished, evaluated stray of a child not yet done is adopted; other strays of
        known children are retired. Runs of children no longer in the sweep file are left alone (with a warning).
        """
        assert self.state is not None
        keys = {child.key: child for child in self.config.children}
        for run in self.child_runs(parent_id):
            key = run.data.tags.get(KEY_TAG)
            record = self.state.child(key) if key else None
            if record is not None and record.get("run_id") == run.info.run_id:
                continue
            if key not in keys:
                logger.warning("child run %s (%s) is not in the sweep file any more; left as it is",
                               run.info.run_name, run.info.run_id)  # fmt: skip
                continue
            current_done = record is not None and self.evaluated(record.get("run_id"))
            if not current_done and self.evaluated(run.info.run_id):
                self.state.update_child(key, name=keys[key].name, run_id=run.info.run_id,
                                        output_dir=str(self.root / CHILDREN_FOLDER / keys[key].name))  # fmt: skip
                logger.info("adopted finished run %s for child %s", run.info.run_id, keys[key].name)
            else:
                self._retire(run.info.run_id, "not the recorded run of its child")

    # Execute ----------------------------------------------------------------------------------------------------

    def _launch(self, child: ChildSpec, parent_id: str) -> _Running:
        assert self.state is not None
        config = self.config
        record = self.state.child(child.key) or {}
        replaced = list(record.get("replaced_runs") or [])
        if record.get("run_id"):
            self._retire(record["run_id"], f"replaced by a fresh attempt of {child.name}")
            replaced.append(record["run_id"])
        output_dir = self.root / CHILDREN_FOLDER / child.name
        if output_dir.exists():
            # A fresh attempt starts from nothing: no stale checkpoint or run record is picked up.
            shutil.rmtree(output_dir)
        output_dir.mkdir(parents=True)

        tags = {PARENT_TAG: parent_id, KEY_TAG: child.key, NAME_TAG: config.name, ROLE_TAG: "child",
                "sweep.child": child.name}  # fmt: skip
        tags.update({f"sweep.varied.{k}": json.dumps(v) for k, v in child.varied.items()})
        run = self.client.create_run(self.experiment_id(), run_name=child.name, tags=tags)
        run_id = run.info.run_id
        log_path = output_dir / "sweep_child.log"
        self.state.update_child(
            child.key, name=child.name, status=RUNNING, run_id=run_id, output_dir=str(output_dir),
            attempts=int(record.get("attempts", 0)) + 1, started=now_iso(), ended=None, duration_s=None,
            returncode=None, log=str(log_path), replaced_runs=replaced,
        )  # fmt: skip

        command = [
            self.python, "-m", "pipeline", "train",
            "--datalist", str(config.datalist), "--output-dir", str(output_dir),
            "--tracking-uri", config.tracking_uri, "--experiment", config.experiment,
            *child.train_arguments(),
            "--set", f"mlflow::run::run_id={json.dumps(run_id)}",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(self.threads),
               "MKL_NUM_THREADS": str(self.threads), **self.env}  # fmt: skip
        env.pop("MLFLOW_RUN_ID", None)
        log = open(log_path, "w")  # noqa: SIM115 - closed when the child ends
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            preexec_fn=_child_setup(os.getpid()),
        )  # fmt: skip
        self.state.update_child(child.key, pid=process.pid)
        logger.info("started child %s (run %s, pid %d)", child.name, run_id, process.pid)
        entry = _Running(child, process, run_id, time.monotonic(), log)
        self._emit("start", child)
        return entry

    def _emit(self, kind: str, child: ChildSpec) -> None:
        if self.on_event is not None:
            assert self.state is not None
            self.on_event(kind, child, dict(self.state.child(child.key) or {}))

    def _complete(self, entry: _Running, returncode: int) -> bool:
        """Record the end of a child; returns True if it finished with its evaluation."""
        assert self.state is not None
        entry.log.close()
        duration = time.monotonic() - entry.started
        ok = returncode == 0 and self.evaluated(entry.run_id)
        run = self._get_run(entry.run_id)
        if run is not None and not ok and run.info.status != "FAILED":
            # Also a run the child closed as FINISHED without its evaluation: it is not a usable result.
            self.client.set_terminated(entry.run_id, "FAILED")
        if run is not None:
            self.client.set_tag(entry.run_id, "sweep.returncode", str(returncode))
        reason = None
        if not ok:
            reason = f"exit status {returncode}" if returncode else "exited 0 but the run has no test evaluation"
            logger.error("child %s failed (%s); log: %s", entry.child.name, reason, entry.log.name)
        self.state.update_child(
            entry.child.key, status=FINISHED if ok else FAILED, ended=now_iso(), duration_s=round(duration, 1),
            returncode=returncode, failure=reason,
        )  # fmt: skip
        self._emit("finish" if ok else "fail", entry.child)
        return ok

    def _stop(self, running: list[_Running]) -> None:
        """Ask running children to stop (SIGINT: they mark their run FAILED), then kill what remains."""
        assert self.state is not None
        for entry in running:
            if entry.process.poll() is None:
                entry.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + _STOP_GRACE_S
        for entry in running:
            try:
                entry.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                entry.process.kill()
                entry.process.wait()
            entry.log.close()
            run = self._get_run(entry.run_id)
            if run is not None and run.info.status in ("RUNNING", "SCHEDULED"):
                self.client.set_terminated(entry.run_id, "FAILED")
            self.state.update_child(entry.child.key, status=INTERRUPTED, ended=now_iso(),
                                    returncode=entry.process.returncode)  # fmt: skip

    def execute(self, plan: SweepPlan) -> SweepSummary:
        """Run the planned children and close the parent run.

        A ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM turned into one by the caller) stops the running children,
        records them as interrupted and returns a summary with ``interrupted=True``.
        """
        if self.state is None or plan.parent_run_id is None:
            raise ValueError("call plan() (not a dry run) before execute()")
        parent_id = plan.parent_run_id
        started = time.monotonic()
        self.state.start_session(self.argv)
        queue = list(plan.todo)
        not_run: list[str] = []
        if self.max_children is not None:
            not_run = [c.key for c in queue[self.max_children :]]
            queue = queue[: self.max_children]
        finished: list[str] = []
        failed: list[str] = [c.key for c in plan.failed_kept]
        running: list[_Running] = []
        interrupted = False
        try:
            while queue or running:
                while queue and len(running) < self.parallel:
                    running.append(self._launch(queue.pop(0), parent_id))
                for entry in list(running):
                    returncode = entry.process.poll()
                    if returncode is not None:
                        running.remove(entry)
                        (finished if self._complete(entry, returncode) else failed).append(entry.child.key)
                if running:
                    time.sleep(self.poll_interval)
        except KeyboardInterrupt:
            interrupted = True
            logger.warning("sweep interrupted; stopping %d running child(ren)", len(running))
            self._stop(running)
            not_run.extend([entry.child.key for entry in running] + [child.key for child in queue])
        summary = SweepSummary(
            parent_run_id=parent_id, total=len(self.config.children), finished=finished,
            skipped=[c.key for c in plan.done], failed=failed, not_run=not_run,
            wall_s=time.monotonic() - started, interrupted=interrupted,
        )  # fmt: skip
        self._close_parent(summary)
        return summary

    def _close_parent(self, summary: SweepSummary) -> None:
        assert self.state is not None
        outcome = (
            "interrupted" if summary.interrupted else "failed" if summary.failed
            else "partial" if summary.not_run else "complete"
        )  # fmt: skip
        self.state.end_session(outcome)
        wall = 0.0
        for session in self.state.data["sessions"]:
            if session.get("ended"):
                elapsed = dt.datetime.fromisoformat(session["ended"]) - dt.datetime.fromisoformat(session["started"])
                wall += elapsed.total_seconds()
        done = sum(1 for r in self.state.children.values() if r.get("status") == FINISHED)
        failed = sum(1 for r in self.state.children.values() if r.get("status") == FAILED)
        durations = self.state.finished_durations()
        metrics = {"sweep/children_total": summary.total, "sweep/children_finished": done,
                   "sweep/children_failed": failed, "sweep/wall_s": wall}  # fmt: skip
        if durations:
            metrics["sweep/child_mean_s"] = sum(durations) / len(durations)
        parent_id = summary.parent_run_id
        for key, value in metrics.items():
            self.client.log_metric(parent_id, key, float(value))
        self.client.set_tag(parent_id, "sweep.status", outcome)
        self.client.log_artifact(parent_id, str(self.state.path), "sweep")
        status = {"complete": "FINISHED", "failed": "FAILED"}.get(outcome, "KILLED")
        self.client.set_terminated(parent_id, status)
