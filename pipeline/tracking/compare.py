"""Runs of one MLflow experiment side by side: per-disease AUROC and AP with their intervals, then the summaries.

The table reads the metric names written by :mod:`pipeline.evaluation` through :func:`pipeline.tracking.metric_name`
(``test/auroc/<Label>``, ``test/auroc_ci_low/<Label>``, ``test/map``, ``test/map_<group>``, ...) from any tracking
store the MLflow client can reach (a SQLite file or an ``mlflow server`` over HTTP). It needs no bundle.

A cell is a number, ``undefined`` (the metric is undefined for that run, e.g. a label without positives in the
test split: logged as NaN or, as the pipeline does, not logged at all) or ``-`` (the run has no such metric, e.g. a
label outside its label set or a frequency group it does not have).
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType
from mlflow.exceptions import MlflowException

from pipeline.tracking import metric_name, safe_name

logger = logging.getLogger(__name__)

UNDEFINED = "undefined"
NOT_LOGGED = "-"
FORMATS = ("table", "csv", "markdown")

# Summary metrics of an evaluation, in table order: (metric under the split, row title).
_SUMMARY_ROWS = (
    ("macro_auroc", "macro AUROC"),
    ("map", "mAP"),
    ("micro_auroc", "micro AUROC"),
    ("micro_ap", "micro AP"),
)
# Frequency-group summaries are discovered from the metric names, e.g. test/map_tail, test/macro_auroc_head.
_GROUP_METRIC = re.compile(r"^(?P<base>map|macro_auroc)_(?P<group>[^/]+?)$")
_PER_LABEL_STATS = ("auroc", "ap", "n_pos")


@dataclass(frozen=True)
class RunColumn:
    """One compared run: the column title and what identifies the run behind it."""

    title: str
    run_id: str
    run_name: str
    status: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class _Row:
    title: str
    metric: str
    label: str | None = None
    with_ci: bool = True
    integer: bool = False
    # Missing in an evaluated run means undefined (the pipeline drops NaN) rather than "not part of this run".
    missing_is_undefined: bool = True


@dataclass
class RunComparison:
    """Metrics of several runs, one column per run, one row per metric.

    Attributes:
        runs: the compared runs in column order.
        value, ci_low, ci_high: numeric frames (rows x run titles); NaN where a value is undefined or not logged.
        logged: boolean frame, ``True`` where the metric belongs to the run (its value may still be undefined).
        integer_rows: rows holding counts, printed without decimals.
    """

    runs: list[RunColumn]
    value: pd.DataFrame
    ci_low: pd.DataFrame
    ci_high: pd.DataFrame
    logged: pd.DataFrame
    integer_rows: frozenset[str] = field(default_factory=frozenset)

    def cell(self, row: str, column: str, digits: int = 3, ci_digits: int = 2) -> str:
        """Text of one cell: ``0.812 [0.77, 0.85]``, ``0.812``, ``undefined`` or ``-``."""
        if not self.logged.loc[row, column]:
            return NOT_LOGGED
        value = self.value.loc[row, column]
        if not math.isfinite(value):
            return UNDEFINED
        if row in self.integer_rows:
            return f"{value:.0f}"
        text = f"{value:.{digits}f}"
        low, high = self.ci_low.loc[row, column], self.ci_high.loc[row, column]
        if math.isfinite(low) and math.isfinite(high):
            text += f" [{low:.{ci_digits}f}, {high:.{ci_digits}f}]"
        return text

    def formatted(self, digits: int = 3, ci_digits: int = 2) -> pd.DataFrame:
        """The table as text cells (index: row titles, columns: run titles)."""
        if digits < 0 or ci_digits < 0:
            raise ValueError(f"digits must be >= 0, got digits={digits}, ci_digits={ci_digits}")
        cells = {
            column: [self.cell(row, column, digits, ci_digits) for row in self.value.index]
            for column in self.value.columns
        }
        frame = pd.DataFrame(cells, index=self.value.index, columns=self.value.columns)
        frame.index.name = "metric"
        return frame

    def to_csv(self, digits: int = 3, ci_digits: int = 2) -> str:
        """CSV text with formatted cells; the first column holds the row titles."""
        buffer = io.StringIO()
        self.formatted(digits, ci_digits).to_csv(buffer, lineterminator="\n")
        return buffer.getvalue()

    def to_markdown(self, digits: int = 3, ci_digits: int = 2) -> str:
        """A GitHub-flavoured Markdown table, numbers right-aligned."""
        frame = self.formatted(digits, ci_digits)

        def escape(text: Any) -> str:
            return str(text).replace("|", "\\|")

        header = ["metric", *map(escape, frame.columns)]
        lines = ["| " + " | ".join(header) + " |", "|:---|" + "---:|" * len(frame.columns)]
        for title, row in frame.iterrows():
            lines.append("| " + " | ".join([escape(title), *map(escape, row.tolist())]) + " |")
        return "\n".join(lines) + "\n"

    def to_text(self, digits: int = 3, ci_digits: int = 2) -> str:
        """A plain aligned table for a terminal, followed by which run each column is."""
        frame = self.formatted(digits, ci_digits)
        columns = [["metric", *frame.index]] + [[str(c), *frame[c].tolist()] for c in frame.columns]
        widths = [max(len(str(v)) for v in col) for col in columns]
        lines = []
        for i in range(len(frame.index) + 1):
            cells = [str(columns[0][i]).ljust(widths[0])]
            cells += [str(col[i]).rjust(width) for col, width in zip(columns[1:], widths[1:], strict=True)]
            lines.append("  ".join(cells).rstrip())
        lines.insert(1, "-" * len(lines[0]))
        lines.append("")
        lines += [f"{run.title}: run {run.run_id} ({run.run_name}, {run.status})" for run in self.runs]
        return "\n".join(lines) + "\n"

    def render(self, fmt: str = "table", digits: int = 3, ci_digits: int = 2) -> str:
        """The table in one of :data:`FORMATS`."""
        if fmt == "table":
            return self.to_text(digits, ci_digits)
        if fmt == "csv":
            return self.to_csv(digits, ci_digits)
        if fmt == "markdown":
            return self.to_markdown(digits, ci_digits)
        raise ValueError(f"unknown format {fmt!r}; choose one of {list(FORMATS)}")


def open_client(tracking_uri: str) -> MlflowClient:
    """An MLflow client for reading; a SQLite store that does not exist is an error, never silently created."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri[len("sqlite:///") :])
        if not path.is_file():
            raise FileNotFoundError(f"MLflow store not found: {path}")
    return MlflowClient(tracking_uri=tracking_uri)


