"""The server's log: plain lines or one JSON object per line, each carrying the id of the request it is about.

`serve` hands `logging_config(level, fmt)` to uvicorn (`log_config`), which applies it in every worker
process. uvicorn's own access log is off: promptd writes its own access line (promptd/access.py), with what
the faces and the engine learned about the request.

Plain:  `2026-12-03T10:20:06.123Z INFO promptd.access [3f2a…] POST /v1/completion-messages 200 project=demo …`
JSON:   `{"ts": "…", "level": "INFO", "logger": "promptd.access", "msg": "POST … 200", "request_id": "3f2a…",
         "method": "POST", …}`
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from promptd.access import current_request_id

__all__ = ["FORMATS", "JsonFormatter", "PlainFormatter", "RequestIdFilter", "logging_config"]

FORMATS = ("plain", "json")


class RequestIdFilter(logging.Filter):
    """Puts the id of the request being served (or None) on every record, as `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class PlainFormatter(logging.Formatter):
    """`time LEVEL logger [request id] message key=value…` (the access line's fields as key=value)."""

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        about = f" [{rid}]" if rid else ""
        line = f"{_timestamp(record)} {record.levelname} {record.name}{about} {record.getMessage()}"
        fields: dict[str, Any] | None = getattr(record, "fields", None)
        if fields:
            skip = ("method", "path", "status", "request_id")
            line += "".join(f" {k}={v}" for k, v in fields.items() if v is not None and k not in skip)
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
                "class": "logging.StreamHandler",
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
