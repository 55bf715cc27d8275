"""The key selects a project; a request may only address that project."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from promptd.cors import note_project
from promptd.errors import Forbidden, NotFound
from promptd.services import Services, services
from promptd.store.repository import KeyInfo

__all__ = ["Caller", "authenticate", "split_model"]


@dataclass(frozen=True, slots=True)
class Caller:
    svc: Services
    key: KeyInfo

    def project(self, name: str | None) -> str:
        """`name` (or, when None, the key's own project), checked to exist and to be the key's."""
        project = name or self.key.project
        if project not in self.svc.catalog.projects:
            raise NotFound(f"project {project!r} does not exist")
        if project != self.key.project:
            raise Forbidden(f"this API key is not valid for project {project!r}")
        return project

    def named(self, model: str) -> tuple[str, str | None]:
        """(project, model or None) that a request's `model`, `{project}` or `{project}/{model}`, names: the
        key's project (else 404 `model_not_found`, as OpenAI says it); the model is for the caller to check."""
        name, attached = split_model(model)
        try:
            return self.project(name), attached
        except NotFound as exc:
            raise NotFound(exc.message, code="model_not_found", param="model") from None

    def model(self, model: str) -> tuple[str, str | None]:
        """`named`, with the model checked to be attached to the project (else 404 `model_not_found`)."""
        project, attached = self.named(model)
        self.svc.engine.model(project, attached)
        return project, attached


async def authenticate(request: Request) -> Caller:
    svc = services(request)
    key = await svc.keys.authenticate(request.headers.get("authorization"))
    note_project(request, key.project)
    return Caller(svc, key)


def split_model(model: str) -> tuple[str, str | None]:
    """'{project}/{model}' → (project, model); '{project}' → (project, None)."""
    project, _, name = model.partition("/")
    return project, name or None
