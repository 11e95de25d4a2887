"""Per-disease metrics, thresholds, calibration, groups, plots and evaluate_predictions against scikit-learn."""

from __future__ import annotations

import json
import math
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)

from pipeline.metrics import (
    PER_DISEASE_COLUMNS,
    OperatingPoints,
    calibration_table,
    check_groups,
    evaluate_predictions,
    expected_calibration_error,
    frequency_groups,
    markdown_table,
    per_disease_metrics,
    plot_reliability,
    plot_roc_pr,
    ranking_metrics,
    save_figure,
    select_thresholds,
    threshold_metrics,
)

LABELS = ["Effusion", "Atelectasis", "Nodule", "Hernia"]


def _data(seed: int = 0, n: int = 300, masked: bool = True):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, 4)) < [0.4, 0.2, 0.08, 0.03]).astype(float)
    probs = np.clip(0.35 * targets + 0.65 * rng.random((n, 4)), 0.0, 1.0).round(3)
    if masked:
        targets[rng.random((n, 4)) < 0.1] = -1.0
        targets[rng.random((n, 4)) < 0.05] = np.nan
    return probs, targets


def _known(targets: np.ndarray, j: int) -> np.ndarray:
    return np.isfinite(targets[:, j]) & (targets[:, j] != -1)


def test_ranking_metrics_match_sklearn_on_known_targets():
    probs, targets = _data()
    frame = ranking_metrics(probs, targets, LABELS)
    assert list(frame.index) == LABELS
    for j, name in enumerate(LABELS):
        known = _known(targets, j)
        y, s = targets[known, j], probs[known, j]
        assert frame.loc[name, "auroc"] == pytest.approx(roc_auc_score(y, s))
        assert frame.loc[name, "ap"] == pytest.approx(average_precision_score(y, s))
        assert frame.loc[name, "n_pos"] == int((y == 1).sum())
        assert frame.loc[name, "n_neg"] == int((y == 0).sum())


def test_masked_targets_do_not_influence_any_metric():
    probs, targets = _data(1)
    unknown = ~np.isfinite(targets) | (targets == -1)
    assert unknown.any(axis=0).all()
    scrambled = np.where(unknown, 1.0 - probs, probs)  # change predictions only where the target is unknown
    table_a, summary_a = per_disease_metrics(probs, targets, LABELS, 0.4)
    table_b, summary_b = per_disease_metrics(scrambled, targets, LABELS, 0.4)
    pd.testing.assert_frame_equal(table_a, table_b)
    for key in ("macro_auroc", "macro_ap", "micro_auroc", "micro_ap"):
        assert summary_a[key] == pytest.approx(summary_b[key])
    assert (table_a["n_pos"] + table_a["n_neg"]).tolist() == (~unknown).sum(axis=0).tolist()


def test_macro_and_micro_match_sklearn_without_masking():
    probs, targets = _data(2, masked=False)
    _, summary = per_disease_metrics(probs, targets, LABELS)
    assert summary["macro_auroc"] == pytest.approx(roc_auc_score(targets, probs, average="macro"))
    assert summary["macro_ap"] == pytest.approx(average_precision_score(targets, probs, average="macro"))
    assert summary["micro_auroc"] == pytest.approx(roc_auc_score(targets, probs, average="micro"))
    assert summary["micro_ap"] == pytest.approx(average_precision_score(targets, probs, average="micro"))
    assert summary["excluded"] == []


def test_threshold_metrics_match_confusion_matrix():
    probs, targets = _data(3)
    thresholds = {"Effusion": 0.5, "Atelectasis": 0.6, "Nodule": 0.3, "Hernia": 0.7}
    frame = threshold_metrics(probs, targets, LABELS, thresholds)
    for j, name in enumerate(LABELS):
        known = _known(targets, j)
        y = targets[known, j].astype(int)
        pred = (probs[known, j] >= thresholds[name]).astype(int)
        tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
        assert frame.loc[name, "threshold"] == thresholds[name]
        assert frame.loc[name, "sensitivity"] == pytest.approx(tp / (tp + fn))
        assert frame.loc[name, "specificity"] == pytest.approx(tn / (tn + fp))
        assert frame.loc[name, "ppv"] == pytest.approx(tp / (tp + fp) if tp + fp else math.nan, nan_ok=True)
        assert frame.loc[name, "f1"] == pytest.approx(f1_score(y, pred))


