"""GET /api/v1/ab_campaigns/{key}: each model's requests, metric mean with a 95 % interval, cost, latency, and
whether the difference between the models is significant yet."""

from __future__ import annotations

from decimal import Decimal
from itertools import combinations
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promptd.domain.pricing import plain
from promptd.domain.stats import percentile, summarize, welch_p_value
from promptd.engine.engine import campaign_id
from promptd.faces.chat.auth import authenticate

__all__ = ["campaign_results"]

ALPHA = 0.05


async def campaign_results(request: Request) -> Response:
    caller = await authenticate(request)
    project = caller.project(request.query_params.get("project"))
    key, campaign = caller.svc.engine.campaign(project, request.path_params["key"])
    await caller.svc.recorder.drain()
    rows = await caller.svc.repo.campaign_requests(project, key)
    values = await caller.svc.repo.campaign_metric_values(project, key, campaign.metric)
    higher = caller.svc.catalog.projects[project].metrics[campaign.metric].higher_is_better
    summaries = {m: summarize([v for model, v in values if model == m]) for m in campaign.models}
    models: list[dict[str, Any]] = []
    for m in campaign.models:
        mine = [r for r in rows if r["model"] == m]
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
    best = max(ranked, key=lambda m: m["metric_mean"] if higher else -m["metric_mean"])["model"] if ranked else None
    return JSONResponse(
        {
            "key": key,
            "id": campaign_id(project, key, campaign),
            "project": project,
            "status": campaign.status,
            "metric": campaign.metric,
            "higher_is_better": higher,
            "traffic_split": campaign.traffic_split,
            "models": models,
            "comparisons": comparisons,
            "leader": best,
            "significant": any(c["significant"] for c in comparisons),
            "alpha": ALPHA,
        }
    )
