"""Admission: rate limits and budgets, checked and reserved before a call, settled after it.

Each request draws on counters: requests and tokens per rolling minute (per key, per project, per end user)
and cost per UTC day and month (per key, per project). Before the call it reserves its upper bound on every
counter at once: prompt tokens bounded by the prompt's UTF-8 bytes, plus max_tokens, at the dearest price of
the models it may fall back to. It reserves from the slices of each counter this process leases from the
coordinator (in this process, or Redis across replicas; engine/leases.py), all or nothing; slices are counted
in the coordinator before they are used, so concurrent requests on any number of replicas cannot overshoot a
limit together. When the call ends, `settle` replaces the reservation by the real tokens and cost, in this
process; what a process owes or gives back reaches the coordinator in one call every few milliseconds.

When a token or cost limit applies and nothing sets max_tokens, the request is sent with `reserve_max_tokens`
as its max_tokens, so that the reservation is a real bound. Budgets start from what the store's daily usage
rollups say was spent (a restart, or a Redis that lost its data, does not reset them).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from promptd.catalog.schema import Catalog, LimitsConfig
from promptd.coord.base import Coordinator, Take
from promptd.domain.limits import Limits, Window, calendar_window, prompt_token_bound, reserve_pico, to_pico
from promptd.engine.call import DATASET_SCOPE, dataset_scope
from promptd.engine.leases import Leases
from promptd.engine.request import GenerationRequest, GenerationResult
from promptd.errors import BudgetExceeded, LimitExceeded, LimitsUnavailable, PromptdError

__all__ = ["Admission", "Reservation", "SpentLookup"]

log = logging.getLogger("promptd.admission")

#: (scope "key" | "project", key id or project name, window "day" | "month", window id) → pico-units spent
SpentLookup = Callable[[str, str, str, str], Awaitable[int]]

IMAGE_TOKENS = 2000  # an image part's share of the prompt bound: more than providers bill for one image
MINUTE_TTL = 130  # a minute bucket is read for two minutes (as the current, then as the previous)
CALENDAR_MARGIN = 86_400  # budget buckets outlive their window by a day (late settlements land in them)


@dataclass(frozen=True, slots=True)
class _Limit:
    scope: str  # "key" | "project" | "user"
    ident: str  # key id, project name, or project + end user
    what: str  # "requests" | "tokens" | "cost"
    window: Window
    limit: int

    @property
    def base(self) -> str:
        """Its buckets' keys, but for the window's id."""
        return f"lim:{self.scope}:{self.ident}:{self.what}:{self.window}:"


@dataclass(slots=True)
class Reservation:
    """What one generation holds: its share of each counter, to settle when it ends."""

    tokens: int
    cost: int  # pico-units
    buckets: list[tuple[str, str, int]]  # (bucket key, "tokens" | "cost", ttl)


def _limits(
    project: str, key_id: str | None, key: Limits, proj: Limits, cfg: LimitsConfig, user: str | None
) -> list[_Limit]:
    """The counters a request draws on: the key's and the project's (`proj`, read from `cfg`) limits, and the
    project's per-end-user ones."""
    out: list[_Limit] = []

    def add(scope: str, ident: str | None, what: str, window: Window, limit: int | None) -> None:
        if ident is not None and limit is not None:
            out.append(_Limit(scope, ident, what, window, limit))

    for scope, ident, lim in (("key", key_id, key), ("project", project, proj)):
        add(scope, ident, "requests", "minute", lim.rpm)
        add(scope, ident, "tokens", "minute", lim.tpm)
        add(scope, ident, "cost", "day", None if lim.cost_per_day is None else to_pico(lim.cost_per_day))
        add(scope, ident, "cost", "month", None if lim.cost_per_month is None else to_pico(lim.cost_per_month))
    who = None if user is None else f"{project}\x00{user}"
    add("user", who, "requests", "minute", cfg.per_user.rpm)
    add("user", who, "tokens", "minute", cfg.per_user.tpm)
    return out


def _as_limits(cfg: LimitsConfig) -> Limits:
    return Limits(
        rpm=cfg.rpm,
        tpm=cfg.tpm,
        cost_per_day=None if cfg.cost_per_day is None else Decimal(cfg.cost_per_day),
        cost_per_month=None if cfg.cost_per_month is None else Decimal(cfg.cost_per_month),
    )


def _prompt_bound(req: GenerationRequest) -> int:
    if req.prompt_tokens is not None:  # token ids: exactly that many tokens
        return req.prompt_tokens
    texts: list[str] = []
    images = 0
    for m in req.messages:
        if isinstance(m.content, str):
            texts.append(m.content)
        else:
            for part in m.content:
                if part.get("type") == "text":
                    texts.append(str(part.get("text", "")))
                else:
                    images += 1
        if m.tool_calls:
            texts.append(json.dumps(m.tool_calls))
    if req.tools:
        texts.append(json.dumps(req.tools))
    return prompt_token_bound(texts, len(req.messages)) + images * IMAGE_TOKENS


