"""Token prices, exact, in Dify's usage shape (decimal strings). Pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext

from promptd.domain.values import PriceShape
from promptd.types import Usage

__all__ = ["Cost", "plain", "price_usage"]

QUANTUM = Decimal("0.0000001")
#: Digits kept while multiplying: enough that tokens x price x unit is exact before the one rounding at the
#: 7th decimal (the default 28 would round first, and a second rounding can move the 7th decimal).
PRECISION = 200


def plain(d: Decimal) -> str:
    """Decimal → string without exponent (1E-6 → '0.000001')."""
    return format(d, "f")


@dataclass(frozen=True, slots=True)
class Cost:
    prompt_unit_price: Decimal
    completion_unit_price: Decimal
    price_unit: Decimal
    prompt_price: Decimal
    completion_price: Decimal
    currency: str
    total_price: Decimal  # prompt_price + completion_price, exact

    def dify_fields(self) -> dict[str, str]:
        return {
            "prompt_unit_price": plain(self.prompt_unit_price),
            "prompt_price_unit": plain(self.price_unit),
            "prompt_price": plain(self.prompt_price),
            "completion_unit_price": plain(self.completion_unit_price),
            "completion_price_unit": plain(self.price_unit),
            "completion_price": plain(self.completion_price),
            "total_price": plain(self.total_price),
            "currency": self.currency,
        }


def price_usage(usage: Usage, price: PriceShape) -> Cost:
    """Cost of `usage` at `price`: tokens x unit price x (1 / tokens per unit), to 7 decimals, half up."""
    prompt_unit, completion_unit, unit = price.rates
    with localcontext(prec=PRECISION):
        prompt = (usage.prompt_tokens * prompt_unit * unit).quantize(QUANTUM, rounding=ROUND_HALF_UP)
        completion = (usage.completion_tokens * completion_unit * unit).quantize(QUANTUM, rounding=ROUND_HALF_UP)
        return Cost(
            prompt_unit_price=prompt_unit,
            completion_unit_price=completion_unit,
            price_unit=unit,
            prompt_price=prompt,
            completion_price=completion,
            currency=price.currency,
            total_price=prompt + completion,
        )
