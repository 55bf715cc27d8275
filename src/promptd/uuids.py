"""Fresh random (version 4) UUIDs, cheaply: OS randomness read 256 UUIDs' worth at a time. The one piece of
module state behind identifiers, kept out of `domain/` (which stays pure)."""

from __future__ import annotations

import os

__all__ = ["new_hex", "new_uuid"]


class _Randomness:
    """OS randomness read 256 UUIDs' worth at a time (one `os.urandom` call per UUID cost 3 % of a request)."""

    SIZE = 16 * 256

    def __init__(self) -> None:
        self.block = b""
        self.at = self.SIZE

    def take16(self) -> bytes:
        if self.at >= self.SIZE:
            self.block, self.at = os.urandom(self.SIZE), 0
        self.at += 16
        return self.block[self.at - 16 : self.at]

    def forget(self) -> None:
        self.at = self.SIZE


_randomness = _Randomness()
os.register_at_fork(after_in_child=_randomness.forget)  # a child never reuses what its parent read


def _uuid_hex() -> str:
    b = bytearray(_randomness.take16())
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return b.hex()


def new_uuid() -> str:
    """A random (version 4) UUID as text, like `str(uuid.uuid4())` and from the same OS randomness."""
    h = _uuid_hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_hex() -> str:
    """A random (version 4) UUID as 32 hex digits, like `uuid.uuid4().hex` (a request id, promptd/access.py)."""
    return _uuid_hex()
