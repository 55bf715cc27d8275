"""Database engines and migrations. SQLite (WAL) by default, PostgreSQL by URL; Alembic owns the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from promptd.errors import InputError, StoreUnavailable

__all__ = ["alembic_config", "create_engine", "migrate", "store_error", "unreachable"]

MIGRATIONS = Path(__file__).with_name("migrations")
_encode = msgspec.json.Encoder().encode


def _json(value: Any) -> str:
    """JSON columns (every record has several) through msgspec: the stdlib's encoder cost 3 % of a request."""
    return _encode(value).decode()


_JSON = {"json_serializer": _json, "json_deserializer": msgspec.json.decode}


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **_JSON)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # a connection attempt gives up after CONNECT_TIMEOUT s (asyncpg's default is 60): an unreachable database
    # is reported while the client still waits, not a minute later
    return create_async_engine(
        url, pool_size=10, max_overflow=20, pool_pre_ping=True, connect_args={"timeout": CONNECT_TIMEOUT}, **_JSON
    )


CONNECT_TIMEOUT = 5.0


def unreachable(exc: BaseException) -> bool:
    """Whether a database call failed because the database cannot be reached (down, restarting, the network),
    rather than because of the call itself."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or isinstance(exc, InterfaceError | OperationalError)
    )


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


def _refused_value(exc: Exception) -> bool:
    """A DataError, or PostgreSQL's SQLSTATE class 22 (data exception: 22021 is a NUL byte in text) that the
    asyncpg adapter reports as a plain DBAPIError."""
    if isinstance(exc, DataError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return isinstance(state, str) and state.startswith("22")


def store_error(exc: Exception) -> Exception:
    """A database error met while serving a request, as the promptd error every face answers it with: an
    outage is a 503 (no traceback per request: the recorder and the key cache log one line per outage); a
    value of the request the database cannot store or compare (a NUL character on PostgreSQL, a number out of
    range) is the client's 400. Any other exception as it is."""
    if _refused_value(exc):
        return InputError(
            "a value of the request cannot be stored or searched (NUL characters, for one, are not allowed)"
        )
    if unreachable(exc) and not isinstance(exc, StoreUnavailable):
        return StoreUnavailable("The database is unreachable; try again shortly.")
    return exc
