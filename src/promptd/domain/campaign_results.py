"""A campaign's results: per model, requests, errors, metric mean with its 95 % interval, cost and latency, and
whether the difference between the models is significant yet (Welch's test). Pure: callers pass the rows."""

from __future__ import annotations

from decimal import Decimal
from itertools import combinations
from typing import Any

from promptd.domain.pricing import plain
from promptd.domain.stats import percentile, summarize, welch_p_value
from promptd.domain.values import CampaignShape

__all__ = ["ALPHA", "campaign_report"]

ALPHA = 0.05


def campaign_report(
    project: str,
    key: str,
    campaign: CampaignShape,
    *,
    campaign_id: str,
    higher_is_better: bool,
    requests: list[dict[str, Any]],
    values: list[tuple[str, float]],
) -> dict[str, Any]:
    """The results of one campaign from its requests (model, status, latency, ttft, price) and metric values."""
    summaries = {m: summarize([v for model, v in values if model == m]) for m in campaign.models}
    models: list[dict[str, Any]] = []
    for m in campaign.models:
        mine = [r for r in requests if r["model"] == m]
        latencies = [r["latency"] * 1000 for r in mine if r["latency"] is not None]
        ttfts = [r["ttft"] * 1000 for r in mine if r["ttft"] is not None]
        s = summaries[m]
        models.append(
            {
                "model": m,
                "requests": len(mine),
                "errors": sum(r["status"] == "error" for r in mine),
                "feedback_count": s.n,
                "metric_mean": s.mean,
                "metric_ci95": [s.low, s.high] if s.low is not None else None,
                "cost": plain(sum((Decimal(r["total_price"]) for r in mine), Decimal(0))),
                "currency": mine[0]["currency"] if mine else None,
                "latency_ms": {
                    "p50": percentile(latencies, 50),
                    "p95": percentile(latencies, 95),
                    "p99": percentile(latencies, 99),
                },
                "ttft_ms": {"p50": percentile(ttfts, 50), "p95": percentile(ttfts, 95)},
            }
        )
    comparisons = []
    for a, b in combinations(campaign.models, 2):
        p = welch_p_value(summaries[a], summaries[b])
        comparisons.append({"models": [a, b], "p_value": p, "significant": p is not None and p < ALPHA})
    ranked = [m for m in models if m["metric_mean"] is not None]
    sign = 1 if higher_is_better else -1
    leader = max(ranked, key=lambda m: sign * m["metric_mean"])["model"] if ranked else None
    return {
        "key": key,
        "id": campaign_id,
        "project": project,
        "status": campaign.status,
        "metric": campaign.metric,
        "higher_is_better": higher_is_better,
        "traffic_split": campaign.traffic_split,
        "models": models,
        "comparisons": comparisons,
        "leader": leader,
        "significant": any(c["significant"] for c in comparisons),
        "alpha": ALPHA,
    }
