"""Rate limits and budgets as values, and the arithmetic of reserving before a call. Pure, no I/O.

A limit is checked on a counter: requests or tokens per rolling minute, or cost per calendar day or month
(UTC). Costs are counted in integer pico-units (10^-12) of the price's currency, so counters add exactly and
fit Redis integers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, InvalidOperation, localcontext
from typing import Any, Literal

from promptd.domain.values import PriceShape

__all__ = [
    "PICO",
    "Counter",
    "Limits",
    "Window",
    "calendar_window",
    "parse_amount",
    "prompt_token_bound",
    "reserve_pico",
    "to_pico",
]

PICO = Decimal(10) ** 12
Window = Literal["minute", "day", "month"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits of one key or project (None: unlimited). Costs in the currency of the models' prices."""

    rpm: int | None = None
    tpm: int | None = None
    cost_per_day: Decimal | None = None
    cost_per_month: Decimal | None = None

    @property
    def empty(self) -> bool:
        return self.rpm is None and self.tpm is None and self.cost_per_day is None and self.cost_per_month is None

    def to_json(self) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        if self.rpm is not None:
            out["rpm"] = self.rpm
        if self.tpm is not None:
            out["tpm"] = self.tpm
        if self.cost_per_day is not None:
            out["cost_per_day"] = format(self.cost_per_day, "f")
        if self.cost_per_month is not None:
            out["cost_per_month"] = format(self.cost_per_month, "f")
        return out or None

    def describe(self) -> str:
        """One line for listings: `rpm=60,cost_per_day=1.50`, or `-` without limits."""
        return ",".join(f"{name}={value}" for name, value in (self.to_json() or {}).items()) or "-"

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Limits:
        if not data:
            return cls()

        def dec(name: str) -> Decimal | None:
            v = data.get(name)
            return None if v is None else Decimal(str(v))

        rpm, tpm = data.get("rpm"), data.get("tpm")
        return cls(
            rpm=None if rpm is None else int(rpm),
            tpm=None if tpm is None else int(tpm),
            cost_per_day=dec("cost_per_day"),
            cost_per_month=dec("cost_per_month"),
        )


@dataclass(frozen=True, slots=True)
class Counter:
    """One counter a request draws on: its name (who and what), window, limit, and how much this request takes.

    `scope` names who is limited, for messages and Retry-After ("key", "project", "user")."""

    name: str
    window: Window
    limit: int
    amount: int
    scope: str
    what: str  # "requests" | "tokens" | "cost"


def parse_amount(value: object) -> Decimal:
    """A budget amount: a positive, finite decimal, exact (give it as a string). ValueError says what is wrong."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"{value!r} must be a positive amount")
    return amount


def to_pico(amount: Decimal) -> int:
    """A currency amount in pico-units, rounded up (a reservation never rounds below the real cost)."""
    with localcontext(prec=60):
        return int((amount * PICO).to_integral_value(rounding=ROUND_CEILING))


def prompt_token_bound(texts: list[str], messages: int) -> int:
    """An upper bound on the prompt tokens of these texts: a byte-level BPE token covers at least one byte, and
    a chat template adds a few tokens per message (8 is generous)."""
    return sum(len(t.encode("utf-8")) for t in texts) + 8 * messages + 8


def reserve_pico(prompt_tokens: int, max_tokens: int, price: PriceShape) -> int:
    """What a call may cost at most, in pico-units: prompt tokens and max_tokens at the model's price."""
    with localcontext(prec=60):
        unit = Decimal(1) / price.tokens_per_unit
        cost = (prompt_tokens * Decimal(price.input) + max_tokens * Decimal(price.output)) * unit
    return to_pico(cost)


def calendar_window(window: Window, now: float) -> tuple[str, float]:
    """The current calendar window's id (e.g. '2026-12-01', '2026-12') and the seconds until it ends (UTC)."""
    t = dt.datetime.fromtimestamp(now, dt.UTC)
    if window == "day":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + dt.timedelta(days=1)
        return start.strftime("%Y-%m-%d"), (end - t).total_seconds()
    if window == "month":
        start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + dt.timedelta(days=32)).replace(day=1)
        return start.strftime("%Y-%m"), (end - t).total_seconds()
    minute = int(now // 60)
    return str(minute), 60 - (now - minute * 60)
