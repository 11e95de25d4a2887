"""Sweeps without training: the sweep file and its children, the state file, the runner's bookkeeping in a real
MLflow store (children played by a stand-in trainer script), and the statistics of the report."""

from __future__ import annotations

import json
import math
import os
import stat
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.entities import ViewType
from sklearn.metrics import roc_auc_score

from pipeline.study import SweepRunner, load_sweep_config
from pipeline.study.config import child_key, parse_sweep_config
from pipeline.study.runner import KEY_TAG, PARENT_TAG, RETIRED_TAG
from pipeline.study.state import FINISHED, STATE_FILE, SweepState
from pipeline.study.stats import bootstrap_mean_interval, mean_std, paired_image_bootstrap


def _sweep(tmp_path: Path, **extra) -> dict:
    data = {
        "name": "unit",
        "base": {"datalist": str(tmp_path / "datalist.json"), "output_root": str(tmp_path / "out"), "epochs": 1},
        "grid": {"seed": [0, 1]},
    }
    data.update(extra)
    return data


# Sweep file --------------------------------------------------------------------------------------------------------


def test_children_cross_variants_with_their_grids_and_the_common_grid(tmp_path):
    config = parse_sweep_config(
        _sweep(tmp_path, variants=[{"loss": "bce"}, {"loss": "asl", "grid": {"loss::gamma_neg": [2, 4]}}],
               budget={"wall_minutes": 45, "note": "two cores"}),
    )  # fmt: skip
    assert [c.name for c in config.children] == [
        "bce_seed-0", "asl_gamma_neg-2_seed-0", "asl_gamma_neg-4_seed-0",
        "bce_seed-1", "asl_gamma_neg-2_seed-1", "asl_gamma_neg-4_seed-1",
    ]  # fmt: skip
    child = config.children[2]
    assert child.key == 'loss="asl", loss::gamma_neg=4, seed=0'
    assert child.options == {"epochs": 1, "loss": "asl", "seed": 0}
    assert child.overrides == {"loss::gamma_neg": 4}
    args = child.train_arguments()
    assert args[args.index("--loss") + 1] == "asl" and args[args.index("--seed") + 1] == "0"
    assert "loss::gamma_neg=4" in args
    assert config.budget.describe() == "45 min wall time; two cores"
    assert config.tracking_uri == f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}"
    assert config.experiment == "unit"


def test_set_values_travel_as_json_so_strings_stay_strings(tmp_path):
    config = parse_sweep_config(_sweep(tmp_path, grid={"loss::label": ["7", "x"]}))
    assert [c.train_arguments()[-1] for c in config.children] == ['loss::label="7"', 'loss::label="x"']


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"grid": {"epoch": [1, 2]}}, "unknown key 'epoch'"),
        ({"grid": {"seed": []}}, "at least one value"),
        ({"grid": {"seed": [1, 1]}}, "lists a value twice"),
        ({"variants": [{"seed": 3}]}, "set both here and in a grid"),
        ({"variants": [{"loss": "bce"}, {"loss": "bce"}]}, "share the settings"),
        ({"parallel": 0}, "parallel must be a positive integer"),
        ({"budget": {"wall_minutes": -5}}, "wall_minutes"),
        ({"colour": "red"}, "unknown top-level keys"),
        ({"variants": {"loss": "bce"}}, "variants must be a list"),
    ],
)
def test_bad_sweep_files_are_refused_with_the_reason(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        parse_sweep_config(_sweep(tmp_path, **change))


def test_missing_base_paths_are_refused(tmp_path):
    data = _sweep(tmp_path)
    del data["base"]["datalist"]
    with pytest.raises(ValueError, match="base.datalist is required"):
        parse_sweep_config(data)
    with pytest.raises(FileNotFoundError, match="sweep file not found"):
        load_sweep_config(tmp_path / "absent.yaml")


def test_folder_names_stay_unique_when_values_slug_alike(tmp_path):
    config = parse_sweep_config(_sweep(tmp_path, grid={"loss::tag": ["a b", "ab"]}))
    names = [c.name for c in config.children]
    assert len(set(names)) == 2 and all(n.startswith("tag-ab") for n in names)
    assert child_key({"seed": 1, "loss": "x"}) == 'loss="x", seed=1'


# State file --------------------------------------------------------------------------------------------------------


def test_state_round_trips_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / STATE_FILE
    state = SweepState.new(path, name="n", fingerprint="f", tracking_uri="sqlite:///x", experiment="e")
    state.update_child("seed=0", status=FINISHED, duration_s=12.5)
    state.update_child("seed=1", status="failed")
    again = SweepState.load(path)
    assert again.child("seed=0")["status"] == FINISHED
    assert again.finished_durations() == [12.5]
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]
    path.write_text(json.dumps({"version": 99}))
    with pytest.raises(ValueError, match="unknown version 99"):
        SweepState.load(path)


