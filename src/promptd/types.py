"""Small shared types: chat messages, usage, and the events a provider streams."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "SPEECH_FORMATS",
    "TRANSCRIPT_FORMATS",
    "ContentPart",
    "Finish",
    "Malformed",
    "Message",
    "ProviderCall",
    "ProviderEvent",
    "TextDelta",
    "ToolCallDelta",
    "Transcript",
    "Usage",
    "last_user_text",
    "media_kinds",
]

#: One part of a multimodal message: {"type": "text", "text": ...} or {"type": "image_url", "image_url": {"url": ...}}
ContentPart = dict[str, Any]


@dataclass(slots=True)
class Message:
    role: str
    content: str | list[ContentPart]
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None:
            out["name"] = self.name
        if self.tool_calls is not None:
            out["tool_calls"] = self.tool_calls
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


#: OpenAI's speech `response_format`s (audio/speech), and transcription ones (audio/transcriptions: diarized_json is
#: gpt-4o-transcribe-diarize's)
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")


@dataclass(frozen=True, slots=True)
class Transcript:
    """A transcription: its `text`, and the upstream's answer in the format it was asked for (`body` of type
    `media_type`: OpenAI's JSON, plain text or subtitles), with the tokens it reported, if any."""

    text: str
    body: bytes
    media_type: str
    usage: Usage | None = None


@dataclass(slots=True)
class ProviderCall:
    """What the engine asks one provider for: one completion of `messages` by `model` (the upstream name)."""

    model: str
    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: the name the client gave the token limit (OpenAI's reasoning models take only `max_completion_tokens`)
    token_param: str = "max_tokens"
    #: False when nothing needs the answer before it is whole (a blocking answer, no first-token deadline, no
    #: hedge): a provider may then ask its upstream for one reply instead of a stream of chunks
    stream: bool = True


@dataclass(slots=True)
class TextDelta:
    text: str
    #: OpenAI's `logprobs.content` entries for this text, when the call asked for them and the upstream gave them
    logprobs: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of a tool call in OpenAI's streaming shape (index, id?, function{name?, arguments?})."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class Finish:
    """The last event of a provider stream. `usage` is None when the provider could not report it."""

    reason: Literal["stop", "length", "tool_calls", "content_filter"] | str
    usage: Usage | None = None
    system_fingerprint: str | None = None  # the upstream's, when it sent one (OpenAI-compatible servers)


@dataclass(slots=True)
class Malformed:
    """A chunk the upstream sent that could not be read, skipped: counted (metric and record), not fatal. A
    provider raises instead once several come in a row."""

    data: str


ProviderEvent = TextDelta | ToolCallDelta | Finish | Malformed


def last_user_text(messages: list[Message]) -> str | None:
    """The text of the last user message (its text parts, joined), or None without one."""
    for m in reversed(messages):
        if m.role == "user":
            if isinstance(m.content, str):
                return m.content
            return " ".join(str(p.get("text", "")) for p in m.content if p.get("type") == "text")
    return None


def media_kinds(messages: list[Message]) -> frozenset[str]:
    """The kinds of content part other than text in `messages` (`image_url`, `video_url`, …); usually none."""
    kinds: set[str] = set()
    for m in messages:
        if not isinstance(m.content, str):
            kinds.update(str(p.get("type")) for p in m.content)
    kinds.discard("text")
    return frozenset(kinds)
