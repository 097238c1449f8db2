"""Each workspace member installed alone, as its image installs it, and the dependency check that guards it.

For every member, `uv sync --frozen --no-dev --package <name>` (the Dockerfile's command) fills a
temporary environment from the machine's uv cache (offline), then every module of the member is
imported there in an isolated interpreter: a module that imports a package its member does not
declare fails here. The environment of a fleet member (a service or a sandbox, each its own image)
must hold none of the tooling (typer, rich, matplotlib, pytest), no pm_tools and no other member of
the fleet. uv is found as the Makefile finds it, and its absence fails the tests.

The workspace members are installed editable here, unlike in the image: uv keeps a built wheel of a
member until its pyproject changes, not its sources, so a wheel could be stale; an editable install
puts the member's `src/` on the path, which holds that member's package alone.

The last tests show that tests/check_dependencies.py (deptry on every member, run by `make test`)
fails on a wrong declaration, on a small workspace of its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pm_shared import fleet

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "tests" / "check_dependencies.py"
TOOLING = ("typer", "rich", "matplotlib", "pytest")
"""Distributions (and their modules) no fleet member's image may hold, but for CARRIED."""
CARRIED = frozenset({"typer", "rich"})
"""Tooling every image holds anyway: common-expression-language (pm-shared's CEL evaluator for fee
rules) requires them for a command line of its own, which its package imports (docs/saga.md)."""
TOOLS_MODULE = "pm_tools"


