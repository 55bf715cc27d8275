"""The management API's wire format: query parameters in (checked: a bad one is a 400 naming it), JSON out."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.datastructures import QueryParams
from starlette.responses import Response

from promptd.errors import InputError
from promptd.store.analytics import PERCENTILES, Cursor, LogFilter, Stats

__all__ = [
    "MAX_BUCKETS",
    "RANGES",
    "KeyCreate",
    "TimeRange",
    "decode_body",
    "json_response",
    "log_filter",
    "page_limit",
    "stats_json",
    "time_range",
]

#: Named ranges of the overview: (span, bucket) in seconds.
RANGES: dict[str, tuple[int, int]] = {
    "hour": (3600, 300),
    "day": (86400, 3600),
    "week": (7 * 86400, 6 * 3600),
    "month": (30 * 86400, 86400),
}
MAX_BUCKETS = 500
STATUSES = ("normal", "stopped", "error")


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    """POST /admin/v1/keys: an app key for `project`."""

    project: str
    name: str = ""
    expires_in: float | None = None  # seconds from now; none: never expires
    rpm: int | None = None
    tpm: int | None = None
    cost_per_day: str | None = None
    cost_per_month: str | None = None


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: float
    end: float
    bucket: float

    @property
    def buckets(self) -> int:
        return max(1, math.ceil((self.end - self.start) / self.bucket))


def json_response(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status, media_type="application/json")


def decode_body(body: bytes, kind: type[KeyCreate]) -> KeyCreate:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise InputError(f"invalid body: {exc}", code="invalid_param") from None
    except msgspec.DecodeError:
        raise InputError("the body must be a JSON object", code="bad_request") from None
    except RecursionError:
        raise InputError("the body is nested too deeply", code="bad_request") from None


def _time(params: QueryParams, name: str) -> float | None:
    """A time parameter: Unix seconds, or an ISO 8601 date-time (UTC unless it says otherwise)."""
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            parsed = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise InputError(f"{name} must be Unix seconds or an ISO 8601 time", param=name) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        value = parsed.timestamp()
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite time", param=name)
    return value


def _number(params: QueryParams, name: str, default: float, *, low: float, high: float) -> float:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"{name} must be a number", param=name) from None
    if not (low <= value <= high):
        raise InputError(f"{name} must be between {low:g} and {high:g}", param=name)
    return value


def page_limit(params: QueryParams, default: int = 50, maximum: int = 500) -> int:
    return int(_number(params, "limit", default, low=1, high=maximum))


def _pairs(params: QueryParams, name: str) -> tuple[tuple[str, str], ...]:
    out = []
    for raw in params.getlist(name):
        key, sep, value = raw.partition(":")
        if not sep or not key:
            raise InputError(f"{name} must be name:value", param=name)
        out.append((key, value))
    return tuple(out)


def log_filter(params: QueryParams) -> LogFilter:
    """The filters of a listing or chart; unknown statuses and reversed ranges are 400s."""
    status = params.get("status") or None
    if status is not None and status not in STATUSES:
        raise InputError(f"status must be one of {', '.join(STATUSES)}", param="status")
    start, end = _time(params, "start"), _time(params, "end")
    if start is not None and end is not None and end <= start:
        raise InputError("end must be after start", param="end")
    return LogFilter(
        start=start,
        end=end,
        project=params.get("project") or None,
        model=params.get("model") or None,
        user=params.get("user") or None,
        session_id=params.get("session") or None,
        status=status,
        face=params.get("face") or None,
        campaign=params.get("campaign") or None,
        labels=_pairs(params, "label"),
        tags=tuple(t for t in params.getlist("tag") if t),
        text=params.get("q") or None,
        request_id=params.get("request_id") or None,
    )


def cursor(params: QueryParams) -> Cursor | None:
    raw = params.get("cursor")
    if not raw:
        return None
    try:
        return Cursor.decode(raw)
    except ValueError:
        raise InputError("cursor is not one this API returned", param="cursor") from None


def time_range(params: QueryParams, now: float | None = None) -> TimeRange:
    """`range` (hour | day | week, default day) ending now, or explicit `start`, `end` and `bucket` seconds."""
    now = time.time() if now is None else now
    name = params.get("range") or None
    start, end = _time(params, "start"), _time(params, "end")
    if name is not None and name not in RANGES:
        raise InputError(f"range must be one of {', '.join(RANGES)}", param="range")
    if start is None:
        span, step = RANGES[name or "day"]
        size = _number(params, "bucket", step, low=max(1.0, span / MAX_BUCKETS), high=span)
        stop = math.ceil(now / size) * size if end is None else end
        return TimeRange(stop - span, stop, size)
    stop = now if end is None else end
    if stop <= start:
        raise InputError("end must be after start", param="end")
    size = _number(params, "bucket", max(60.0, (stop - start) / 48), low=1, high=stop - start)
    result = TimeRange(start, stop, size)
    if result.buckets > MAX_BUCKETS:
        raise InputError(f"at most {MAX_BUCKETS} buckets: choose a larger bucket", param="bucket")
    return result


def _ms(values: Mapping[int, float | None]) -> dict[str, float | None]:
    return {f"p{p}": (None if (v := values[p]) is None else v * 1000) for p in PERCENTILES}


def stats_json(s: Stats) -> dict[str, Any]:
    return {
        "requests": s.requests,
        "errors": s.errors,
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "tokens": s.prompt_tokens + s.completion_tokens,
        "cost": s.cost,
        "latency_ms": _ms(s.latency),
        "ttft_ms": _ms(s.ttft),
    }
