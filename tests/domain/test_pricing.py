"""Exact prices in Dify's usage shape."""

from __future__ import annotations

from decimal import Decimal

from promptd.catalog.schema import Price
from promptd.domain.pricing import plain, price_usage
from promptd.types import Usage


def test_the_dify_seed_example() -> None:
    cost = price_usage(Usage(1033, 128), Price(input="0.001", output="0.002", unit="1K"))
    assert cost.dify_fields() == {
        "prompt_unit_price": "0.001",
        "prompt_price_unit": "0.001",
        "prompt_price": "0.0010330",
        "completion_unit_price": "0.002",
        "completion_price_unit": "0.001",
        "completion_price": "0.0002560",
        "total_price": "0.0012890",
        "currency": "USD",
    }


def test_per_million_prices_round_half_up_at_the_seventh_decimal() -> None:
    cost = price_usage(Usage(5, 1), Price(input="0.15", output="0.05", unit="1M"))
    assert cost.prompt_price == Decimal("0.0000008")  # 0.00000075 rounds up
    assert cost.completion_price == Decimal("0.0000001")  # 0.00000005 rounds up
    assert plain(cost.price_unit) == "0.000001"


def test_free_models_cost_zero_and_currency_is_kept() -> None:
    fields = price_usage(Usage(100, 100), Price(currency="EUR")).dify_fields()
    assert fields["total_price"] == "0.0000000" and fields["currency"] == "EUR"


def test_prices_never_use_exponent_notation() -> None:
    assert plain(Decimal("8E-7")) == "0.0000008"
