"""Everything a request handler needs: built once per app in the lifespan, handed to requests in its state."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from promptd.catalog.schema import Catalog
from promptd.engine.engine import Engine
from promptd.keys import KeyCache
from promptd.knowledge.service import Knowledge
from promptd.providers.base import Provider
from promptd.settings import Settings
from promptd.store.recorder import Recorder
from promptd.store.repository import Repository

__all__ = ["Services", "services"]

log = logging.getLogger("promptd")


@dataclass(slots=True)
class Services:
    settings: Settings
    catalog: Catalog
    engine: Engine
    repo: Repository
    recorder: Recorder
    keys: KeyCache
    providers: dict[str, Provider]
    knowledge: Knowledge
    catalog_version: str = ""
    started_at: float = field(default_factory=time.time)  # when this app loaded its catalog (Unix seconds)
    #: providers a reload replaced: a stream in flight may still use one, so they are closed at shutdown
    retired: list[Provider] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def swap_catalog(self, catalog: Catalog, providers: dict[str, Provider], version: str) -> None:
        """Serve `catalog` from now on, everywhere it is held (faces read it here, the engine and its admission
        hold their own): one synchronous step, so no request sees half of two catalogs (promptd/reload.py)."""
        self.catalog = catalog
        self.providers = providers
        self.catalog_version = version
        self.engine.use_catalog(catalog, providers, version)

    def background(self, work: Coroutine[Any, Any, Any], what: str) -> None:
        """Run `work` off the request path (e.g. loading a model); a failure is logged, and it is cancelled at
        shutdown."""

        async def run() -> None:
            try:
                await work
            except Exception as exc:
                log.warning("%s failed (%s); requests that need it will report the error", what, exc)

        task = asyncio.get_running_loop().create_task(run(), name=f"promptd: {what}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def services(request: Request) -> Services:
    """The services of the app serving `request` (from the lifespan state, which every mount shares)."""
    svc: Any = request.scope["state"]["services"]  # not request.state: a State object per request
    return svc  # type: ignore[no-any-return]
