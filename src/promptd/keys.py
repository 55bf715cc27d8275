"""API-key authentication shared by both faces, with a short-lived cache of verified keys.

While the database is unreachable, a key verified before keeps its cached verdict (the re-check every `ttl`
seconds waits at most RECHECK_WAIT for the database, then the request goes on with what was known); a key
never verified cannot be checked and is refused with StoreUnavailable (a 503 in each face's shape). One line
is logged when the database becomes unreachable for key checks and one when it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time

from promptd.access import note_key
from promptd.domain.ids import hash_key
from promptd.errors import AuthError, StoreUnavailable
from promptd.store.db import unreachable
from promptd.store.repository import KeyInfo, Repository

__all__ = ["RECHECK_WAIT", "KeyCache", "bearer_token"]

log = logging.getLogger("promptd.keys")

#: seconds a request whose key is cached (but due for its re-check) waits for the database before it goes on
#: with the cached verdict; the lookup itself goes on, and refreshes the cache when it answers
RECHECK_WAIT = 1.0


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
        self._outage = False  # the last lookup could not reach the database

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
            info = await self._lookup(token, digest, hit[1] if hit is not None else None, now)
        if not info.usable(time.time()) or info.role != role:
            raise AuthError("Access token is invalid")
        note_key(info.project, info.id)  # for the access line (promptd/access.py)
        return info

    async def _lookup(self, token: str, digest: str, cached: KeyInfo | None, now: float) -> KeyInfo:
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = self._lookups[digest] = asyncio.ensure_future(self.repo.find_key(token))
            lookup.add_done_callback(lambda done: self._lookup_done(digest, done))
        try:
            # a caller that goes away does not cancel the others' lookup; a cached key does not wait long
            found = await asyncio.wait_for(asyncio.shield(lookup), RECHECK_WAIT if cached is not None else None)
        except Exception as exc:
            if not isinstance(exc, TimeoutError) and not unreachable(exc):
                raise
            if not self._outage:
                self._outage = True
                log.error("keys: the database does not answer (%s: %s); keys verified before are served from the "
                          "cache, other keys get a 503", type(exc).__name__, exc)  # fmt: skip
            if cached is None:
                raise StoreUnavailable("The database is unreachable; the API key cannot be verified now.") from None
            self._cache[digest] = (now, cached)  # the verdict stands until the next re-check
            return cached
        if self._outage:
            self._outage = False
            log.warning("keys: the database is reachable again")
        if found is None:
            self._cache.pop(digest, None)
            raise AuthError("Access token is invalid")
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, found)
        return found

    def _lookup_done(self, digest: str, lookup: asyncio.Future[KeyInfo | None]) -> None:
        self._lookups.pop(digest, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved here too, in case every caller went away

    def forget(self) -> None:
        self._cache.clear()
