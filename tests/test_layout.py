"""The layout rules a maintainer relies on, checked on the sources of every workspace member.

- Size: no module over MODULE_LINES lines, no function over FUNCTION_LINES lines, in the sources
  and in the tests (ruff checks the complexity; nothing in ruff counts lines).
- Direction: `pm_shared` imports no tooling and no service; a service imports `pm_shared` and
  `pm_client`, never another service, the tools or a sandbox; a sandbox never imports a service.
- The roster: a service's or sandbox's module is named as a string only by `pm_shared.fleet`
  (everything else starts processes from the roster).
- Citations: a source file names a Markdown document only when the repository has it.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from pm_shared import fleet

ROOT = Path(__file__).resolve().parents[1]
MODULE_LINES = 600
FUNCTION_LINES = 80

TOOLING = {"typer", "rich", "matplotlib", "pytest", "pytest_asyncio", "pm_tools"}
SANDBOXES = {m.module for m in fleet.SANDBOXES}
SERVICES = {m.module for m in fleet.SERVICES}


@cache
def members() -> dict[str, Path]:
    """Every member's import package → its folder under src/, from the workspace's member globs."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    found: dict[str, Path] = {}
    for pattern in patterns:
        for pyproject in sorted(ROOT.glob(f"{pattern}/pyproject.toml")):
            for package in sorted((pyproject.parent / "src").iterdir()):
                if package.is_dir() and (package / "__init__.py").exists():
                    found[package.name] = package
    return found


def sources(package: str) -> Iterator[Path]:
    yield from sorted(members()[package].rglob("*.py"))


def all_sources() -> Iterator[Path]:
    for package in members():
        yield from sources(package)


def all_tests() -> Iterator[Path]:
    """Every test module and conftest: each member's tests/ and the cross-service tests/."""
    folders = [ROOT / "tests", *(package.parents[1] / "tests" for package in members().values())]
    for folder in sorted(set(folders)):
        yield from sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def imported(path: Path) -> set[str]:
    """Top-level names of every module `path` imports (absolute imports only)."""
    tops: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_the_workspace_has_the_members_of_the_layout() -> None:
    assert {"pm_shared", "pm_client", "pm_tools"} | SERVICES | SANDBOXES == set(members())


def test_no_module_is_longer_than_the_limit() -> None:
    every = [*all_sources(), *all_tests()]
    long = [f"{rel(p)}: {n}" for p in every if (n := len(p.read_text().splitlines())) > MODULE_LINES]
    assert not long, f"modules over {MODULE_LINES} lines (split them by concept):\n" + "\n".join(long)


def test_no_function_is_longer_than_the_limit() -> None:
    long = []
    for path in [*all_sources(), *all_tests()]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LINES:
                    long.append(f"{rel(path)}:{node.lineno} {node.name}: {length}")
    assert not long, f"functions over {FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_pm_shared_imports_no_tooling_and_no_service() -> None:
    wrong = {
        rel(p): sorted(found)
        for p in sources("pm_shared")
        if (found := imported(p) & (TOOLING | SERVICES | SANDBOXES))
    }
    assert not wrong, wrong


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_service_imports_no_other_service_no_tool_and_no_sandbox(service: str) -> None:
    forbidden = (SERVICES - {service}) | TOOLING | SANDBOXES
    wrong = {rel(p): sorted(found) for p in sources(service) if (found := imported(p) & forbidden)}
    assert not wrong, wrong


@pytest.mark.parametrize("sandbox", sorted(SANDBOXES))
def test_a_sandbox_imports_no_service_and_no_tool(sandbox: str) -> None:
    forbidden = SERVICES | TOOLING | (SANDBOXES - {sandbox})
    wrong = {rel(p): sorted(found) for p in sources(sandbox) if (found := imported(p) & forbidden)}
    assert not wrong, wrong


def test_the_sdk_imports_only_httpx_and_msgspec() -> None:
    import sys

    allowed = {"pm_client", "httpx", "msgspec", "__future__"} | set(sys.stdlib_module_names)
    wrong = {rel(p): sorted(found) for p in sources("pm_client") if (found := imported(p) - allowed)}
    assert not wrong, wrong


def test_only_the_roster_names_the_modules_of_the_fleet() -> None:
    """A string that is exactly a member's module (`"pm_gateway"`, `"pm_sandbox_qp"`) appears only in
    pm_shared.fleet: every tool starts processes from the roster."""
    modules = SERVICES | SANDBOXES
    roster = ROOT / "shared/src/pm_shared/fleet.py"
    found = []
    for path in [*all_sources(), *sorted((ROOT / "tests").rglob("*.py"))]:
        if path == roster:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules:
                found.append(f"{rel(path)}:{node.lineno} {node.value!r}")
    assert not found, "read the module from pm_shared.fleet instead:\n" + "\n".join(found)


CITED = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b")
# The design card and the reference notes the project was built from live outside the repository.
OUTSIDE = re.compile(
    r"\bDESIGN\b|tigerbeetle-semantics|redis-streams\b|psp-protocols|house-style|wave2-facts|roadmap"
)


def test_sources_cite_only_documents_the_repository_has() -> None:
    missing = []
    for path in all_sources():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for name in CITED.findall(line):
                if not (ROOT / name).exists() and not list(ROOT.glob(f"docs/**/{Path(name).name}")):
                    missing.append(f"{rel(path)}:{number} {name}")
            if found := OUTSIDE.search(line):
                missing.append(f"{rel(path)}:{number} {found.group(0)}")
    assert not missing, "citations of documents outside the repository:\n" + "\n".join(missing)


def test_the_terminal_states_are_one_set() -> None:
    """`pm_client.api.TERMINAL_STATES` is the only literal collection of exactly the terminal states."""
    terminal = {"SETTLED", "FAILED"}
    # The definition, the SDK's test of its value, and this check.
    allowed = {ROOT / "clients/python/src/pm_client/api.py", ROOT / "clients/python/tests/test_client.py"}
    found = []
    for path in [*all_sources(), *all_tests()]:
        if path in allowed or path == Path(__file__).resolve():
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Set | ast.Tuple | ast.List) and len(node.elts) == len(terminal):
                values = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if values == terminal:
                    found.append(f"{rel(path)}:{node.lineno}")
    assert not found, "use pm_client.api.TERMINAL_STATES:\n" + "\n".join(found)
