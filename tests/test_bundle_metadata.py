"""The bundle's metadata.json passes MONAI's verify_metadata against the bundle's own schema, offline.

MONAI downloads the schema named in metadata["schema"] only when ``--filepath`` does not exist; the schema is kept
in the bundle so the check never needs the network. The command-line run points every proxy at a closed loopback
port and the in-process runs refuse sockets, so an attempted download fails the test instead of leaving the machine.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from monai.bundle import verify_metadata

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "cxr_ral"
METADATA = BUNDLE / "configs" / "metadata.json"
SCHEMA = BUNDLE / "schema" / "metadata_schema.json"
CLOSED_PORT = "http://127.0.0.1:9"  # the discard port: nothing listens, so any request fails at once


@pytest.fixture(scope="module")
def metadata() -> dict:
    return json.loads(METADATA.read_text())


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted during metadata verification")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _verify(meta_file: Path) -> None:
    """MONAI's verify_metadata in this process, against the bundle's schema (hash-checked)."""
    verify_metadata(meta_file=str(meta_file), filepath=str(SCHEMA), hash_val=_md5(SCHEMA), hash_type="md5")


def test_monai_cli_verifies_metadata_against_the_local_schema():
    environment = {
        **os.environ,
        **{name: CLOSED_PORT for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")},
    }
    environment.pop("no_proxy", None)
    environment.pop("NO_PROXY", None)
    schema_before = _md5(SCHEMA)
    command = [
        sys.executable, "-m", "monai.bundle", "verify_metadata",
        "--meta_file", str(METADATA.relative_to(ROOT)),
        "--filepath", str(SCHEMA.relative_to(ROOT)),
        # The hash makes MONAI confirm that the file it validated against is this schema.
        "--hash_val", schema_before, "--hash_type", "md5",
    ]  # fmt: skip

    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "metadata is verified with no error" in result.stdout + result.stderr
    assert "skipped downloading" in result.stdout + result.stderr
    assert _md5(SCHEMA) == schema_before


def _without(metadata: dict, path: str) -> dict:
    broken = copy.deepcopy(metadata)
    *parents, leaf = path.split("/")
    node = broken
    for key in parents:
        node = node[key]
    del node[leaf]
    return broken


@pytest.mark.parametrize(
    "missing",
    [
        "version",
        "monai_version",
        "required_packages_version",
        "intended_use",
        "references",
        "network_data_format/inputs/image",
        "network_data_format/outputs/pred/channel_def",
        "network_data_format/inputs/image/is_patch_data",
    ],
)
def test_metadata_missing_a_required_key_fails(tmp_path, metadata, no_network, missing):
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(_without(metadata, missing)))

    with pytest.raises(ValueError, match=rf"'{missing.split('/')[-1]}' is a required property"):
        _verify(broken)


@pytest.mark.parametrize(
    ("path", "value", "pattern"),
    [
        ("version", "first", "does not match"),
        ("network_data_format/inputs/image/num_channels", 0, "less than the minimum"),
        ("network_data_format/outputs/pred/value_range", [0], "is not valid under any of the given schemas"),
        ("network_data_format/outputs/pred/channel_def", {"zero": "Atelectasis"}, "does not match"),
        ("references", [], "should be non-empty|is too short"),
    ],
)
def test_metadata_with_a_malformed_value_fails(tmp_path, metadata, no_network, path, value, pattern):
    broken = copy.deepcopy(metadata)
    *parents, leaf = path.split("/")
    node = broken
    for key in parents:
        node = node[key]
    node[leaf] = value
    target = tmp_path / "metadata.json"
    target.write_text(json.dumps(broken))

    with pytest.raises(ValueError, match=pattern):
        _verify(target)


def test_in_process_verification_passes_without_network(metadata, no_network):
    _verify(METADATA)


# --- agreement with the rest of the project ------------------------------------------------------------------------


def test_schema_url_is_monais_published_one(metadata):
    assert metadata["schema"] == (
        "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
    )
    assert metadata["version"] in metadata["changelog"]


def test_versions_match_the_project_pins(metadata):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def name(requirement: str) -> str:
        return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")

    pins = {name(dep): dep.split("==")[1] for dep in project["dependencies"] if "==" in dep}
    declared = {name(dep) for dep in project["dependencies"]}
    assert metadata["monai_version"] == pins["monai"]
    assert metadata["pytorch_version"] == pins["torch"]
    assert set(metadata["required_packages_version"]) <= declared
    assert {"pydicom", "pylibjpeg", "mlflow", "pytorch-ignite", "scikit-learn", "pandas"} <= set(
        metadata["required_packages_version"]
    )


def test_outputs_describe_the_default_label_set(metadata):
    labels = json.loads((ROOT / "configs" / "labels" / "nih14.json").read_text())["labels"]
    formats = metadata["network_data_format"]

    for section in ("outputs", "post_processed_outputs"):
        pred = formats[section]["pred"]
        assert pred["num_channels"] == len(labels)
        assert [pred["channel_def"][str(index)] for index in range(len(labels))] == labels
    assert formats["post_processed_outputs"]["pred"]["value_range"] == [0, 1]


def test_input_matches_the_training_bundle(metadata):
    train = json.loads((BUNDLE / "configs" / "train.json").read_text())
    image = metadata["network_data_format"]["inputs"]["image"]

    assert train["network_def"]["in_channels"] == "@in_channels"
    assert image["num_channels"] == train["in_channels"] == len(image["channel_def"])
    assert image["spatial_shape"] == [train["image_size"], train["image_size"]]
    assert image["value_range"] == [0, 1]


def test_bundle_license_is_apache_2():
    text = (BUNDLE / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    for heading in ("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION", "END OF TERMS AND CONDITIONS"):
        assert heading in text
    assert [int(number) for number in re.findall(r"^\s+(\d)\. \w", text, flags=re.MULTILINE)] == list(range(1, 10))
