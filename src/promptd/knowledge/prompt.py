"""What a face asks of knowledge: the context for one prompt, and the resources to cite.

`for_prompt` (completion apps) and `for_chat` (the chat API) are the only calls a face makes."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promptd.domain.templates import CONTEXT_BLOCK
from promptd.knowledge.search import Hit, Retrieval
from promptd.types import Message, last_user_text

if TYPE_CHECKING:
    from promptd.services import Services

__all__ = ["KnowledgeContext", "for_chat", "for_prompt", "resources"]

log = logging.getLogger("promptd.knowledge")


@dataclass(frozen=True, slots=True)
class KnowledgeContext:
    text: str = ""  # the retrieved segments, for {{#context#}} / {{context}} (domain/templates.py)
    resources: list[dict[str, Any]] = field(default_factory=list)  # Dify's retriever_resources
    attached: bool = False  # the project attaches knowledge (its answers carry retriever_resources)

    @property
    def form_context(self) -> str | None:
        """The form's `context`: the text, or None when the project attaches no knowledge."""
        return self.text if self.attached else None

    @property
    def metadata(self) -> dict[str, Any]:
        """What the answer's `metadata` gets besides usage."""
        return {"retriever_resources": self.resources} if self.attached else {}


def resources(hits: list[Hit]) -> list[dict[str, Any]]:
    return [
        {
            "position": i,
            "dataset_id": h.dataset["id"],
            "dataset_name": h.dataset["name"],
            "document_id": h.segment["document_id"],
            "document_name": h.segment["document_name"],
            "data_source_type": h.segment["data_source_type"],
            "segment_id": h.segment["id"],
            "retriever_from": "api",
            "score": h.score,
            "hit_count": h.segment["hit_count"],
            "word_count": h.segment["word_count"],
            "segment_position": h.segment["position"],
            "index_node_hash": h.segment["index_node_hash"],
            "content": h.segment["content"],
        }
        for i, h in enumerate(hits, start=1)
    ]


async def _retrieve(svc: Services, project: str, query: str) -> KnowledgeContext:
    refs = svc.catalog.projects[project].knowledge
    found = await svc.knowledge.store.datasets_by_ref(refs)
    if len(found) < len(refs):
        names = {d["id"] for d in found} | {d["name"] for d in found}
        log.warning(
            "knowledge: project %r attaches %s, which no dataset is", project, [r for r in refs if r not in names]
        )
    if not query.strip():
        return KnowledgeContext(attached=True)
    started = time.perf_counter()
    hits: list[Hit] = []
    top_k = 0
    for dataset in found:
        settings = Retrieval.of(dataset["retrieval"])
        top_k = max(top_k, settings.top_k)
        hits += await svc.knowledge.retriever.search(dataset, query, settings)
    hits = sorted(hits, key=lambda h: -h.score)[:top_k]
    svc.engine.metrics.retrieval.observe(time.perf_counter() - started, project=project)
    text = "\n\n".join(h.segment["content"] for h in hits)
    return KnowledgeContext(text, resources(hits), attached=True)


async def for_prompt(svc: Services, project: str, inputs: Mapping[str, Any], query: str) -> KnowledgeContext:
    """The knowledge context of a completion request: the project's `knowledge_query` input is searched (or the
    request's `query`). A project that attaches no knowledge gets an empty context at no cost."""
    config = svc.catalog.projects[project]
    if not config.knowledge:
        return KnowledgeContext()
    value = inputs.get(config.knowledge_query)
    return await _retrieve(svc, project, value if isinstance(value, str) and value else query)


async def for_chat(svc: Services, project: str, messages: list[Message]) -> tuple[list[Message], list[dict[str, Any]]]:
    """The chat API's messages with the context of the last user message in the system prompt (a first system
    message is extended, else one is added), and the resources used. Unchanged without knowledge."""
    if not svc.catalog.projects[project].knowledge:
        return messages, []
    context = await _retrieve(svc, project, last_user_text(messages) or "")
    block = CONTEXT_BLOCK.replace("{{context}}", context.text).rstrip()
    if messages and messages[0].role == "system" and isinstance(messages[0].content, str):
        return [Message("system", f"{messages[0].content}\n\n{block}"), *messages[1:]], context.resources
    return [Message("system", block), *messages], context.resources
