"""The key selects a project; a request may only address that project."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from promptd.cors import note_project
from promptd.errors import Forbidden, InputError, NotFound
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
        """(project, model or None) that a request's `model` names: `{project}/{model}` or `{project}`, as
        Adaptive's API has it, or a bare model name of the key's project (`"echo"`, as OpenAI clients send
        one; its audio models too, `"tts"`), which resolves there. A name that is both another project and a
        model of the key's is ambiguous (400, naming both); an unknown name is 404 `model_not_found`, as OpenAI
        says it, naming what the key may call. Whether the model is attached is for the caller to check (`model`)."""
        name, attached = split_model(model)
        own = self.key.project
        config = self.svc.catalog.projects.get(own)
        models = config.models if config is not None else []
        audio = [m for m in (config.audio.text_to_speech, config.audio.speech_to_text) if m] if config else []
        if attached is None and name != own and (name in models or name in audio):  # audio: /v1/audio/*'s
            if name in self.svc.catalog.projects:
                raise InputError(
                    f"model {name!r} is ambiguous: it names project {name!r} and model {own + '/' + name!r}; "
                    f"send {own + '/' + name!r} for the model",
                    code="ambiguous_model",
                    param="model",
                )
            return own, name
        try:
            return self.project(name), attached
        except NotFound:
            choices = ", ".join([own, *(f"{own}/{m}" for m in models)])
            message = f"model {model!r} does not exist; this key's project {own!r} has: {choices}"
            raise NotFound(message, code="model_not_found", param="model") from None

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
