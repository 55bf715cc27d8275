"""Catalog reload: read the catalog again, validate it, and swap it in without dropping a request.

A reload is asked for by SIGHUP (to `promptd serve`; with `--workers N` the parent forwards it to every worker,
see `ForwardingSupervisor`), by `POST /admin/v1/reload`, or by `promptd reload` (which signals the server whose
pid is in the data dir's `promptd.pid`). The new catalog is checked as `promptd check` checks it; a catalog with
problems is refused with the checker's messages and the old one keeps serving.

Swapping is one synchronous step (`Services.swap_catalog`), so no request sees half of each catalog: requests in
flight finish on what they started with, the next ones use the new catalog. Providers whose configuration did
not change are kept (their connections and the loaded embedded model with them); new or changed ones are built,
and the ones they replace are closed at shutdown (a stream in flight may still be using one).

Every catalog has a version: the first 12 hex digits of the SHA-256 of the catalog as validated (after
`${VAR}` substitution), shown by `GET /admin/v1/catalog` and stored with each record (`catalog_version`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from uvicorn.supervisors import Multiprocess

from promptd.catalog.load import load_catalog
from promptd.catalog.schema import Catalog
from promptd.errors import CatalogError, ConflictError
from promptd.providers.base import Provider, load_provider_class

if TYPE_CHECKING:
    from promptd.services import Services

__all__ = [
    "PID_FILE",
    "ForwardingSupervisor",
    "Reloaded",
    "catalog_version",
    "install_sighup",
    "pid_file",
    "read_pid",
    "reload_catalog",
    "swap_providers",
]

log = logging.getLogger("promptd.reload")

PID_FILE = "promptd.pid"


def catalog_version(catalog: Catalog) -> str:
    """A short, stable fingerprint of the catalog's content."""
    return hashlib.sha256(catalog.model_dump_json().encode()).hexdigest()[:12]


def swap_providers(
    old_catalog: Catalog, new_catalog: Catalog, current: Mapping[str, Provider]
) -> tuple[dict[str, Provider], dict[str, Provider], list[Provider]]:
    """(providers for the new catalog, the ones newly built, the ones no longer used). A provider whose catalog
    entry is unchanged is kept as it is."""
    kept: dict[str, Provider] = {}
    built: dict[str, Provider] = {}
    for name, cfg in new_catalog.providers.items():
        old = old_catalog.providers.get(name)
        if old == cfg and name in current:
            kept[name] = current[name]
        else:
            kept[name] = built[name] = load_provider_class(cfg.kind)(name, cfg)
    unused = [p for name, p in current.items() if kept.get(name) is not p]
    return kept, built, unused


@dataclass(frozen=True, slots=True)
class Reloaded:
    """The outcome of a reload: the catalog's version before and after (equal: nothing changed)."""

    previous: str
    version: str
    projects: int

    @property
    def changed(self) -> bool:
        return self.previous != self.version


async def reload_catalog(svc: Services, environ: Mapping[str, str] | None = None) -> Reloaded:
    """Read and validate the catalog the server was started with, and serve it from now on. Raises CatalogError
    (with every problem) when it is not valid, ConflictError when the server has no catalog file; the current
    catalog then stays."""
    path = svc.settings.catalog_path
    if path is None:
        raise ConflictError(
            "this server was started without --config (the built-in catalog, or a catalog given in code): "
            "there is no file to read again; start it with --config FILE to reload",
            code="nothing_to_reload",
        )
    new = await asyncio.to_thread(load_catalog, path, os.environ if environ is None else environ)
    previous = svc.catalog_version
    version = catalog_version(new)
    if version != previous:
        providers, built, unused = swap_providers(svc.catalog, new, svc.providers)
        svc.swap_catalog(new, providers, version)
        svc.retired.extend(unused)
        for name, provider in built.items():
            start = getattr(provider, "start", None)
            if start is not None:
                svc.background(start(), f"starting provider {name!r}")
    log.info(
        "catalog %s: version %s%s (%d projects)",
        path,
        version,
        f", was {previous}" if version != previous else ", unchanged",
        len(new.projects),
    )
    return Reloaded(previous, version, len(new.projects))


async def _reload_logged(svc: Services) -> None:
    try:
        await reload_catalog(svc)
    except CatalogError as exc:
        problems = "; ".join(f"{exc.source}: {p}" for p in exc.problems)  # one log line
        log.error(
            "catalog reload refused; the current one (version %s) keeps serving: %s", svc.catalog_version, problems
        )
    except ConflictError as exc:
        log.error("catalog reload refused: %s", exc.message)
    except Exception:
        log.exception("catalog reload failed; the current catalog (version %s) keeps serving", svc.catalog_version)


@contextlib.contextmanager
def install_sighup(svc: Services) -> Iterator[bool]:
    """While the app runs, SIGHUP reloads the catalog. Signals reach the main thread only: an app served from
    another thread (tests) is reloaded through the admin endpoint instead; yields whether SIGHUP is handled."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
        yield False
        return
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def on_hup() -> None:
        task = loop.create_task(_reload_logged(svc), name="promptd-reload")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        yield True
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def pid_file(data_dir: Path) -> Path:
    return data_dir / PID_FILE


def read_pid(data_dir: Path) -> int | None:
    """The pid of the `promptd serve` using this data dir, or None when none runs (no file, or a stale one)."""
    try:
        pid = int(pid_file(data_dir).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


@contextlib.contextmanager
def written_pid(data_dir: Path) -> Iterator[None]:
    """`promptd.pid` in the data dir holds this process's pid while it serves."""
    path = pid_file(data_dir)
    path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()


class ForwardingSupervisor(Multiprocess):
    """uvicorn's worker supervisor, except that SIGHUP is passed on to every worker (each reloads its catalog)
    instead of restarting them all."""

    def handle_hup(self) -> None:
        log.info("SIGHUP: asking %d workers to reload the catalog", len(self.processes))
        for process in self.processes:
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGHUP)
