"""Start-up mistakes: each one is a single line on stderr that says what is wrong and what to do, and exit code
2, never a traceback. Every case runs the real `promptd` command as a subprocess; PostgreSQL and Redis are the
machine's own (the unreachable ones are a port nothing listens on)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _fresh_pg_database
from tests.serving import free_port


def promptd(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTD_")}
    return subprocess.run(
        [sys.executable, "-m", "promptd", *args],
        env={**clean, "PROMPTD_DATA_DIR": str(tmp_path / "data"), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_failure(result: subprocess.CompletedProcess[str], *words: str) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("promptd: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def plain_pg(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture
def fresh_pg(pg_server_url: str | None) -> Iterator[str]:
    if pg_server_url is None:
        pytest.skip("PostgreSQL not configured (set PROMPTD_TEST_POSTGRES_URL; CI does)")
    url, drop = _fresh_pg_database(pg_server_url)
    try:
        yield url
    finally:
        drop()


def test_postgres_urls_without_the_async_driver_simply_work(tmp_path: Path, fresh_pg: str) -> None:
    for scheme in ("postgresql://", "postgres://"):
        url = scheme + plain_pg(fresh_pg).removeprefix("postgresql://")
        result = promptd(tmp_path, "migrate", PROMPTD_DATABASE_URL=url)
        assert result.returncode == 0, result.stderr
        assert "database is up to date" in result.stdout
        assert "Traceback" not in result.stderr


def test_an_unreachable_postgresql_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    one_line_failure(promptd(tmp_path, "migrate", PROMPTD_DATABASE_URL=url), "does not answer", "PROMPTD_DATABASE_URL")


def test_a_missing_database_is_one_line(tmp_path: Path, pg_server_url: str | None) -> None:
    if pg_server_url is None:
        pytest.skip("PostgreSQL not configured (set PROMPTD_TEST_POSTGRES_URL; CI does)")
    url = plain_pg(pg_server_url).rsplit("/", 1)[0] + "/promptd_no_such_db"
    line = one_line_failure(promptd(tmp_path, "keys", "list", PROMPTD_DATABASE_URL=url), "does not exist")
    assert "createdb promptd_no_such_db" in line


def test_a_database_url_of_another_kind_is_one_line(tmp_path: Path) -> None:
    one_line_failure(promptd(tmp_path, "migrate", PROMPTD_DATABASE_URL="mysql://u@h/db"), "not a database URL")


def test_a_redis_url_without_a_scheme_is_one_line(tmp_path: Path) -> None:
    result = promptd(tmp_path, "serve", "--port", str(free_port()), PROMPTD_REDIS_URL="127.0.0.1:6379")
    one_line_failure(result, "no redis:// scheme", "redis://HOST:6379/0")


def test_an_unreachable_redis_is_one_line(tmp_path: Path) -> None:
    result = promptd(tmp_path, "serve", "--port", str(free_port()), "--redis-url", f"redis://127.0.0.1:{free_port()}/0")
    one_line_failure(result, "Redis at", "does not answer")


def test_a_data_dir_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    for args in (["keys", "list"], ["serve", "--port", str(free_port())]):
        result = promptd(tmp_path, *args, PROMPTD_DATA_DIR=str(tmp_path / "a-file" / "data"))
        one_line_failure(result, "cannot create the data dir", "--data-dir")
        assert result.stdout == ""


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = promptd(tmp_path, "serve", "--port", str(port))
    one_line_failure(result, f"cannot listen on 127.0.0.1:{port}", "--port")


def test_commands_say_which_data_dir_and_catalog_they_use(tmp_path: Path) -> None:
    created = promptd(tmp_path, "keys", "create", "--project", "demo")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("app-") and len(created.stdout.splitlines()) == 1  # the key alone on stdout
    note = created.stderr.strip()
    assert f"data dir {(tmp_path / 'data').resolve()} (new: it did not exist)" in note
    assert "database SQLite in the data dir" in note and "catalog <built-in catalog>" in note
    listed = promptd(tmp_path, "keys", "list")
    assert f"data dir {(tmp_path / 'data').resolve()}," in listed.stderr and "(new" not in listed.stderr


def test_a_cors_origin_with_a_path_is_one_line(tmp_path: Path) -> None:
    result = promptd(
        tmp_path, "serve", "--port", str(free_port()), PROMPTD_CORS_ORIGINS="https://ok.example,https://x/y"
    )
    one_line_failure(result, "CORS origins", "https://x/y")
