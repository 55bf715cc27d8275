"""Campaign statistics: a bool metric's interval stays within [0, 1] (Wilson), and no leader is named on one
sample."""

from __future__ import annotations

from typing import Any

import pytest

from promptd.catalog.schema import CampaignConfig
from promptd.domain.campaign_results import campaign_report
from promptd.domain.stats import summarize, summarize_bool

CAMPAIGN = CampaignConfig(models=["a", "b"], traffic_split=0.5, metric="ok")


def report(values: list[tuple[str, float]], kind: str = "scalar") -> dict[str, Any]:
    return campaign_report(
        "p", "c", CAMPAIGN, campaign_id="id", higher_is_better=True, kind=kind, requests=[], values=values
    )


@pytest.mark.parametrize("values", [[1, 1, 1], [1, 1, 1, 1, 0], [0, 0], [1], [0, 1, 1, 0, 1, 1, 1, 1, 1, 1]])
def test_a_bool_metrics_interval_stays_within_zero_and_one(values: list[float]) -> None:
    s = summarize_bool(values)
    assert s.low is not None and s.high is not None and s.mean is not None
    assert 0 <= s.low <= s.mean <= s.high <= 1
    assert s.high - s.low > 0  # never a zero-width certainty from a handful of samples


def test_the_t_interval_of_a_near_certain_rate_would_leave_zero_to_one() -> None:
    s = summarize([1, 1, 1, 1, 0])
    assert s.high is not None and s.high > 1  # why bool metrics use Wilson's interval
    wilson = summarize_bool([1, 1, 1, 1, 0])
    assert wilson.high is not None and round(wilson.high, 3) == 0.964 and round(wilson.low or 0, 3) == 0.376


def test_a_bool_campaign_reports_wilson_intervals() -> None:
    res = report([("a", 1), ("a", 1), ("a", 1), ("b", 0), ("b", 1)], kind="bool")
    a = next(m for m in res["models"] if m["model"] == "a")
    assert a["metric_mean"] == 1 and 0 < a["metric_ci95"][0] < a["metric_ci95"][1] == 1


def test_no_leader_with_one_sample() -> None:
    assert report([("a", 5.0), ("b", 1.0)])["leader"] is None
    assert report([("a", 5.0), ("a", 4.0), ("b", 1.0)])["leader"] is None  # b has one value: nothing to compare
    assert report([("a", 5.0), ("a", 4.0), ("b", 1.0), ("b", 2.0)])["leader"] == "a"
