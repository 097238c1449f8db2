"""The tools' tests never read this checkout's `.pm/env`: what a command finds there would depend on
the machine (a test that unsets a variable would get the developer's value back)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pm_tools.devenv.envfile import FILE_VARIABLE


@pytest.fixture(autouse=True)
def no_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """`PM_ENV_FILE` names a file that does not exist (a test may write it)."""
    path = tmp_path / "no-env-file"
    monkeypatch.setenv(FILE_VARIABLE, str(path))
    return path
