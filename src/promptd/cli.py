"""The `promptd` command: serve | init | check | keys create|list|revoke | migrate.

The CLI is the only place that reads the environment and files; it builds Settings and a Catalog and passes
them down. Every command takes --config and --data-dir (or PROMPTD_CONFIG and PROMPTD_DATA_DIR).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shlex
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import click

from promptd.catalog.load import STARTER_PATH, load_catalog
from promptd.catalog.schema import Catalog
from promptd.domain.limits import Limits, parse_amount
from promptd.errors import CatalogError
from promptd.settings import Settings
from promptd.store.db import create_engine, migrate
from promptd.store.repository import ADMIN_PROJECT, KeyInfo, Repository

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


class DecimalParam(click.ParamType):  # type: ignore[type-arg]
    """A positive decimal amount, kept exact (no float)."""

    name = "decimal"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Decimal:
        try:
            return parse_amount(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DECIMAL = DecimalParam()


def limit_options(fn: F) -> F:
    """--rpm, --tpm, --cost-per-day, --cost-per-month: a key's own limits (none given: unlimited)."""
    fn = click.option("--cost-per-month", type=DECIMAL, default=None, help="Budget per UTC month.")(fn)
    fn = click.option(
        "--cost-per-day", type=DECIMAL, default=None, help="Budget per UTC day, in the models' currency."
    )(fn)
    fn = click.option(
        "--tpm", type=click.IntRange(min=1), default=None, help="Tokens (prompt + completion) per minute."
    )(fn)
    fn = click.option("--rpm", type=click.IntRange(min=1), default=None, help="Requests per minute.")(fn)
    return fn


def common(fn: F) -> F:
    fn = click.option(
        "--data-dir",
        envvar="PROMPTD_DATA_DIR",
        type=click.Path(path_type=Path),
        default=Path("promptd-data"),
        show_default=True,
        help="Where the SQLite database and uploaded files live [env PROMPTD_DATA_DIR].",
    )(fn)
    fn = click.option(
        "--config",
        "-c",
        envvar="PROMPTD_CONFIG",
        type=click.Path(path_type=Path),
        default=None,
        help="The catalog YAML file; default: the built-in demo catalog [env PROMPTD_CONFIG].",
    )(fn)
    return fn


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    env: dict[str, Any] = {"database_url": os.environ.get("PROMPTD_DATABASE_URL") or None}
    if os.environ.get("PROMPTD_REDIS_PREFIX"):
        env["redis_prefix"] = os.environ["PROMPTD_REDIS_PREFIX"]
    return Settings(data_dir=data_dir, **{**env, **overrides})


def read_catalog(config: Path | None) -> Catalog:
    try:
        return load_catalog(config, os.environ)
    except CatalogError as exc:
        click.echo(f"promptd: {exc.message}", err=True)
        sys.exit(2)


async def _with_repo(settings: Settings, action: Callable[[Repository], Any]) -> Any:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = create_engine(settings.db_url)
    try:
        await migrate(db)
        return await action(Repository(db))
    finally:
        await db.dispose()


def run_repo(settings: Settings, action: Callable[[Repository], Any]) -> Any:
    return asyncio.run(_with_repo(settings, action))


@click.group()
@click.version_option(package_name="promptd")
def main() -> None:
    """promptd: a self-hosted LLM application server (Dify and Adaptive-compatible APIs)."""


