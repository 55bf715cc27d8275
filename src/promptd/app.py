"""create_app(settings, catalog, providers=None): the ASGI app, built from explicit parts, no globals.

The lifespan opens the database (running migrations), builds the providers the catalog names (unless the
caller passes its own, as tests do), starts the recorder, and on shutdown stops what still runs, flushes the
recorder and closes the providers, in that order, so no record is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from promptd import __version__
from promptd.access import Observed
from promptd.catalog.schema import Catalog
from promptd.coord.base import build_coordinator
from promptd.cors import Cors
from promptd.engine.engine import Engine
from promptd.faces.admin.console import console_app
from promptd.faces.admin.routes import mount as admin_mount
from promptd.faces.chat.graphql import graphql_endpoint
from promptd.faces.chat.routes import mount as chat_mount
from promptd.faces.chat.routes import openai_mount
from promptd.faces.dify.routes import mount as dify_mount
from promptd.faces.mount import HotRoute
from promptd.faces.refusal import refusal_body
from promptd.health import health, livez, readyz
from promptd.keys import KeyCache
from promptd.knowledge.service import Knowledge
from promptd.metrics import Metrics
from promptd.providers.base import Provider, load_provider_class
from promptd.rejections import count_rejection
from promptd.reload import catalog_version, install_sighup
from promptd.services import Services, services
from promptd.settings import Settings
from promptd.store.db import create_engine, migrate
from promptd.store.recorder import Recorder, replay_dead_letters
from promptd.store.repository import Repository
from promptd.tracing import Tracer

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

    def __init__(self, *, hot: Mapping[str, HotRoute], tracer: Tracer | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hot = dict(hot)
        self.observed = Observed(self._dispatch, tracer, count_rejection)
        self.cors: Cors | None = None  # outermost: the hot routes skip the middleware stack (promptd/cors.py)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)  # the lifespan
        elif self.cors is not None and self.cors.applies(scope):
            await self.cors(scope, receive, send)  # then dispatch
        else:
            await self.observed(scope, receive, send)  # request id, Server-Timing, access line; then _dispatch

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.observed(scope, receive, send)  # request id, Server-Timing, access line
        else:
            await super().__call__(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "POST":
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


async def _replay_dead_letters(db: AsyncEngine, settings: Settings) -> None:
    """At start, the rows an earlier run could not write (`promptd replay` does the same on demand)."""
    try:
        await replay_dead_letters(db, settings.data_dir / "dead-letter.jsonl")
    except Exception as exc:  # the file cannot be read: it stays for `promptd replay`
        log.warning("dead letters not replayed at start (%s: %s)", type(exc).__name__, exc)


async def _publish_gauges(metrics: Metrics) -> None:
    """Every second, this worker's gauges for whichever worker answers the next scrape (metrics.py)."""
    while True:
        metrics.publish_gauges()
        await asyncio.sleep(1.0)


LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def metrics_allowed(client_host: str | None, authorization: str | None, token: str | None) -> bool:
    """/metrics names projects and models: loopback clients only, or anyone sending the configured token."""
    if client_host is None or client_host in LOOPBACK or client_host.startswith("127."):
        return True  # no client address: not a network peer (a Unix socket, an in-process client)
    return token is not None and hmac.compare_digest(authorization or "", f"Bearer {token}")


async def metrics_endpoint(request: Request) -> Response:
    svc = services(request)
    host = request.client.host if request.client else None
    if not metrics_allowed(host, request.headers.get("authorization"), svc.settings.metrics_token):
        message = "/metrics answers loopback clients, or others with PROMPTD_METRICS_TOKEN as a Bearer token"
        return JSONResponse({"error": {"code": "forbidden", "message": message}}, status_code=403)
    return PlainTextResponse(svc.engine.metrics.exposition(), media_type="text/plain; version=0.0.4")


def _cors_refusal(path: str, message: str) -> Response:
    """A refused CORS preflight (403), in the shape of the API at `path`."""
    return Response(refusal_body(path, 403, "forbidden", message), 403, media_type="application/json")


