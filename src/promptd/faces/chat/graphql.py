"""POST /api/graphql: the runtime operations adaptive-sdk sends there, served with ariadne.

An app using adaptive-sdk talks REST for chat, embeddings, interactions and preferences, and GraphQL for
its metrics: `feedback.log_metric` (the `AddDirectScore` mutation) and `feedback.get_key` (the `DescribeMetric`
query). Both are served here, on the same key auth as /api/v1; a score gets the same checks as
POST /api/v1/feedback. Adaptive's other GraphQL operations (its admin side: projects, models, datasets,
jobs…) are not part of this schema: asking for one is a GraphQL validation error naming the field, never a
silent empty answer.

Errors have GraphQL's shape, `{"errors": [{"message", "extensions": {"code"}}]}`: a request that cannot be
read or a key that is refused gets its HTTP status (400, 401, 403) with that body; an error of an operation
is reported in a 200 answer beside `data`, as GraphQL servers do.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import msgspec
from ariadne import MutationType, ObjectType, QueryType, ScalarType, make_executable_schema
from ariadne import graphql as run_graphql
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response

from promptd.domain.ids import metric_uuid
from promptd.errors import AuthError, Forbidden, InputError, NotFound, PromptdError
from promptd.faces.chat.auth import Caller, authenticate
from promptd.faces.chat.feedback import find_completion, metric_value
from promptd.faces.chat.wire import NESTED_TOO_DEEPLY

__all__ = ["SCHEMA", "graphql_endpoint"]

log = logging.getLogger("promptd.chat")
#: ariadne logs every error of an operation here (a client's mistakes too): quieten it apart from the face's log
OPERATIONS_LOG = "promptd.graphql"

TYPE_DEFS = """
    "A UUID as text"
    scalar UUID
    "A metric or project, by id or key (promptd: by its catalog key)"
    scalar IdOrKey
    "Any JSON value (a score's value: a number or a boolean)"
    scalar JSON

    input ScoreAddInput {
        value: JSON!
        details: String
        reason: String
    }

    enum MetricKind { SCALAR BOOL }
    enum MetricScoringType { HIGHER_IS_BETTER LOWER_IS_BETTER }

    "A metric declared in the catalog (`projects.<name>.metrics`)"
    type Metric {
        id: UUID!
        key: String
        name: String!
        kind: MetricKind!
        description: String!
        scoringType: MetricScoringType!
        "when this server loaded the catalog that declares it (Unix seconds)"
        createdAt: Int!
        hasDirectScores: Boolean!
        hasComparisonScores: Boolean!
    }

    type DirectScore {
        id: UUID!
        value: Float!
        metric: Metric!
        reason: String
        details: String
    }

    type Query {
        "A metric of the key's project, by key or id; null when the project has no such metric"
        metric(metricIdOrKey: IdOrKey!, projectIdOrKey: IdOrKey!): Metric
    }

    type Mutation {
        "A metric's value on a completion of the key's project (adaptive-sdk: feedback.log_metric)"
        addDirectScore(completionId: UUID!, metricId: IdOrKey!, input: ScoreAddInput!): DirectScore!
    }
"""

query = QueryType()
mutation = MutationType()


def _metric_key(caller: Caller, project: str, id_or_key: str) -> str | None:
    """The catalog key of the project's metric named by its key or its id (`domain/ids.py::metric_uuid`)."""
    metrics = caller.svc.catalog.projects[project].metrics
    if id_or_key in metrics:
        return id_or_key
    return next((key for key in metrics if metric_uuid(project, key) == id_or_key), None)


def _metric(caller: Caller, project: str, key: str) -> dict[str, Any]:
    config = caller.svc.catalog.projects[project].metrics[key]
    return {
        "id": metric_uuid(project, key),
        "key": key,
        "name": key,  # the catalog names a metric by its key only
        "kind": config.kind.upper(),
        "description": "",  # the catalog has no description for a metric
        "scoringType": "HIGHER_IS_BETTER" if config.higher_is_better else "LOWER_IS_BETTER",
        "createdAt": int(caller.svc.started_at),
        "project": project,  # for the resolvers below (not a field of the type)
    }


@query.field("metric")
async def describe_metric(_: Any, info: Any, metricIdOrKey: str, projectIdOrKey: str) -> Any:
    caller: Caller = info.context
    project = caller.project(projectIdOrKey)
    key = _metric_key(caller, project, metricIdOrKey)
    return None if key is None else _metric(caller, project, key)