# Runner with a stand-in trainer --------------------------------------------------------------------------------------

_FAKE_TRAINER = """\
import json, os, sys
import mlflow

args = sys.argv[3:]  # after "-m pipeline train"
value = lambda flag: args[args.index(flag) + 1]
sets = dict(a.split("=", 1) for a, prev in zip(args, [""] + args) if prev == "--set")
run_id = json.loads(sets["mlflow::run::run_id"])
seed = value("--seed")
if seed in os.environ["FAKE_FAIL_SEEDS"].split(","):
    sys.exit(3)
client = mlflow.MlflowClient(value("--tracking-uri"))
client.log_param(run_id, "seed", seed)
client.log_param(run_id, "loss", "BinaryCrossEntropyLoss")
client.log_metric(run_id, "val/macro_auroc", 0.6 + int(seed) / 10)
client.log_metric(run_id, "test/macro_auroc", 0.5 + int(seed) / 10)
if seed not in os.environ["FAKE_NO_EVAL_SEEDS"].split(","):
    client.log_metric(run_id, "test/num_images", 10)
client.set_terminated(run_id, "FINISHED")
"""
KEYS = ['loss="bce", seed=0', 'loss="bce", seed=1', 'loss="bce", seed=2']


def _config(tmp_path: Path):
    (tmp_path / "datalist.json").write_text("{}")
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(_sweep(tmp_path, variants=[{"loss": "bce"}], grid={"seed": [0, 1, 2]})))
    return load_sweep_config(path)


def _statuses(client, config, parent_id) -> dict[str, tuple[str, str]]:
    """Active children of the parent: sweep key -> (run id, status)."""
    experiment = client.get_experiment_by_name(config.experiment)
    runs = client.search_runs([experiment.experiment_id], f"tags.`{PARENT_TAG}` = '{parent_id}'",
                              run_view_type=ViewType.ACTIVE_ONLY)  # fmt: skip
    return {r.data.tags[KEY_TAG]: (r.info.run_id, r.info.status) for r in runs}


@pytest.fixture(scope="module")
def fake_sweep(tmp_path_factory):
    """A three-child sweep run three times, with children played by a script that logs like a training.

    First run: seed 0 exits with status 3, seed 1 exits cleanly without a test evaluation, seed 2 finishes.
    Second run: everything succeeds. Third: only planned, after the state 'forgot' that seed 0 finished and a
    stray child run for seed 1 appeared (as when a sweep is killed between two bookkeeping steps).
    """
    tmp_path = tmp_path_factory.mktemp("fake_sweep")
    python = tmp_path / "fake_python"
    python.write_text(f"#!{sys.executable}\n" + _FAKE_TRAINER)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    config = _config(tmp_path)
    client = mlflow.MlflowClient(config.tracking_uri)
    out = {"config": config, "client": client}
    for step, env in enumerate(({"FAKE_FAIL_SEEDS": "0", "FAKE_NO_EVAL_SEEDS": "1"},
                                {"FAKE_FAIL_SEEDS": "", "FAKE_NO_EVAL_SEEDS": ""}), start=1):  # fmt: skip
        events = []
        with SweepRunner(config, python=str(python), poll_interval=0.05, env=env,
                         on_event=lambda kind, child, record, events=events: events.append((kind, child.name))
                         ) as runner:  # fmt: skip
            plan = runner.plan()
            summary = runner.execute(plan)
        out[step] = {"plan": plan, "summary": summary, "events": events,
                     "state": json.loads((config.output_root / STATE_FILE).read_text()),
                     "children": _statuses(client, config, summary.parent_run_id),
                     "parent": client.get_run(summary.parent_run_id)}  # fmt: skip

    SweepState.load(config.output_root / STATE_FILE).update_child(KEYS[0], status="running")
    parent_id = out[2]["summary"].parent_run_id
    out["stray"] = client.create_run(
        client.get_run(parent_id).info.experiment_id, tags={PARENT_TAG: parent_id, KEY_TAG: KEYS[1]}
    ).info.run_id
    with SweepRunner(config, python=str(python)) as runner:
        out[3] = {"plan": runner.plan(), "state": json.loads((config.output_root / STATE_FILE).read_text())}
    return out