@main.command()
@common
@click.option("--host", envvar="PROMPTD_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="PROMPTD_PORT", default=8080, show_default=True, type=int)
@click.option(
    "--workers",
    envvar="PROMPTD_WORKERS",
    default=1,
    show_default=True,
    type=click.IntRange(min=1, max=64),
    help="Worker processes on this port [env PROMPTD_WORKERS].",
)
@click.option(
    "--redis-url",
    envvar="PROMPTD_REDIS_URL",
    default=None,
    help="Redis for limits, budgets and stop signals shared by workers and replicas [env PROMPTD_REDIS_URL].",
)
@click.option(
    "--retention-days",
    envvar="PROMPTD_RETENTION_DAYS",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Delete request records older than this; daily usage rollups stay [env PROMPTD_RETENTION_DAYS].",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve(
    config: Path | None,
    data_dir: Path,
    host: str,
    port: int,
    workers: int,
    redis_url: str | None,
    retention_days: float | None,
    log_level: str,
) -> None:
    """Run the server. On first start (no keys yet) it creates a key for the demo project and prints it."""
    import uvicorn

    catalog = read_catalog(config)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "workers": workers,
        "redis_url": redis_url or None,
        "retention_days": retention_days,
    }
    settings = make_settings(data_dir, **options)

    async def first_keys(repo: Repository) -> tuple[str, str] | None:
        if await repo.count_keys() or not catalog.projects:
            return None
        project = "demo" if "demo" in catalog.projects else next(iter(catalog.projects))
        key, _ = await repo.create_key(project, name="first start")
        admin, _ = await repo.create_key(ADMIN_PROJECT, name="first start", role="admin")
        return key, admin

    keys = run_repo(settings, first_keys)  # also brings the schema up to date, once, before any worker starts
    if keys is not None:
        app_key, admin_key = keys
        _print_welcome(app_key, admin_key, catalog, host, port)
    if workers > 1 and not settings.redis_url:
        click.echo(
            f"promptd: {workers} workers without Redis: rate limits, budgets and stop requests are per worker "
            "(each worker counts alone). Set --redis-url / PROMPTD_REDIS_URL to share them.",
            err=True,
        )
    server_options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "timeout_graceful_shutdown": 30,
        "proxy_headers": True,
        "server_header": False,
        "http": "promptd.serving:CoalescingProtocol",  # a response's head and body in one write
    }
    if workers == 1:
        from promptd.app import create_app, freeze_heap

        app = create_app(settings, catalog)
        freeze_heap()
        uvicorn.run(app, **server_options)
        return
    # several processes share the socket; each builds its app from the same arguments (worker_app below)
    os.environ[WORKER_ARGS] = json.dumps(
        {"config": str(config) if config else None, "data_dir": str(data_dir), **options}
    )
    uvicorn.run("promptd.cli:worker_app", factory=True, workers=workers, **server_options)


WORKER_ARGS = "PROMPTD_WORKER_ARGS"


def worker_app() -> Any:
    """The app of one `serve --workers N` process, from the arguments the parent process parsed."""
    from promptd.app import create_app, freeze_heap

    args = json.loads(os.environ[WORKER_ARGS])
    config, data_dir = args.pop("config"), Path(args.pop("data_dir"))
    app = create_app(make_settings(data_dir, **args), read_catalog(Path(config) if config else None))
    freeze_heap()
    return app


def _print_welcome(key: str, admin_key: str, catalog: Catalog, host: str, port: int) -> None:
    project_name = "demo" if "demo" in catalog.projects else next(iter(catalog.projects))
    project = catalog.projects[project_name]
    variable = next((f.variable for f in project.inputs if f.required), "query")
    shown = "127.0.0.1" if host in ("0.0.0.0", "127.0.0.1", "::") else host  # not localhost: it may be ::1
    base = f"http://{shown}:{port}/v1"
    body = f'{{"inputs": {{"{variable}": "What is the capital of France?"}}, "user": "me"}}'
    stream_body = body[:-1] + ', "response_mode": "streaming"}'
    click.echo(f"""
promptd: first start. An API key for project {project_name!r} (shown once, stored hashed):

    {key}

Try it (blocking, then streaming):

    curl -s {base}/completion-messages -H 'Authorization: Bearer {key}' \\
      -H 'Content-Type: application/json' -d {shlex.quote(body)}

    curl -sN {base}/completion-messages -H 'Authorization: Bearer {key}' \\
      -H 'Content-Type: application/json' -d {shlex.quote(stream_body)}

An admin key, for the console (http://{shown}:{port}/console) and the management API (shown once):

    {admin_key}
""")


