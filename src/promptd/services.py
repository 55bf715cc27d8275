"""Everything a request handler needs: built once per app in the lifespan, handed to requests in its state."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from promptd.catalog.schema import Catalog
from promptd.engine.engine import Engine
from promptd.keys import KeyCache
from promptd.providers.base import Provider
from promptd.settings import Settings
from promptd.store.recorder import Recorder
from promptd.store.repository import Repository

__all__ = ["Services", "services"]


@dataclass(slots=True)
class Services:
    settings: Settings
    catalog: Catalog
    engine: Engine
    repo: Repository
    recorder: Recorder
    keys: KeyCache
    providers: dict[str, Provider]
    started_at: float = field(default_factory=time.time)  # when this app loaded its catalog (Unix seconds)


def services(request: Request) -> Services:
    """The services of the app serving `request` (from the lifespan state, which every mount shares)."""
    svc: Any = request.state.services
    return svc  # type: ignore[no-any-return]
