"""The engine driven directly, with no HTTP: one entry point, the attempt runner and its policies together.

`Scripted` below stands for an upstream model: each call it receives plays the next script (events to stream,
an error to raise, or a pause before the first token), so retries, fallbacks, hedges, stops and bills can be
checked exactly. The recorder is a list that keeps what the engine submits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from promptd.catalog.load import parse_catalog
from promptd.domain.limits import Limits, prompt_token_bound
from promptd.domain.pricing import price_usage
from promptd.engine.call import ChatCall, EmbeddingCall, FormInput, Origin
from promptd.engine.engine import Engine
from promptd.engine.request import GenerationRequest, GenerationResult
from promptd.errors import BudgetExceeded, InputError, LimitExceeded, ProviderBadRequest, ProviderUnavailable
from promptd.store.recorder import Row
from promptd.types import Finish, Malformed, Message, ProviderCall, ProviderEvent, TextDelta, Usage

Script = list[Any]  # events, an exception to raise at that point, or a float: seconds to wait


class Scripted:
    """An upstream that plays one script per call, in order (the last one repeats)."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = list(scripts)
        self.calls: list[ProviderCall] = []

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        script = self.scripts[min(len(self.calls), len(self.scripts) - 1)]
        self.calls.append(call)
        for step in script:
            if isinstance(step, BaseException):
                raise step
            if isinstance(step, float):
                await asyncio.sleep(step)
                continue
            yield step

    async def embed(self, *, model: str, texts: list[str]) -> tuple[list[list[float]], int]:
        self.calls.append(ProviderCall(model=model, messages=[Message("user", t) for t in texts]))
        return [[1.0, 0.0] for _ in texts], 3

    async def aclose(self) -> None:
        return None


