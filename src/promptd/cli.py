"""The `promptd` command: serve | init | check | keys create|list|revoke|limit | migrate | replay | reload.

The CLI is the only place that reads the environment and files; it builds Settings and a Catalog and passes
them down. Every command takes --config and --data-dir (or PROMPTD_CONFIG and PROMPTD_DATA_DIR), and says on
stderr which data dir (database) and catalog it uses. A start-up mistake (promptd/preflight.py) is one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from promptd.catalog.load import STARTER_PATH, load_catalog
from promptd.catalog.schema import Catalog
from promptd.domain.forms import FILE_FIELDS
from promptd.domain.limits import Limits, parse_amount
from promptd.errors import CatalogError
from promptd.logs import FORMATS, logging_config
from promptd.metrics import start_directory
from promptd.preflight import StartupError, check_address, check_data_dir, check_redis, database_problem, shown_url
from promptd.settings import Settings
from promptd.store.db import create_engine, migrate
from promptd.store.recorder import replay_dead_letters
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


#: settings read from PROMPTD_<NAME> environment variables, with their types (docs/configuration.md)
ENV_SETTINGS: dict[str, Callable[[str], Any]] = {
    "header_timeout": float,
    "body_timeout": float,
    "keepalive_timeout": float,
    "max_connections": int,
    "max_header_kb": float,
    "max_body_mb": float,
    "max_upload_mb": float,
    "fetch_allow_networks": lambda v: tuple(n.strip() for n in v.split(",") if n.strip()),
    "inline_remote_images": lambda v: v.strip().lower() in ("1", "true", "yes", "on"),
}


def fail(message: str) -> NoReturn:
    """A mistake the operator can fix: one line on stderr, exit code 2."""
    click.echo(f"promptd: {message}", err=True)
    sys.exit(2)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    env: dict[str, Any] = {"database_url": os.environ.get("PROMPTD_DATABASE_URL") or None}
    otlp = os.environ.get("PROMPTD_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if otlp:
        env["otlp_endpoint"] = otlp
    if os.environ.get("PROMPTD_METRICS_TOKEN"):
        env["metrics_token"] = os.environ["PROMPTD_METRICS_TOKEN"]
    if os.environ.get("PROMPTD_REDIS_PREFIX"):
        env["redis_prefix"] = os.environ["PROMPTD_REDIS_PREFIX"]
    for name, kind in ENV_SETTINGS.items():
        value = os.environ.get(f"PROMPTD_{name.upper()}")
        if value:
            try:
                env[name] = kind(value)
            except ValueError:
                raise click.BadParameter(f"PROMPTD_{name.upper()}={value!r} is not a number") from None
    return Settings(data_dir=data_dir, **{**env, **overrides})


def read_catalog(config: Path | None) -> Catalog:
    try:
        return load_catalog(config, os.environ)
    except CatalogError as exc:
        fail(exc.message)


def usage_note(settings: Settings, config: Path | None, *, catalog: bool = True) -> str:
    """Which data dir, database and catalog (unless `catalog` is False: none used) a command uses, said on stderr
    once they are open: a command run from another directory would otherwise quietly use, or create, another
    database."""
    where = settings.data_dir.resolve()
    state = "" if settings.data_dir.is_dir() else " (new: it did not exist)"
    database = shown_url(settings.database_url) if settings.database_url else "SQLite in the data dir"
    used = f", catalog {config.resolve() if config else '<built-in catalog>'}" if catalog else ""
    return f"promptd: data dir {where}{state}, database {database}{used}"


async def _with_repo(settings: Settings, action: Callable[[Repository], Any], note: str) -> Any:
    check_data_dir(settings.data_dir)
    db = create_engine(settings.db_url)
    try:
        await migrate(db)
        click.echo(note, err=True)
        return await action(Repository(db))
    finally:
        await db.dispose()


def run_repo(
    settings: Settings, action: Callable[[Repository], Any], config: Path | None = None, *, catalog: bool = False
) -> Any:
    """Run `action` on the data dir's database (brought up to date first), saying on stderr which one it is; a
    database that cannot be reached or used ends the command with one line (promptd/preflight.py)."""
    note = usage_note(settings, config, catalog=catalog)
    try:
        return asyncio.run(_with_repo(settings, action, note))
    except StartupError as exc:
        fail(exc.message)
    except Exception as exc:
        problem = database_problem(exc, settings.db_url)
        if problem is None:
            raise
        fail(problem.message)


def cors_origins(given: tuple[str, ...]) -> tuple[str, ...]:
    """--cors-origin (repeatable), else PROMPTD_CORS_ORIGINS (comma-separated); each checked."""
    from promptd.domain.origins import valid_origin

    origins = given or tuple(o.strip() for o in os.environ.get("PROMPTD_CORS_ORIGINS", "").split(",") if o.strip())
    bad = [o for o in origins if not valid_origin(o)]
    if bad:
        fail(f"CORS origins are * or http(s)://host[:port] with no path, not {', '.join(bad)} (--cors-origin)")
    return origins


def log_to_stderr(level: str) -> None:
    """promptd's own log lines (model loads, reloads, retention, warnings) on stderr, as uvicorn's are."""
    logger = logging.getLogger("promptd")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(level.upper())


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
    "--cors-origin",
    "cors_origin",
    multiple=True,
    help="A browser origin allowed to call every API (repeatable; * for any) [env PROMPTD_CORS_ORIGINS, "
    "comma-separated].",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="The lowest level logged [env PROMPTD_LOG_LEVEL].",
    envvar="PROMPTD_LOG_LEVEL",
)
@click.option(
    "--log-format",
    envvar="PROMPTD_LOG_FORMAT",
    default="plain",
    show_default=True,
    type=click.Choice(FORMATS),
    help="Log lines as plain text or one JSON object per line [env PROMPTD_LOG_FORMAT].",
)
def serve(
    config: Path | None,
    data_dir: Path,
    host: str,
    port: int,
    workers: int,
    redis_url: str | None,
    retention_days: float | None,
    cors_origin: tuple[str, ...],
    log_level: str,
    log_format: str,
) -> None:
    """Run the server. On first start (no keys yet) it creates a key for the demo project and prints it.
    SIGHUP (or `promptd reload`) reloads the catalog."""
    from promptd.reload import ForwardingSupervisor, written_pid
    from promptd.serving import run, serving_limits

    catalog = read_catalog(config)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "workers": workers,
        "redis_url": redis_url or None,
        "retention_days": retention_days,
        "cors_origins": cors_origins(cors_origin),
    }
    settings = make_settings(data_dir, catalog_path=config, **options)
    try:
        check_address(host, port)
        if settings.redis_url:
            check_redis(settings.redis_url)
    except StartupError as exc:
        fail(exc.message)

    async def first_keys(repo: Repository) -> tuple[str, str] | None:
        if await repo.count_keys() or not catalog.projects:
            return None
        project = "demo" if "demo" in catalog.projects else next(iter(catalog.projects))
        key, _ = await repo.create_key(project, name="first start")
        admin, _ = await repo.create_key(ADMIN_PROJECT, name="first start", role="admin")
        return key, admin

    # also brings the schema up to date, once, before any worker starts
    keys = run_repo(settings, first_keys, config, catalog=True)  # a data dir it cannot make: one line, exit 2
    metrics_dir = start_directory(settings.data_dir)  # the workers' shared metrics, new at each start
    settings = dataclasses.replace(settings, metrics_dir=metrics_dir)
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
        "log_config": logging_config(log_level, log_format),  # applied in every worker (promptd/logs.py)
        "access_log": False,  # promptd writes its own access line, with what it knows about the request
        "timeout_graceful_shutdown": 30,
        "proxy_headers": True,
        "server_header": False,
        "http": "promptd.serving:CoalescingProtocol",  # a response's head and body in one write
        "timeout_keep_alive": settings.keepalive_timeout,
    }
    limits = serving_limits(settings)
    log_to_stderr(log_level)
    with written_pid(settings.data_dir):
        if workers == 1:
            from promptd.app import create_app, freeze_heap

            app = create_app(settings, catalog)
            freeze_heap()
            run(app, limits=limits, **server_options)
            return
        # several processes share the socket; each builds its app from the same arguments (worker_app below);
        # the supervisor passes SIGHUP on to every worker (a reload) instead of restarting them
        os.environ[WORKER_ARGS] = json.dumps(
            {
                "config": str(config) if config else None,
                "data_dir": str(data_dir),
                "log_level": log_level,
                "metrics_dir": str(metrics_dir),
                **options,
            }
        )
        run(
            "promptd.cli:worker_app",
            limits=limits,
            factory=True,
            workers=workers,
            supervisor=ForwardingSupervisor,
            **server_options,
        )


WORKER_ARGS = "PROMPTD_WORKER_ARGS"


def worker_app() -> Any:
    """The app of one `serve --workers N` process, from the arguments the parent process parsed."""
    from promptd.app import create_app, freeze_heap

    args = json.loads(os.environ[WORKER_ARGS])
    config, data_dir = args.pop("config"), Path(args.pop("data_dir"))
    log_to_stderr(args.pop("log_level"))
    path = Path(config) if config else None
    args["cors_origins"] = tuple(args["cors_origins"])
    args["metrics_dir"] = Path(args["metrics_dir"])
    app = create_app(make_settings(data_dir, catalog_path=path, **args), read_catalog(path))
    freeze_heap()
    return app


def _print_welcome(key: str, admin_key: str, catalog: Catalog, host: str, port: int) -> None:
    project_name = "demo" if "demo" in catalog.projects else next(iter(catalog.projects))
    project = catalog.projects[project_name]
    # the first required field a string fills (a file field takes an upload: the example leaves it out)
    variable = next((f.variable for f in project.inputs if f.required and f.type not in FILE_FIELDS), "query")
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
    sizes = ((len(catalog.providers), "provider"), (len(catalog.models), "model"), (len(catalog.projects), "project"))
    counts = ", ".join(counted(n, word) for n, word in sizes)
    click.echo(f"{config or '<built-in catalog>'}: OK ({counts})")


def counted(n: int, word: str) -> str:
    """`1 provider`, `2 providers`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@main.command(name="migrate")
