"""Phase two of catalog validation: references between providers, models and projects.

`broken` names the entries that exist in the file but failed phase one (they are reported there): a reference
to one of them is not reported again as a reference to nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Set
from pathlib import Path

from promptd.catalog.schema import Catalog
from promptd.domain.templates import template_variables

__all__ = ["cross_check"]


def cross_check(catalog: Catalog, broken: Mapping[str, Set[str]] | None = None) -> list[str]:
    broken = broken or {}
    bad_providers, bad_models = broken.get("providers", set()), broken.get("models", set())
    problems: list[str] = []
    for name, model in catalog.models.items():
        at = f"models.{name}"
        # every deployment's provider must exist (`provider` is the first one's, unless set apart)
        refs = [(f"{at}.deployments[{i}].provider", d.provider) for i, d in enumerate(model.deployments)]
        if model.provider not in {d.provider for d in model.deployments}:
            refs.insert(0, (f"{at}.provider", model.provider))
        kinds: set[str] = set()
        for path, ref in refs:
            provider = catalog.providers.get(ref)
            if provider is not None:
                kinds.add(provider.kind)
            elif ref not in bad_providers:
                known = ", ".join(sorted(catalog.providers)) or "none"
                problems.append(f"{path}: no provider named {ref!r} (known: {known})")
        if model.type == "rerank" and kinds - {"openai", "fake"}:
            problems.append(f"{at}.type: rerank models need an openai-kind (or fake) provider")
        if model.type in ("speech_to_text", "text_to_speech") and kinds - {"openai"}:
            problems.append(f"{at}.type: {model.type} models need an openai-kind provider")
        for i, fb in enumerate(model.fallbacks):
            if fb in bad_models:
                continue
            if fb not in catalog.models or fb == name:
                problems.append(f"{at}.fallbacks[{i}]: no other model named {fb!r}")
            elif catalog.models[fb].type != model.type:
                problems.append(f"{at}.fallbacks[{i}]: {fb!r} is a {catalog.models[fb].type} model")
        fallback = model.context_fallback
        if fallback is not None and fallback not in bad_models:
            if fallback not in catalog.models or fallback == name:
                problems.append(f"{at}.context_fallback: no other model named {fallback!r}")
            elif catalog.models[fallback].type != model.type:
                problems.append(f"{at}.context_fallback: {fallback!r} is a {catalog.models[fallback].type} model")
    problems.extend(_check_knowledge(catalog, bad_models))
    for pname, project in catalog.projects.items():
        at = f"projects.{pname}"
        bad_knowledge = broken.get("knowledge", set())
        for i, kb in enumerate(project.knowledge):
            if kb not in catalog.knowledge and kb not in bad_knowledge and not _is_uuid(kb):
                known = ", ".join(sorted(catalog.knowledge)) or "none"
                problems.append(
                    f"{at}.knowledge[{i}]: no knowledge base named {kb!r} (known: {known}; or a dataset id)"
                )
        query_var = project.knowledge_query
        declared = {f.variable for f in project.inputs}
        if project.knowledge and project.mode == "completion" and query_var not in declared | {"query"}:
            problems.append(f"{at}.knowledge_query: no input declares variable {query_var!r}")
        for i, m in enumerate(project.models):
            if m in bad_models:
                continue
            if m not in catalog.models:
                problems.append(f"{at}.models[{i}]: no model named {m!r}")
            elif catalog.models[m].type not in ("chat", "embedding"):
                problems.append(f"{at}.models[{i}]: {m!r} is a {catalog.models[m].type} model, not a chat model")
        if project.default_model is not None and project.default_model not in project.models:
            problems.append(f"{at}.default_model: {project.default_model!r} is not in this project's models")
        embedding = project.embedding_model
        if embedding is not None and embedding not in bad_models:
            if embedding not in project.models:
                problems.append(f"{at}.embedding_model: {embedding!r} is not in this project's models")
            elif embedding in catalog.models and catalog.models[embedding].type != "embedding":
                problems.append(f"{at}.embedding_model: {embedding!r} is a {catalog.models[embedding].type} model")
        variables = {f.variable for f in project.inputs}
        # the Dify face fills {{query}} of the prompt from the request's top-level `query`; the system prompt
        # is rendered from the inputs alone
        templates: tuple[tuple[str, str | None, set[str]], ...] = (
            # {{context}}: the retrieved knowledge, for projects that attach some
            ("prompt", project.prompt, {"query", "context"} if project.knowledge else {"query"}),
            ("system_prompt", project.system_prompt, set()),
        )
        for key, template, implicit in templates:
            for var in sorted(template_variables(template or "") - variables - implicit):
                problems.append(f"{at}.{key}: uses {{{{{var}}}}} but no input declares variable {var!r}")
        for key in ("speech_to_text", "text_to_speech"):
            problems += _model_ref(catalog, f"{at}.audio.{key}", getattr(project.audio, key), key, bad_models)
        mod = project.moderation
        if mod is not None and mod.provider is not None:
            provider = catalog.providers.get(mod.provider)
            if provider is None and mod.provider not in bad_providers:
                problems.append(f"{at}.moderation.provider: no provider named {mod.provider!r}")
            elif provider is not None and provider.kind != "openai":
                problems.append(f"{at}.moderation.provider: {mod.provider!r} is a {provider.kind} provider, not openai")
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
        currencies = {catalog.models[m].price.currency for m in project.models if m in catalog.models}
        budget = project.limits.cost_per_day or project.limits.cost_per_month
        if budget is not None and len(currencies) > 1:
            problems.append(
                f"{at}.limits: a budget counts in one currency, but this project's models are priced in "
                f"{', '.join(sorted(currencies))}"
            )
    return problems


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _check_knowledge(catalog: Catalog, bad_models: Set[str]) -> list[str]:
    problems: list[str] = []
    for name, kb in catalog.knowledge.items():
        at = f"knowledge.{name}"
        for i, doc in enumerate(kb.documents):
            if not Path(doc).exists():
                problems.append(f"{at}.documents[{i}]: no such file or folder: {doc}")
        for key, want in (("embedding_model", "embedding"), ("rerank_model", "rerank")):
            problems += _model_ref(catalog, f"{at}.retrieval.{key}", getattr(kb.retrieval, key), want, bad_models)
    return problems


def _model_ref(catalog: Catalog, at: str, ref: str | None, want: str, bad_models: Set[str]) -> list[str]:
    """The problems of `at`, a reference to a model of type `want` (none when unset, or already reported bad)."""
    if ref is None or ref in bad_models:
        return []
    model = catalog.models.get(ref)
    if model is None:
        return [f"{at}: no model named {ref!r}"]
    if model.type != want:
        return [f"{at}: {ref!r} is a {model.type} model, not {want}"]
    return []