class Rows:
    """The recorder: keeps what is submitted."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def submit(self, *rows: Row) -> None:
        self.rows.extend(rows)

    def messages(self) -> list[dict[str, Any]]:
        return [dict(r.values) for r in self.rows if r.table.name == "messages"]


def answer(text: str, prompt: int = 4) -> Script:
    """The text a word per delta, then its usage (a token per word)."""
    words = text.split(" ")
    return [TextDelta(w if i == 0 else " " + w) for i, w in enumerate(words)] + [
        Finish("stop", Usage(prompt, len(words)))
    ]


PRICE = {"input": "1", "output": "1", "unit": "1M"}
FAST = {"attempts": 1, "backoff_ms": 1, "max_backoff_ms": 2}


def engine(primary: Scripted, backup: Scripted | None = None, **model: Any) -> tuple[Engine, Rows]:
    raw: dict[str, Any] = {
        "providers": {"a": {"kind": "fake"}, "b": {"kind": "fake"}},
        "models": {
            "main": {"provider": "a", "model": "m", "price": PRICE, "retry": FAST, **model},
            "spare": {"provider": "b", "model": "s", "price": {"input": "10", "output": "10", "unit": "1M"}},
            "vec": {"provider": "a", "model": "v", "type": "embedding", "price": PRICE},
        },
        "projects": {
            "demo": {
                "mode": "completion",
                "models": ["main", "spare", "vec"],
                "embedding_model": "vec",
                "prompt": "Q: {{query}}",
                "inputs": [{"type": "paragraph", "variable": "query", "label": "Query", "required": True}],
            }
        },
    }
    if backup is not None:
        raw["models"]["main"]["fallbacks"] = ["spare"]
    providers: dict[str, Any] = {"a": primary, "b": backup or Scripted(answer("unused"))}
    rows = Rows()
    return Engine(parse_catalog(raw, {}), providers, rows), rows  # type: ignore[arg-type]


def origin(face: str = "chat", **kw: Any) -> Origin:
    return Origin(face=face, project="demo", key_id="k1", user="alice", **kw)


def chat(text: str = "hi", **kw: Any) -> ChatCall:
    return ChatCall(messages=[Message("user", text)], **kw)


async def run(e: Engine, call: ChatCall, who: Origin | None = None) -> Any:
    started = await e.generate(call, who or origin())
    (result,) = await started.results()
    await asyncio.sleep(0.01)  # the record is submitted just after the answer
    return result


async def test_one_call_is_answered_billed_metered_and_recorded() -> None:
    upstream = Scripted(answer("Paris is the capital"))
    e, rows = engine(upstream)
    result = await run(e, chat("capital?"))
    assert result.answer == "Paris is the capital" and result.status == "normal"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (4, 4)
    assert result.cost.total_price == Decimal("0.000008")
    (record,) = rows.messages()
    assert record["query"] == "capital?" and record["answer"] == "Paris is the capital" and record["kind"] == "chat"
    assert 'promptd_requests_total{face="chat",model="main",project="demo",status="normal"} 1' in e.metrics.exposition()


async def test_a_form_is_rendered_and_its_question_recorded() -> None:
    upstream = Scripted(answer("Fine"))
    e, rows = engine(upstream)
    await run(e, ChatCall(form=FormInput(inputs={"query": "How are you?"})), origin(face="dify"))
    assert upstream.calls[0].messages[-1].content == "Q: How are you?"
    assert rows.messages()[0]["query"] == "How are you?"
    with pytest.raises(InputError):
        await e.generate(ChatCall(form=FormInput(inputs={})), origin(face="dify"))  # a required input is missing


async def test_a_failure_before_the_first_token_is_retried_then_falls_back() -> None:
    primary = Scripted([ProviderUnavailable("503")])
    backup = Scripted(answer("from the spare"))
    e, _ = engine(primary, backup)
    result = await run(e, chat())
    assert result.answer == "from the spare" and result.model == "spare"
    assert [(a["model"], a["status"]) for a in result.attempts] == [
        ("main", "error"),
        ("main", "error"),
        ("spare", "ok"),
    ]
    assert result.cost.total_price == Decimal("0.00007")  # only the spare's answer: the refusals were free


async def test_a_blocking_answer_cut_mid_way_is_answered_again_and_both_attempts_billed() -> None:
    primary = Scripted([TextDelta("Half"), TextDelta("an"), ProviderUnavailable("reset")], answer("Whole answer"))
    e, _ = engine(primary)
    result = await run(e, chat("x" * 40))  # a 40-character prompt: estimated at 10 tokens
    assert result.answer == "Whole answer"
    cut, _ = result.attempts
    assert cut["usage"] == {"prompt_tokens": 10, "completion_tokens": 2, "estimated": True}
    assert result.usage.prompt_tokens == 14 and result.usage.completion_tokens == 4


async def test_a_streamed_answer_that_breaks_after_its_first_token_is_final() -> None:
    primary = Scripted([TextDelta("Half"), ProviderUnavailable("reset")])
    e, _ = engine(primary, Scripted(answer("spare")))
    result = await run(e, chat(stream=True))
    assert result.status == "error" and result.answer == "Half" and len(result.attempts) == 1


async def test_caller_faults_are_final_free_and_leave_the_circuit_closed() -> None:
    primary = Scripted([ProviderBadRequest("too long", code="context_length_exceeded")])
    e, rows = engine(primary, Scripted(answer("spare")))
    for _ in range(10):
        result = await run(e, chat())
        assert result.status == "error" and result.error.code == "context_length_exceeded"
        assert result.cost.total_price == 0 and [a["model"] for a in result.attempts] == ["main"]
    assert all(Decimal(r["total_price"]) == 0 for r in rows.messages())


async def test_a_hedge_takes_the_backup_when_the_primary_is_slow() -> None:
    primary = Scripted([5.0, *answer("late")])
    backup = Scripted(answer("quick"))
    e, _ = engine(primary, backup, hedge_ms=20)
    result = await run(e, chat())
    assert result.answer == "quick" and result.model == "spare"
    statuses = [(a["model"], a["status"], bool(a.get("hedge"))) for a in result.attempts]
    assert statuses == [("main", "hedged-out", False), ("spare", "ok", True)]


async def test_a_stop_ends_the_answer_with_what_came_billed() -> None:
    primary = Scripted([TextDelta("one"), TextDelta("two"), 5.0, *answer("never")])
    e, rows = engine(primary)
    started = await e.generate(chat(stream=True), origin())
    (generation,) = started.generations
    assert isinstance(await generation.next_event(), TextDelta)
    await asyncio.sleep(0.01)
    generation.stop()
    result = await generation.wait()
    await asyncio.sleep(0.01)
    assert result.status == "stopped" and result.answer == "onetwo" and result.usage.completion_tokens == 2
    assert rows.messages()[0]["status"] == "stopped"


async def test_store_false_meters_without_content() -> None:
    e, rows = engine(Scripted(answer("secret answer")))
    await run(e, chat("secret question"), origin(store=False))
    (row,) = rows.rows
    assert row.meter_only and Decimal(row.values["total_price"]) == Decimal("0.000006")
    assert "answer" not in row.values and "prompt" not in row.values and "query" not in row.values


async def test_n_choices_are_admitted_as_one_request() -> None:
    e, _ = engine(Scripted(answer("a b")))
    call_origin = origin(key_limits=Limits(rpm=1))
    started = await e.generate(chat(n=3), call_origin)
    assert len(await started.results()) == 3
    with pytest.raises(LimitExceeded):
        await e.generate(chat(), origin(key_limits=Limits(rpm=1)))


async def test_a_spent_budget_refuses_every_kind() -> None:
    e, _ = engine(Scripted(answer("a")))
    limits = Limits(cost_per_day=Decimal("0.0000001"))
    with pytest.raises(BudgetExceeded):
        await e.generate(chat(max_tokens=100), origin(key_limits=limits))
    with pytest.raises(BudgetExceeded):
        await e.embed(EmbeddingCall(texts=["x" * 4000]), origin(key_limits=limits))


async def test_embeddings_go_through_the_same_pipeline() -> None:
    upstream = Scripted()
    e, rows = engine(upstream)
    answered = await e.embed(EmbeddingCall(texts=["one", "two"]), origin())
    assert answered.value == [[1.0, 0.0], [1.0, 0.0]] and answered.result.usage.prompt_tokens == 3
    (record,) = rows.messages()
    assert record["kind"] == "embedding" and record["model"] == "vec"
    assert Decimal(record["total_price"]) == Decimal("0.000003")


class SlowEmbeddings(Scripted):
    """An embeddings upstream that hangs until `answer` is set (a client that leaves meanwhile cancels the call)."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()

    async def embed(self, *, model: str, texts: list[str]) -> tuple[list[list[float]], int]:
        await self.answer.wait()
        return await super().embed(model=model, texts=texts)


