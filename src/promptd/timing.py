"""The Server-Timing header on every response: promptd's own time and the upstream's, in milliseconds.

Handlers that called an upstream put the seconds spent there in `scope["promptd.upstream_s"]`; the header is
then `gateway;dur=…, upstream;dur=…`. Streams send their headers before the upstream has finished, so they
report `gateway;dur=…` up to the first byte. The header is added by `Observed` (promptd/access.py).
"""

from __future__ import annotations

import time

from starlette.types import Scope

__all__ = ["UPSTREAM_KEY", "header_value"]

UPSTREAM_KEY = "promptd.upstream_s"


def header_value(scope: Scope, start: float) -> bytes:
    """The header for a response starting now, of a request that arrived at `start` (perf_counter)."""
    total = (time.perf_counter() - start) * 1000
    upstream = scope.get(UPSTREAM_KEY)
    if upstream is None:
        return b"gateway;dur=%.2f" % total
    up = upstream * 1000
    return b"gateway;dur=%.2f, upstream;dur=%.2f" % (max(0.0, total - up), up)