def _all_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], run_view_type=ViewType.ACTIVE_ONLY, order_by=["attributes.start_time ASC"],
            max_results=1000, page_token=token,
        )  # fmt: skip
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _has_split_metrics(run: Run, split: str) -> bool:
    return any(key.startswith(f"{split}/") for key in run.data.metrics)


def select_runs(
    client: MlflowClient, experiment: str, run_refs: Sequence[str] | None = None, split: str = "test"
) -> list[Run]:
    """The runs to compare.

    Args:
        client: MLflow client of the store.
        experiment: experiment name.
        run_refs: run ids or run names, in column order; ``None`` selects every active run of the experiment that
            has ``split`` metrics, oldest first. An id from another experiment of the same store is accepted.
        split: metric prefix of the evaluation (``test``).

    Raises:
        ValueError: unknown experiment, a reference matching no run (or a name matching several), or no run with
            ``split`` metrics.
    """
    found = client.get_experiment_by_name(experiment)
    if found is None:
        known = sorted(e.name for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY))
        raise ValueError(f"no experiment named {experiment!r} in this store; experiments: {known}")
    runs = _all_runs(client, found.experiment_id)

    if run_refs is None:
        selected = [run for run in runs if _has_split_metrics(run, split)]
        skipped = len(runs) - len(selected)
        if skipped:
            logger.info("%d run(s) of %r have no %s/ metrics and are left out", skipped, experiment, split)
        if not selected:
            raise ValueError(f"experiment {experiment!r} has no run with {split}/ metrics ({len(runs)} runs in all)")
        return selected

    by_id = {run.info.run_id: run for run in runs}
    selected = []
    for ref in run_refs:
        if ref in by_id:
            selected.append(by_id[ref])
            continue
        named = [run for run in runs if run.info.run_name == ref]
        if len(named) > 1:
            ids = [run.info.run_id for run in named]
            raise ValueError(f"run name {ref!r} matches {len(named)} runs {ids}; pass a run id")
        if named:
            selected.append(named[0])
            continue
        try:
            selected.append(client.get_run(ref))
        except MlflowException as err:
            raise ValueError(f"no run {ref!r} (neither a run id nor a run name in {experiment!r})") from err
    return selected