async def test_a_cancelled_one_shot_call_gives_its_reservation_back() -> None:
    upstream = SlowEmbeddings()
    e, rows = engine(upstream)
    call = EmbeddingCall(texts=["hello world"])
    bound = prompt_token_bound(["hello world"], 1)  # what one call reserves against tokens per minute
    who = origin(key_limits=Limits(tpm=bound + 5))  # room for one call at a time
    waiting = asyncio.create_task(e.embed(call, who))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    upstream.answer.set()
    answered = await e.embed(call, who)  # refused (tokens per minute) if the cancelled call still held its share
    assert answered.value == [[1.0, 0.0]] and len(rows.messages()) == 1


async def test_a_prompt_that_shrank_after_admission_gives_everything_back_when_it_ends() -> None:
    e, _ = engine(Scripted(answer("ok")))
    text = "x" * 400
    who = origin(key_limits=Limits(tpm=prompt_token_bound([text], 1) + 10 + 5))  # room for one long prompt

    def request(content: str) -> GenerationRequest:
        return GenerationRequest(
            call=chat(), origin=who, model="main", messages=[Message("user", content)], max_tokens=10
        )

    first = request(text)
    await e.admission.admit([first], who.key_limits)
    first.messages = [Message("user", "x")]  # the moderation API rewrote the input shorter
    await e.admission.admit([first], who.key_limits, grown=True)
    nothing = GenerationResult(
        "", Usage(), price_usage(Usage(), e.catalog.models["main"].price), "normal", "stop", 0, None
    )
    e.admission.settle(first, nothing)
    await e.admission.admit([request(text)], who.key_limits)  # refused if the shrink had kept a share counted


class Strict(Scripted):
    """An upstream that honours only some parameters (as llama.cpp or Anthropic do)."""

    accepts = frozenset({"seed", "response_format"})


