"""Every management request carries an admin key (`Authorization: Bearer adm-…`)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from promptd.engine.call import DATASET_SCOPE
from promptd.errors import NotFound
from promptd.services import Services, services
from promptd.store.repository import KeyInfo

__all__ = ["Admin", "authenticate"]


@dataclass(frozen=True, slots=True)
class Admin:
    svc: Services
    key: KeyInfo

    def project(self, name: str) -> str:
        """`name`, checked to be a project of the catalog."""
        if name not in self.svc.catalog.projects:
            raise NotFound(f"project {name!r} does not exist")
        return name

    def scope(self, name: str) -> str:
        """`name`, checked to be what usage is metered as: a project of the catalog, or a knowledge base's own
        scope (`dataset:<name>`: its indexing and dataset-API searches, engine/call.py)."""
        if name not in self.svc.catalog.projects and not name.startswith(DATASET_SCOPE):
            raise NotFound(f"project {name!r} does not exist")
        return name


async def authenticate(request: Request) -> Admin:
    """The admin calling, or AuthError (401): an app key never opens the management API."""
    svc = services(request)
    return Admin(svc, await svc.keys.authenticate(request.headers.get("authorization"), role="admin"))
