"""The record of one model call, typed, and the rows it becomes: built here and nowhere else.

Every metered call is recorded: its usage and cost reach the daily rollups (and so `/admin/v1/usage` and the
budgets seeded from them) whatever the client asked. `store: false` keeps the *content* out of the store (no
message row: no prompt, inputs, question, answer or files), never the metering: such a call becomes a
metering-only row, which the recorder adds to the rollups without inserting it anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from promptd.domain.pricing import plain
from promptd.store.recorder import Row
from promptd.store.repository import end_user_row
from promptd.store.tables import messages

__all__ = ["CallRecord"]


def _text(value: str | None) -> str | None:
    """A text column's value without NUL characters, which PostgreSQL text cannot hold (the record would be
    refused whole). JSON columns keep them, escaped."""
    return value.replace("\x00", "") if value and "\x00" in value else value


@dataclass(slots=True, kw_only=True)
class CallRecord:
    """One call as the store keeps it (one per choice of a chat call)."""

    id: str
    project: str
    face: str  # dify | chat | openai | import
    kind: str = "chat"  # chat | embedding | speech | transcription
    model: str  # the catalog model that answered (or was tried last)
    provider: str
    upstream_model: str
    status: str  # normal | stopped | error
    created_at: float
    task_id: str | None = None
    end_user_id: str | None = None
    user: str | None = None
    key_id: str | None = None
    # content: kept only when the call is stored
    inputs: dict[str, Any] | None = None
    query: str | None = None
    prompt: list[dict[str, Any]] | None = None
    files: list[dict[str, Any]] | None = None
    answer: str = ""
    # outcome and metering
    error: str | None = None
    error_code: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_price: Decimal = Decimal(0)
    completion_price: Decimal = Decimal(0)
    total_price: Decimal = Decimal(0)
    currency: str = "USD"
    latency: float | None = None
    ttft: float | None = None
    # the chat API
    session_id: str | None = None
    choice_index: int = 0
    labels: dict[str, str] | None = None
    tags: list[str] | None = None
    campaign: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    moderation: dict[str, Any] | None = None  # what moderation decided: {input?, output?}
    retriever_resources: list[dict[str, Any]] | None = None  # the knowledge segments the prompt was given
    store: bool = True  # False: the metering is recorded, the content is not
    catalog_version: str | None = None  # the catalog that served it (promptd/reload.py)
    request_id: str | None = None  # the HTTP request's X-Request-Id (promptd/access.py)

    def values(self) -> dict[str, Any]:
        """The `messages` row."""
        return {
            "id": self.id,
            "project": self.project,
            "face": self.face,
            "kind": self.kind,
            "task_id": self.task_id,
            "end_user_id": self.end_user_id,
            "user": self.user,
            "key_id": self.key_id,
            "model": self.model,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "inputs": self.inputs,
            "query": _text(self.query),
            "prompt": self.prompt,
            "files": self.files,
            "answer": _text(self.answer) or "",
            "status": self.status,
            "error": _text(self.error),
            "error_code": self.error_code,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_price": plain(self.prompt_price),
            "completion_price": plain(self.completion_price),
            "total_price": plain(self.total_price),
            "currency": self.currency,
            "latency": self.latency,
            "ttft": self.ttft,
            "created_at": self.created_at,
            "session_id": self.session_id,
            "choice_index": self.choice_index,
            "labels": self.labels,
            "tags": self.tags,
            "campaign": self.campaign,
            "attempts": self.attempts,
            "request_id": self.request_id,
            "moderation": self.moderation or None,
            "catalog_version": self.catalog_version,
            "retriever_resources": self.retriever_resources,
        }

    def metering(self) -> dict[str, Any]:
        """What the usage rollups read of a call (no content)."""
        return {
            "created_at": self.created_at,
            "project": self.project,
            "key_id": self.key_id,
            "model": self.model,
            "currency": self.currency,
            "status": self.status,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_price": plain(self.total_price),
        }

    def rows(self) -> list[Row]:
        """The rows to submit: the end user seen (stored calls), then the message, or its metering alone."""
        if not self.store:
            return [Row(messages, self.metering(), meter_only=True, once=self.id)]
        out: list[Row] = []
        if self.end_user_id is not None and self.user is not None:
            out.append(end_user_row(self.end_user_id, self.project, self.user, self.created_at))
        out.append(Row(messages, self.values()))
        return out