def run_labels(run: Run, split: str = "test") -> tuple[str, ...]:
    """Metric-name forms of the labels a run was evaluated on.

    The ``labels`` parameter gives them in order; labels that only appear in per-label metric names (runs logged by
    hand) follow in sorted order.
    """
    labels: list[str] = []
    text = run.data.params.get("labels")
    if text:
        labels = [safe_name(label) for label in text.split("|") if label]
    seen = set(labels)
    extra = set()
    for key in run.data.metrics:
        parts = key.split("/", 2)
        if len(parts) == 3 and parts[0] == split and parts[1] in _PER_LABEL_STATS and parts[2] not in seen:
            extra.add(parts[2])
    return (*labels, *sorted(extra))


def _display_labels(run: Run) -> dict[str, str]:
    """Metric-name form -> label name as the run's ``labels`` parameter spells it."""
    text = run.data.params.get("labels") or ""
    return {safe_name(label): label for label in text.split("|") if label}


def _column_title(run: Run) -> str:
    tags = run.data.tags
    if all(tags.get(key) for key in ("network", "loss", "seed")):
        return f"{tags['network']}-{tags['loss']}-seed{tags['seed']}"
    return run.info.run_name or run.info.run_id[:8]


def _unique_titles(runs: Sequence[Run]) -> list[str]:
    titles = [_column_title(run) for run in runs]
    counts = {title: titles.count(title) for title in titles}
    return [f"{t} ({run.info.run_id[:8]})" if counts[t] > 1 else t for t, run in zip(titles, runs, strict=True)]


def _groups(runs: Sequence[Run], split: str) -> list[str]:
    # NOTE: group names come from the label set's configuration, so the table cannot know their intended order;
    # they are sorted by name, which for head/medium/tail is also the frequency order.
    groups = set()
    for run in runs:
        for key in run.data.metrics:
            head, _, name = key.partition("/")
            match = _GROUP_METRIC.match(name) if head == split else None
            if match and not match["group"].startswith("ci_") and "_ci_" not in match["group"]:
                groups.add(match["group"])
    return sorted(groups)


def _rows(runs: Sequence[Run], split: str, counts: bool) -> list[_Row]:
    labels: list[str] = []
    names: dict[str, str] = {}
    for run in runs:
        labels += [label for label in run_labels(run, split) if label not in labels]
        names = {**_display_labels(run), **names}
    for label in labels:
        names.setdefault(label, label)
    # Two spellings of different labels could print alike; the metric-name form then tells them apart.
    shown = [names[label] for label in labels]
    for label in labels:
        if shown.count(names[label]) > 1:
            names[label] = f"{names[label]} ({label})"

    rows = [_Row(f"AUROC {names[label]}", "auroc", label) for label in labels]
    rows += [_Row(f"AP {names[label]}", "ap", label) for label in labels]
    if counts:
        rows += [_Row(f"positives {names[label]}", "n_pos", label, with_ci=False, integer=True) for label in labels]
    rows += [_Row(title, metric) for metric, title in _SUMMARY_ROWS]
    for group in _groups(runs, split):
        rows.append(_Row(f"mAP {group}", f"map_{group}", missing_is_undefined=False))
        rows.append(_Row(f"macro AUROC {group}", f"macro_auroc_{group}", missing_is_undefined=False))
    rows.append(_Row(f"{split} images", "num_images", with_ci=False, integer=True))
    return rows


