"""Campaign results for the console: per model, requests, metric mean with its 95 % interval, cost, latency and
the metric over time, and whether the difference is significant yet (Welch's test, domain/stats.py)."""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from promptd.catalog.schema import CampaignConfig
from promptd.domain.campaign_results import campaign_report
from promptd.engine.engine import campaign_id
from promptd.faces.admin.auth import Admin, authenticate
from promptd.faces.admin.wire import json_response
from promptd.store.analytics import Analytics

__all__ = ["campaign", "campaigns"]
BUCKETS = (1, 10, 60, 300, 3600, 6 * 3600, 86400, 7 * 86400)  # the chart takes the smallest giving at most 60 points
MAX_POINTS = 60


async def _report(admin: Admin, project: str, key: str, campaign: CampaignConfig) -> dict[str, Any]:
    repo = admin.svc.repo
    metric = admin.svc.catalog.projects[project].metrics.get(campaign.metric)
    return campaign_report(
        project,
        key,
        campaign,
        campaign_id=campaign_id(project, key, campaign),
        higher_is_better=metric.higher_is_better if metric is not None else True,
        kind=metric.kind if metric is not None else "scalar",
        requests=await repo.campaign_requests(project, key),
        values=await repo.campaign_metric_values(project, key, campaign.metric),
    )


async def _series(admin: Admin, project: str, key: str, metric: str) -> dict[str, Any]:
    """The metric's running mean per model over time (each point: every value so far)."""
    analytics = Analytics(admin.svc.repo.engine)
    span = await analytics.metric_span(project, key, metric)
    if span is None:
        return {"start": None, "bucket": None, "models": {}}
    lo, hi = span
    bucket = next((b for b in BUCKETS if (hi - lo) / b < MAX_POINTS), BUCKETS[-1])
    start = math.floor(lo / bucket) * bucket
    n = int((hi - start) // bucket) + 1
    raw = await analytics.metric_series(project, key, metric, start=start, bucket=bucket, buckets=n)
    models: dict[str, list[dict[str, Any]]] = {}
    for model, points in raw.items():
        count, total, out = 0, 0.0, []
        for i, (k, s) in enumerate(points):
            count, total = count + k, total + s
            out.append({"t": start + i * bucket, "n": count, "mean": total / count if count else None})
        models[model] = out
    return {"start": start, "bucket": bucket, "models": models}


async def campaigns(request: Request) -> Response:
    """GET /admin/v1/campaigns[?project=]: every campaign of the catalog with its results."""
    admin = await authenticate(request)
    only = request.query_params.get("project") or None
    if only is not None:
        admin.project(only)
    await admin.svc.recorder.drain()
    out = []
    for project, cfg in admin.svc.catalog.projects.items():
        if only is not None and project != only:
            continue
        for key, camp in cfg.campaigns.items():
            out.append(await _report(admin, project, key, camp))
    return json_response({"data": out})


async def campaign(request: Request) -> Response:
    """GET /admin/v1/projects/{project}/campaigns/{key}: results and the metric over time."""
    admin = await authenticate(request)
    project = admin.project(request.path_params["project"])
    key, camp = admin.svc.engine.campaign(project, request.path_params["key"])
    await admin.svc.recorder.drain()
    report = await _report(admin, project, key, camp)
    report["series"] = await _series(admin, project, key, camp.metric)
    return json_response(report)