@main.command()
@click.argument("path", type=click.Path(path_type=Path), default=Path("promptd.yaml"))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: Path, force: bool) -> None:
    """Write a commented starter catalog to PATH (default promptd.yaml)."""
    if path.exists() and not force:
        click.echo(f"promptd: {path} exists (use --force to overwrite)", err=True)
        sys.exit(1)
    path.write_text(STARTER_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    click.echo(f"wrote {path}; check it with: promptd check --config {path}")


@main.command()
@common
def check(config: Path | None, data_dir: Path) -> None:
    """Validate the catalog and report every problem with its key path."""
    catalog = read_catalog(config)
    click.echo(
        f"{config or '<built-in catalog>'}: OK ({len(catalog.providers)} providers, "
        f"{len(catalog.models)} models, {len(catalog.projects)} projects)"
    )


@main.command(name="migrate")
@common
def migrate_cmd(config: Path | None, data_dir: Path) -> None:
    """Bring the database schema up to date (serve does this too)."""
    settings = make_settings(data_dir)

    async def nothing(repo: Repository) -> None:
        return None

    run_repo(settings, nothing)
    click.echo("database is up to date")


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


def _when(ts: float | None) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@keys.command("create")
@common
@click.option("--project", default=None, help="The project the key is scoped to (not with --admin).")
@click.option("--admin", is_flag=True, help="An admin key: the management API and the console, every project.")
@click.option("--dataset", is_flag=True, help="A dataset key (`dataset-…`): the Knowledge API, every knowledge base.")
@click.option("--name", default="", help="A label for the key.")
@click.option("--expires-in-days", type=click.FloatRange(min=0, min_open=True), default=None)
@limit_options
def keys_create(
    config: Path | None,
    data_dir: Path,
    project: str | None,
    admin: bool,
    dataset: bool,
    name: str,
    expires_in_days: float | None,
    rpm: int | None,
    tpm: int | None,
    cost_per_day: Decimal | None,
    cost_per_month: Decimal | None,
) -> None:
    """Create a key and print it (alone, on stdout). It is stored hashed: copy it now."""
    limits = Limits(rpm=rpm, tpm=tpm, cost_per_day=cost_per_day, cost_per_month=cost_per_month)
    if admin or dataset:
        if project is not None or not limits.empty or (admin and dataset):
            click.echo(
                "promptd: an admin or dataset key has no project and no limits (and is one or the other)", err=True
            )
            sys.exit(2)
    else:
        catalog = read_catalog(config)
        if project is None or project not in catalog.projects:
            known = ", ".join(sorted(catalog.projects)) or "none"
            what = "--project is required" if project is None else f"no project named {project!r} in the catalog"
            click.echo(f"promptd: {what} (known: {known})", err=True)
            sys.exit(2)
    import time

    expires = time.time() + expires_in_days * 86400 if expires_in_days else None

    async def create(repo: Repository) -> str:
        key, _ = await repo.create_key(
            project or ADMIN_PROJECT,
            name=name,
            expires_at=expires,
            role="admin" if admin else "dataset" if dataset else "app",
            limits=limits,
        )
        return key

    click.echo(run_repo(make_settings(data_dir), create))


@keys.command("list")
@common
@click.option("--project", default=None)
def keys_list(config: Path | None, data_dir: Path, project: str | None) -> None:
    """List keys (id, project, shown prefix, state)."""

    async def listing(repo: Repository) -> list[KeyInfo]:
        return await repo.list_keys(project)

    import time

    now = time.time()
    click.echo(
        f"{'ID':36}  {'PROJECT':16}  {'KEY':15}  {'ROLE':5}  {'STATE':8}  {'CREATED':20}  {'EXPIRES':20}  "
        f"{'LIMITS':24}  NAME"
    )
    for k in run_repo(make_settings(data_dir), listing):
        click.echo(
            f"{k.id:36}  {k.project:16}  {k.prefix + '...':15}  {k.role:5}  {k.state(now):8}  "
            f"{_when(k.created_at):20}  {_when(k.expires_at):20}  {k.limits.describe():24}  {k.name}"
        )


@keys.command("revoke")
@common
@click.argument("key_id")
def keys_revoke(config: Path | None, data_dir: Path, key_id: str) -> None:
    """Revoke the key with KEY_ID (an id from `keys list`, or the key itself)."""

    async def revoke(repo: Repository) -> KeyInfo | None:
        return await repo.revoke_key(key_id)

    info = run_repo(make_settings(data_dir), revoke)
    if info is None:
        click.echo(f"promptd: no single key matches {key_id!r}", err=True)
        sys.exit(1)
    click.echo(f"revoked {info.id} ({info.prefix}..., project {info.project})")


@keys.command("limit")
@common
@click.argument("key_id")
@limit_options
def keys_limit(
    config: Path | None,
    data_dir: Path,
    key_id: str,
    rpm: int | None,
    tpm: int | None,
    cost_per_day: Decimal | None,
    cost_per_month: Decimal | None,
) -> None:
    """Set the limits of the key KEY_ID (an id from `keys list`, or the key); the limits not given are removed.
    Takes effect within the key cache's 5 s."""
    limits = Limits(rpm=rpm, tpm=tpm, cost_per_day=cost_per_day, cost_per_month=cost_per_month)

    async def apply(repo: Repository) -> KeyInfo | None:
        return await repo.set_key_limits(key_id, limits)

    info = run_repo(make_settings(data_dir), apply)
    if info is None:
        click.echo(f"promptd: no app key has the id {key_id!r} (admin keys have no limits)", err=True)
        sys.exit(1)
    click.echo(f"limits of {info.id} ({info.prefix}..., project {info.project}): {limits.describe()}")