async def test_every_parameter_reaches_a_provider_that_takes_it() -> None:
    upstream = Scripted(answer("ok"))
    e, _ = engine(upstream)
    params = {"seed": 7, "response_format": {"type": "json_object"}, "logprobs": True, "service_tier": "flex"}
    await run(e, chat(params=params, token_param="max_completion_tokens", max_tokens=9))
    (sent,) = upstream.calls
    assert sent.extra == params and sent.token_param == "max_completion_tokens" and sent.max_tokens == 9


async def test_a_parameter_no_deployment_can_honour_is_a_400_naming_it() -> None:
    e, rows = engine(Strict(answer("ok")))
    with pytest.raises(InputError) as refused:
        await e.generate(chat(params={"seed": 1, "service_tier": "flex"}), origin())
    assert "service_tier" in refused.value.message and refused.value.param == "service_tier"
    assert rows.rows == []  # refused before anything ran


async def test_a_deployment_that_cannot_honour_a_parameter_is_passed_over_for_one_that_can() -> None:
    primary, backup = Strict(answer("strict")), Scripted(answer("spare takes it"))
    e, _ = engine(primary, backup)
    result = await run(e, chat(params={"logprobs": True}))
    assert result.answer == "spare takes it" and primary.calls == []


async def test_drop_params_drops_what_the_operator_listed_and_the_record_says_so() -> None:
    upstream = Strict(answer("ok"))
    e, _ = engine(upstream, drop_params=["service_tier"])
    result = await run(e, chat(params={"seed": 1, "service_tier": "flex"}))
    assert upstream.calls[0].extra == {"seed": 1}
    assert result.attempts[0]["dropped_params"] == ["service_tier"]


class Continuing(Scripted):
    """An upstream that can continue a partial answer sent as an assistant prefill (llama.cpp, Anthropic)."""

    continues = True


async def streamed(e: Engine, call: ChatCall, limits: Limits | None = None) -> tuple[list[str], Any]:
    """What a streaming client receives (its text deltas), and the result."""
    started = await e.generate(call, origin() if limits is None else origin(key_limits=limits))
    (generation,) = started.generations
    texts = []
    async for event in generation.events():
        if isinstance(event, TextDelta):
            texts.append(event.text)
    return texts, generation.result


async def test_a_stream_that_breaks_mid_answer_is_continued_by_the_fallback() -> None:
    primary = Scripted([TextDelta("Half"), TextDelta(" an"), ProviderUnavailable("reset")])
    backup = Continuing([TextDelta(" answer."), Finish("stop", Usage(9, 1))])
    e, _ = engine(primary, backup)
    texts, result = await streamed(e, chat(stream=True))
    assert texts == ["Half", " an", " answer."] and result.answer == "Half an answer."  # one whole answer
    assert result.status == "normal" and result.model == "spare"
    prefill = backup.calls[0].messages[-1]
    assert prefill.role == "assistant" and prefill.content == "Half an"
    assert [(a["model"], a["status"], a.get("continued_after")) for a in result.attempts] == [
        ("main", "error", None),
        ("spare", "ok", 2),
    ]


async def test_a_stream_is_continued_on_a_retry_of_its_own_deployment_when_it_can() -> None:
    upstream = Continuing([TextDelta("One"), ProviderUnavailable("reset")], answer(" two"))
    e, _ = engine(upstream)
    texts, result = await streamed(e, chat(stream=True))
    assert "".join(texts) == "One two" and result.status == "normal" and len(upstream.calls) == 2


async def test_a_stall_after_the_first_token_is_cut_by_the_idle_timeout_and_rescued() -> None:
    primary = Scripted([TextDelta("Still"), 5.0, *answer("never")])
    backup = Continuing(answer(" here"))
    e, _ = engine(primary, backup, idle_timeout_ms=50)
    texts, result = await streamed(e, chat(stream=True))
    assert "".join(texts) == "Still here" and result.attempts[0]["error_code"] == "provider_timeout"


async def test_without_a_deployment_that_continues_the_stream_ends_with_a_clean_error() -> None:
    primary = Scripted([TextDelta("Half"), ProviderUnavailable("reset")])
    e, _ = engine(primary, Scripted(answer("whole")))
    texts, result = await streamed(e, chat(stream=True))
    assert texts == ["Half"] and result.status == "error" and len(result.attempts) == 1