@dataclass(frozen=True)
class Member:
    folder: Path
    distribution: str
    package: str
    """Its import package (`pm_gateway`)."""

    def modules(self) -> list[str]:
        """Every module of the member, from its sources (`__main__` runs the process: not imported)."""
        root = self.folder / "src"
        found = []
        for path in sorted((root / self.package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
        return found


def _members() -> list[Member]:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    found = []
    for pattern in patterns:
        for pyproject in sorted(ROOT.glob(f"{pattern}/pyproject.toml")):
            project = tomllib.loads(pyproject.read_text())
            (package,) = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
            found.append(Member(pyproject.parent, project["project"]["name"], Path(package).name))
    return found


MEMBERS = _members()


def _member_of(module: str) -> Member:
    (found,) = [m for m in MEMBERS if m.package == module]
    return found


def uv_command() -> list[str]:
    """uv as the Makefile finds it: on PATH, else ~/.local/bin/uv, else `python3 -m uv`; none fails."""
    on_path = shutil.which("uv")
    if on_path:
        return [on_path]
    local = Path.home() / ".local" / "bin" / "uv"
    if os.access(local, os.X_OK):
        return [str(local)]
    python = shutil.which("python3")
    if python and subprocess.run([python, "-m", "uv", "--version"], capture_output=True).returncode == 0:
        return [python, "-m", "uv"]
    pytest.fail("uv not found (PATH, ~/.local/bin/uv, python3 -m uv): `make uv` installs it")


# Run by the member's interpreter with -I (no cwd, no PYTHONPATH, no user site on sys.path): import
# every module given, then say what failed, which distributions are installed, which names resolve.
PROBE = textwrap.dedent(
    """
    import importlib, importlib.metadata, importlib.util, json, sys, traceback
    modules, names = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    errors = {}
    for module in modules:
        try:
            importlib.import_module(module)
        except BaseException as exc:
            errors[module] = "".join(traceback.format_exception_only(exc)).strip()
    print(json.dumps({
        "errors": errors,
        "distributions": sorted({d.metadata["Name"].lower() for d in importlib.metadata.distributions()}),
        "found": sorted(n for n in names if importlib.util.find_spec(n) is not None),
    }))
    """
)


@dataclass(frozen=True)
class Probe:
    errors: dict[str, str]
    distributions: set[str]
    found: set[str]
    """Of the fleet's and the tooling's top-level modules, those importable in the environment."""


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}{done.stderr}"
    return done


def install_alone(member: Member, where: Path) -> Probe:
    """The member synced alone into `where`, every one of its modules imported there."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV" and not k.startswith("PYTHON")}
    env |= {"UV_PROJECT_ENVIRONMENT": str(where / "env"), "UV_PYTHON_DOWNLOADS": "never"}
    sync = ["sync", "--frozen", "--no-dev", "--offline", "--package", member.distribution]
    _run([*uv_command(), *sync, "--python", sys.executable, "--quiet"], env, ROOT)
    names = [m.module for m in fleet.FLEET] + [TOOLS_MODULE, *TOOLING]
    probe = [str(where / "env" / "bin" / "python"), "-I", "-c", PROBE]
    done = _run([*probe, json.dumps(member.modules()), json.dumps(names)], env, where)
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return Probe(report["errors"], set(report["distributions"]), set(report["found"]))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[Member], Probe]]:
    """Each member's environment, made once for the module's tests. Making one is mostly one core's
    work (uv filling it, then one interpreter importing every module), so the member after it in
    `MEMBERS` (the tests' order) is made alongside, on another thread."""
    made: dict[str, Future[Probe]] = {}
    with ThreadPoolExecutor(2) as pool:

        def submit(member: Member) -> Future[Probe]:
            if member.distribution not in made:
                where = tmp_path_factory.mktemp(member.distribution)
                made[member.distribution] = pool.submit(install_alone, member, where)
            return made[member.distribution]

        def get(member: Member) -> Probe:
            wanted = submit(member)
            following = MEMBERS[MEMBERS.index(member) + 1 :]
            if following:
                submit(following[0])
            return wanted.result()

        yield get


def test_every_fleet_member_is_a_workspace_member() -> None:
    assert {m.module for m in fleet.FLEET} <= {m.package for m in MEMBERS}
    assert TOOLS_MODULE in {m.package for m in MEMBERS}


@pytest.mark.parametrize("member", MEMBERS, ids=[m.distribution for m in MEMBERS])
def test_every_module_imports_with_only_what_its_member_declares(
    member: Member, installed: Callable[[Member], Probe]
) -> None:
    assert member.modules(), f"{member.distribution}: no module found under {member.folder}/src"
    probe = installed(member)
    assert not probe.errors, f"{member.distribution}, installed alone, cannot import:\n" + "\n".join(
        f"  {module}: {error}" for module, error in probe.errors.items()
    )
    assert member.distribution in probe.distributions


@pytest.mark.parametrize("roster", fleet.FLEET, ids=[m.name for m in fleet.FLEET])
def test_a_fleet_members_environment_holds_no_tooling_and_no_other_member(
    roster: fleet.Member, installed: Callable[[Member], Probe]
) -> None:
    probe = installed(_member_of(roster.module))
    tooling = sorted((probe.distributions & set(TOOLING)) - CARRIED)
    assert not tooling, f"{roster.name}'s image would hold {tooling}"
    # pytest is in the environment running this test: not finding it proves the isolation.
    strangers = sorted(probe.found - {roster.module} - CARRIED)
    assert not strangers, f"{roster.name}'s image would hold {strangers}"
    assert roster.module in probe.found


# ---------------------------------------------------------------------------------------------------
# The dependency check (deptry) can fail
# ---------------------------------------------------------------------------------------------------


def _workspace(tmp_path: Path, dependencies: list[str], source: str, ignores: str = "") -> Path:
    """A workspace with one member, `lib` (module pm_fake), declaring `dependencies`."""
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.uv.workspace]\nmembers = ["lib"]\n\n[tool.pm.deptry-ignores]\n{ignores}\n'
    )
    package = tmp_path / "lib" / "src" / "pm_fake"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(source)
    (tmp_path / "lib" / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [project]
            name = "pm-fake"
            version = "0"
            dependencies = {json.dumps(dependencies)}

            [tool.hatch.build.targets.wheel]
            packages = ["src/pm_fake"]
            """
        )
    )
    return tmp_path


def _check(workspace: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(CHECK), "--workspace", str(workspace)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_the_dependency_check_passes_exact_declarations(tmp_path: Path) -> None:
    done = _check(_workspace(tmp_path, ["msgspec>=0.19"], "import msgspec\n"))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("dependencies", "source", "rule"),
    [
        (["msgspec>=0.19"], "import msgspec\nimport pm_no_such_package\n", "DEP001"),  # not installed
        (["msgspec>=0.19", "httpx>=0.27"], "import msgspec\n", "DEP002"),  # declared, never imported
        (["httpx>=0.27"], "import httpx\nimport anyio\n", "DEP003"),  # arrives only through httpx
    ],
    ids=["missing", "unused", "transitive"],
)
def test_the_dependency_check_fails_on_a_wrong_declaration(
    tmp_path: Path, dependencies: list[str], source: str, rule: str
) -> None:
    done = _check(_workspace(tmp_path, dependencies, source))
    assert done.returncode == 1, done.stdout + done.stderr
    assert rule in done.stderr and "lib" in done.stderr, done.stderr


def test_a_declared_exception_is_honoured_for_its_member_only(tmp_path: Path) -> None:
    ignores = 'lib = { DEP002 = ["httpx"] }'
    done = _check(_workspace(tmp_path, ["msgspec>=0.19", "httpx>=0.27"], "import msgspec\n", ignores))
    assert done.returncode == 0, done.stdout + done.stderr
    other = tmp_path / "other"
    other.mkdir()
    stale = _check(_workspace(other, ["msgspec>=0.19"], "import msgspec\n", 'gone = { DEP002 = ["x"] }'))
    assert stale.returncode != 0 and "gone" in stale.stderr, stale.stderr


_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9._-]+")


def test_every_exception_names_a_member_and_one_of_its_declarations() -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    exceptions: dict[str, dict[str, list[str]]] = root["tool"]["pm"]["deptry-ignores"]
    by_folder = {m.folder.relative_to(ROOT).as_posix(): m for m in MEMBERS}
    for folder, rules in exceptions.items():
        assert folder in by_folder, f"[tool.pm.deptry-ignores] names {folder!r}, no member"
        project = tomllib.loads((by_folder[folder].folder / "pyproject.toml").read_text())["project"]
        names = {match[0] for d in project["dependencies"] if (match := _REQUIREMENT_NAME.match(d))}
        for rule, packages in rules.items():
            if rule == "DEP002":
                assert set(packages) <= names, f"{folder}: {sorted(set(packages) - names)} not declared"


def test_the_tools_exception_is_the_fleet_they_start() -> None:
    # pm-tools declares every member of the fleet to start it, importing some: exactly those.
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tools = _member_of(TOOLS_MODULE).folder.relative_to(ROOT).as_posix()
    exempt = set(root["tool"]["pm"]["deptry-ignores"][tools]["DEP002"])
    assert exempt == {_member_of(m.module).distribution for m in fleet.FLEET}
