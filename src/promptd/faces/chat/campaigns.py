"""GET /api/v1/ab_campaigns/{key}: each model's requests, metric mean with a 95 % interval, cost, latency, and
whether the difference between the models is significant yet (domain/campaign_results.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from promptd.domain.campaign_results import campaign_report
from promptd.engine.engine import campaign_id
from promptd.faces.chat.auth import authenticate

__all__ = ["campaign_results"]


async def campaign_results(request: Request) -> Response:
    caller = await authenticate(request)
    project = caller.project(request.query_params.get("project"))
    key, campaign = caller.svc.engine.campaign(project, request.path_params["key"])
    await caller.svc.recorder.drain()
    metric = caller.svc.catalog.projects[project].metrics[campaign.metric]
    report = campaign_report(
        project,
        key,
        campaign,
        campaign_id=campaign_id(project, key, campaign),
        higher_is_better=metric.higher_is_better,
        kind=metric.kind,
        requests=await caller.svc.repo.campaign_requests(project, key),
        values=await caller.svc.repo.campaign_metric_values(project, key, campaign.metric),
    )
    return JSONResponse(report)
