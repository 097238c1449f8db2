"""The image (Dockerfile, .dockerignore) and which of it each compose service runs.

The image is built in stages from uv.lock, installs the one workspace member its build argument
PACKAGE names, and runs as an unprivileged user; everything it copies is in the build context, and no
package registry host is named. Each PM process of the compose file runs from the image of its own
member. What an image holds is proved by tests/test_members.py (each member installed alone, with
the Dockerfile's `uv sync`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.deploy.conftest import Compose, Workspace, WorkspaceMember

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
PROMETHEUS_CONFIG = COMPOSE_DIR / "prometheus" / "prometheus.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# Hosts of package registries: none may be named in the image or the compose pack.
REGISTRY_HOSTS = ("pypi.org", "pythonhosted.org", "pypi.python.org", "registry.npmjs.org", "deb.debian.org")
TOOLS = "pm_tools"
"""The member whose image runs the `pm` CLI (the migrate job)."""


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _dockerignore_excludes(path: str) -> bool:
    """Whether the build context leaves `path` out (last matching pattern wins; `!` re-includes)."""
    excluded = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        # A pattern matches the path or any of its parent directories.
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        regex = re.compile(
            "^"
            + "".join(
                ".*" if tok == "**" else "[^/]*" if tok == "*" else "[^/]" if tok == "?" else re.escape(tok)
                for tok in re.split(r"(\*\*|\*|\?)", pattern)
            ).replace(".*/", "(?:.*/)?")
            + "$"
        )
        if any(regex.match(c) for c in candidates):
            excluded = not negate
    return excluded


def test_the_image_is_multi_stage_locked_and_runs_as_a_user() -> None:
    steps = _dockerfile_instructions()
    stages = [rest for kw, rest in steps if kw == "FROM"]
    assert len(stages) >= 2, "build and runtime stages"
    syncs = [rest for kw, rest in steps if kw == "RUN" and "uv sync" in rest]
    assert syncs and all("--frozen" in s or "--locked" in s for s in syncs), "uv sync must follow uv.lock"
    assert all("--no-dev" in s for s in syncs)
    final = max(i for i, (kw, _) in enumerate(steps) if kw == "FROM")
    users = [rest for kw, rest in steps[final:] if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"the runtime user is {users}"
    text = DOCKERFILE.read_text() + DOCKERIGNORE.read_text()
    for path in [
        COMPOSE_FILE,
        PROMETHEUS_CONFIG,
        COMPOSE_DIR / ".env.example",
        COMPOSE_DIR / "pgbouncer" / "Dockerfile",
    ]:
        text += path.read_text()
    named = [host for host in REGISTRY_HOSTS if host in text]
    assert not named, f"package registry hosts named: {named}"


def test_everything_the_image_copies_is_in_the_build_context(workspace: Workspace) -> None:
    copied = []
    for kw, rest in _dockerfile_instructions():
        if kw != "COPY" or rest.startswith("--from"):
            continue
        args = [a for a in rest.split() if not a.startswith("--")]
        copied += args[:-1]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not _dockerignore_excludes(source), f"COPY {source}: left out by .dockerignore"
        if (ROOT / source).is_dir():
            for file in (ROOT / source).rglob("*.py"):
                rel = file.relative_to(ROOT).as_posix()
                assert "__pycache__" in rel or not _dockerignore_excludes(rel), rel
    # Every workspace member's pyproject (uv reads the whole workspace) and sources are copied.
    for member in workspace.members:
        assert f"{member.folder}/pyproject.toml" in copied, member.folder
        assert f"{member.folder}/src" in copied, member.folder
    assert {"pyproject.toml", "uv.lock"} <= set(copied)
    # What stays out: tests, the developer's environment, the compose pack itself.
    for path in ("tests/deploy/test_image.py", ".venv/bin/python", ".pm/env", "compose/docker-compose.yml"):
        assert _dockerignore_excludes(path), path


_PACKAGE = re.compile(r'--package\s+"?\$\{?PACKAGE\}?"?(?:\s|$)')


def test_the_image_installs_the_one_member_its_build_argument_names() -> None:
    steps = _dockerfile_instructions()
    build = steps[: max(i for i, (kw, _) in enumerate(steps) if kw == "FROM")]
    assert ("ARG", "PACKAGE") in build, "the build stage takes the member as ARG PACKAGE"
    syncs = [i for i, (kw, rest) in enumerate(build) if kw == "RUN" and "uv sync" in rest]
    assert len(syncs) == 2, "two syncs: the dependencies, then the member"
    for i in syncs:
        assert _PACKAGE.search(build[i][1]), f"not one member: {build[i][1]}"
        assert not re.search(r"--all-packages|--all-groups|--group|--extra|--all-extras", build[i][1])
    # Dependencies first (a layer that survives a change of the sources), then the member's wheels.
    sources = [i for i, (kw, rest) in enumerate(build) if kw == "COPY" and rest.split()[0].endswith("/src")]
    deps, member = (build[i][1] for i in syncs)
    assert "--no-install-workspace" in deps and syncs[0] < min(sources), deps
    assert "--no-editable" in member and syncs[1] > max(sources), member


def _image_member(compose: Compose, workspace: Workspace, name: str) -> WorkspaceMember:
    """The workspace member a compose service's image installs: its build argument PACKAGE."""
    build = compose.services[name].get("build") or {}
    assert (COMPOSE_DIR / build.get("context", "")).resolve() == ROOT, f"{name}: not built from the workspace"
    assert (ROOT / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    package = (build.get("args") or {}).get("PACKAGE")
    found = [m for m in workspace.members if m.distribution == package]
    assert len(found) == 1, f"{name}: the build argument PACKAGE {package!r} is no workspace member"
    assert compose.services[name]["image"].split(":")[0] == package, (
        f"{name}: the image is named for {package}"
    )
    return found[0]


def test_each_pm_process_runs_from_the_image_of_its_own_member(
    compose: Compose, workspace: Workspace
) -> None:
    built = {
        name
        for name, svc in compose.raw["services"].items()
        if "build" in svc and (COMPOSE_DIR / svc["build"].get("context", ".")).resolve() == ROOT
    }
    assert built == set(compose.pm_services()), "PM processes, and only they, are built from the Dockerfile"
    # The one other image built here: PgBouncer from Debian's package (compose/pgbouncer/Dockerfile).
    others = {name for name, svc in compose.raw["services"].items() if "build" in svc} - built
    assert others == {"pgbouncer"}, others
    for name, process in compose.pm_services().items():
        image = _image_member(compose, workspace, name)
        cmd = compose.command(compose.services[name])
        if cmd[:2] == ["sh", "-c"]:
            cmd = cmd[2].replace("&&", " ").split()
        expected = process.member.module if process.member else TOOLS
        assert image.module == expected, f"{name} runs {expected} from the image of {image.distribution}"
        if cmd[0] in ("python", "python3"):
            assert cmd[1:3] == ["-m", image.module], f"{name}: {cmd}"
        else:
            assert cmd[0] in image.scripts, f"{name}: {cmd[0]} is no console script of {image.distribution}"
            assert image.scripts[cmd[0]].split(".")[0] == image.module
