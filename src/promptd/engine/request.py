"""What a face asks the engine for, and what the engine reports back."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promptd.domain.ids import new_uuid
from promptd.domain.pricing import Cost
from promptd.errors import PromptdError
from promptd.types import Message, TextDelta, ToolCallDelta, Usage

if TYPE_CHECKING:
    from promptd.engine.admission import Reservation

__all__ = ["Done", "EngineEvent", "GenerationRequest", "GenerationResult", "KeepAlive"]


@dataclass(slots=True)
class GenerationRequest:
    project: str
    model: str  # a catalog model key, already checked to be attached to the project
    messages: list[Message]
    face: str  # "dify" | "chat": which API face received it
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    # who asked, and what to store alongside the answer
    user: str | None = None
    end_user_id: str | None = None
    key_id: str | None = None
    inputs: dict[str, Any] | None = None
    query: str | None = None
    files: list[dict[str, Any]] | None = None
    retriever_resources: list[dict[str, Any]] | None = None  # knowledge segments given to the prompt
    store: bool = True
    streaming: bool = False  # the client sees tokens as they come: the first one commits the answer
    # the chat API
    session_id: str | None = None
    labels: dict[str, str] | None = None
    tags: list[str] | None = None
    campaign: str | None = None
    choice_index: int = 0
    max_ttft_ms: int | None = None
    tools: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # passed through to the provider (e.g. tool_choice)
    message_id: str = field(default_factory=new_uuid)
    task_id: str = field(default_factory=new_uuid)
    created_at: float = field(default_factory=time.time)  # wall clock, Unix seconds
    started: float = field(default_factory=time.perf_counter)  # for latencies
    reservation: Reservation | None = None  # what this generation holds against limits (engine/admission.py)


@dataclass(slots=True)
class GenerationResult:
    answer: str
    usage: Usage
    cost: Cost
    status: str  # "normal" | "stopped" | "error"
    finish_reason: str | None
    latency: float  # seconds from request to last token
    ttft: float | None
    error: PromptdError | None = None
    model: str = ""  # the catalog model that answered (a fallback, maybe)
    tool_calls: list[dict[str, Any]] | None = None  # OpenAI shape: {id, type, function: {name, arguments}}
    attempts: list[dict[str, Any]] = field(default_factory=list)
    upstream_s: float = 0.0  # time spent waiting on upstreams (the rest of `latency` is promptd's own)


@dataclass(slots=True)
class KeepAlive:
    """No event for a while: a face may send its keep-alive (Dify: `event: ping`)."""


@dataclass(slots=True)
class Done:
    """The last event. `result.status` says whether it finished, was stopped, or failed."""

    result: GenerationResult


EngineEvent = TextDelta | ToolCallDelta | KeepAlive | Done