def test_label_without_positives_is_nan_counted_excluded_and_stated():
    probs, targets = _data(4)
    targets[:, 3] = np.where(np.isfinite(targets[:, 3]) & (targets[:, 3] != -1), 0.0, targets[:, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table, summary = per_disease_metrics(probs, targets, LABELS, 0.99)
        result = evaluate_predictions(probs, targets, LABELS, n_bootstrap=20, thresholds=0.99)
        text = result.to_markdown()
    assert math.isnan(table.loc["Hernia", "auroc"]) and math.isnan(table.loc["Hernia", "ap"])
    assert table.loc["Hernia", "n_pos"] == 0 and table.loc["Hernia", "n_neg"] > 0
    assert math.isnan(table.loc["Hernia", "sensitivity"])
    assert summary["excluded"] == ["Hernia"]
    assert summary["excluded_reasons"]["Hernia"] == "no positive samples"
    assert summary["macro_auroc"] == pytest.approx(table.loc[LABELS[:3], "auroc"].mean())
    assert summary["n_defined"] == 3
    assert math.isnan(result.per_disease.loc["Hernia", "auroc_ci_low"])
    assert "Excluded from macro averages (AUROC/AP undefined): Hernia." in text
    assert "| Hernia" in text and "NaN" in text


def test_check_inputs_rejects_bad_values():
    probs, targets = _data(5)
    with pytest.raises(ValueError, match="1, 0, -1 or NaN"):
        ranking_metrics(probs, np.where(targets == 1, 2.0, targets), LABELS)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ranking_metrics(probs + 1.0, targets, LABELS)
    with pytest.raises(ValueError, match="non-finite"):
        ranking_metrics(np.where(probs > 0.5, np.nan, probs), targets, LABELS)
    with pytest.raises(ValueError, match="differs"):
        ranking_metrics(probs[:, :3], targets, LABELS)
    with pytest.raises(ValueError, match="distinct"):
        ranking_metrics(probs, targets, ["a", "a", "b", "c"])
    with pytest.raises(ValueError, match="no threshold for labels"):
        threshold_metrics(probs, targets, LABELS, {"Effusion": 0.5})


def test_markdown_formatter_without_tabulate(monkeypatch):
    frame = pd.DataFrame(
        {"auroc": [0.91234, math.nan], "n_pos": [12, 0]}, index=pd.Index(["Mass", "Hernia"], name="label")
    )
    monkeypatch.setitem(sys.modules, "tabulate", None)  # makes `import tabulate` fail
    text = markdown_table(frame, digits=2)
    lines = text.splitlines()
    assert lines[0].split("|")[1].strip() == "label"
    assert set(lines[1]) <= set("|-: ")
    assert "0.91" in lines[2] and "Mass" in lines[2]
    assert "NaN" in lines[3]
    assert lines[-1] == "Excluded from macro averages (AUROC/AP undefined): Hernia."
    assert all(line.count("|") == 4 for line in lines[:4])


@pytest.mark.parametrize("method", ["f1", "youden", "sensitivity"])
def test_threshold_selection_matches_brute_force(method):
    probs, targets = _data(6, n=200)
    target = 0.8 if method == "sensitivity" else None
    points = select_thresholds(probs, targets, LABELS, method, target=target)
    for j, name in enumerate(LABELS):
        known = _known(targets, j)
        y, s = targets[known, j].astype(int), probs[known, j]
        candidates = np.unique(s)
        sens = np.array([(s[y == 1] >= t).mean() for t in candidates])
        spec = np.array([(s[y == 0] < t).mean() for t in candidates])
        chosen = points.thresholds[name]
        assert chosen in candidates
        if method == "f1":
            tp = np.array([(s[y == 1] >= t).sum() for t in candidates])
            fp = np.array([(s[y == 0] >= t).sum() for t in candidates])
            best = (2 * tp / (2 * tp + fp + (y == 1).sum() - tp)).max()
            assert f1_score(y, (s >= chosen).astype(int)) == pytest.approx(best)
        elif method == "youden":
            youden = sens + spec - 1
            assert (s[y == 1] >= chosen).mean() + (s[y == 0] < chosen).mean() - 1 == pytest.approx(youden.max())
        else:
            assert chosen == candidates[sens >= 0.8].max()
    assert points.method == method and points.notes == {}


def test_threshold_fallback_roundtrip_and_errors(tmp_path):
    probs, targets = _data(7)
    targets[:, 2] = 1.0
    points = select_thresholds(probs, targets, LABELS, "sensitivity", target=0.9)
    assert points.thresholds["Nodule"] == 0.5
    assert "Nodule" in points.notes

    path = points.save(tmp_path / "thr" / "thresholds.json")
    data = json.loads(path.read_text())
    assert data["method"] == "sensitivity" and set(data["thresholds"]) == set(LABELS)
    loaded = OperatingPoints.load(path)
    assert loaded == points

    with pytest.raises(ValueError, match="method must be one of"):
        select_thresholds(probs, targets, LABELS, "accuracy")
    with pytest.raises(ValueError, match="needs a target"):
        select_thresholds(probs, targets, LABELS, "sensitivity")
    with pytest.raises(ValueError, match="finite number"):
        OperatingPoints.from_dict({"method": "f1", "thresholds": {"Mass": "high"}})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        OperatingPoints.load(tmp_path / "bad.json")


def test_calibration_matches_explicit_binning_and_brier():
    probs, targets = _data(8)
    frame, bins = calibration_table(probs, targets, LABELS, n_bins=5)
    edges = np.linspace(0, 1, 6)
    for j, name in enumerate(LABELS):
        known = _known(targets, j)
        y, p = targets[known, j], probs[known, j]
        ece = 0.0
        for b in range(5):
            inside = (p > edges[b]) & (p <= edges[b + 1]) if b else (p <= edges[1])
            if inside.any():
                ece += inside.mean() * abs(y[inside].mean() - p[inside].mean())
        assert frame.loc[name, "ece"] == pytest.approx(ece)
        assert frame.loc[name, "brier"] == pytest.approx(brier_score_loss(y, p))
        assert bins[name].counts.sum() == known.sum()


def test_ece_of_constant_prediction_is_the_prevalence_gap():
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    assert expected_calibration_error(np.full(10, 0.55), y, n_bins=10) == pytest.approx(0.35)
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(np.full(10, 0.5), y, n_bins=0)


def test_frequency_groups_boundaries_and_explicit_groups():
    labels = ["a", "b", "c", "d", "e"]
    groups = frequency_groups(labels, {"a": 300, "b": 100, "c": 50, "d": 10, "e": 9}, 1000)
    # Exactly 10 % and exactly 1 % are medium: head needs more than 10 %, tail less than 1 %.
    assert groups == {"head": ["a"], "medium": ["b", "c", "d"], "tail": ["e"]}
    groups = frequency_groups(labels, [300, 100, 50, 10, 9], 1000, head_above=0.05, tail_below=0.02)
    assert groups == {"head": ["a", "b"], "medium": ["c"], "tail": ["d", "e"]}
    with pytest.raises(ValueError, match="no entry for labels"):
        frequency_groups(labels, {"a": 1}, 10)
    with pytest.raises(ValueError, match="train_total"):
        frequency_groups(labels, [1] * 5, 0)
    with pytest.raises(ValueError, match="unknown labels"):
        check_groups({"head": ["a", "z"]}, labels)
    with pytest.raises(ValueError, match="both group"):
        check_groups({"head": ["a"], "tail": ["a"]}, labels)


def test_plots_write_png_files_and_name_omitted_labels(tmp_path):
    probs, targets = _data(9)
    targets[:, 3] = 0.0
    figure = plot_roc_pr(probs, targets, LABELS, title="all")
    texts = [t.get_text() for t in figure.findobj(Text)]
    assert any("Hernia" in text for text in texts)
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert any(text.startswith("Effusion (AUROC ") for text in legend)
    assert not any(text.startswith("Hernia") for text in legend)
    for name, fig in {"roc.png": figure, "rel.png": plot_reliability(probs, targets, LABELS, n_bins=5)}.items():
        path = save_figure(fig, tmp_path / name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5000


def test_evaluate_predictions_table_summary_groups_and_artifacts(tmp_path):
    rng = np.random.default_rng(10)
    probs, targets = _data(10, n=400)
    patients = rng.integers(0, 150, 400)
    points = select_thresholds(probs, targets, LABELS, "f1")
    result = evaluate_predictions(
        probs,
        targets,
        LABELS,
        patients=patients,
        thresholds=points,
        train_counts={"Effusion": 400, "Atelectasis": 150, "Nodule": 60, "Hernia": 5},
        train_total=1000,
        n_bootstrap=100,
        seed=3,
    )
    table = result.per_disease
    assert tuple(table.columns) == PER_DISEASE_COLUMNS
    assert table["threshold"].to_dict() == points.thresholds
    defined = table.dropna(subset=["auroc"])
    assert (defined["auroc_ci_low"] <= defined["auroc"]).all() and (defined["auroc"] <= defined["auroc_ci_high"]).all()
    assert (defined["ap_ci_low"] <= defined["ap_ci_high"]).all()
    summary = result.summary
    assert summary["bootstrap_unit"] == "patient"
    assert summary["macro_auroc_ci_low"] <= summary["macro_auroc"] <= summary["macro_auroc_ci_high"]
    assert summary["micro_ap_ci_low"] <= summary["micro_ap"] <= summary["micro_ap_ci_high"]
    assert set(summary["groups"]) == {"head", "medium", "tail"}
    assert summary["groups"]["head"]["labels"] == ["Effusion", "Atelectasis"]
    assert summary["groups"]["head"]["macro_ap"] == pytest.approx(table.loc[["Effusion", "Atelectasis"], "ap"].mean())
    assert summary["groups"]["tail"]["macro_auroc"] == pytest.approx(table.loc["Hernia", "auroc"])

    again = evaluate_predictions(probs, targets, LABELS, patients=patients, thresholds=points, n_bootstrap=100, seed=3)
    pd.testing.assert_series_equal(again.per_disease["auroc_ci_low"], table["auroc_ci_low"])

    paths = result.write(tmp_path / "eval")
    expected = {"per_disease.csv", "per_disease.md", "summary.json", "thresholds.json", "reliability.png"}
    expected |= {f"roc_pr_{group}.png" for group in ("head", "medium", "tail")}
    assert set(paths) == expected
    assert all(path.exists() for path in paths.values())
    csv = pd.read_csv(paths["per_disease.csv"], index_col="label")
    np.testing.assert_allclose(csv["auroc"], table["auroc"], rtol=1e-5)
    assert OperatingPoints.load(paths["thresholds.json"]).thresholds == pytest.approx(points.thresholds)
    assert json.loads(paths["summary.json"].read_text())["groups"]["tail"]["labels"] == ["Hernia"]
    markdown = paths["per_disease.md"].read_text()
    assert f"macro AUROC {summary['macro_auroc']:.3f} (95% CI {summary['macro_auroc_ci_low']:.3f}-" in markdown
    assert "| tail " in markdown.split("## Groups")[1]


def test_evaluate_predictions_without_bootstrap_and_argument_errors():
    probs, targets = _data(11)
    result = evaluate_predictions(probs, targets, LABELS, n_bootstrap=0, groups={"rare": ["Hernia"]})
    assert result.replicates is None
    assert result.per_disease["auroc_ci_low"].isna().all()
    assert result.summary["groups"]["rare"]["macro_auroc"] == pytest.approx(result.per_disease.loc["Hernia", "auroc"])
    assert (result.per_disease["threshold"] == 0.5).all()
    with pytest.raises(ValueError, match="train_total"):
        evaluate_predictions(probs, targets, LABELS, n_bootstrap=0, train_counts=[1, 2, 3, 4])
    with pytest.raises(ValueError, match="n_bootstrap"):
        evaluate_predictions(probs, targets, LABELS, n_bootstrap=-1)
    with pytest.raises(ValueError, match="thresholds lack labels"):
        evaluate_predictions(probs, targets, LABELS, n_bootstrap=0, thresholds={"Effusion": 0.2})
    with pytest.raises(ValueError, match="patients must have shape"):
        evaluate_predictions(probs, targets, LABELS, n_bootstrap=5, patients=np.arange(3))
