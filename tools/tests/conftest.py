"""The tools' tests never read this checkout's `.pm/env`: what a command finds there would depend on
the machine (a test that unsets a variable would get the developer's value back). The benchmarks'
tests stop their fleets without waiting out idle reads (`bench_streams_read_briefly`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pm_tools.bench import harness
from pm_tools.devenv.envfile import FILE_VARIABLE


@pytest.fixture(autouse=True)
def no_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """`PM_ENV_FILE` names a file that does not exist (a test may write it)."""
    path = tmp_path / "no-env-file"
    monkeypatch.setenv(FILE_VARIABLE, str(path))
    return path


@pytest.fixture
def bench_streams_read_briefly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's services block at most 100 ms on an empty stream (`PM_STREAM_BLOCK_MS`; 2,000
    by default). A read returns as soon as an entry arrives, so only idle waits are shorter; but a
    SIGTERMed consumer finishes its read before it stops, and a benchmark stops its services one
    after the other: ~1.5 s each (writer, orchestrators, reconciler, adapter) at the end of a run."""
    variables = harness.service_variables

    def briefly(*args: Any, **kwargs: Any) -> dict[str, str]:
        return {**variables(*args, **kwargs), "PM_STREAM_BLOCK_MS": "100"}

    monkeypatch.setattr(harness, "service_variables", briefly)
