"""The dependency check of `make test` and `make lint`: each workspace member declares what it imports.

deptry checks one project at a time, so this runs it once per member of the uv workspace (the
`[tool.uv.workspace] members` globs of the root pyproject), on the member's `src/` against its own
`[project] dependencies`. It fails on an import nothing declares (DEP001, or DEP003 when the package
only arrives through another one), on a declaration nothing imports (DEP002) and on a development
package imported by a member (DEP004). Workspace members are editable installs whose metadata names
no module, so each member's distribution → module map is given from its wheel's `packages`
(`pm-shared` → `pm_shared`). Deliberate exceptions, per member and rule, each with its reason, are
`[tool.pm.deptry-ignores]` in the root pyproject.

    python tests/check_dependencies.py                      # every member
    python tests/check_dependencies.py tools shared         # some members, by folder
    python tests/check_dependencies.py --workspace DIR      # another workspace (tests/test_members.py)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Member:
    folder: str
    """Relative to the workspace root: `services/gateway`."""
    distribution: str
    modules: tuple[str, ...]
    ignores: dict[str, list[str]]
    """deptry rule → the packages it may not report for this member."""


def _modules(project: dict[str, Any]) -> tuple[str, ...]:
    packages = project.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {})
    paths = packages.get("wheel", {}).get("packages") or [project["project"]["name"].replace("-", "_")]
    return tuple(Path(p).name for p in paths)


def members(workspace: Path) -> list[Member]:
    root = tomllib.loads((workspace / "pyproject.toml").read_text())
    ignores = root.get("tool", {}).get("pm", {}).get("deptry-ignores", {})
    found = []
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        for pyproject in sorted(workspace.glob(f"{pattern}/pyproject.toml")):
            project = tomllib.loads(pyproject.read_text())
            folder = pyproject.parent.relative_to(workspace).as_posix()
            found.append(
                Member(folder, project["project"]["name"], _modules(project), ignores.get(folder, {}))
            )
    unknown = set(ignores) - {m.folder for m in found}
    if unknown:
        raise SystemExit(f"[tool.pm.deptry-ignores] names folders that are no member: {sorted(unknown)}")
    return found


def deptry_command(member: Member, every: list[Member]) -> list[str]:
    """deptry on one member, knowing every workspace member's modules."""
    module_map = ",".join(f"{m.distribution}={'|'.join(m.modules)}" for m in every)
    command = [sys.executable, "-m", "deptry", "--no-ansi", "--config", f"{member.folder}/pyproject.toml"]
    command += ["--package-module-name-map", module_map]
    if member.ignores:
        rules = ",".join(f"{rule}={'|'.join(packages)}" for rule, packages in member.ignores.items())
        command += ["--per-rule-ignores", rules]
    return [*command, f"{member.folder}/src"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("folders", nargs="*", help="members to check, by folder (default: every member)")
    parser.add_argument("--workspace", type=Path, default=ROOT, help="the workspace root")
    args = parser.parse_args(argv)
    every = members(args.workspace)
    chosen = [m for m in every if not args.folders or m.folder in args.folders]
    missing = set(args.folders) - {m.folder for m in chosen}
    if missing:
        parser.error(f"no such member: {sorted(missing)}")
    failed = []
    for member in chosen:
        done = subprocess.run(
            deptry_command(member, every), cwd=args.workspace, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            failed.append(member.folder)
            print(f"{member.distribution} ({member.folder}):\n{done.stdout}{done.stderr}", file=sys.stderr)
    if failed:
        print(f"dependency declarations to fix: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"{len(chosen)} members declare exactly what they import (deptry)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
