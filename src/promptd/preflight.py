"""Start-up checks: each mistake an operator can make before the server serves becomes one line that says what
is wrong and what to do (the CLI prints it and exits with code 2), never a traceback.

- `database_url`: `postgres://` and `postgresql://` mean PostgreSQL through asyncpg (settings.normalise_database_url);
  a server that does not answer, a database that does not exist, a refused login: one line each (`database_problem`).
- `redis_url`: a URL without a scheme, or a Redis that does not answer (`check_redis`).
- `data_dir`: a directory that cannot be created (`check_data_dir`).
- `host` / `port`: an address in use, or one this machine does not have (`check_address`).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

__all__ = [
    "StartupError",
    "check_address",
    "check_data_dir",
    "check_redis",
    "check_redis_url",
    "database_problem",
    "shown_url",
]

REDIS_SCHEMES = ("redis", "rediss", "unix")


class StartupError(Exception):
    """A start-up mistake, as the one line to show the operator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def shown_url(url: str) -> str:
    """A URL fit for a message: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1] if "@" in url else url


def check_data_dir(path: Path) -> bool:
    """Create the data dir if needed; True when it existed. Raises StartupError when it cannot be created."""
    existed = path.is_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(
            f"cannot create the data dir {path}: {exc.strerror or exc}; choose another with --data-dir / "
            "PROMPTD_DATA_DIR, or create it with the right owner"
        ) from None
    return existed


def check_address(host: str, port: int) -> None:
    """Bind (and let go of) host:port as the server will, before anything starts: an address in use or unknown
    is one line, not uvicorn's error after the application started and shut down again."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc}; choose another address with --host") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            sock.bind(address)
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; another server may use this port: stop it, "
                "or choose another with --port / PROMPTD_PORT"
            ) from None


def check_redis_url(url: str) -> None:
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in REDIS_SCHEMES:
        raise StartupError(
            f"the Redis URL {url!r} has no redis:// scheme; write it as redis://HOST:6379/0 "
            "(or rediss:// for TLS, unix:///path/to/socket) in --redis-url / PROMPTD_REDIS_URL"
        )


async def _ping(url: str, wait: float) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, socket_connect_timeout=wait, socket_timeout=wait)
    try:
        await client.ping()
    finally:
        await client.aclose()


def check_redis(url: str, *, timeout: float = 5.0) -> None:
    """The URL is well formed and Redis answers a PING, or StartupError."""
    check_redis_url(url)
    try:
        asyncio.run(_ping(url, timeout))
    except Exception as exc:
        raise StartupError(
            f"Redis at {shown_url(url)} does not answer ({_reason(exc)}); start it, or fix --redis-url / "
            "PROMPTD_REDIS_URL (or leave it unset to keep limits in this process)"
        ) from None


def _innermost(exc: BaseException) -> BaseException:
    """The driver's own exception under SQLAlchemy's wrappers."""
    while True:
        inner = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc.__cause__
        if inner is None:
            return exc
        exc = inner


def _reason(exc: BaseException) -> str:
    """The innermost cause of a connection failure, in one line."""
    exc = _innermost(exc)
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def database_problem(exc: BaseException, url: str) -> StartupError | None:
    """The start-up mistake behind a failure to open or migrate the database, or None for anything else."""
    shown = shown_url(url)
    if isinstance(exc, ArgumentError | NoSuchModuleError | ModuleNotFoundError):
        return StartupError(
            f"PROMPTD_DATABASE_URL {shown!r} is not a database URL promptd can use ({_reason(exc)}); use "
            "postgresql://USER:PASSWORD@HOST:5432/DB, or leave it unset for SQLite in the data dir"
        )
    inner = _innermost(exc)
    kind = type(inner).__name__
    if kind == "InvalidCatalogNameError" or ("does not exist" in str(inner) and "database" in str(inner)):
        database = make_url(url).database
        return StartupError(
            f"the database {database!r} does not exist on {shown}; create it (createdb {database}) or fix "
            "PROMPTD_DATABASE_URL"
        )
    if kind in ("InvalidPasswordError", "InvalidAuthorizationSpecificationError"):
        return StartupError(f"the database at {shown} refused the login ({_reason(inner)}); fix PROMPTD_DATABASE_URL")
    if isinstance(inner, OSError | TimeoutError | ConnectionError) or kind in ("CannotConnectNowError",):
        if url.startswith("sqlite"):
            return StartupError(f"cannot open the SQLite database {shown} ({_reason(inner)}); check the data dir")
        return StartupError(
            f"the database at {shown} does not answer ({_reason(inner)}); start PostgreSQL, or fix PROMPTD_DATABASE_URL"
        )
    if isinstance(exc, DBAPIError) and url.startswith("sqlite"):
        return StartupError(f"cannot open the SQLite database {shown} ({_reason(exc)}); check the data dir")
    if isinstance(exc, DBAPIError):
        return StartupError(f"the database at {shown} refused ({_reason(exc)}); fix PROMPTD_DATABASE_URL")
    return None
