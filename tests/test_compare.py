"""``compare``: two short trainings (seeds 0 and 1) and a hand-logged run with undefined labels in one SQLite store,
read back side by side. Values are checked against the evaluation's own per_disease.csv/summary.json on disk."""

from __future__ import annotations

import argparse
import io
import json
import math
import re
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from pipeline.cli import compare as compare_cli
from pipeline.tracking.compare import NOT_LOGGED, UNDEFINED, compare_runs
from tests.conftest import run_cli

EXPERIMENT = "compare_test"
# A small DenseNet keeps a real training + evaluation to seconds on a CPU; the table does not depend on the network.
TINY_NETWORK = json.dumps({
    "_target_": "monai.networks.nets.DenseNet", "spatial_dims": 2, "in_channels": 1, "out_channels": "@num_classes",
    "init_features": 8, "growth_rate": 8, "block_config": [2, 2], "bn_size": 2,
})  # fmt: skip
FAST = [
    "--epochs", "1", "--image-size", "32", "--batch-size", "16", "--num-workers", "0", "--set", "n_bootstrap=20",
    "--set", "network_name=tinydensenet", "--set", f"network_def={TINY_NETWORK}",
]  # fmt: skip
CELL = re.compile(r"^(?P<value>\d\.\d{3})(?: \[(?P<low>\d\.\d{2}), (?P<high>\d\.\d{2})\])?$")
HAND_LABELS = ["Synthetic_Opacity", "Pleural Effusion", "Hernia"]


