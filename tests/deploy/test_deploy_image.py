"""What can be checked about the image without building it: the build context, the Dockerfile's structure, and the
install steps it shares with CI (``deploy/install.sh``; CI also runs them). Building and running the image is
tests/deploy/test_deploy_container.py (marked ``container``)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regex over slash-separated relative paths."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def _in_build_context(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for raw in patterns:
        negate = raw.startswith("!")
        regex = _pattern_regex(raw.lstrip("!").strip("/"))
        if any(regex.match(candidate) for candidate in candidates):
            included = negate
    return included


def _dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        "tests/conftest.py",
        "infra_cdk/app.py",
        "infra_cdk/cdk.out/x.json",
        ".intervalprocessing/embedded-mongo/server.json",
        "intervalprocessing_dagster/__pycache__/x.cpython-311.pyc",
        "intervalprocessing_dagster.egg-info/PKG-INFO",
        ".env",
        "deploy/.env",
        "config.json",
        "intervalprocessing_dagster/config.json",
        "bench/run.py",
        "deploy/README.md",
        "build/lib/x.py",
    ],
)
def test_the_build_context_leaves_out(path: str) -> None:
    assert not _in_build_context(path, _dockerignore())


def test_the_build_context_has_everything_the_dockerfile_copies() -> None:
    patterns = _dockerignore()
    sources = [
        source
        for instruction, args in _instructions()
        if instruction == "COPY"
        for source in [word for word in args.split() if not word.startswith("--")][:-1]
    ]
    assert sources
    for source in sources:
        files = (
            [source]
            if (REPO / source).is_file()
            else [str(path.relative_to(REPO)) for path in (REPO / source).rglob("*.py")]
        )
        assert files, f"{source} is missing from the repository"
        for file in files:
            assert _in_build_context(file, patterns), f"{file} (COPY {source}) is excluded by .dockerignore"


def test_the_image_is_slim_python_311_and_runs_as_a_service_user() -> None:
    """The base is the official slim image unless deploy/build-image.sh passes its Debian-built stand-in."""
    instructions = _instructions()
    (base,) = [args for instruction, args in instructions if instruction == "FROM"]
    assert base == "${BASE_IMAGE}"
    (default,) = [
        args.split("=", 1)[1]
        for instruction, args in instructions
        if instruction == "ARG" and args.startswith("BASE_IMAGE=")
    ]
    assert re.fullmatch(r"python:3\.11-slim-bookworm", default)
    assert [instruction for instruction, _ in instructions][0] == "ARG"  # declared before FROM, so FROM can use it
    users = [args for instruction, args in instructions if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_the_dependency_layer_comes_before_the_source_so_it_stays_cached() -> None:
    steps = [f"{instruction} {args}" for instruction, args in _instructions()]
    deps = next(
        i for i, step in enumerate(steps) if step.startswith("RUN ") and step.endswith("deploy/install.sh deps")
    )
    source = next(i for i, step in enumerate(steps) if step.startswith("COPY intervalprocessing_dagster"))
    assert all("intervalprocessing_dagster" not in step for step in steps[:deps])
    assert deps < source
    assert any("deploy/install.sh project" in step and "deploy/install.sh check" in step for step in steps[source:])


def test_dagster_home_holds_the_production_instance_config() -> None:
    instructions = _instructions()
    env = " ".join(args for instruction, args in instructions if instruction == "ENV")
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in env
    assert "PYTHONPATH" not in env  # the run launcher dagster.yaml names is a module of the installed package
    module = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())["run_launcher"]["module"]
    assert module.startswith("intervalprocessing_dagster.")
    assert (REPO / (module.replace(".", "/") + ".py")).is_file()
    assert any(
        instruction == "COPY" and args.endswith("deploy/dagster.yaml /opt/dagster/dagster_home/dagster.yaml")
        for instruction, args in instructions
    )
    workdir = [args for instruction, args in instructions if instruction == "WORKDIR"]
    assert workdir == ["/opt/dagster/app"]  # where the ECS task definitions find workspace.yaml


def test_no_credentials_or_configuration_values_are_baked_in() -> None:
    for instruction, args in _instructions():
        if instruction in ("ENV", "ARG"):
            assert not re.search(r"PASSWORD|SECRET|MONGODB_URI|AWS_|TOKEN|DAGSTER_PG_", args, re.IGNORECASE), args


def test_pip_settings_reach_the_build_only_as_secret_mounts() -> None:
    """The building machine's pip.conf and CA bundle are mounted for the pip steps alone: no ARG or ENV carries an
    index URL (build arguments are kept in ``docker history``), and no COPY brings a pip configuration in."""
    pip_steps = [args for instruction, args in _instructions() if instruction == "RUN" and "deploy/install.sh" in args]
    assert len(pip_steps) == 2
    for args in pip_steps:
        assert "--mount=type=secret,id=pip.conf,target=/etc/pip.conf" in args
        assert "--mount=type=secret,id=pip-ca.pem" in args
    for instruction, args in _instructions():
        assert not (instruction in ("ARG", "ENV") and re.search(r"PIP_(INDEX|EXTRA|TRUSTED|CERT)", args)), args
        assert not (instruction == "COPY" and "pip" in args.lower()), args


def test_install_steps_take_only_the_runtime_dependencies() -> None:
    """The `embedded` extra (SecantusDB, GPL) and `dev` never reach the image: the requirement list is exactly
    pyproject's [project].dependencies, and the project is installed without extras."""
    listed = subprocess.run(
        [str(REPO / "deploy" / "install.sh"), "requirements"], capture_output=True, text=True, check=True
    ).stdout.split()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert listed == [req.replace(" ", "") for req in pyproject["project"]["dependencies"]]
    assert not any("secantus" in req.lower() for req in listed)
    script = (REPO / "deploy" / "install.sh").read_text()
    assert "pip install --no-cache-dir --no-deps ." in script
    assert "[embedded]" not in script and "[dev]" not in script and "[embedded]" not in DOCKERFILE


def test_install_refuses_an_unknown_step() -> None:
    completed = subprocess.run([str(REPO / "deploy" / "install.sh"), "everything"], capture_output=True, text=True)
    assert completed.returncode == 2 and completed.stderr.startswith("usage:")


def test_the_image_installs_pinned_versions_that_satisfy_pyproject() -> None:
    """Two builds of one commit get the same packages: every runtime requirement is pinned in the constraints file
    the install step passes to pip, at a version pyproject allows (CI's install of the same steps proves they
    resolve together)."""
    pins = {
        canonicalize_name(name): version
        for name, version in (
            line.split("==", 1)
            for line in (REPO / "deploy" / "constraints.txt").read_text().splitlines()
            if line and not line.startswith("#")
        )
    }
    assert "--constraint deploy/constraints.txt" in (REPO / "deploy" / "install.sh").read_text()
    runtime = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in map(Requirement, runtime):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned in deploy/constraints.txt"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} does not satisfy {requirement}"
    assert "secantusdb" not in pins
