"""Browser origins, as CORS settings name them (pure)."""

from __future__ import annotations

__all__ = ["valid_origin"]


def valid_origin(origin: str) -> bool:
    """`*`, or http(s)://host[:port] with nothing after it (what browsers send in `Origin`)."""
    if origin == "*":
        return True
    scheme, sep, rest = origin.partition("://")
    return bool(sep) and scheme in ("http", "https") and bool(rest) and "/" not in rest and rest == rest.strip()
