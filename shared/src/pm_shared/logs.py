"""Structured JSON logs: one object per line with the service, intent id and stream entry id."""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec

from pm_shared import errors

intent_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("intent_id", default=None)
entry_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("entry_id", default=None)
stream_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("stream", default=None)

_encoder = msgspec.json.Encoder()
# LogRecord attributes that are not user-supplied `extra` fields.
# (`color_message` is uvicorn's copy of the message with terminal colour codes.)
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, var in (("intent_id", intent_id_var), ("entry_id", entry_id_var), ("stream", stream_var)):
            value = var.get()
            if value is not None:
                entry[key] = value
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()


class TextFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [v for v in (intent_id_var.get(), entry_id_var.get()) if v]
        return f"{line} [{' '.join(ids)}]" if ids else line


def configure(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Send every log record to stderr, one JSON object (or one text line) each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Access logs and connection chatter from libraries are noise at INFO.
    logging.getLogger("asyncio").setLevel(logging.WARNING)


def bind(intent_id: str | None, entry_id: str | None, stream: str | None) -> None:
    """Attach ids to every later log record of the current context (a task's, or a copied one)."""
    intent_id_var.set(intent_id)
    entry_id_var.set(entry_id)
    stream_var.set(stream)


@contextmanager
def bound(
    *, intent_id: str | None = None, entry_id: str | None = None, stream: str | None = None
) -> Iterator[None]:
    """Attach ids to every log record written inside the block (per asyncio task)."""
    tokens = [
        (var, var.set(value))
        for var, value in ((intent_id_var, intent_id), (entry_id_var, entry_id), (stream_var, stream))
        if value is not None
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def failure(logger: logging.Logger, exc: BaseException, msg: str, *args: object) -> None:
    """Log that something failed with `exc`: a transient failure (an outage, a `RetryLater`: it
    passes) as a WARNING naming the error, anything else as an ERROR with its traceback."""
    if errors.classify(exc).transient:
        logger.warning(msg + " (%r)", *args, exc)
    else:
        logger.error(msg, *args, exc_info=exc)
