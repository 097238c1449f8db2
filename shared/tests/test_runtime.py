"""pm_shared.runtime: supervised tasks, in process and in a real process (exit code, logged traceback)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pm_shared import runtime

# A service in miniature: its consumers wait for the stop event; with `dies`, its outbox relay
# breaks after a moment (as a bug in a background loop would).
SERVICE = textwrap.dedent(
    """
    import asyncio
    import sys

    from pm_shared import runtime
    from pm_shared.settings import CommonSettings, load_settings


    def load() -> CommonSettings:
        return load_settings(CommonSettings, "", {"PM_LOG_FORMAT": "json", "PM_SHUTDOWN_GRACE_S": "5"})


    async def relay() -> None:
        await asyncio.sleep(0.2)
        raise RuntimeError("the relay broke")


    async def body(config: CommonSettings, stop: asyncio.Event) -> None:
        async with runtime.supervise(stop) as tasks:
            tasks.start("consumers", stop.wait())
            if sys.argv[1] == "dies":
                tasks.start("outbox relay", relay())
        print("stopped", flush=True)


    runtime.run_service("mini", load, body)
    """
)


def _records(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "mini_service.py"
    path.write_text(SERVICE)
    return path


def test_a_background_task_that_dies_ends_the_process_with_exit_1_and_its_traceback(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "dies"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stderr
    records = _records(done.stderr)
    (crash,) = [r for r in records if r["level"] == "CRITICAL"]
    assert crash["msg"] == "mini crashed: RuntimeError: the relay broke"
    assert "Traceback" in crash["exc"] and "in relay" in crash["exc"]
    assert "(in the task 'outbox relay')" in crash["exc"]
    assert "stopped" not in done.stdout  # the other task was cancelled, not left running


async def test_a_stop_request_ends_every_task_and_the_process_cleanly(script: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), "stays", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    started = await asyncio.wait_for(process.stderr.readline(), 30)
    assert json.loads(started)["msg"] == "mini started"
    process.send_signal(signal.SIGTERM)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode() == "stopped\n"
    records = _records(stderr.decode())
    assert records[-1]["msg"] == "mini stopped cleanly"
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL")]


async def test_a_task_that_dies_lets_the_others_finish_what_they_hold_and_is_named() -> None:
    stop = asyncio.Event()
    finished: list[str] = []

    async def consumer() -> None:
        await stop.wait()
        await asyncio.sleep(0.05)  # the batch in hand: handled, then acked
        finished.append("acked")

    async def dying() -> None:
        await asyncio.sleep(0.01)
        raise KeyError("boom")

    with pytest.raises(ExceptionGroup) as caught:
        async with runtime.supervise(stop) as tasks:
            tasks.start("consumers", consumer())
            tasks.start("sweep", dying())
    (error,) = caught.value.exceptions
    assert isinstance(error, KeyError)
    assert error.__notes__ == ["(in the task 'sweep')"]
    assert finished == ["acked"] and stop.is_set()


async def test_a_task_that_will_not_stop_after_a_failure_is_cancelled_after_the_wind_down() -> None:
    cancelled = asyncio.Event()

    async def deaf() -> None:
        try:
            await asyncio.Event().wait()  # ignores the stop request
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def dying() -> None:
        raise KeyError("boom")

    with pytest.raises(ExceptionGroup):
        async with runtime.supervise(asyncio.Event(), wind_down_s=0.05) as tasks:
            tasks.start("consumers", deaf())
            tasks.start("sweep", dying())
    assert cancelled.is_set()


async def test_a_task_that_ends_while_the_service_is_not_stopping_is_an_error() -> None:
    async def quits() -> None:
        await asyncio.sleep(0)

    stop = asyncio.Event()
    with pytest.raises(ExceptionGroup) as caught:
        async with runtime.supervise(stop) as tasks:
            tasks.start("monitor", quits())
            tasks.start("consumers", stop.wait())
    (error,) = caught.value.exceptions
    assert isinstance(error, runtime.TaskEnded) and "monitor" in str(error)


async def test_stop_lets_every_task_finish_and_then_cancels_the_helpers() -> None:
    stop = asyncio.Event()
    finished: list[str] = []

    async def work(name: str, after_s: float) -> None:
        await stop.wait()
        await asyncio.sleep(after_s)  # the batch in hand
        finished.append(name)

    async with runtime.supervise(stop) as tasks:
        tasks.start("consumers", work("consumers", 0.05))
        tasks.start("relay", work("relay", 0.01))
        helper = tasks.start("lease keeper", asyncio.Event().wait(), helper=True)
        quitter = tasks.start("stop relay", asyncio.sleep(0), helper=True)  # a helper may end at will
        asyncio.get_running_loop().call_later(0.05, stop.set)
    assert finished == ["relay", "consumers"]
    assert helper.cancelled() and quitter.done() and not quitter.cancelled()


async def test_every_goes_on_after_a_failed_pass_until_stop(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    passes: list[int] = []

    async def sweep() -> None:
        passes.append(len(passes))
        if len(passes) == 1:
            raise ValueError("one bad pass")
        if len(passes) == 3:
            stop.set()

    await asyncio.wait_for(runtime.every(0.01, stop, sweep, "status sweep"), 5)
    assert passes == [0, 1, 2]
    (failed,) = [r for r in caplog.records if r.name == "pm_shared.runtime"]
    assert failed.getMessage() == "status sweep failed" and failed.exc_info is not None


class FakeServer:
    """An HTTP server in miniature: serves until told to exit; `listens=False` fails to bind."""

    def __init__(self, *, listens: bool = True) -> None:
        self.should_exit = False
        self.started = False
        self.listens = listens

    async def serve(self) -> None:
        if not self.listens:
            return
        self.started = True
        while not self.should_exit:
            await asyncio.sleep(0.01)


async def test_serve_http_serves_until_stop() -> None:
    stop = asyncio.Event()
    server = FakeServer()
    serving = asyncio.create_task(runtime.serve_http(server, stop, "127.0.0.1:1"))
    await asyncio.sleep(0.05)
    assert server.started and not serving.done()
    stop.set()
    await asyncio.wait_for(serving, 5)
    assert server.should_exit


async def test_serve_http_fails_when_the_server_cannot_listen() -> None:
    with pytest.raises(RuntimeError, match="could not listen on 127.0.0.1:1"):
        await runtime.serve_http(FakeServer(listens=False), asyncio.Event(), "127.0.0.1:1")
