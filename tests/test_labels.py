"""Label set files in configs/labels and the functions that read them and group labels by frequency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.data import LabelSet, available_label_sets, compute_groups, find_config_dir, load_label_set

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"nih14": 14, "cxr_lt_2023": 26, "cxr_lt_2024": 40, "chexpert": 14}


def test_config_dir_is_the_repository_configs():
    assert find_config_dir().resolve() == (REPO / "configs").resolve()
    assert set(SHIPPED) <= set(available_label_sets())


@pytest.mark.parametrize(("name", "size"), SHIPPED.items())
def test_shipped_label_sets_are_complete_and_consistent(name, size):
    label_set = load_label_set(name)
    raw = json.loads((REPO / "configs" / "labels" / f"{name}.json").read_text())

    assert label_set.name == name
    assert len(label_set) == size
    assert list(label_set.labels) == raw["labels"]
    assert label_set.source
    if label_set.train_counts:
        assert set(label_set.labels) <= set(label_set.train_counts)
        counted = {label: label_set.train_counts[label] for label in label_set.labels}
        assert all(count <= label_set.train_total for count in counted.values())
        expected = compute_groups(counted, label_set.train_total)
        assert {key: tuple(value) for key, value in label_set.groups.items()} == expected
        members = [label for group in label_set.groups.values() for label in group]
        assert sorted(members) == sorted(label_set.labels)
    else:
        assert label_set.groups == {}


def test_label_orders_follow_the_datasets():
    nih = load_label_set("nih14").labels
    assert nih[:4] == ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration")
    assert nih[-2:] == ("Pleural_Thickening", "Hernia")
    assert "No Finding" not in nih

    lt2023 = load_label_set("cxr_lt_2023")
    assert list(lt2023.labels) == sorted(lt2023.labels)
    assert "No Finding" in lt2023.labels

    chexpert = load_label_set("chexpert").labels
    assert chexpert[0] == "No Finding" and chexpert[-1] == "Support Devices"

    lt2024 = load_label_set("cxr_lt_2024").labels
    assert set(lt2023.labels) - {"No Finding"} <= set(lt2024)


def test_cxr_lt_2023_counts_match_the_published_table():
    label_set = load_label_set("cxr_lt_2023")
    assert label_set.train_total == 264849
    assert label_set.train_counts["Support Devices"] == 89140
    assert label_set.train_counts["Pneumoperitoneum"] == 543
    assert "Pleural Other" in label_set.groups["tail"]
    assert "Lung Opacity" in label_set.groups["head"]


def test_compute_groups_uses_strict_thresholds():
    counts = {"a": 200, "b": 100, "c": 10, "d": 9}
    groups = compute_groups(counts, 1000)
    assert groups == {"head": ("a",), "medium": ("b", "c"), "tail": ("d",)}


def test_compute_groups_thresholds_are_configurable():
    counts = {"a": 200, "b": 100, "c": 10, "d": 9}
    groups = compute_groups(counts, 1000, head_fraction=0.05, tail_fraction=0.05)
    assert groups == {"head": ("a", "b"), "medium": (), "tail": ("c", "d")}


@pytest.mark.parametrize(
    ("total", "head", "tail"),
    [(0, 0.1, 0.01), (-5, 0.1, 0.01), (100, 0.01, 0.1), (100, 1.5, 0.01), (100, 0.1, -0.01)],
)
def test_compute_groups_rejects_bad_arguments(total, head, tail):
    with pytest.raises(ValueError):
        compute_groups({"a": 1}, total, head_fraction=head, tail_fraction=tail)


def test_compute_groups_rejects_negative_counts():
    with pytest.raises(ValueError, match="-3"):
        compute_groups({"a": -3}, 10)


def test_with_no_finding_appends_the_class_and_regroups():
    nih = load_label_set("nih14")
    extended = nih.with_no_finding()
    assert extended.labels == (*nih.labels, "No Finding")
    members = [label for group in extended.groups.values() for label in group]
    assert sorted(members) == sorted(extended.labels)
    share = nih.train_counts["No Finding"] / nih.train_total
    assert ("No Finding" in extended.groups["head"]) == (share > 0.1)
    with pytest.raises(ValueError, match="no_finding_label"):
        load_label_set("cxr_lt_2023").with_no_finding()


def test_load_by_explicit_path_and_env_var(tmp_path, monkeypatch):
    data = {"name": "mine", "labels": ["x", "y"], "train_counts": {"x": 5, "y": 50}, "train_total": 100}
    path = tmp_path / "labels" / "mine.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))

    assert load_label_set(path).labels == ("x", "y")
    assert load_label_set(str(path)).train_counts == {"x": 5, "y": 50}

    monkeypatch.setenv("PIPELINE_CONFIG_DIR", str(tmp_path))
    assert load_label_set("mine").name == "mine"
    with pytest.raises(FileNotFoundError, match="mine"):
        load_label_set("nih14")


def test_unknown_name_lists_known_sets():
    with pytest.raises(FileNotFoundError, match="nih14"):
        load_label_set("no_such_set")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"labels": "abc"}), "list of strings"),
        (json.dumps({"labels": ["a", "a"]}), "more than once"),
        (json.dumps({"labels": ["a"], "train_counts": {"b": 1}}), "does not list"),
        (json.dumps({"labels": ["a"], "groups": {"head": ["z"]}}), "not in 'labels'"),
        (json.dumps({"labels": ["a"], "train_total": 0}), "train_total"),
    ],
)
def test_invalid_files_raise_value_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        load_label_set(path)
    assert "bad.json" in str(info.value)


def test_label_set_objects_pass_through_and_index():
    label_set = LabelSet(name="t", labels=("a", "b"))
    assert load_label_set(label_set) is label_set
    assert label_set.index("b") == 1
    with pytest.raises(ValueError, match="'c'"):
        label_set.index("c")
