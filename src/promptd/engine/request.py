"""What a face asks the engine for, and what the engine reports back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promptd.access import current_request_id
from promptd.domain.pricing import Cost
from promptd.engine.call import ChatCall, Origin
from promptd.errors import PromptdError
from promptd.types import Message, TextDelta, ToolCallDelta, Usage
from promptd.uuids import new_uuid

if TYPE_CHECKING:
    from promptd.engine.admission import Reservation

__all__ = ["Done", "EngineEvent", "GenerationRequest", "GenerationResult", "KeepAlive"]


@dataclass(slots=True, kw_only=True)
class GenerationRequest:
    """One generation the engine runs (one choice of a call): the call and its origin as the face gave them,
    and what the engine resolved for it (the model, the rendered prompt, its ids and its reservation)."""

    call: ChatCall
    origin: Origin
    model: str  # the catalog model key routed to (attached to the project)
    messages: list[Message]  # the rendered prompt sent upstream
    kind: str = "chat"  # chat | embedding | speech | transcription
    tools: list[dict[str, Any]] | None = None
    max_tokens: int | None = None  # the client's, else the project's or model's default (admission may set it)
    prompt_tokens: int | None = None  # a prompt whose size is known in tokens (token ids): admission's exact bound
    campaign: str | None = None  # the A/B campaign key this request was exposed to
    query: str | None = None  # what the user asked, for the record and its search
    inputs: dict[str, Any] | None = None  # a form's validated inputs
    end_user_id: str | None = None
    choice_index: int = 0
    message_id: str = field(default_factory=new_uuid)
    task_id: str = field(default_factory=new_uuid)
    reservation: Reservation | None = None  # what this generation holds against limits (engine/admission.py)
    # moderation (engine/moderation.py): the record's `moderation` column, and the check of a whole answer that
    # returns the answer to keep (a replacement when it is flagged)
    moderation: dict[str, Any] | None = None
    output_check: Callable[[str], Awaitable[str]] | None = None
    catalog_version: str = ""  # the catalog that served it (promptd/reload.py)
    request_id: str | None = field(default_factory=current_request_id)  # the HTTP request's X-Request-Id

    @property
    def project(self) -> str:
        return self.origin.project

    @property
    def face(self) -> str:
        return self.origin.face

    @property
    def key_id(self) -> str | None:
        return self.origin.key_id

    @property
    def user(self) -> str | None:
        return self.origin.user

    @property
    def created_at(self) -> float:
        return self.origin.created_at

    @property
    def started(self) -> float:
        return self.origin.started

    @property
    def streaming(self) -> bool:
        return self.call.stream


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
    logprobs: list[dict[str, Any]] | None = None  # OpenAI's logprobs.content of the answer, when asked and given
    replaced: bool = False  # output moderation replaced the answer (a stream already showed the original)
    system_fingerprint: str | None = None  # the upstream's, when it sent one


@dataclass(slots=True)
class KeepAlive:
    """No event for a while: a face may send its keep-alive (Dify: `event: ping`)."""


@dataclass(slots=True)
class Done:
    """The last event. `result.status` says whether it finished, was stopped, or failed."""

    result: GenerationResult


EngineEvent = TextDelta | ToolCallDelta | KeepAlive | Done