@common
def migrate_cmd(config: Path | None, data_dir: Path) -> None:
    """Bring the database schema up to date (serve does this too)."""
    settings = make_settings(data_dir)

    async def nothing(repo: Repository) -> None:
        return None

    run_repo(settings, nothing, config, catalog=True)
    click.echo("database is up to date")


@main.command(name="replay")
@common
def replay_cmd(config: Path | None, data_dir: Path) -> None:
    """Write the records of the dead-letter file that the database takes now (serve does this at start)."""
    settings = make_settings(data_dir)
    dead_letter = settings.data_dir / "dead-letter.jsonl"

    async def replay(repo: Repository) -> tuple[int, int]:
        return await replay_dead_letters(repo.engine, dead_letter)

    written, kept = run_repo(settings, replay)
    click.echo(f"{written} row(s) written, {kept} kept in {dead_letter}")
    if kept:
        sys.exit(1)


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

    click.echo(run_repo(make_settings(data_dir), create, config, catalog=not admin))


@keys.command("list")
@common
@click.option("--project", default=None)
def keys_list(config: Path | None, data_dir: Path, project: str | None) -> None:
    """List keys (id, project, shown prefix, state)."""

    async def listing(repo: Repository) -> list[KeyInfo]:
        return await repo.list_keys(project)

    import time

    now = time.time()
    rows = run_repo(make_settings(data_dir), listing)
    click.echo(
        f"{'ID':36}  {'PROJECT':16}  {'KEY':15}  {'ROLE':5}  {'STATE':8}  {'CREATED':20}  {'EXPIRES':20}  "
        f"{'LIMITS':24}  NAME"
    )
    for k in rows:
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


