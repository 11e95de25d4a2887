"""The sweep report: per-loss results over seeds, per-disease AUROC, paired comparisons and sensitivity figures.

Numbers come from the children's MLflow metrics (test macro AUROC, mAP, head/medium/tail mAP, per-label AUROC);
the paired bootstrap over test images reads the children's ``predictions.csv`` artifacts and the datalist. For a
loss with a grid of settings, one setting represents it in the per-disease table and in the paired comparisons:
the one with the best mean validation macro AUROC over seeds (never chosen on the test split).

The report is written as Markdown (and optionally HTML) with PNG figures, and logged to the parent run.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.study import figures, stats
from pipeline.study.collect import ChildRun, SweepRuns, collect_sweep, download_artifact, read_json_artifact
from pipeline.study.estimate import format_duration
from pipeline.tracking import metric_name

logger = logging.getLogger(__name__)

# (MLflow metric, frame column, display name) of the per-loss summary.
SUMMARY_METRICS = (
    (metric_name("test", "macro_auroc"), "macro_auroc", "test macro AUROC"),
    (metric_name("test", "map"), "map", "test mAP"),
    (metric_name("test", "map_head"), "map_head", "mAP head"),
    (metric_name("test", "map_medium"), "map_medium", "mAP medium"),
    (metric_name("test", "map_tail"), "map_tail", "mAP tail"),
)
FIGURE_METRICS = (("macro_auroc", "test macro AUROC"), ("map", "test mAP"))
# The same two metrics with their key in the paired image bootstrap.
PAIRED_METRICS = (("macro_auroc", "test macro AUROC", "auroc"), ("map", "test mAP", "ap"))
PREDICTIONS_ARTIFACT = "evaluation/test/predictions.csv"
SUMMARY_ARTIFACT = "evaluation/test/summary.json"
ENVIRONMENT_ARTIFACT = "run_info/environment.json"


@dataclass
class ReportOptions:
    """Choices of the report.

    Attributes:
        reference: loss compared with each baseline (difference = reference - baseline).
        baselines: losses the reference is compared with.
        n_seed_bootstrap: resamples of the bootstrap over seed pairs.
        n_image_bootstrap: resamples of the paired bootstrap over test images (0: skip it).
        seed: seed of both bootstraps.
        datalist: datalist for the test targets (default: the one the sweep recorded on its parent run).
        html: also write ``report.html``.
        log_to_parent: log the report folder to the parent run as artifacts under ``report/``.
        notes: free text put under the title (e.g. the limits of the study).
    """

    reference: str = "ral"
    baselines: tuple[str, ...] = ("bce", "asl")
    n_seed_bootstrap: int = 10000
    n_image_bootstrap: int = 1000
    seed: int = 0
    datalist: Path | None = None
    html: bool = False
    log_to_parent: bool = True
    notes: str = ""


@dataclass
class ReportResult:
    """What the report wrote and the tables behind it (for tests and further use)."""

    markdown: Path
    html: Path | None
    figures: list[Path]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    comparisons: list[dict[str, Any]] = field(default_factory=list)


# Document model ---------------------------------------------------------------------------------------------------


class _Document:
    """A list of blocks rendered both as Markdown and as HTML."""

    def __init__(self) -> None:
        self.blocks: list[tuple] = []

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(("ul", list(items)))

    def table(self, frame: pd.DataFrame) -> None:
        self.blocks.append(("table", frame))

    def image(self, path: str, alt: str) -> None:
        self.blocks.append(("img", path, alt))

    def code(self, text: str, language: str = "") -> None:
        self.blocks.append(("code", text, language))

    def markdown(self) -> str:
        out = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append("#" * block[1] + " " + block[2])
            elif kind == "p":
                out.append(block[1])
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in block[1]))
            elif kind == "table":
                out.append(_markdown_table(block[1]))
            elif kind == "img":
                out.append(f"![{block[2]}]({block[1]})")
            elif kind == "code":
                out.append(f"```{block[2]}\n{block[1].rstrip()}\n```")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        body = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                body.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
            elif kind == "p":
                body.append(f"<p>{html.escape(block[1])}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in block[1]) + "</ul>")
            elif kind == "table":
                body.append(_html_table(block[1]))
            elif kind == "img":
                body.append(f'<p><img src="{html.escape(block[1])}" alt="{html.escape(block[2])}"></p>')
            elif kind == "code":
                body.append(f"<pre><code>{html.escape(block[1])}</code></pre>")
        style = (
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;}table{border-collapse:collapse;}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;}img{max-width:100%;}"
        )
        return (
            f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
        )


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _markdown_table(frame: pd.DataFrame) -> str:
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _pm(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if math.isfinite(std) else f"{mean:.3f}"


def _signed(value: float) -> str:
    return f"{value:+.3f}" if math.isfinite(value) else "n/a"


def _interval(low: float, high: float) -> str:
    return f"[{low:+.3f}, {high:+.3f}]" if math.isfinite(low) and math.isfinite(high) else "n/a"


# Tables -----------------------------------------------------------------------------------------------------------


def runs_frame(sweep: SweepRuns) -> pd.DataFrame:
    """One row per finished child: loss, setting label, seed, hyper-parameters, best validation AUROC, metrics."""
    rows = []
    for child in sweep.children:
        row: dict[str, Any] = {
            "loss": child.loss, "setting": child.setting_label, "seed": child.seed, "run_id": child.run_id,
            "run": child.name, "val_macro_auroc": child.best_val,
        }  # fmt: skip
        values = dict(child.setting)
        for name in sweep.hyperparameters:
            row[name] = values.get(name, np.nan)
        for metric, column, _ in SUMMARY_METRICS:
            row[column] = child.metric(metric)
        row["duration_s"] = child.duration_s
        rows.append(row)
    return pd.DataFrame(rows)


def select_settings(frame: pd.DataFrame) -> dict[str, str]:
    """Per loss, the setting with the best mean validation macro AUROC over seeds (first one on ties or no data)."""
    selected = {}
    for loss, runs in frame.groupby("loss", sort=False):
        means = runs.groupby("setting", sort=False)["val_macro_auroc"].mean()
        selected[loss] = str(means.idxmax()) if means.notna().any() else str(runs["setting"].iloc[0])
    return selected


def settings_table(frame: pd.DataFrame, losses: Sequence[str], selected: dict[str, str]) -> pd.DataFrame:
    """Mean ± std over seeds of each summary metric, per loss and setting."""
    rows = []
    for loss in losses:
        runs = frame[frame["loss"] == loss]
        for setting, group in runs.groupby("setting", sort=True):
            row = {"loss": loss, "setting": setting, "selected": "yes" if selected.get(loss) == setting else "",
                   "seeds": int(group["seed"].notna().sum()) or len(group),
                   "val macro AUROC": _pm(*stats.mean_std(group["val_macro_auroc"].tolist())[:2])}  # fmt: skip
            for _, column, display in SUMMARY_METRICS:
                row[display] = _pm(*stats.mean_std(group[column].tolist())[:2])
            rows.append(row)
    return pd.DataFrame(rows)


def per_disease_table(
    sweep: SweepRuns, losses: Sequence[str], selected: dict[str, str], groups: dict[str, str]
) -> pd.DataFrame:
    """Mean test AUROC over seeds per label (rows) and loss at its selected setting (columns)."""
    first = sweep.children[0]
    rows = []
    for label in sweep.labels:
        row: dict[str, Any] = {"label": label, "group": groups.get(label, ""),
                               "test positives": _count(first.metric(metric_name("test", "n_pos", label)))}  # fmt: skip
        for loss in losses:
            runs = [c for c in sweep.runs(loss) if c.setting_label == selected[loss]]
            row[loss] = stats.mean_std([c.metric(metric_name("test", "auroc", label)) for c in runs])[0]
        rows.append(row)
    return pd.DataFrame(rows)


def _count(value: float) -> Any:
    return int(value) if math.isfinite(value) else None


def spread_table(frame: pd.DataFrame, losses: Sequence[str], column: str) -> pd.DataFrame:
    """Per loss: how much the setting means (over seeds) vary across its grid, next to the seed-to-seed spread."""
    rows = []
    for loss in losses:
        runs = frame[frame["loss"] == loss]
        means = runs.groupby("setting")[column].mean().dropna()
        seed_std = runs.groupby("setting")[column].std().dropna()
        rows.append({
            "loss": loss, "settings": len(means),
            "lowest setting mean": float(means.min()) if len(means) else math.nan,
            "highest setting mean": float(means.max()) if len(means) else math.nan,
            "range across grid": float(means.max() - means.min()) if len(means) > 1 else math.nan,
            "std across grid": float(means.std(ddof=1)) if len(means) > 1 else math.nan,
            "mean seed std": float(seed_std.mean()) if len(seed_std) else math.nan,
        })  # fmt: skip
    return pd.DataFrame(rows)


# Paired comparisons -----------------------------------------------------------------------------------------------


class _Predictions:
    """Test predictions of the children, downloaded once, with the test targets from the datalist."""

    def __init__(self, client: Any, datalist: Path | None, labels: Sequence[str], folder: Path):
        self.client = client
        self.labels = list(labels)
        self.folder = folder
        self.problem: str | None = None
        self.items: dict[str, dict] = {}
        if datalist is None:
            self.problem = "no datalist recorded on the parent run and none given"
        elif not Path(datalist).is_file():
            self.problem = f"datalist {datalist} not found"
        else:
            from pipeline.runtime import load_split

            self.items = {item["path"]: item for item in load_split(datalist, "test")}
        self._cache: dict[str, pd.DataFrame | None] = {}

    def frame(self, run_id: str) -> pd.DataFrame | None:
        if run_id not in self._cache:
            local = download_artifact(self.client, run_id, PREDICTIONS_ARTIFACT, self.folder / run_id)
            self._cache[run_id] = pd.read_csv(local) if local is not None and local.is_file() else None
        return self._cache[run_id]

    def pairs(self, runs_a: Sequence[ChildRun], runs_b: Sequence[ChildRun]):
        """``(pairs, targets, patients)`` for seed-matched runs, or None (with ``problem`` set)."""
        if self.problem:
            return None
        columns = [f"prob/{label}" for label in self.labels]
        pairs, order = [], None
        for a, b in zip(runs_a, runs_b, strict=True):
            fa, fb = self.frame(a.run_id), self.frame(b.run_id)
            if fa is None or fb is None:
                self.problem = f"{PREDICTIONS_ARTIFACT} missing on run {a.name if fa is None else b.name}"
                return None
            if order is None:
                order = list(fa["path"])
                missing = [p for p in order if p not in self.items]
                if missing:
                    self.problem = f"{len(missing)} predicted images are not in the datalist's test split"
                    return None
            if set(fa["path"]) != set(order) or set(fb["path"]) != set(order):
                self.problem = "the paired runs predicted different test images"
                return None
            pairs.append(tuple(f.set_index("path").loc[order, columns].to_numpy(dtype=np.float64) for f in (fa, fb)))
        targets = np.asarray([self.items[p]["label"] for p in order], dtype=np.float64)
        patients = [self.items[p].get("patient") for p in order]
        return pairs, targets, (None if any(p is None for p in patients) else np.asarray(patients, dtype=str))


def compare(
    sweep: SweepRuns,
    reference: str,
    baseline: str,
    selected: dict[str, str],
    options: ReportOptions,
    predictions: _Predictions,
) -> dict[str, Any]:
    """Paired comparison of ``reference`` and ``baseline`` at their selected settings, over the seeds both have."""
    runs_a = {c.seed: c for c in sweep.runs(reference) if c.setting_label == selected[reference]}
    runs_b = {c.seed: c for c in sweep.runs(baseline) if c.setting_label == selected[baseline]}
    seeds = sorted(s for s in set(runs_a) & set(runs_b) if s is not None)
    result: dict[str, Any] = {"reference": reference, "baseline": baseline, "title": f"{reference} - {baseline}",
                              "reference_setting": selected[reference], "baseline_setting": selected[baseline],
                              "seeds": seeds, "rows": [], "image": None, "image_problem": None}  # fmt: skip
    for _, column, _ in SUMMARY_METRICS[:2]:
        result[column] = {"per_seed": [], "mean": math.nan, "low": math.nan, "high": math.nan}
    for seed in seeds:
        row: dict[str, Any] = {"seed": seed}
        for metric, column, display in SUMMARY_METRICS[:2]:
            va, vb = runs_a[seed].metric(metric), runs_b[seed].metric(metric)
            row[f"{reference} {display}"], row[f"{baseline} {display}"] = va, vb
            row[f"difference {display}"] = va - vb
            result[column]["per_seed"].append(va - vb)
        result["rows"].append(row)
    for _, column, _ in SUMMARY_METRICS[:2]:
        entry = result[column]
        entry["mean"] = stats.mean_std(entry["per_seed"])[0]
        entry["low"], entry["high"] = stats.bootstrap_mean_interval(
            entry["per_seed"], n_resamples=options.n_seed_bootstrap, seed=options.seed
        )
    if seeds and options.n_image_bootstrap > 0:
        data = predictions.pairs([runs_a[s] for s in seeds], [runs_b[s] for s in seeds])
        if data is None:
            result["image_problem"] = predictions.problem
        else:
            pairs, targets, patients = data
            result["image"] = stats.paired_image_bootstrap(
                pairs, targets, predictions.labels, patients=patients, n_resamples=options.n_image_bootstrap,
                seed=options.seed,
            )  # fmt: skip
    elif options.n_image_bootstrap <= 0:
        result["image_problem"] = "switched off"
    return result


# Report -----------------------------------------------------------------------------------------------------------


def _groups(client: Any, sweep: SweepRuns) -> dict[str, str]:
    summary = read_json_artifact(client, sweep.children[0].run_id, SUMMARY_ARTIFACT) or {}
    out = {}
    for group, entry in (summary.get("groups") or {}).items():
        for label in entry.get("labels") or []:
            out[label] = group
    return out


def _sweep_file(client: Any, parent_id: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        entries = client.list_artifacts(parent_id, "sweep")
    except MlflowException:
        return None
    for entry in entries:
        if entry.path.endswith((".yaml", ".yml")):
            with tempfile.TemporaryDirectory() as tmp:
                local = download_artifact(client, parent_id, entry.path, tmp)
                if local is not None:
                    return local.read_text()
    return None


def build_report(
    client: Any, parent_run_id: str, out_dir: str | os.PathLike, options: ReportOptions | None = None
) -> ReportResult:
    """Read the sweep under ``parent_run_id`` and write ``report.md`` (and ``report.html``) with figures.

    Args:
        client: an ``mlflow.MlflowClient`` on the sweep's tracking store.
        parent_run_id: the sweep's parent run.
        out_dir: folder of the report (created).
        options: report choices.

    Returns:
        The written paths and the tables.

    Raises:
        ValueError: if the parent run is unknown or has no finished child.
    """
    options = options or ReportOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sweep = collect_sweep(client, parent_run_id)
    if not sweep.children:
        raise ValueError(f"sweep {parent_run_id} has no finished child with a test evaluation yet")
    parent = sweep.parent
    name = parent.data.tags.get("sweep.name") or parent.info.run_name or parent_run_id
    frame = runs_frame(sweep)
    losses = sweep.losses()
    selected = select_settings(frame)

    doc = _Document()
    doc.heading(1, f"Sweep report: {name}")
    durations = [c.duration_s for c in sweep.children if math.isfinite(c.duration_s)]
    wall = parent.data.metrics.get("sweep/wall_s")
    status = parent.data.tags.get("sweep.status", parent.info.status.lower())
    facts = [
        f"parent run `{parent_run_id}` (experiment id {parent.info.experiment_id}), sweep status: {status}",
        f"{len(sweep.children)} finished children over {len(losses)} losses ({', '.join(losses)})"
        + (f"; {len(sweep.excluded)} left out (see the end)" if sweep.excluded else ""),
        f"compute budget stated in the sweep file: {parent.data.tags.get('sweep.budget', 'none stated')}",
        f"sweep wall time: {format_duration(wall)}; children: {format_duration(sum(durations))} in total, "
        f"{format_duration(float(np.mean(durations)) if durations else None)} each on average",
    ]
    shared = {k[len("base.") :]: v for k, v in parent.data.params.items() if k.startswith("base.")}
    if shared:
        facts.append("shared settings: " + ", ".join(f"{k}={v}" for k, v in sorted(shared.items())))
    if parent.data.params.get("datalist"):
        facts.append(f"datalist: {parent.data.params['datalist']}")
    doc.bullets(facts)
    if options.notes.strip():
        doc.para(options.notes.strip())

    figure_paths: list[Path] = []

    def save(figure: Any, filename: str) -> Path | None:
        if figure is None:
            return None
        path = out / filename
        figure.savefig(path, dpi=110, format="png")
        figure_paths.append(path)
        return path

    # Per loss and setting.
    doc.heading(2, "Results per loss and setting (mean ± std over seeds)")
    table = settings_table(frame, losses, selected)
    doc.para(
        "Test metrics of each loss setting over its seeds. 'selected' marks the setting with the best mean validation "
        "macro AUROC, which represents the loss in the per-disease table and the paired comparisons. mAP head/"
        "medium/tail are mean average precision over the labels of each training-frequency group."
    )
    doc.table(table)

    # Per disease.
    groups = _groups(client, sweep)
    disease = per_disease_table(sweep, losses, selected, groups)
    doc.heading(2, "Per-disease test AUROC (mean over seeds, selected setting per loss)")
    doc.para("n/a: undefined on this test split (no positive or no negative image), left out of macro averages.")
    doc.table(disease)

    # Paired comparisons.
    comparisons = []
    doc.heading(2, f"Paired comparisons: {options.reference} against {', '.join(options.baselines)}")
    predictions = None
    with tempfile.TemporaryDirectory() as tmp:
        datalist = options.datalist or (Path(parent.data.params["datalist"]) if "datalist" in parent.data.params
                                        else None)  # fmt: skip
        predictions = _Predictions(client, datalist, sweep.labels, Path(tmp))
        for baseline in options.baselines:
            missing = [loss for loss in (options.reference, baseline) if loss not in losses]
            if missing:
                doc.para(f"{options.reference} vs {baseline}: not possible, no finished run of {', '.join(missing)}.")
                continue
            comparisons.append(compare(sweep, options.reference, baseline, selected, options, predictions))
    for comparison in comparisons:
        _write_comparison(doc, comparison)
    paired_path = save(figures.plot_paired(comparisons, PAIRED_METRICS), "paired_differences.png")
    if paired_path is not None:
        doc.image(paired_path.name, "paired differences per seed")

    # Sensitivity and spread.
    doc.heading(2, "Sensitivity to hyper-parameters and spread across each loss's grid")
    sensitivity = save(
        figures.plot_sensitivity(frame, sweep.hyperparameters, FIGURE_METRICS, losses, selected), "sensitivity.png"
    )
    if sensitivity is not None:
        doc.para(
            "Test metric against each varied hyper-parameter: points are means over seeds, bars one standard "
            "deviation over seeds; dashed lines are losses that do not vary it (their selected setting)."
        )
        doc.image(sensitivity.name, "sensitivity to hyper-parameters")
    else:
        doc.para("No hyper-parameter was varied in this sweep, so there is no sensitivity figure.")
    spread_path = save(figures.plot_spread(frame, FIGURE_METRICS, losses), "spread.png")
    doc.image(spread_path.name, "spread across each loss's grid")
    spreads = {}
    for column, display in FIGURE_METRICS:
        spreads[column] = spread_table(frame, losses, column)
        doc.para(f"{display}: spread of the setting means across each loss's grid, next to the seed-to-seed spread.")
        doc.table(spreads[column])
    doc.para(_spread_sentence(spreads["macro_auroc"], options.reference))

    # Runs and provenance.
    doc.heading(2, "Runs")
    runs_table = frame[["loss", "setting", "seed", "run", "run_id", "val_macro_auroc", "macro_auroc", "map"]].copy()
    runs_table["duration"] = [format_duration(v) for v in frame["duration_s"]]
    runs_table["loss"] = pd.Categorical(runs_table["loss"], categories=losses, ordered=True)
    runs_table = runs_table.sort_values(["loss", "setting", "seed"])
    runs_table["loss"] = runs_table["loss"].astype(str)
    doc.table(runs_table)
    if sweep.excluded:
        doc.para("Left out (not finished with a test evaluation):")
        doc.bullets([f"{n} (`{r}`): {why}" for n, r, why in sweep.excluded])
    _provenance(doc, client, sweep)

    markdown_path = out / "report.md"
    markdown_path.write_text(doc.markdown())
    html_path = None
    if options.html:
        html_path = out / "report.html"
        html_path.write_text(doc.html(f"Sweep report: {name}"))
    runs_table.to_csv(out / "runs.csv", index=False)
    if options.log_to_parent:
        client.log_artifacts(parent_run_id, str(out), "report")
    logger.info("report written to %s", markdown_path)
    return ReportResult(
        markdown=markdown_path, html=html_path, figures=figure_paths,
        tables={"settings": table, "per_disease": disease, "runs": frame, **{f"spread_{k}": v for k, v in
                                                                              spreads.items()}},
        comparisons=comparisons,
    )  # fmt: skip


def _write_comparison(doc: _Document, comparison: dict[str, Any]) -> None:
    ref, base = comparison["reference"], comparison["baseline"]
    doc.heading(3, f"{ref} ({comparison['reference_setting']}) vs {base} ({comparison['baseline_setting']})")
    if not comparison["seeds"]:
        doc.para("No seed was trained with both losses; nothing to pair.")
        return
    doc.table(pd.DataFrame(comparison["rows"]))
    lines = []
    for _, column, display in SUMMARY_METRICS[:2]:
        entry = comparison[column]
        lines.append(
            f"{display}: mean difference {ref} - {base} over {len(comparison['seeds'])} seed pair(s) "
            f"{_signed(entry['mean'])}, bootstrap 95% interval over seed pairs {_interval(entry['low'], entry['high'])}"
        )
    image = comparison["image"]
    if image is not None:
        for metric, display in (("auroc", "macro AUROC"), ("ap", "mAP")):
            result = image[metric]
            lines.append(
                f"paired bootstrap over test {result.unit}s ({result.n_resamples} resamples, {result.n_labels} labels, "
                f"averaged over {result.n_pairs} seed pair(s)), {display}: {_signed(result.difference)}, 95% interval "
                f"{_interval(result.low, result.high)}; {ref} ahead in {result.share_above_zero:.0%} of resamples"
            )
    else:
        lines.append(f"paired bootstrap over test images: not done ({comparison['image_problem']})")
    doc.bullets(lines)


def _spread_sentence(spread: pd.DataFrame, reference: str) -> str:
    rows = spread.set_index("loss")
    gridded = rows[rows["settings"] > 1]
    if gridded.empty:
        return "No loss was run with more than one setting, so the spread across grids cannot be compared."
    parts = [
        f"{loss}: range {row['range across grid']:.3f} over {int(row['settings'])} settings (seed std within a "
        f"setting {row['mean seed std']:.3f})"
        for loss, row in gridded.iterrows()
    ]
    text = "Macro AUROC across grids - " + "; ".join(parts) + "."
    noise = gridded["mean seed std"].mean()
    if reference in gridded.index and len(gridded) > 1:
        ref_range = gridded.loc[reference, "range across grid"]
        others = gridded.drop(index=reference)["range across grid"]
        word = "smaller" if (ref_range < others).all() else "larger" if (ref_range > others).all() else "in between"
        text += f" {reference}'s range is {word} than the other gridded losses'."
    if math.isfinite(noise):
        text += (
            f" Ranges below the seed-to-seed standard deviation (about {noise:.3f}) are within noise and say little "
            "about sensitivity."
        )
    return text


def _provenance(doc: _Document, client: Any, sweep: SweepRuns) -> None:
    parent = sweep.parent
    doc.heading(2, "Provenance")
    items = []
    command = parent.data.tags.get("sweep.command")
    if command:
        items.append(f"sweep command: `{command}`")
    environment = read_json_artifact(client, sweep.children[0].run_id, ENVIRONMENT_ARTIFACT)
    if environment:
        packages = environment.get("packages") or {}
        items.append("packages (as logged by the first child): " + ", ".join(f"{k} {v}" for k, v in packages.items()))
        items.append(f"git commit: {environment.get('git_commit', 'unknown')}")
    doc.bullets(items or ["no provenance recorded"])
    source = _sweep_file(client, parent.info.run_id)
    if source:
        doc.para("Sweep file:")
        doc.code(source, "yaml")


def report_summary_json(result: ReportResult) -> str:
    """The comparisons as JSON (for scripts): per comparison the per-seed and mean differences and intervals."""
    out = []
    for comparison in result.comparisons:
        entry = {k: comparison[k] for k in ("reference", "baseline", "reference_setting", "baseline_setting", "seeds")}
        for _, column, _ in SUMMARY_METRICS[:2]:
            entry[column] = comparison[column]
        if comparison["image"] is not None:
            entry["image_bootstrap"] = {k: vars(v) for k, v in comparison["image"].items()}
        out.append(entry)
    return json.dumps(out, indent=2, default=float)
