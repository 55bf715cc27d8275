"""create_app(settings, catalog, providers=None): the ASGI app, built from explicit parts, no globals.

The lifespan opens the database (running migrations), builds the providers the catalog names (unless the
caller passes its own, as tests do), starts the recorder, and on shutdown stops what still runs, flushes the
recorder and closes the providers, in that order, so no record is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from promptd import __version__
from promptd.catalog.schema import Catalog
from promptd.coord.base import build_coordinator
from promptd.engine.engine import Engine
from promptd.faces.admin.console import console_app
from promptd.faces.admin.routes import mount as admin_mount
from promptd.faces.chat.routes import mount as chat_mount
from promptd.faces.chat.routes import openai_mount
from promptd.faces.dify.routes import mount as dify_mount
from promptd.faces.mount import HotRoute
from promptd.keys import KeyCache
from promptd.knowledge.service import Knowledge
from promptd.metrics import Metrics
from promptd.providers.base import Provider, load_provider_class
from promptd.services import Services, services
from promptd.settings import Settings
from promptd.store.db import create_engine, migrate
from promptd.store.recorder import Recorder
from promptd.store.repository import Repository
from promptd.timing import ServerTiming

__all__ = ["PromptdApp", "build_providers", "create_app", "freeze_heap"]

log = logging.getLogger("promptd")


def freeze_heap() -> None:
    """Move everything alive now (modules, the catalog, the app) out of the collector's sight, for a server
    process about to serve: a full collection walks every tracked object, and over a freshly started promptd
    (about 100,000 of them) it is a pause of tens of ms that every stream in flight waits for. Called by the
    `serve` command in each serving process, not by create_app (embedding processes, tests among them, keep
    their own collector as it is)."""
    gc.collect()
    gc.freeze()


def build_providers(catalog: Catalog) -> dict[str, Provider]:
    """One provider instance per catalog provider, chosen by `kind` from the table in providers/base.py."""
    return {name: load_provider_class(cfg.kind)(name, cfg) for name, cfg in catalog.providers.items()}


class PromptdApp(Starlette):
    """Starlette, but the hot endpoints (the two faces' completions) are dispatched by exact path first: the
    nested mounts, routers and middlewares cost a measurable share of a request (docs/benchmarks.md)."""

    def __init__(self, *, hot: Mapping[str, HotRoute], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hot = dict(hot)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root + "/"):
                path = path[len(root) :]
            route = self.hot.get(path)
            if route is not None:
                scope["app"] = self
                await route(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


async def _warm(name: str, provider: Any) -> None:
    """Load a provider's model in the background at start, so the first request does not wait for it."""
    try:
        await provider.start()
    except Exception as exc:
        log.warning("provider %r could not start yet (%s); requests to it will report the error", name, exc)


async def _retention(repo: Repository, settings: Settings) -> None:
    """Delete records older than `retention_days`, now and every `retention_interval` seconds."""
    assert settings.retention_days is not None
    while True:
        try:
            deleted = await repo.purge_messages(time.time() - settings.retention_days * 86400)
            if deleted:
                log.info("retention: deleted %d record(s) older than %s days", deleted, settings.retention_days)
        except Exception:
            log.warning("retention: a run failed; trying again later", exc_info=True)
        await asyncio.sleep(settings.retention_interval)


async def metrics_endpoint(request: Request) -> Response:
    return PlainTextResponse(services(request).engine.metrics.exposition(), media_type="text/plain; version=0.0.4")


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__, "pid": os.getpid()})


def create_app(settings: Settings, catalog: Catalog, providers: Mapping[str, Provider] | None = None) -> PromptdApp:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = create_engine(settings.db_url)
        await migrate(db)
        built = dict(providers) if providers is not None else build_providers(catalog)
        metrics = Metrics()
        recorder = Recorder(
            db,
            dead_letter=settings.data_dir / "dead-letter.jsonl",
            batch=settings.recorder_batch,
            maxsize=settings.recorder_queue,
            on_written=metrics.recorder_outcome,
            linger=settings.recorder_linger,
            spill_dir=settings.data_dir / "recorder-spill",
        )
        recorder.start()
        repo = Repository(db)
        engine = Engine(
            catalog,
            built,
            recorder,
            metrics,
            coordinator=build_coordinator(settings.redis_url, prefix=settings.redis_prefix),
            spent=repo.spent,
            reserve_max_tokens=settings.reserve_max_tokens,
        )
        await engine.start_coordination()
        knowledge = Knowledge(db, engine, catalog, settings.data_dir / "knowledge")
        await knowledge.start()
        metrics.gauge("promptd_recorder_queue_rows", "Rows waiting to be written.", lambda: recorder.pending)
        metrics.gauge("promptd_recorder_spill_rows", "Rows waiting on disk.", lambda: recorder.spilled_pending)
        metrics.gauge("promptd_running_generations", "Generations in flight.", lambda: len(engine.tasks.all()))
        svc = Services(
            settings=settings,
            catalog=catalog,
            engine=engine,
            repo=repo,
            recorder=recorder,
            keys=KeyCache(repo, ttl=settings.key_cache_ttl),
            providers=built,
            knowledge=knowledge,
        )
        warmups = [asyncio.create_task(_warm(name, p)) for name, p in built.items() if hasattr(p, "start")]
        if settings.retention_days is not None:
            warmups.append(asyncio.create_task(_retention(repo, settings), name="promptd-retention"))
        try:
            yield {"services": svc}
        finally:
            for task in warmups:
                task.cancel()
            await knowledge.aclose()
            await engine.aclose()
            await recorder.close()
            for provider in built.values():
                try:
                    await provider.aclose()
                except Exception:
                    log.warning("closing a provider failed", exc_info=True)
            await db.dispose()

    chat, admin, aliases, dify = chat_mount(), admin_mount(), openai_mount(), dify_mount()
    hot: dict[str, HotRoute] = {}
    for face in (chat, admin, aliases, dify):
        hot.update(face.hot_routes())
    return PromptdApp(
        hot=hot,
        routes=[
            Route("/health", health),
            Route("/metrics", metrics_endpoint),
            *chat.mount(),
            # the management API and the console it serves (docs/management-api.md, docs/console.md)
            *admin.mount(),
            Mount("/console", app=console_app(), name="console"),
            *aliases.mount(),  # /v1/chat/completions, /v1/embeddings, /v1/models: before the Dify face's /v1
            *dify.mount(),
        ],
        # errors of the routes outside a mount (the OpenAI aliases) leave in OpenAI's shape
        exception_handlers=aliases.handlers,
        middleware=[Middleware(ServerTiming)],
        lifespan=lifespan,
    )
