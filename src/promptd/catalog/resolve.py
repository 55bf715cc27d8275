"""Phase two of catalog validation: references between providers, models and projects."""

from __future__ import annotations

from promptd.catalog.schema import Catalog
from promptd.domain.templates import template_variables

__all__ = ["cross_check"]


def cross_check(catalog: Catalog) -> list[str]:
    problems: list[str] = []
    for name, model in catalog.models.items():
        provider = catalog.providers.get(model.provider)
        if provider is None:
            problems.append(
                f"models.{name}.provider: no provider named {model.provider!r} (known: "
                f"{', '.join(sorted(catalog.providers)) or 'none'})"
            )
        elif model.type in ("speech_to_text", "text_to_speech") and provider.kind != "openai":
            problems.append(f"models.{name}.type: {model.type} models need an openai-kind provider")
        for i, fb in enumerate(model.fallbacks):
            if fb not in catalog.models or fb == name:
                problems.append(f"models.{name}.fallbacks[{i}]: no other model named {fb!r}")
            elif catalog.models[fb].type != model.type:
                problems.append(f"models.{name}.fallbacks[{i}]: {fb!r} is a {catalog.models[fb].type} model")
    for pname, project in catalog.projects.items():
        at = f"projects.{pname}"
        for i, m in enumerate(project.models):
            if m not in catalog.models:
                problems.append(f"{at}.models[{i}]: no model named {m!r}")
            elif catalog.models[m].type not in ("chat", "embedding"):
                problems.append(f"{at}.models[{i}]: {m!r} is a {catalog.models[m].type} model, not a chat model")
        if project.default_model is not None and project.default_model not in project.models:
            problems.append(f"{at}.default_model: {project.default_model!r} is not in this project's models")
        variables = {f.variable for f in project.inputs}
        for var in sorted(template_variables(project.prompt or "") - variables - {"query"}):
            problems.append(f"{at}.prompt: uses {{{{{var}}}}} but no input declares variable {var!r}")
        for key, want in (("speech_to_text", "speech_to_text"), ("text_to_speech", "text_to_speech")):
            ref = getattr(project.audio, key)
            if ref is None:
                continue
            speech = catalog.models.get(ref)
            if speech is None:
                problems.append(f"{at}.audio.{key}: no model named {ref!r}")
            elif speech.type != want:
                problems.append(f"{at}.audio.{key}: {ref!r} is a {speech.type} model, not {want}")
        ids: set[str] = set()
        for key, campaign in project.campaigns.items():
            for i, m in enumerate(campaign.models):
                if m not in project.models:
                    problems.append(f"{at}.campaigns.{key}.models[{i}]: {m!r} is not attached to the project")
            if campaign.metric not in project.metrics:
                problems.append(f"{at}.campaigns.{key}.metric: no metric {campaign.metric!r} in {at}.metrics")
            if campaign.id is not None and campaign.id in ids:
                problems.append(f"{at}.campaigns.{key}.id: used by another campaign")
            ids.add(campaign.id or key)
    return problems