@pytest.fixture(scope="module")
def store(synthetic_datalist, tmp_path_factory):
    """Store with two trained runs (seed 0, seed 1) and one hand-logged run; returns (uri, output dirs, hand run)."""
    root = tmp_path_factory.mktemp("compare")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    outputs = []
    for seed in (0, 1):
        out = root / f"seed{seed}"
        result = run_cli(
            "train", "--datalist", str(synthetic_datalist), "--output-dir", str(out), "--tracking-uri", uri,
            "--experiment", EXPERIMENT, "--seed", str(seed), *FAST,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(out)

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    run_id = client.create_run(experiment_id, run_name="hand-logged").info.run_id
    client.log_param(run_id, "labels", "|".join(HAND_LABELS))
    for key, value in {
        "test/auroc/Synthetic_Opacity": 0.75, "test/auroc_ci_low/Synthetic_Opacity": 0.61,
        "test/auroc_ci_high/Synthetic_Opacity": 0.88, "test/ap/Synthetic_Opacity": 0.5,
        "test/auroc/Pleural_Effusion": math.nan,  # undefined, logged explicitly as NaN
        "test/n_pos/Pleural_Effusion": 0.0, "test/n_pos/Hernia": 0.0,  # Hernia: AUROC/AP not logged at all
        "test/macro_auroc": 0.75, "test/map": 0.5,
    }.items():  # fmt: skip
        client.log_metric(run_id, key, value)
    client.set_terminated(run_id)
    return uri, outputs, run_id


def _per_disease(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "evaluation" / "test" / "per_disease.csv", index_col="label")


def _parse(cell: str) -> tuple[float, float, float]:
    match = CELL.match(cell)
    assert match, f"not a formatted value: {cell!r}"
    low, high = match["low"], match["high"]
    return float(match["value"]), float(low) if low else math.nan, float(high) if high else math.nan


def _close(cell: str, value: float, low: float | None = None, high: float | None = None) -> None:
    parsed = _parse(cell)
    assert parsed[0] == pytest.approx(value, abs=5e-4 + 1e-9), cell
    if low is not None:
        assert parsed[1] == pytest.approx(low, abs=5e-3 + 1e-9), cell
        assert parsed[2] == pytest.approx(high, abs=5e-3 + 1e-9), cell


def test_columns_are_runs_named_network_loss_seed(store):
    uri, _, hand_id = store
    comparison = compare_runs(uri, EXPERIMENT)
    titles = [run.title for run in comparison.runs]
    assert titles == [
        "tinydensenet-RobustAsymmetricLoss-seed0", "tinydensenet-RobustAsymmetricLoss-seed1", "hand-logged"
    ]  # fmt: skip
    assert comparison.runs[2].run_id == hand_id
    assert list(comparison.formatted().columns) == titles


def test_trained_runs_show_their_own_evaluation(store, synthetic_datalist):
    uri, outputs, _ = store
    table = compare_runs(uri, EXPERIMENT).formatted()
    labels = json.loads(Path(synthetic_datalist).read_text())["labels"]
    for out, title in zip(outputs, table.columns[:2], strict=True):
        per_disease = _per_disease(out)
        for label in labels:
            row = per_disease.loc[label]
            for stat in ("auroc", "ap"):
                cell = table.loc[f"{stat.upper()} {label}", title]
                if pd.isna(row[stat]):
                    assert cell == UNDEFINED
                else:
                    _close(cell, row[stat], row[f"{stat}_ci_low"], row[f"{stat}_ci_high"])
        summary = json.loads((out / "evaluation" / "test" / "summary.json").read_text())
        _close(table.loc["macro AUROC", title], summary["macro_auroc"], summary["macro_auroc_ci_low"],
               summary["macro_auroc_ci_high"])  # fmt: skip
        _close(table.loc["mAP", title], summary["macro_ap"], summary["macro_ap_ci_low"], summary["macro_ap_ci_high"])
        _close(table.loc["micro AUROC", title], summary["micro_auroc"])
        for group, entry in summary["groups"].items():
            if entry.get("macro_ap") is not None:
                _close(table.loc[f"mAP {group}", title], entry["macro_ap"])
        assert table.loc["test images", title] == str(summary["n_images"])
    # The two seeds are different trainings, so their numbers are not copies of one another.
    assert not table.iloc[:, 0].equals(table.iloc[:, 1])


def test_undefined_and_absent_metrics_are_never_numbers(store):
    uri, _, _ = store
    comparison = compare_runs(uri, EXPERIMENT)
    table = comparison.formatted()
    hand, trained = "hand-logged", table.columns[0]
    _close(table.loc["AUROC Synthetic_Opacity", hand], 0.75, 0.61, 0.88)
    assert table.loc["AP Synthetic_Opacity", hand] == "0.500", "no interval logged: the value alone"
    # NaN logged, not logged at all, or no AP: all undefined for labels of the run's label set.
    for row in ("AUROC Pleural Effusion", "AP Pleural Effusion", "AUROC Hernia", "AP Hernia"):
        assert table.loc[row, hand] == UNDEFINED, row
        assert table.loc[row, trained] == NOT_LOGGED, "the trained runs have no such label"
        assert math.isnan(comparison.value.loc[row, hand])
    assert table.loc["AUROC Synthetic_Effusion", hand] == NOT_LOGGED
    group_rows = [row for row in table.index if row.startswith("mAP ")]
    assert group_rows, "the trained runs log head/medium/tail summaries"
    assert all(table.loc[row, hand] == NOT_LOGGED for row in group_rows)
    assert table.loc["micro AUROC", hand] == UNDEFINED, "an evaluated run without micro AUROC has it undefined"


def test_counts_rows_explain_undefined_labels(store):
    uri, outputs, _ = store
    table = compare_runs(uri, EXPERIMENT, counts=True).formatted()
    assert table.loc["positives Hernia", "hand-logged"] == "0"
    n_pos = _per_disease(outputs[0])["n_pos"]
    for label, count in n_pos.items():
        assert table.loc[f"positives {label}", table.columns[0]] == str(int(count))


def test_validation_split_has_only_the_rows_validation_computes(store, synthetic_datalist):
    uri, _, _ = store
    comparison = compare_runs(uri, EXPERIMENT, split="val")
    assert [run.title for run in comparison.runs] == [
        "tinydensenet-RobustAsymmetricLoss-seed0", "tinydensenet-RobustAsymmetricLoss-seed1"
    ], "the hand-logged run has no validation metrics"  # fmt: skip
    labels = json.loads(Path(synthetic_datalist).read_text())["labels"]
    assert set(comparison.formatted().index) == {f"AUROC {label}" for label in labels} | {"macro AUROC"}
    client = mlflow.MlflowClient(tracking_uri=uri)
    for column in comparison.runs:
        logged = client.get_run(column.run_id).data.metrics["val/macro_auroc"]
        assert comparison.value.loc["macro AUROC", column.title] == logged


def test_run_selection_by_id_and_name_keeps_the_given_order(store):
    uri, _, hand_id = store
    everything = compare_runs(uri, EXPERIMENT)
    seed1 = everything.runs[1]
    picked = compare_runs(uri, EXPERIMENT, [hand_id, seed1.run_name])
    assert [run.run_id for run in picked.runs] == [hand_id, seed1.run_id]
    # Rows follow the label order of the first column, so compare the cells row by row.
    same = everything.formatted()[seed1.title]
    assert picked.formatted()[seed1.title].reindex(same.index).equals(same)


def test_csv_and_markdown_hold_the_same_cells(store):
    uri, _, _ = store
    comparison = compare_runs(uri, EXPERIMENT)
    expected = comparison.formatted()
    csv = pd.read_csv(io.StringIO(comparison.render("csv")), index_col="metric", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(csv, expected)
    lines = comparison.render("markdown").splitlines()
    assert lines[0] == "| metric | " + " | ".join(expected.columns) + " |"
    assert len(lines) == 2 + len(expected)
    assert "| macro AUROC | " + " | ".join(expected.loc["macro AUROC"]) + " |" in lines


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    compare_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["compare", *argv])
    return args.func(args)


def test_cli_writes_csv_chosen_by_suffix_and_prints_markdown(store, tmp_path, capsys):
    uri, _, _ = store
    out = tmp_path / "tables" / "runs.csv"
    assert _cli("--tracking-uri", uri, "--experiment", EXPERIMENT, "--out", str(out)) == 0
    written = pd.read_csv(out, index_col="metric", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(written, compare_runs(uri, EXPERIMENT).formatted())
    assert str(out) in capsys.readouterr().out

    assert _cli("--tracking-uri", uri, "--experiment", EXPERIMENT, "--format", "markdown", "--digits", "2") == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| metric | tinydensenet-RobustAsymmetricLoss-seed0 |")
    assert "| AUROC Pleural Effusion | - | - | undefined |" in printed

    assert _cli("--tracking-uri", uri, "--experiment", EXPERIMENT) == 0
    text = capsys.readouterr().out
    assert "hand-logged: run " in text and "FINISHED" in text


def test_python_m_pipeline_compare(store):
    uri, _, _ = store
    result = run_cli("compare", "--tracking-uri", uri, "--experiment", EXPERIMENT, "--format", "csv", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == compare_runs(uri, EXPERIMENT).render("csv")


def test_output_dir_reads_its_mlflow_db(store, capsys):
    uri, _, _ = store
    folder = Path(uri[len("sqlite:///") :]).parent
    assert _cli("--output-dir", str(folder), "--experiment", EXPERIMENT, "--format", "csv") == 0
    assert capsys.readouterr().out.startswith("metric,tinydensenet-RobustAsymmetricLoss-seed0,")


def test_runs_with_the_same_settings_get_distinct_columns(store):
    uri, _, _ = store
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("compare_duplicates")
    ids = []
    for value in (0.6, 0.7):
        run_id = client.create_run(experiment_id).info.run_id
        client.set_tag(run_id, "network", "densenet121")
        client.set_tag(run_id, "loss", "RobustAsymmetricLoss")
        client.set_tag(run_id, "seed", "0")
        client.log_metric(run_id, "test/auroc/A", value)
        ids.append(run_id)
    client.create_run(experiment_id)  # a run never evaluated is left out
    comparison = compare_runs(uri, "compare_duplicates")
    assert [run.title for run in comparison.runs] == [f"densenet121-RobustAsymmetricLoss-seed0 ({i[:8]})" for i in ids]
    assert comparison.formatted().loc["AUROC A"].tolist() == ["0.600", "0.700"]


def test_bad_requests_name_what_is_wrong(store, tmp_path):
    uri, _, _ = store
    with pytest.raises(ValueError, match="no_such_experiment"):
        compare_runs(uri, "no_such_experiment")
    with pytest.raises(ValueError, match="not-a-run"):
        compare_runs(uri, EXPERIMENT, ["not-a-run"])
    with pytest.raises(FileNotFoundError, match="missing.db"):
        compare_runs(f"sqlite:///{tmp_path / 'missing.db'}", EXPERIMENT)
    assert not (tmp_path / "missing.db").exists(), "reading must not create a store"
    with pytest.raises(ValueError, match="'html'"):
        compare_runs(uri, EXPERIMENT).render("html")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        _cli("--output-dir", str(tmp_path / "nowhere"))
