"""POST /api/graphql: the runtime operations adaptive-sdk sends there, served with ariadne.

An app using adaptive-sdk talks REST for chat, embeddings, interactions and preferences, and GraphQL for one
runtime call: `feedback.log_metric`, the `AddDirectScore` mutation. That mutation is served here, on the
same key auth as /api/v1 and the same checks as POST /api/v1/feedback. Adaptive's other GraphQL operations
(its admin side: projects, models, datasets, jobs…) are not part of this schema: asking for one is a GraphQL
validation error naming the field, never a silent empty answer.

Errors have GraphQL's shape, `{"errors": [{"message", "extensions": {"code"}}]}`: a request that cannot be
read or a key that is refused gets its HTTP status (400, 401, 403) with that body; an error of an operation
is reported in a 200 answer beside `data`, as GraphQL servers do.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import msgspec
from ariadne import MutationType, ScalarType, make_executable_schema
from ariadne import graphql as run_graphql
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response

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

    type DirectScore {
        id: UUID!
        value: Float!
        reason: String
        details: String
    }

    type Query {
        "promptd serves adaptive-sdk's runtime calls only (docs/chat-api.md)"
        ok: Boolean!
    }

    type Mutation {
        "A metric's value on a completion of the key's project (adaptive-sdk: feedback.log_metric)"
        addDirectScore(completionId: UUID!, metricId: IdOrKey!, input: ScoreAddInput!): DirectScore!
    }
"""

mutation = MutationType()


@mutation.field("addDirectScore")
async def add_direct_score(_: Any, info: Any, completionId: str, metricId: str, input: dict[str, Any]) -> Any:
    caller: Caller = info.context
    project = caller.project(None)
    value = metric_value(caller, project, metricId, input.get("value"))
    completion = await find_completion(caller, project, completionId)
    values = {
        "project": project,
        "completion_id": completion["id"],
        "metric": metricId,
        "value": value,
        "reason": input.get("reason"),
        "details": input.get("details"),
        "user_id": None,  # adaptive-sdk's log_metric does not send its `user`
    }
    feedback_id = await caller.svc.repo.add_metric_feedback(values)
    return {"id": feedback_id, **values}


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _uuid(value: Any) -> str:
    return str(uuid.UUID(_text(value)))  # ValueError: graphql-core reports it as the argument's error


SCHEMA = make_executable_schema(
    TYPE_DEFS,
    mutation,
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