def test_failures_are_recorded_and_the_sweep_goes_on(fake_sweep):
    first = fake_sweep[1]
    assert [c.key for c in first["plan"].todo] == KEYS
    assert first["summary"].failed == KEYS[:2] and first["summary"].finished == KEYS[2:]
    assert not first["summary"].complete
    assert first["events"] == [("start", "bce_seed-0"), ("fail", "bce_seed-0"), ("start", "bce_seed-1"),
                               ("fail", "bce_seed-1"), ("start", "bce_seed-2"), ("finish", "bce_seed-2")]  # fmt: skip
    children = first["state"]["children"]
    assert children[KEYS[0]]["failure"] == "exit status 3"
    assert children[KEYS[1]]["failure"] == "exited 0 but the run has no test evaluation"
    assert {key: status for key, (_, status) in first["children"].items()} == dict(
        zip(KEYS, ["FAILED", "FAILED", "FINISHED"], strict=True)
    ), "a failed child's run is closed as FAILED"
    assert first["parent"].info.status == "FAILED" and first["parent"].data.tags["sweep.status"] == "failed"


def test_a_rerun_skips_finished_children_and_replaces_the_failed_runs(fake_sweep):
    first, second = fake_sweep[1], fake_sweep[2]
    assert [c.key for c in second["plan"].done] == KEYS[2:]
    assert [c.key for c in second["plan"].todo] == KEYS[:2]
    assert second["summary"].complete and second["summary"].skipped == KEYS[2:]
    children = second["children"]
    assert sorted(children) == KEYS and all(status == "FINISHED" for _, status in children.values())
    assert children[KEYS[2]] == first["children"][KEYS[2]], "a finished child keeps its run"
    client = fake_sweep["client"]
    for key in KEYS[:2]:
        old_run = first["children"][key][0]
        assert children[key][0] != old_run
        retired = client.get_run(old_run)
        assert retired.info.lifecycle_stage == "deleted" and RETIRED_TAG in retired.data.tags
        record = second["state"]["children"][key]
        assert record["attempts"] == 2 and record["replaced_runs"] == [old_run]
    assert second["parent"].info.status == "FINISHED" and second["parent"].data.metrics["sweep/children_finished"] == 3
    assert [s["outcome"] for s in second["state"]["sessions"]] == ["failed", "complete"]


def test_resume_adopts_a_finished_child_the_state_missed_and_retires_strays(fake_sweep):
    third = fake_sweep[3]
    assert third["plan"].todo == [] and len(third["plan"].done) == 3
    assert third["state"]["children"][KEYS[0]]["status"] == FINISHED
    stray = fake_sweep["client"].get_run(fake_sweep["stray"])
    assert stray.info.lifecycle_stage == "deleted" and stray.info.status == "FAILED"


def test_one_sweep_at_a_time_and_only_with_the_same_shared_settings(tmp_path):
    config = _config(tmp_path)
    with SweepRunner(config) as runner:
        with pytest.raises(ValueError, match="another sweep is running"):
            SweepRunner(config).__enter__()
        runner.plan(dry_run=True)
        runner.state.save()
    changed = parse_sweep_config(_sweep(tmp_path, base={**_sweep(tmp_path)["base"], "epochs": 2}))
    with SweepRunner(changed) as runner, pytest.raises(ValueError, match="other shared settings"):
        runner.plan(dry_run=True)


