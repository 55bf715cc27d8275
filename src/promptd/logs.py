"""The server's log: plain lines or one JSON object per line, each carrying the id of the request it is about.

`serve` hands `logging_config(level, fmt)` to uvicorn (`log_config`), which applies it in every worker
process. uvicorn's own access log is off: promptd writes its own access line (promptd/access.py), with what
the faces and the engine learned about the request.

Plain:  `2026-12-03T10:20:06.123Z INFO promptd.access [3f2a…] POST /v1/completion-messages 200 project=demo …`
JSON:   `{"ts": "…", "level": "INFO", "logger": "promptd.access", "msg": "POST … 200", "request_id": "3f2a…",
         "method": "POST", …}`
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, TextIO

from promptd.access import current_request_id

__all__ = ["FORMATS", "JsonFormatter", "LoopStreamHandler", "PlainFormatter", "RequestIdFilter", "logging_config"]

FORMATS = ("plain", "json")


class RequestIdFilter(logging.Filter):
    """Puts the id of the request being served (or None) on every record, as `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


_second: tuple[int, str] = (-1, "")  # the last second formatted, and its text: a line's time is formatted once a second


def _timestamp(record: logging.LogRecord) -> str:
    global _second
    second, text = _second  # one read: another thread may replace it meanwhile
    if second != int(record.created):
        second = int(record.created)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = (second, text)
    return f"{text}.{int(record.msecs):03d}Z"


_SKIP = frozenset(("method", "path", "status", "request_id"))  # in the plain line's message or prefix already


class PlainFormatter(logging.Formatter):
    """`time LEVEL logger [request id] message key=value…` (the access line's fields as key=value)."""

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        about = f" [{rid}]" if rid else ""
        line = f"{_timestamp(record)} {record.levelname} {record.name}{about} {record.getMessage()}"
        fields: dict[str, Any] | None = getattr(record, "fields", None)
        if fields:
            line += "".join([f" {k}={v}" for k, v in fields.items() if v is not None and k not in _SKIP])
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id, the access line's fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        fields: dict[str, Any] | None = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class LoopStreamHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler whose access lines (logger `promptd.access`, one per request) emitted in one turn of the
    event loop leave together, in one write, at the end of that turn: a write of its own per line was a system
    call per request. Any other line (start-up, shutdown, warnings, errors), and an access line emitted where no
    loop runs, is written at once, after the lines held, so the order of lines never changes and the last lines
    before an exit are never held; `flush()` (and logging's shutdown) writes what is held."""

    HELD = "promptd.access"

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._held: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:  # called with the handler's lock held
        try:
            line = self.format(record) + self.terminator
            loop: asyncio.AbstractEventLoop | None = None
            if record.name == self.HELD:
                with contextlib.suppress(RuntimeError):  # no loop runs in this thread
                    loop = asyncio.get_running_loop()
            if loop is not None and not self._held:
                loop.call_soon(self.flush)
            self._held.append(line)
            if loop is None:
                self._write()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _write(self) -> None:
        if self._held:
            text = "".join(self._held)
            self._held.clear()
            self.stream.write(text)
            self.stream.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # StreamHandler made it
            try:
                self._write()
            except Exception:
                self._held.clear()  # the stream is gone (closed at exit): nothing can be written anymore


def logging_config(level: str = "info", fmt: str = "plain") -> dict[str, Any]:
    """A `logging.config.dictConfig` for the server: promptd's and uvicorn's loggers on stderr, in `fmt`."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    formatter = "promptd.logs.JsonFormatter" if fmt == "json" else "promptd.logs.PlainFormatter"
    lvl = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "promptd.logs.RequestIdFilter"}},
        "formatters": {"promptd": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "promptd.logs.LoopStreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "promptd",
                "filters": ["request_id"],
            }
        },
        "loggers": {
            "promptd": {"handlers": ["stderr"], "level": lvl, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": lvl, "propagate": False},
            "uvicorn.error": {"level": lvl},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},  # promptd writes its own
        },
    }
