"""Exact prices in Dify's usage shape: tokens x unit_price x price_unit, to 7 decimals half up, as strings."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

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


def test_prices_per_million_tokens() -> None:
    cost = price_usage(Usage(1_000_000, 2_000), Price(input="0.15", output="0.60", unit="1M"))
    fields = cost.dify_fields()
    assert fields["prompt_price_unit"] == fields["completion_price_unit"] == "0.000001"
    assert fields["prompt_price"] == "0.1500000"
    assert fields["completion_price"] == "0.0012000"
    assert fields["total_price"] == "0.1512000"


def test_prices_per_token() -> None:
    fields = price_usage(Usage(3, 2), Price(input="0.5", output="2", unit="1")).dify_fields()
    assert fields["prompt_price_unit"] == "1"
    assert (fields["prompt_price"], fields["completion_price"], fields["total_price"]) == (
        "1.5000000",
        "4.0000000",
        "5.5000000",
    )


@pytest.mark.parametrize(
    ("tokens", "per_million", "expected"),
    [
        (5, "0.15", "0.0000008"),  # 0.00000075 rounds up
        (1, "0.05", "0.0000001"),  # 0.00000005 rounds up
        (1, "0.049", "0.0000000"),  # 0.000000049 rounds down
        (25, "0.01", "0.0000003"),  # 0.00000025: half up, not half even (which gives 0.0000002)
        (35, "0.01", "0.0000004"),  # 0.00000035
    ],
)
def test_prices_round_half_up_at_the_seventh_decimal(tokens: int, per_million: str, expected: str) -> None:
    cost = price_usage(Usage(tokens, 0), Price(input=per_million, unit="1M"))
    assert plain(cost.prompt_price) == expected


def test_rounding_happens_once_on_the_exact_product() -> None:
    # 0.0000000499… (31 significant digits): rounding it to 28 digits first would give 0.00000005 → 0.0000001
    cost = price_usage(Usage(1, 0), Price(input="0.00000004" + "9" * 30, unit="1"))
    assert plain(cost.prompt_price) == "0.0000000"


def test_large_amounts_are_exact_too() -> None:
    # 30 digits once quantized: more than the default decimal context holds
    cost = price_usage(Usage(10**9, 10**9), Price(input="98765432109876.5432109876543", output="0.0000001", unit="1"))
    assert plain(cost.prompt_price) == "98765432109876543210987.6543000"
    assert plain(cost.completion_price) == "100.0000000"
    assert plain(cost.total_price) == "98765432109876543211087.6543000"


def test_the_total_is_the_sum_of_the_rounded_parts() -> None:
    cost = price_usage(Usage(5, 5), Price(input="0.15", output="0.15", unit="1M"))
    assert cost.total_price == cost.prompt_price + cost.completion_price == Decimal("0.0000016")


def test_free_models_cost_zero_and_the_currency_is_kept() -> None:
    fields = price_usage(Usage(100, 100), Price(currency="EUR")).dify_fields()
    assert fields["prompt_unit_price"] == fields["completion_unit_price"] == "0"
    assert fields["prompt_price"] == fields["completion_price"] == fields["total_price"] == "0.0000000"
    assert fields["currency"] == "EUR"


def test_no_tokens_cost_nothing() -> None:
    assert plain(price_usage(Usage(0, 0), Price(input="3", output="15", unit="1M")).total_price) == "0.0000000"


def test_prices_are_decimal_strings_without_exponent() -> None:
    fields = price_usage(Usage(1, 1), Price(input="1E-7", output="8E-7", unit="1M")).dify_fields()
    assert fields["prompt_unit_price"] == "0.0000001" and fields["completion_unit_price"] == "0.0000008"
    for name, value in fields.items():
        if name != "currency":
            assert re.fullmatch(r"\d+(\.\d+)?", value), (name, value)
    assert plain(Decimal("8E-7")) == "0.0000008"
    assert plain(Decimal("1E+3")) == "1000"
