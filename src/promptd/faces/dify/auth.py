"""Who is calling: the key selects the project (app); the `user` argument names the end user."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from promptd.catalog.schema import ProjectConfig
from promptd.cors import note_project
from promptd.domain.ids import end_user_id
from promptd.errors import Forbidden
from promptd.services import Services, services
from promptd.store.repository import KeyInfo

__all__ = ["App", "authenticate"]


@dataclass(frozen=True, slots=True)
class App:
    svc: Services
    key: KeyInfo
    name: str
    project: ProjectConfig

    def end_user(self, user: str) -> str:
        return end_user_id(self.name, user)


async def authenticate(request: Request) -> App:
    svc = services(request)
    key = await svc.keys.authenticate(request.headers.get("authorization"))
    project = svc.catalog.projects.get(key.project)
    if project is None:
        raise Forbidden("The app no longer exists.")
    note_project(request, key.project)
    return App(svc, key, key.project, project)
