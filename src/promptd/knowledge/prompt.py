"""Knowledge in a prompt: the engine's grounding step (the context of one call), and the resources it cites."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from promptd.catalog.schema import ProjectConfig
from promptd.domain.templates import CONTEXT_BLOCK
from promptd.engine.call import ChatCall, Origin, for_call
from promptd.engine.request import GenerationRequest
from promptd.knowledge.hits import HitCounter
from promptd.knowledge.search import Hit, Retrieval, Retriever
from promptd.knowledge.store import KnowledgeStore
from promptd.types import Message, last_user_text

__all__ = ["Grounding", "answer_metadata", "resources", "with_context"]

log = logging.getLogger("promptd.knowledge")


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


class Grounding:
    """The engine's knowledge step (`Engine.grounding`): the context of a call of a project that attaches
    knowledge, searched after input moderation and admission (`Engine._admitted`), with its embeddings and
    rerank made for the call (knowledge/models.py). A completion app's form gets it as `context`
    ({{#context#}} / {{context}}); a chat call gets it in its system prompt (a first system message is extended,
    else one is added). The segments used become the call's `retriever_resources` (the answer's metadata and
    the record), and their `hit_count` grows."""

    def __init__(self, store: KnowledgeStore, retriever: Retriever, hits: HitCounter) -> None:
        self.store, self.retriever, self.hits = store, retriever, hits

    async def ground(self, call: ChatCall, origin: Origin, project: ProjectConfig) -> ChatCall:
        if call.form is not None:
            value = call.form.inputs.get(project.knowledge_query)
            query = value if isinstance(value, str) and value else call.form.query
            text, cited = await self._retrieve(project, origin, query)
            return replace(call, form=replace(call.form, context=text), retriever_resources=cited)
        text, cited = await self._retrieve(project, origin, last_user_text(call.messages) or "")
        return replace(call, messages=with_context(call.messages, text), retriever_resources=cited)

    async def _retrieve(self, project: ProjectConfig, origin: Origin, query: str) -> tuple[str, list[dict[str, Any]]]:
        refs = project.knowledge
        found = await self.store.datasets_by_ref(refs)
        if len(found) < len(refs):
            names = {d["id"] for d in found} | {d["name"] for d in found}
            log.warning(
                "knowledge: project %r attaches %s, which no dataset is",
                origin.project,
                [r for r in refs if r not in names],
            )
        if not query.strip():
            return "", []
        started = time.perf_counter()
        hits: list[Hit] = []
        top_k = 0
        searching = for_call(origin)
        for dataset in found:
            settings = Retrieval.of(dataset["retrieval"])
            top_k = max(top_k, settings.top_k)
            hits += await self.retriever.search(dataset, query, settings, searching)
        hits = sorted(hits, key=lambda h: -h.score)[:top_k]
        self.retriever.engine.metrics.retrieval.observe(time.perf_counter() - started, project=origin.project)
        self.hits.add(h.segment["id"] for h in hits)
        return "\n\n".join(h.segment["content"] for h in hits), resources(hits)


def with_context(messages: list[Message], text: str) -> list[Message]:
    """`messages` with the retrieved context in the system prompt."""
    block = CONTEXT_BLOCK.replace("{{context}}", text).rstrip()
    if messages and messages[0].role == "system" and isinstance(messages[0].content, str):
        return [Message("system", f"{messages[0].content}\n\n{block}"), *messages[1:]]
    return [Message("system", block), *messages]


def answer_metadata(request: GenerationRequest) -> dict[str, Any]:
    """What a Dify answer's `metadata` gets besides usage: the segments its prompt used, when the project
    attaches knowledge."""
    cited = request.call.retriever_resources
    return {"retriever_resources": cited} if cited is not None else {}
