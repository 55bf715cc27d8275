"""What a face hands the engine: the call (what the client asked of the model) and its origin (who asked, and
what to record with the answer). Both are typed values a face builds from its wire format; the engine turns
them into model calls under every rule of the house (engine/engine.py).

A call never carries a whitelist of forwarded fields: `params` holds every other generation parameter the
client sent, by its OpenAI name, and the provider decides what it can honour.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from promptd.domain.limits import Limits
from promptd.engine.pending import Pending
from promptd.types import ContentPart, Message

__all__ = [
    "DATASET_SCOPE",
    "ChatCall",
    "EmbeddingCall",
    "FormInput",
    "Origin",
    "RerankCall",
    "SpeechCall",
    "ToolSwitches",
    "TranscriptionCall",
    "dataset_scope",
    "for_call",
]

#: the project a knowledge base's own model calls (indexing, dataset-API searches) are governed and metered as
DATASET_SCOPE = "dataset:"


def dataset_scope(name: str) -> str:
    """`dataset:<name>`: the scope of knowledge base `name`'s own calls (its limits: the catalog's
    `knowledge.<name>.limits`, or `dataset_limits` for one made through the dataset API)."""
    return DATASET_SCOPE + name


@dataclass(slots=True, kw_only=True)
class FormInput:
    """A Dify-style call: the project's input form filled in, rendered by the engine into the prompt."""

    inputs: dict[str, Any]
    query: str = ""  # the legacy top-level `query`
    attachments: list[ContentPart] = field(default_factory=list)  # image parts the model must be able to read
    files: list[dict[str, Any]] | None = None  # what the client sent, for the record
    context: str | None = None  # retrieved knowledge for {{#context#}} / {{context}}; None: none attached


@dataclass(slots=True, kw_only=True)
class ToolSwitches:
    """Which of the project's declared tools to send (`use_tools`, then per-id overrides), plus the client's own
    OpenAI function tools."""

    use_tools: bool | None = None
    overrides: dict[str, bool] = field(default_factory=dict)
    client_tools: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class ChatCall:
    """One chat or completion call: `messages` (or a filled-in `form`), sampling and output parameters."""

    messages: list[Message] = field(default_factory=list)
    form: FormInput | None = None
    system_prompt_args: dict[str, Any] | None = None  # for the model's or project's system-prompt template
    max_tokens: int | None = None
    token_param: str = "max_tokens"  # or max_completion_tokens: the name the client used, sent on as it is
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    tools: ToolSwitches | None = None
    tool_choice: Any = None
    #: every other generation parameter (seed, response_format, logprobs, presence_penalty, …) by OpenAI name
    params: dict[str, Any] = field(default_factory=dict)
    n: int = 1
    stream: bool = False  # the client sees tokens as they come: the first one commits the answer
    max_ttft_ms: int | None = None
    retriever_resources: list[dict[str, Any]] | None = None  # knowledge segments in the prompt (for the record)
    #: parts of the prompt made once the call is admitted (remote files, transcripts: engine/pending.py)
    pending: list[Pending] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class EmbeddingCall:
    """Vectors for `texts`, or for `tokens`: token-id arrays (OpenAI's `input` as integers), which only a provider
    that sends them to the upstream's own tokenizer takes (`TokenEmbeddingProvider`)."""

    texts: list[str] = field(default_factory=list)
    tokens: list[list[int]] | None = None
    dimensions: int | None = None


@dataclass(slots=True, kw_only=True)
class RerankCall:
    """Relevance of each document to a query (knowledge retrieval)."""

    query: str
    documents: list[str]


@dataclass(slots=True, kw_only=True)
class SpeechCall:
    """Text to speech. `voice`: a voice's name, or OpenAI's custom voice object (`{"id": ...}`)."""

    text: str
    voice: str | dict[str, Any] | None = None
    #: every other parameter the client sent (response_format, speed, instructions, …) by its OpenAI name
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class TranscriptionCall:
    """Speech to text, or (`translate`) speech to English text."""

    filename: str
    data: bytes
    mime_type: str
    #: every other form field the client sent (language, prompt, temperature, response_format,
    #: timestamp_granularities[], …) by its OpenAI name, in order; a name may repeat (OpenAI's arrays)
    params: list[tuple[str, str]] = field(default_factory=list)
    translate: bool = False

    @property
    def response_format(self) -> str:
        """The format the transcript is asked in (OpenAI's default: json)."""
        return next((v for k, v in self.params if k == "response_format"), "") or "json"


@dataclass(slots=True, kw_only=True)
class Origin:
    """Who asked, through which face, and what to keep with the answer."""

    face: str  # "dify" | "chat" | "openai": the API face that received the call
    project: str
    model: str | None = None  # a catalog model the client named (None: the project's default, or a campaign's)
    ab_campaign: str | None = None  # a campaign the client forced (its key or id)
    key_id: str | None = None
    key_limits: Limits = field(default_factory=Limits)
    user: str | None = None  # the client's end-user string, as sent
    store: bool = True  # False: meter and account, but keep the content out of the store
    session_id: str | None = None
    sticky: str | None = None  # who A/B assignment sticks to (a session, an end user); else the session
    labels: dict[str, str] | None = None
    tags: list[str] | None = None
    created_at: float = field(default_factory=time.time)  # wall clock, Unix seconds
    started: float = field(default_factory=time.perf_counter)  # for latencies
    #: a model call made for another call (a knowledge search's embeddings and rerank within a chat): its tokens
    #: and cost count against every limit, but it is not one more request against requests-per-minute
    internal: bool = False


def for_call(origin: Origin) -> Origin:
    """The origin of a model call made for the call `origin` (a knowledge search's embeddings, an attached audio
    file's transcript): same key, project, end user, session and `store`, timed from now, and marked `internal`
    (its tokens and cost count against every limit, but it is not one more request)."""
    return replace(
        origin, model=None, ab_campaign=None, internal=True, created_at=time.time(), started=time.perf_counter()
    )
