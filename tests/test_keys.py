"""The key cache: concurrent requests with a key not (or no longer) cached share one database lookup."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from promptd.errors import AuthError
from promptd.keys import KeyCache
from promptd.store.db import create_engine, migrate
from promptd.store.repository import KeyInfo, Repository


class CountingRepository(Repository):
    """A real repository (SQLite) that counts its key lookups."""

    lookups = 0

    async def find_key(self, token: str) -> KeyInfo | None:
        self.lookups += 1
        return await super().find_key(token)


async def test_concurrent_requests_with_an_uncached_key_share_one_lookup(tmp_path: Path) -> None:
    db = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'k.db'}")
    try:
        await migrate(db)
        repo = CountingRepository(db)
        key, _ = await repo.create_key("demo")
        cache = KeyCache(repo, ttl=3600)
        infos = await asyncio.gather(*(cache.authenticate(f"Bearer {key}") for _ in range(50)))
        assert {info.project for info in infos} == {"demo"} and repo.lookups == 1
        await cache.authenticate(f"Bearer {key}")  # cached now
        assert repo.lookups == 1
        wrong = await asyncio.gather(*(cache.authenticate("Bearer app-nope") for _ in range(5)), return_exceptions=True)
        assert all(isinstance(e, AuthError) for e in wrong) and repo.lookups == 2
        cache.forget()
        await cache.authenticate(f"Bearer {key}")
        assert repo.lookups == 3
    finally:
        await db.dispose()


async def test_a_caller_that_goes_away_does_not_cancel_the_shared_lookup(tmp_path: Path) -> None:
    db = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'k.db'}")
    try:
        await migrate(db)
        repo = CountingRepository(db)
        key, _ = await repo.create_key("demo")
        cache = KeyCache(repo, ttl=3600)
        first = asyncio.create_task(cache.authenticate(f"Bearer {key}"))
        second = asyncio.create_task(cache.authenticate(f"Bearer {key}"))
        await asyncio.sleep(0)
        first.cancel()
        assert (await second).project == "demo"
        with pytest.raises(asyncio.CancelledError):
            await first
        assert repo.lookups == 1
    finally:
        await db.dispose()