async def test_tokens_held_before_commit_let_a_short_answer_be_rescued_whole() -> None:
    primary = Scripted([TextDelta("Hal"), TextDelta("f"), ProviderUnavailable("reset")])
    backup = Scripted(answer("A whole answer"))  # cannot continue: it answers from the start
    e, _ = engine(primary, backup, commit_after_tokens=5)
    texts, result = await streamed(e, chat(stream=True))
    assert "".join(texts) == "A whole answer" and result.answer == "A whole answer" and result.status == "normal"


async def test_a_rescue_continues_after_the_tokens_the_client_has_not_those_of_a_discarded_attempt() -> None:
    primary = Scripted(
        [TextDelta("lost"), ProviderUnavailable("reset")],  # held back (not committed), then discarded
        [TextDelta("One"), TextDelta(" two"), ProviderUnavailable("reset")],  # committed after two, then breaks
    )
    backup = Continuing(answer(" three"))
    e, _ = engine(primary, backup, commit_after_tokens=2)
    texts, result = await streamed(e, chat(stream=True, max_tokens=10))
    assert "".join(texts) == "One two three" and result.status == "normal"
    assert backup.calls[0].messages[-1].content == "One two"
    assert result.attempts[-1]["continued_after"] == 2  # the client's two tokens, not three
    assert backup.calls[0].max_tokens == 8


async def test_a_malformed_chunk_is_skipped_and_counted_in_the_record_and_metrics() -> None:
    upstream = Scripted([TextDelta("Fine"), Malformed("{oops"), TextDelta(" still"), Finish("stop", Usage(2, 2))])
    e, _ = engine(upstream)
    result = await run(e, chat())
    assert result.answer == "Fine still" and result.status == "normal"
    assert result.attempts[0]["malformed_chunks"] == 1
    assert 'promptd_malformed_chunks_total{provider="a"} 1' in e.metrics.exposition()


LIMITED = Limits(tpm=10**9)  # a token limit: admission reserves for max_tokens, and the answer is held to it


async def test_an_upstream_that_honours_max_tokens_is_never_cut() -> None:
    e, _ = engine(Scripted(answer("one two three")))
    result = await run(e, chat(max_tokens=3), origin(key_limits=LIMITED))
    assert result.answer == "one two three" and "cut_at_max_tokens" not in result.attempts[0]
    assert result.usage == Usage(4, 3) and "estimated" not in result.attempts[0]["usage"]


async def test_a_stream_past_max_tokens_is_cut_there_and_billed_the_reserved_maximum() -> None:
    runaway = Scripted(answer(" ".join(f"w{i}" for i in range(20))))
    e, _ = engine(runaway)
    texts, result = await streamed(e, chat(max_tokens=3, stream=True), LIMITED)
    assert "".join(texts) == "w0 w1 w2" and result.finish_reason == "length"
    assert result.attempts[0]["cut_at_max_tokens"] == 3 and result.usage.completion_tokens == 3


async def test_an_unstreamed_reply_past_max_tokens_is_cut_by_its_usage_or_its_length() -> None:
    reported = Scripted([TextDelta("abcd" * 100), Finish("stop", Usage(7, 100))])
    e, _ = engine(reported)
    result = await run(e, chat(max_tokens=10), origin(key_limits=LIMITED))
    assert result.answer == "abcd" * 10 and result.usage == Usage(7, 10) and result.finish_reason == "length"
    silent = Scripted([TextDelta("abcd" * 100), Finish("stop", None)])  # no usage: 4 characters a token
    e, _ = engine(silent)
    result = await run(e, chat(max_tokens=10), origin(key_limits=LIMITED))
    assert result.answer == "abcd" * 10 and result.usage.completion_tokens == 10
    assert result.attempts[0]["usage"]["estimated"] is True


async def test_without_a_token_limit_nothing_is_counted_or_cut() -> None:
    e, _ = engine(Scripted(answer("one two three four")))
    result = await run(e, chat(max_tokens=2))
    assert result.answer == "one two three four" and "cut_at_max_tokens" not in result.attempts[0]