@main.command(name="reload")
@common
@click.option("--url", default=None, help="Ask this server (http://host:port) instead of signalling a local one.")
@click.option("--admin-key", envvar="PROMPTD_ADMIN_KEY", default=None, help="With --url [env PROMPTD_ADMIN_KEY].")
def reload_cmd(config: Path | None, data_dir: Path, url: str | None, admin_key: str | None) -> None:
    """Make the running server read its catalog again. Locally: the catalog is checked here first, then the
    server using --data-dir (its pid is in promptd.pid) gets SIGHUP. With --url: POST /admin/v1/reload, which
    answers with the new version or the checker's messages."""
    if url is not None:
        _reload_remote(url, admin_key)
        return
    import signal

    from promptd.reload import pid_file, read_pid

    settings = make_settings(data_dir)
    catalog = read_catalog(config)  # refused here, with the checker's messages, before the server is bothered
    pid = read_pid(settings.data_dir)
    if pid is None:
        fail(
            f"no running promptd uses the data dir {settings.data_dir.resolve()} (no live pid in "
            f"{pid_file(settings.data_dir)}); pass the server's --data-dir, or --url and --admin-key"
        )
    os.kill(pid, signal.SIGHUP)
    click.echo(
        f"asked promptd (pid {pid}) to reload its catalog ({len(catalog.projects)} projects here); "
        "its log says which version it serves (or why it refused)"
    )


def _reload_remote(url: str, admin_key: str | None) -> None:
    import httpx

    if not admin_key:
        fail("--url needs an admin key: --admin-key or PROMPTD_ADMIN_KEY")
    try:
        reply = httpx.post(
            url.rstrip("/") + "/admin/v1/reload", headers={"Authorization": f"Bearer {admin_key}"}, timeout=60
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url} ({exc}); is the server running there?")
    body = reply.json() if reply.headers.get("content-type", "").startswith("application/json") else {}
    if reply.status_code != 200:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        fail(f"reload refused ({reply.status_code}): {error.get('message', reply.text)}")
    change = f"was {body['previous']}" if body["changed"] else "unchanged"
    click.echo(f"catalog version {body['version']} ({change}), reloaded in {body['reloaded']}")