def create_app(settings: Settings, catalog: Catalog, providers: Mapping[str, Provider] | None = None) -> PromptdApp:
    tracer: Tracer | None = None
    if settings.otlp_endpoint:
        from promptd.tracing import build_tracer  # opentelemetry is imported only when traces are on

        tracer = build_tracer(settings.otlp_endpoint, service_version=__version__)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = create_engine(settings.db_url)
        await migrate(db)
        built = dict(providers) if providers is not None else build_providers(catalog)
        own_metrics_dir = settings.metrics_dir is None  # embedded (tests): a directory of this app's own
        metrics_dir = settings.metrics_dir or settings.data_dir / "metrics" / f"app-{os.getpid()}-{id(app):x}"
        metrics = Metrics(metrics_dir)
        recorder = Recorder(
            db,
            dead_letter=settings.data_dir / "dead-letter.jsonl",
            batch=settings.recorder_batch,
            maxsize=settings.recorder_queue,
            on_written=metrics.recorder_outcome,
            linger=settings.recorder_linger,
            spill_dir=settings.data_dir / "recorder-spill",
            journal_dir=settings.data_dir / "recorder-journal" if settings.recorder_journal else None,
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
            limit_slice_idle=settings.limit_slice_idle,
        )
        version = catalog_version(catalog)
        engine.catalog_version = version
        engine.tracer = tracer
        await engine.start_coordination()
        knowledge = Knowledge(db, engine, catalog, settings.data_dir / "knowledge")
        await knowledge.start()
        metrics.gauge("promptd_recorder_queue_rows", "Rows waiting to be written.", lambda: recorder.pending)
        metrics.gauge("promptd_recorder_spill_rows", "Rows waiting on disk.", lambda: recorder.spilled_pending)
        metrics.gauge("promptd_running_generations", "Generations in flight.", lambda: len(engine.tasks.all()))
        metrics.gauge(
            "promptd_limit_coordinator_calls",
            "Calls to the coordinator for limits since start (slices leased, flushes).",
            lambda: engine.admission.leases.round_trips,
        )
        svc = Services(
            settings=settings,
            catalog=catalog,
            engine=engine,
            repo=repo,
            recorder=recorder,
            keys=KeyCache(repo, ttl=settings.key_cache_ttl),
            providers=built,
            catalog_version=version,
            knowledge=knowledge,
        )
        for name, p in built.items():  # load models now, so that the first request does not wait for them
            if hasattr(p, "start"):
                svc.background(p.start(), f"starting provider {name!r}")
        svc.background(_replay_dead_letters(db, settings), "replaying dead letters")
        svc.background(_publish_gauges(metrics), "publishing gauges")
        if settings.retention_days is not None:
            svc.background(_retention(repo, settings), "retention")
        try:
            with install_sighup(svc):
                yield {"services": svc}
        finally:
            for task in list(svc.tasks):
                task.cancel()
            await knowledge.aclose()
            await engine.aclose()
            await recorder.close()
            for provider in {id(p): p for p in [*svc.providers.values(), *svc.retired]}.values():
                try:
                    await provider.aclose()
                except Exception:
                    log.warning("closing a provider failed", exc_info=True)
            await db.dispose()
            metrics.close()
            if tracer is not None:
                tracer.shutdown()  # the spans still buffered leave now
            if own_metrics_dir:
                shutil.rmtree(metrics_dir, ignore_errors=True)

    chat, admin, aliases, dify = chat_mount(), admin_mount(), openai_mount(), dify_mount()
    hot: dict[str, HotRoute] = {}
    for face in (chat, admin, aliases, dify):
        hot.update(face.hot_routes())
    app = PromptdApp(
        hot=hot,
        routes=[
            Route("/health", health),
            Route("/livez", livez),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            *chat.mount(),
            Route("/api/graphql", graphql_endpoint, methods=["POST"]),  # adaptive-sdk's runtime GraphQL calls
            # the management API and the console it serves (docs/management-api.md, docs/console.md)
            *admin.mount(),
            Mount("/console", app=console_app(), name="console"),
            *aliases.mount(),  # /v1/chat/completions, /v1/embeddings, /v1/models[/…]: before the Dify face's /v1
            *dify.mount(),
        ],
        # errors of the routes outside a mount (the OpenAI aliases) leave in OpenAI's shape
        exception_handlers=aliases.handlers,
        lifespan=lifespan,
        tracer=tracer,
    )
    app.cors = Cors(app.dispatch, settings.cors_origins, _cors_refusal)
    return app