_SCOPE_NAMES = {"key": "this API key", "project": "project", "user": "this end user"}
_WHAT = {("requests", "minute"): "requests per minute", ("tokens", "minute"): "tokens per minute"}


class Admission:
    def __init__(
        self,
        catalog: Catalog,
        coordinator: Coordinator,
        spent: SpentLookup,
        *,
        reserve_max_tokens: int = 1024,
        clock: Callable[[], float] = time.time,
        leases: Leases | None = None,
    ) -> None:
        self.coordinator = coordinator
        self.spent = spent
        self.reserve_max_tokens = reserve_max_tokens
        self.clock = clock
        self.leases = leases or Leases(coordinator)
        # a request's counters and the current windows, computed once, not per request (admission is on every
        # limited request's path: this keeps it to a few microseconds)
        self._counters: dict[tuple[str, str | None, Limits, str | None], list[tuple[_Limit, str]]] = {}
        self._windows: dict[str, tuple[str, float]] = {}  # "day" | "month" → (window id, when it ends)
        self.use_catalog(catalog)

    def use_catalog(self, catalog: Catalog) -> None:
        """Take the catalog's limits, read once: most requests have none and must pay nothing for the check (a
        reload calls this again; the cached counters of the old catalog are dropped)."""
        # a scope is a project, or a knowledge base's own calls (`dataset:<name>`, engine/call.py)
        configs = {name: p.limits for name, p in catalog.projects.items()}
        configs.update({dataset_scope(name): kb.limits for name, kb in catalog.knowledge.items()})
        project_limits = {name: _as_limits(cfg) for name, cfg in configs.items()}
        per_user = {
            name for name, cfg in configs.items() if cfg.per_user.rpm is not None or cfg.per_user.tpm is not None
        }
        self._unlimited = {name for name in configs if project_limits[name].empty and name not in per_user}
        self._per_user = per_user
        self._configs = configs
        self._project_limits = project_limits
        self._dataset_default = (catalog.dataset_limits, _as_limits(catalog.dataset_limits))
        self._counters = {}
        self.catalog = catalog

    async def admit(self, requests: Sequence[GenerationRequest], key_limits: Limits, *, grown: bool = False) -> None:
        """Reserve for one API call (its `requests`: the choices of one call count as one request), or raise
        LimitExceeded / BudgetExceeded. Without limits this returns at once, touching nothing shared.

        `grown`: the requests were admitted already and their prompt has grown since (the knowledge context):
        reserve what the bound grew by, not one more request. On a refusal, what they held stays held (the caller
        releases it)."""
        first = requests[0]
        if key_limits.empty and first.project in self._unlimited:
            return
        project = self.catalog.projects.get(first.project)  # None: a knowledge base's own call
        user = first.user if first.project in self._per_user else None  # one cache entry per end user only if needed
        counters = self._counters.get((first.project, first.key_id, key_limits, user))
        if counters is None:
            counters = self._counters_of(first.project, first.key_id, key_limits, user)
        if not counters:
            return
        limits = [lim for lim, _ in counters]
        wants_tokens = any(lim.what != "requests" for lim in limits)
        tokens: list[int] = []
        costs: list[int] = []
        for req in requests:
            if wants_tokens and req.max_tokens is None:
                model = self.catalog.models[req.model]
                req.max_tokens = (project and project.max_tokens) or model.max_tokens or self.reserve_max_tokens
            max_tokens = req.max_tokens or 0
            prompt = _prompt_bound(req)
            tokens.append(prompt + max_tokens)
            models = (req.model, *self.catalog.models[req.model].fallbacks)
            costs.append(max(reserve_pico(prompt, max_tokens, self.catalog.models[m].price) for m in models))
        now = self.clock()
        held = [r.reservation for r in requests] if grown else []
        for i, h in enumerate(held):  # a prompt that shrank keeps what it holds (settled when the call ends)
            if h is not None:
                tokens[i], costs[i] = max(tokens[i], h.tokens), max(costs[i], h.cost)
        # a call made for another call (knowledge's embeddings) spends tokens and money, not one more request
        amounts = {
            "requests": 0 if first.origin.internal or grown else 1,
            "tokens": sum(tokens) - sum(h.tokens for h in held if h is not None),
            "cost": sum(costs) - sum(h.cost for h in held if h is not None),
        }
        draws: list[tuple[str, int]] = []
        buckets: list[tuple[str, str, int]] = []
        for lim, base in counters:
            window_id, remaining = self._window(lim.window, now)
            draws.append((base + window_id, amounts[lim.what]))
            if lim.what != "requests":
                ttl = MINUTE_TTL if lim.window == "minute" else int(remaining) + CALENDAR_MARGIN
                buckets.append((base + window_id, lim.what, ttl))
        if not self.leases.draw(draws):
            takes = [self._take(lim, base, amounts[lim.what], now) for lim, base in counters]
            await self._lease(limits, takes, now)
        for i, req in enumerate(requests):
            req.reservation = Reservation(tokens[i], costs[i], buckets)

    async def _lease(self, limits: list[_Limit], takes: list[Take], now: float) -> None:
        """Take from the slices held, leasing what they lack (seeding budgets from the store first), or raise."""
        try:
            for _ in range(3):
                refusal = await self.leases.take(takes)
                if refusal is None:
                    break
                if not refusal.needs_seed:
                    raise self._refused(limits[refusal.index], takes[refusal.index], refusal.used, now)
                lim = limits[refusal.index]
                window_id, _ = self._window(lim.window, now)
                value = await self.spent(lim.scope, lim.ident, lim.window, window_id)
                await self.coordinator.seed(takes[refusal.index].key, value, takes[refusal.index].ttl)
            else:  # pragma: no cover - a bucket that vanishes right after each seeding
                raise LimitsUnavailable("Limits could not be checked; try again.")
        except PromptdError:
            raise
        except Exception as exc:  # Redis (or the store) unreachable: budgets fail closed
            log.error("limits cannot be checked: %s", exc)
            raise LimitsUnavailable(
                "Rate limits and budgets apply to this request but cannot be checked right now; try again later."
            ) from exc

    def _counters_of(
        self, project: str, key_id: str | None, key_limits: Limits, user: str | None
    ) -> list[tuple[_Limit, str]]:
        if len(self._counters) >= 10_000:  # end users come and go: start again rather than grow
            self._counters.clear()
        cfg, scope_limits = (
            (self._configs[project], self._project_limits[project])
            if project in self._configs
            else self._dataset_default  # a knowledge base made through the dataset API
        )
        limits = _limits(project, key_id, key_limits, scope_limits, cfg, user)
        counters = self._counters[(project, key_id, key_limits, user)] = [(lim, lim.base) for lim in limits]
        return counters

    def _window(self, window: Window, now: float) -> tuple[str, float]:
        """calendar_window, with a day's and a month's id kept until the window ends."""
        if window == "minute":  # calendar_window's arithmetic, without its datetime
            minute = int(now // 60)
            return str(minute), 60 - (now - minute * 60)
        known = self._windows.get(window)
        if known is None or now >= known[1]:
            window_id, remaining = calendar_window(window, now)
            known = self._windows[window] = (window_id, now + remaining)
        return known[0], known[1] - now

    def _take(self, lim: _Limit, base: str, amount: int, now: float) -> Take:
        window_id, remaining = self._window(lim.window, now)
        if lim.window == "minute":
            return Take(
                key=base + window_id,
                limit=lim.limit,
                amount=amount,
                ttl=MINUTE_TTL,
                prev=base + str(int(window_id) - 1),
                prev_weight=remaining / 60,
            )
        return Take(base + window_id, lim.limit, amount, int(remaining) + CALENDAR_MARGIN, seeded=True)

    def _refused(self, lim: _Limit, take: Take, used: float, now: float) -> LimitExceeded:
        _, remaining = self._window(lim.window, now)
        who = _SCOPE_NAMES[lim.scope] + (f" {lim.ident!r}" if lim.scope == "project" else "")
        if lim.scope == "project" and lim.ident.startswith(DATASET_SCOPE):
            who = f"knowledge base {lim.ident.removeprefix(DATASET_SCOPE)!r}"
        if lim.what == "cost":
            amount = format(Decimal(lim.limit) / 10**12, "f")
            return BudgetExceeded(
                f"Budget reached: {who} may spend {amount} per {lim.window}; try again when the {lim.window} ends.",
                retry_after=remaining,
                scope=lim.scope,
                what=lim.what,
            )
        what = _WHAT[(lim.what, lim.window)]
        if take.amount > lim.limit:
            detail = f"this request alone needs {take.amount} {lim.what}, over the limit"
        else:
            detail = "try again later"
        return LimitExceeded(
            f"Rate limit reached: {who} allows {lim.limit} {what}; {detail}.",
            retry_after=remaining,
            scope=lim.scope,
            what=lim.what,
        )

    def settle(self, request: GenerationRequest, result: GenerationResult) -> None:
        """Replace the request's reservation by what it really used (in this process: no I/O)."""
        held = request.reservation
        if held is None:
            return
        request.reservation = None
        used = {"tokens": result.usage.total_tokens, "cost": to_pico(result.cost.total_price)}
        self._settle({"tokens": used["tokens"] - held.tokens, "cost": used["cost"] - held.cost}, held)

    def _settle(self, deltas: dict[str, int], held: Reservation) -> None:
        self.leases.settle([(key, deltas[what], ttl) for key, what, ttl in held.buckets if deltas[what]])

    def release(self, request: GenerationRequest) -> None:
        """Give a reservation back whole: the call never started."""
        held = request.reservation
        if held is not None:
            request.reservation = None
            self._settle({"tokens": -held.tokens, "cost": -held.cost}, held)

    async def aclose(self) -> None:
        """Give back what this process leased, after the settlements made so far (graceful shutdown)."""
        await self.leases.aclose()
