"""The sweep state file: which children finished, failed or were interrupted, so that a sweep can resume.

The file (``sweep_state.json`` in the sweep's output root) is rewritten atomically after every change; a sweep
killed at any moment leaves either the previous or the new version, never half of one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

STATE_FILE = "sweep_state.json"
STATE_VERSION = 1

# Status of a child in the state file.
PENDING = "pending"
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
INTERRUPTED = "interrupted"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class SweepState:
    """Read, update and atomically save the state of one sweep.

    Args:
        path: the state file.
        data: its parsed content (see :meth:`new`).
    """

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data

    @classmethod
    def new(cls, path: Path, *, name: str, fingerprint: str, tracking_uri: str, experiment: str) -> SweepState:
        data = {
            "version": STATE_VERSION,
            "name": name,
            "fingerprint": fingerprint,
            "tracking_uri": tracking_uri,
            "experiment": experiment,
            "parent_run_id": None,
            "sessions": [],
            "children": {},
        }
        return cls(path, data)

    @classmethod
    def load(cls, path: Path) -> SweepState:
        """Read a state file.

        Raises:
            ValueError: if the file is not a sweep state of a known version.
        """
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"sweep state {path} is not valid JSON ({err}); move it away to start afresh") from err
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError(
                f"sweep state {path} has unknown version {data.get('version')!r}; expected {STATE_VERSION}"
            )
        return cls(path, data)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".sweep_state.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(self.data, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @property
    def children(self) -> dict[str, dict[str, Any]]:
        return self.data["children"]

    @property
    def parent_run_id(self) -> str | None:
        return self.data.get("parent_run_id")

    @parent_run_id.setter
    def parent_run_id(self, run_id: str) -> None:
        self.data["parent_run_id"] = run_id

    def child(self, key: str) -> dict[str, Any] | None:
        return self.children.get(key)

    def update_child(self, key: str, **fields: Any) -> dict[str, Any]:
        """Set fields of a child's record (creating it) and save."""
        record = self.children.setdefault(key, {"status": PENDING, "attempts": 0, "replaced_runs": []})
        record.update(fields)
        self.save()
        return record

    def finished_durations(self) -> list[float]:
        """Durations in seconds of the children recorded as finished."""
        return [
            float(r["duration_s"])
            for r in self.children.values()
            if r.get("status") == FINISHED and isinstance(r.get("duration_s"), int | float)
        ]

    def start_session(self, argv: list[str] | None = None) -> dict[str, Any]:
        session = {"started": now_iso(), "ended": None, "pid": os.getpid(), "argv": list(argv or [])}
        self.data["sessions"].append(session)
        self.save()
        return session

    def end_session(self, outcome: str) -> None:
        if self.data["sessions"]:
            self.data["sessions"][-1].update(ended=now_iso(), outcome=outcome)
        self.save()
