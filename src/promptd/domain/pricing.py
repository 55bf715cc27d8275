"""Token prices, exact, in Dify's usage shape (decimal strings). Pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext

from promptd.catalog.schema import Price
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

    @property
    def total_price(self) -> Decimal:
        with localcontext(prec=PRECISION):
            return self.prompt_price + self.completion_price

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


def price_usage(usage: Usage, price: Price) -> Cost:
    """Cost of `usage` at `price`: tokens x unit price x (1 / tokens per unit), to 7 decimals, half up."""
    with localcontext(prec=PRECISION):
        unit = Decimal(1) / price.tokens_per_unit
        prompt_unit, completion_unit = Decimal(price.input), Decimal(price.output)
        return Cost(
            prompt_unit_price=prompt_unit,
            completion_unit_price=completion_unit,
            price_unit=unit,
            prompt_price=(usage.prompt_tokens * prompt_unit * unit).quantize(QUANTUM, rounding=ROUND_HALF_UP),
            completion_price=(usage.completion_tokens * completion_unit * unit).quantize(
                QUANTUM, rounding=ROUND_HALF_UP
            ),
            currency=price.currency,
        )