def test_dry_run_lists_children_and_budget_without_touching_mlflow(tmp_path, capsys):
    from pipeline.cli import sweep

    config = _config(tmp_path)
    assert sweep.main(["--config", str(config.source_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 children" in out and "[todo] bce_seed-0" in out and "--loss bce --seed 0" in out
    assert "compute budget (from the sweep file): none stated" in out
    assert not (config.output_root / "mlflow.db").exists()


# Statistics --------------------------------------------------------------------------------------------------------


def test_mean_std_and_seed_bootstrap():
    assert mean_std([1.0, 2.0, 3.0, math.nan]) == pytest.approx((2.0, 1.0, 3))
    assert math.isnan(mean_std([0.7])[1]) and mean_std([])[2] == 0
    low, high = bootstrap_mean_interval([0.01, 0.02, 0.03, 0.05], n_resamples=2000)
    assert 0.01 <= low < np.mean([0.01, 0.02, 0.03, 0.05]) < high <= 0.05
    assert all(math.isnan(v) for v in bootstrap_mean_interval([0.1]))
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_mean_interval([0.1, 0.2], n_resamples=0)


def _toy(n: int = 80, labels: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, labels)) < 0.4).astype(float)
    targets[0, :] = 1.0
    targets[1, :] = 0.0
    targets[5, 1] = -1.0
    good = np.clip(0.6 * targets + 0.4 * rng.random((n, labels)), 0, 1)
    noise = rng.random((n, labels))
    return targets, good, noise


def test_paired_bootstrap_of_identical_predictions_is_exactly_zero():
    targets, good, _ = _toy()
    result = paired_image_bootstrap([(good, good)], targets, ["a", "b", "c"], n_resamples=50)
    for entry in result.values():
        assert entry.difference == 0.0 and entry.low == 0.0 and entry.high == 0.0
        assert entry.share_above_zero == 0.0 and entry.unit == "image"


def test_paired_bootstrap_point_matches_sklearn_and_favours_the_better_model():
    targets, good, noise = _toy()
    labels = ["a", "b", "c"]
    patients = np.repeat(np.arange(40), 2)
    result = paired_image_bootstrap([(good, noise), (good, noise[::-1])], targets, labels, patients=patients,
                                    n_resamples=200, seed=1)  # fmt: skip

    def macro(probs):
        return np.mean([roc_auc_score(targets[targets[:, j] >= 0, j], probs[targets[:, j] >= 0, j]) for j in range(3)])

    expected = np.mean([macro(good) - macro(noise), macro(good) - macro(noise[::-1])])
    auroc = result["auroc"]
    assert auroc.difference == pytest.approx(expected, abs=1e-12)
    assert auroc.unit == "patient" and auroc.n_pairs == 2 and auroc.n_labels == 3
    assert 0 < auroc.low < auroc.difference < auroc.high and auroc.share_above_zero > 0.95


def test_paired_bootstrap_refuses_what_it_cannot_compare():
    targets, good, _ = _toy()
    with pytest.raises(ValueError, match="no prediction pairs"):
        paired_image_bootstrap([], targets, ["a", "b", "c"])
    with pytest.raises(ValueError, match="differ in shape"):
        paired_image_bootstrap([(good, good[:10])], targets, ["a", "b", "c"])
    with pytest.raises(ValueError, match="no label has both"):
        paired_image_bootstrap([(good, good)], np.ones_like(targets), ["a", "b", "c"])


def test_sweep_state_never_names_a_child_twice(tmp_path):
    # Keys are the identity a resumed sweep relies on: the same settings always give the same key.
    first = parse_sweep_config(_sweep(tmp_path, variants=[{"loss": "ral", "grid": {"loss::lamb": [1.5]}}]))
    second = parse_sweep_config(_sweep(tmp_path, variants=[{"grid": {"loss::lamb": [1.5]}, "loss": "ral"}]))
    assert [c.key for c in first.children] == [c.key for c in second.children]
    assert os.path.basename(str(first.output_root)) == "out"
