"""Limits as values and the arithmetic of reservations: exact, pure."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from promptd.catalog.schema import Price
from promptd.domain.limits import Limits, calendar_window, prompt_token_bound, reserve_pico, to_pico


def test_limits_round_trip_through_json_exactly() -> None:
    limits = Limits(rpm=5, tpm=100, cost_per_day=Decimal("0.10"), cost_per_month=Decimal("12.3456789"))
    assert Limits.from_json(limits.to_json()) == limits
    assert limits.to_json() == {"rpm": 5, "tpm": 100, "cost_per_day": "0.10", "cost_per_month": "12.3456789"}
    assert Limits().to_json() is None and Limits.from_json(None).empty


def test_amounts_become_pico_units_rounded_up() -> None:
    assert to_pico(Decimal("1")) == 10**12
    assert to_pico(Decimal("0.00000015")) == 150_000
    assert to_pico(Decimal("1E-13")) == 1  # a reservation never rounds below the real cost


def test_the_prompt_bound_counts_bytes_not_characters() -> None:
    assert prompt_token_bound(["abc"], 1) == 3 + 8 + 8
    assert prompt_token_bound(["é"], 1) == 2 + 8 + 8  # two UTF-8 bytes
    assert prompt_token_bound([], 0) == 8


def test_a_reservation_prices_prompt_and_max_tokens_at_the_models_price() -> None:
    price = Price(input="0.15", output="0.60", unit="1M")
    assert reserve_pico(1000, 500, price) == to_pico(Decimal("0.00045"))  # 1000 x 0.15/1M + 500 x 0.60/1M
    assert reserve_pico(0, 30, Price(input="0", output="0.001", unit="1")) == to_pico(Decimal("0.03"))


def test_a_reservation_in_integers_equals_the_decimal_one_and_rounds_up() -> None:
    """Prices of 12 decimals or fewer are reserved in integer pico-units; finer ones in decimals: both exact."""
    assert reserve_pico(7, 3, Price(input="0.15", output="0.60", unit="1M")) == 2_850_000
    assert reserve_pico(7, 0, Price(input="0.0000001", output="0", unit="1M")) == 1  # 0.7 pico-units, rounded up
    assert reserve_pico(3, 0, Price(input="0.0000000000001", output="0", unit="1")) == 1  # 0.3 pico-units
    fine = Price(input="0.0000000000001", output="2.5", unit="1K")
    assert reserve_pico(10, 4, fine) == to_pico(Decimal("10") * Decimal("0.0000000000001") + Decimal("0.01"))


def test_calendar_windows_are_utc_days_months_and_minutes() -> None:
    now = dt.datetime(2026, 12, 31, 23, 59, 30, tzinfo=dt.UTC).timestamp()
    assert calendar_window("day", now) == ("2026-12-31", 30.0)
    assert calendar_window("month", now) == ("2026-12", 30.0)
    minute, remaining = calendar_window("minute", now)
    assert int(minute) == int(now // 60) and remaining == 30.0
    feb = dt.datetime(2027, 2, 1, tzinfo=dt.UTC).timestamp()
    assert calendar_window("month", feb) == ("2027-02", 28 * 86400)
