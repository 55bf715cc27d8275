"""Everything a request handler needs: built once per app in the lifespan, handed to requests in its state."""

from __future__ import annotations

from dataclasses import dataclass
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


def services(request: Request) -> Services:
    """The services of the app serving `request` (from the lifespan state, which every mount shares)."""
    svc: Any = request.state.services
    return svc  # type: ignore[no-any-return]