metric_type = ObjectType("Metric")


@metric_type.field("hasDirectScores")
async def has_direct_scores(metric: dict[str, Any], info: Any) -> bool:
    caller: Caller = info.context
    direct, _ = await caller.svc.repo.metric_scored(metric["project"], metric["key"])
    return direct


@metric_type.field("hasComparisonScores")
async def has_comparison_scores(metric: dict[str, Any], info: Any) -> bool:
    caller: Caller = info.context
    _, compared = await caller.svc.repo.metric_scored(metric["project"], metric["key"])
    return compared


@mutation.field("addDirectScore")
async def add_direct_score(_: Any, info: Any, completionId: str, metricId: str, input: dict[str, Any]) -> Any:
    caller: Caller = info.context
    project = caller.project(None)
    key = _metric_key(caller, project, metricId) or metricId  # an unknown one: metric_value says so
    value = metric_value(caller, project, key, input.get("value"))
    completion = await find_completion(caller, project, completionId)
    values = {
        "project": project,
        "completion_id": completion["id"],
        "metric": key,
        "value": value,
        "reason": input.get("reason"),
        "details": input.get("details"),
        "user_id": None,  # adaptive-sdk's log_metric does not send its `user`
    }
    feedback_id = await caller.svc.repo.add_metric_feedback(values)
    return {"id": feedback_id, **values, "metric": _metric(caller, project, key)}


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _uuid(value: Any) -> str:
    return str(uuid.UUID(_text(value)))  # ValueError: graphql-core reports it as the argument's error


SCHEMA = make_executable_schema(
    TYPE_DEFS,
    query,
    mutation,
    metric_type,
    ScalarType("UUID", serializer=str, value_parser=_uuid),
    ScalarType("IdOrKey", serializer=str, value_parser=_text),
    ScalarType("JSON"),
)

_CODES: dict[type[PromptdError], str] = {AuthError: "UNAUTHENTICATED", Forbidden: "FORBIDDEN", NotFound: "NOT_FOUND"}


def _code(exc: BaseException | None) -> str:
    if isinstance(exc, ValueError):  # a scalar that could not be read (a UUID that is not one)
        return "BAD_USER_INPUT"
    if isinstance(exc, PromptdError):
        for kind, code in _CODES.items():
            if isinstance(exc, kind):
                return code
        return "BAD_USER_INPUT" if isinstance(exc, InputError) else exc.code.upper()
    return "INTERNAL_SERVER_ERROR"


def _format_error(error: GraphQLError, debug: bool = False) -> dict[str, Any]:
    """GraphQL's error object. promptd's own errors keep their message, with a code; anything else is logged
    and reported as an internal error, without its details."""
    original = error.original_error
    if original is not None and not isinstance(original, PromptdError | ValueError):
        log.error("GraphQL operation failed", exc_info=original)
        return {"message": "internal server error", "path": error.path, "extensions": {"code": _code(original)}}
    formatted: dict[str, Any] = dict(error.formatted)
    formatted["extensions"] = {
        **formatted.get("extensions", {}),
        "code": _code(original) if original else "GRAPHQL_VALIDATION_FAILED",
    }
    return formatted


def _errors(status: int, message: str, code: str) -> Response:
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Response(msgspec.json.encode(body), status, media_type="application/json", headers=headers)


async def graphql_endpoint(request: Request) -> Response:
    try:
        caller = await authenticate(request)
    except AuthError as exc:
        return _errors(401, exc.message, "UNAUTHENTICATED")
    try:
        data = msgspec.json.decode(await request.body())
    except msgspec.DecodeError:
        return _errors(400, "the body must be a JSON object with a `query`", "BAD_REQUEST")
    except RecursionError:
        return _errors(400, f"the body is {NESTED_TOO_DEEPLY}", "BAD_REQUEST")
    if not isinstance(data, dict) or not isinstance(data.get("query"), str):
        return _errors(400, "the body must be a JSON object with a `query`", "BAD_REQUEST")
    _, result = await run_graphql(
        SCHEMA, data, context_value=caller, introspection=False, error_formatter=_format_error, logger=OPERATIONS_LOG
    )
    return Response(msgspec.json.encode(result), media_type="application/json")
