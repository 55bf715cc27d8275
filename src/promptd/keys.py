"""API-key authentication shared by both faces, with a short-lived cache of verified keys."""

from __future__ import annotations

import asyncio
import time

from promptd.access import note_key
from promptd.domain.ids import hash_key
from promptd.errors import AuthError
from promptd.store.repository import KeyInfo, Repository

__all__ = ["KeyCache", "bearer_token"]


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, with Dify's messages for each way it can be wrong."""
    if not header or " " not in header:
        raise AuthError("Authorization header must be provided and start with 'Bearer'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        raise AuthError("Authorization scheme must be 'Bearer'")
    return token.strip()


class KeyCache:
    """Verified keys are trusted for `ttl` seconds, so a revocation takes effect within `ttl`."""

    def __init__(self, repo: Repository, *, ttl: float) -> None:
        self.repo = repo
        self.ttl = ttl
        self._cache: dict[str, tuple[float, KeyInfo]] = {}
        # lookups under way, by key digest: when a key's cache entry expires under load, the requests that
        # arrive meanwhile share one database lookup instead of each making its own
        self._lookups: dict[str, asyncio.Future[KeyInfo | None]] = {}

    async def authenticate(self, header: str | None, *, role: str = "app") -> KeyInfo:
        """The usable key of this role named by an `Authorization: Bearer` header, or AuthError. An app key
        never opens the management API, and an admin key never calls a project through the API faces."""
        token = bearer_token(header)
        digest = hash_key(token)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self.ttl:
            info = hit[1]
        else:
            lookup = self._lookups.get(digest)
            if lookup is None:
                lookup = self._lookups[digest] = asyncio.ensure_future(self.repo.find_key(token))
                lookup.add_done_callback(lambda done: self._lookup_done(digest, done))
            found = await asyncio.shield(lookup)  # a caller that goes away does not cancel the others' lookup
            if found is None:
                self._cache.pop(digest, None)
                raise AuthError("Access token is invalid")
            info = found
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now, info)
        if not info.usable(time.time()) or info.role != role:
            raise AuthError("Access token is invalid")
        note_key(info.project, info.id)  # for the access line (promptd/access.py)
        return info

    def _lookup_done(self, digest: str, lookup: asyncio.Future[KeyInfo | None]) -> None:
        self._lookups.pop(digest, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved here too, in case every caller went away

    def forget(self) -> None:
        self._cache.clear()