def _ci_names(split: str, row: _Row) -> tuple[str, str]:
    if row.label is not None:
        return metric_name(split, f"{row.metric}_ci_low", row.label), metric_name(
            split, f"{row.metric}_ci_high", row.label
        )
    return metric_name(split, f"{row.metric}_ci_low"), metric_name(split, f"{row.metric}_ci_high")


def comparison_from_runs(runs: Sequence[Run], split: str = "test", counts: bool = False) -> RunComparison:
    """Build the comparison of already fetched runs (see :func:`compare_runs`)."""
    if not runs:
        raise ValueError("no runs to compare")
    titles = _unique_titles(runs)
    rows = _rows(runs, split, counts)
    nan = math.nan
    value, low, high, logged = ({t: [] for t in titles} for _ in range(4))
    columns = []
    for run, title in zip(runs, titles, strict=True):
        metrics = run.data.metrics
        evaluated = _has_split_metrics(run, split)
        known = set(run_labels(run, split))
        columns.append(RunColumn(title, run.info.run_id, run.info.run_name, run.info.status, tuple(sorted(known))))
        for row in rows:
            name = metric_name(split, row.metric, row.label)
            low_name, high_name = _ci_names(split, row)
            applies = row.label in known if row.label is not None else row.missing_is_undefined
            present = name in metrics
            value[title].append(float(metrics[name]) if present else nan)
            low[title].append(float(metrics.get(low_name, nan)) if row.with_ci else nan)
            high[title].append(float(metrics.get(high_name, nan)) if row.with_ci else nan)
            logged[title].append(present or (evaluated and applies))

    # A statistic no run logged for any label (AP of a validation split, micro AP of older runs) was not computed
    # at all: its rows are dropped rather than shown as undefined.
    computed = {key.split("/")[1] for run in runs for key in run.data.metrics if key.startswith(f"{split}/")}
    keep = [row.metric in computed for row in rows]
    index = [row.title for row in rows]
    frames = [pd.DataFrame(data, index=index, columns=titles)[keep] for data in (value, low, high)]
    logged_frame = pd.DataFrame(logged, index=index, columns=titles).astype(bool)[keep]
    integer_rows = frozenset(row.title for row in rows if row.integer)
    return RunComparison(columns, *frames, logged_frame, integer_rows)


def compare_runs(
    tracking_uri: str,
    experiment: str,
    run_refs: Sequence[str] | None = None,
    split: str = "test",
    counts: bool = False,
) -> RunComparison:
    """Compare the evaluations of runs of one experiment.

    Args:
        tracking_uri: MLflow tracking URI (``sqlite:///.../mlflow.db``, ``http://127.0.0.1:5000``, ...).
        experiment: experiment name.
        run_refs: run ids or names to compare, in column order (default: every run with ``split`` metrics).
        split: evaluated split whose metrics are compared.
        counts: add a row of positives per label (explains an ``undefined`` AUROC).

    Returns:
        The comparison; render it with :meth:`RunComparison.render`.

    Raises:
        FileNotFoundError: a SQLite store that does not exist.
        ValueError: see :func:`select_runs`.
    """
    client = open_client(tracking_uri)
    runs = select_runs(client, experiment, run_refs, split)
    logger.info("comparing %d run(s) of %r from %s", len(runs), experiment, tracking_uri)
    return comparison_from_runs(runs, split, counts)
