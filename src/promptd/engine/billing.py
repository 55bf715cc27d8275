"""What a call costs. One rule, applied to every attempt of every kind of call:

- An attempt is billed the usage its provider reported (`Finish.usage`, an embedding's token count), priced at
  its own model's price (a fallback may be dearer or cheaper).
- An attempt whose provider reported nothing is billed only if it produced tokens: the tokens that came (its
  deltas) plus its prompt as counted (the upstream produced them, so it billed them). The bill says
  `estimated`. This covers a stream stopped by the client, cut by the upstream, or stalled past its deadline.
- An attempt that produced nothing and reported nothing costs nothing: a refusal (a 400 for context length, a
  content filter, a 5xx, a 429, a timeout before the first token) and a hedge's loser cancelled before its first
  token are free.
- A call costs the sum of its attempts' bills, and its usage is the sum of their tokens: a blocking answer
  retried after a failure mid-answer pays for the lost tokens too. Budgets and usage rollups settle on that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from promptd.catalog.schema import Price
from promptd.domain.pricing import Cost, price_usage
from promptd.types import Usage

__all__ = ["Bill", "bill_attempt", "total"]


@dataclass(frozen=True, slots=True)
class Bill:
    usage: Usage
    cost: Cost
    estimated: bool = False


def bill_attempt(reported: Usage | None, deltas: int, prompt_tokens: int | None, price: Price) -> Bill | None:
    """One attempt's bill, or None when it costs nothing. `prompt_tokens` is the prompt as counted (only read
    when the provider reported nothing and tokens came)."""
    if reported is not None:
        return Bill(reported, price_usage(reported, price))
    if deltas <= 0:
        return None
    usage = Usage(prompt_tokens or 0, deltas)
    return Bill(usage, price_usage(usage, price), estimated=True)


def total(bills: Sequence[Bill], price: Price) -> tuple[Usage, Cost]:
    """A call's usage and cost: its bills added up (at the answering model's price when there is none)."""
    if not bills:
        return Usage(), price_usage(Usage(), price)
    if len(bills) == 1:
        return bills[0].usage, bills[0].cost
    usage = Usage(sum(b.usage.prompt_tokens for b in bills), sum(b.usage.completion_tokens for b in bills))
    last = bills[-1].cost
    prompt = sum((b.cost.prompt_price for b in bills), Decimal(0))
    completion = sum((b.cost.completion_price for b in bills), Decimal(0))
    return usage, Cost(
        prompt_unit_price=last.prompt_unit_price,
        completion_unit_price=last.completion_unit_price,
        price_unit=last.price_unit,
        prompt_price=prompt,
        completion_price=completion,
        currency=last.currency,
        total_price=prompt + completion,
    )
