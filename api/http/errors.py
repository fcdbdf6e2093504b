"""One table maps what can go wrong to an HTTP problem (RFC 9457, application/problem+json)."""

from __future__ import annotations

import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from uuid import UUID

from litestar import Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotFoundException,
    SerializationException,
    ValidationException,
)
from litestar.params import ParameterKwarg
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException

from domain.execution.errors import (
    DomainError,
    ExecutionBlocked,
    ExecutionNotFound,
    IdempotencyKeyReused,
    InvalidAnswer,
    InvalidCommand,
    InvalidTransition,
    LeaseLost,
    UnknownToolCall,
)
from domain.pipeline.errors import (
    InvalidPipeline,
    PipelineEnded,
    PipelineNotFound,
    StepNotDispatched,
)
from projections.engine.errors import InvalidQuery, ProjectionError
from projections.engine.errors import NotFound as ReadNotFound

# (status, title) per named domain error; the error's own message is the detail.
PROBLEMS: dict[type[DomainError], tuple[int, str]] = {
    ExecutionNotFound: (404, "Execution not found"),
    InvalidTransition: (409, "Not possible in the execution's current status"),
    LeaseLost: (409, "Lease no longer held"),
    IdempotencyKeyReused: (422, "Idempotency key reused for a different request"),
    InvalidCommand: (422, "Invalid request"),
    UnknownToolCall: (404, "Tool call not found"),
    InvalidPipeline: (422, "Invalid pipeline"),
    PipelineNotFound: (404, "Pipeline not found"),
    PipelineEnded: (409, "The pipeline has ended"),
    StepNotDispatched: (409, "No such step"),
    ExecutionBlocked: (409, "The execution is blocked"),
    InvalidAnswer: (422, "The answer does not fit the question"),
}


class BadRequest(ProblemDetailsException):
    def __init__(self, detail: str) -> None:
        super().__init__(status_code=400, title="Invalid request", detail=detail)


class NotFound(ProblemDetailsException):
    def __init__(self, detail: str) -> None:
        super().__init__(status_code=404, title="Not found", detail=detail)


class Unauthorized(ProblemDetailsException):
    def __init__(self, detail: str) -> None:
        super().__init__(
            status_code=401, title="Unauthorized", detail=detail,
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip


class Unavailable(ProblemDetailsException):
    def __init__(self, detail: str) -> None:
        super().__init__(status_code=503, title="Unavailable", detail=detail)


class Forbidden(ProblemDetailsException):
    def __init__(self, detail: str) -> None:
        super().__init__(status_code=403, title="Forbidden", detail=detail)


def _domain_problem(error: DomainError) -> ProblemDetailsException:
    status, title = PROBLEMS.get(type(error), (400, "Refused"))
    return ProblemDetailsException(status_code=status, title=title, detail=str(error))


AnyRequest = Request[Any, Any, Any]
NO_BODY = "a JSON body is required (Content-Type: application/json), and none was sent"
# What a query value must be, in place of the decoder's words about Python types.
QUERY_TYPES = {
    "datetime": "not a time: give an ISO 8601 time such as 2026-11-22T10:00:00Z",
    "Expected `int`": "must be a whole number",
    "Expected `float`": "must be a number",
    "Expected `bool`": "must be true or false",
    "Expected `uuid`": "must be a UUID such as 3fa85f64-5717-4562-b3fc-2c963f66afa6",
}
EXECUTION_PATH = re.compile(r"^/v1/executions/(?P<id>[^/]+)")


def _validation_problem(request: AnyRequest, error: ValidationException) -> Response[Any]:
    """Name every field that is wrong and how, in one line a person can act on, by the
    names the caller sent (``from``, not the handler's ``start``) and with what it sent."""
    names = _caller_names(request)
    problems = [
        _in_callers_terms(request, names, item)
        for item in (error.extra if isinstance(error.extra, list) else [])
        if isinstance(item, dict)
    ]
    detail = "; ".join(f"{item['key']}: {item['message']}" for item in problems)
    return ProblemDetailsException(
        status_code=400, title="Invalid request", detail=detail or str(error.detail),
        extra=problems or None,
    ).to_response(request)  # fmt: skip


def _caller_names(request: AnyRequest) -> dict[str, str]:
    """The handler's parameter names mapped to the names a caller uses for them."""
    handler = request.scope.get("route_handler")
    signature = getattr(handler, "parsed_fn_signature", None)
    names = {}
    for name, field in getattr(signature, "parameters", {}).items():
        definition = getattr(field, "kwarg_definition", None)
        if isinstance(definition, ParameterKwarg) and definition.name:
            names[name] = definition.name
    return names


def _in_callers_terms(
    request: AnyRequest, names: dict[str, str], item: dict[str, Any]
) -> dict[str, Any]:
    key, message = str(item.get("key") or "body"), str(item.get("message"))
    if key == "data" and message == "'data'":  # the body is missing altogether
        return {**item, "key": "body", "message": NO_BODY}
    key = names.get(key, key)
    if item.get("source") == "query":
        message = next((plain for words, plain in QUERY_TYPES.items() if words in message), message)
        sent = request.query_params.get(key)
        if sent is not None:
            message = f"{message} (sent {sent[:80]!r})"
    return {**item, "key": key, "message": message}


def _client_problem(request: AnyRequest, error: ClientException) -> Response[Any]:
    """A body that is not JSON says so and what to check; any other refusal of Litestar's
    keeps its words as the detail under its status's title."""
    if isinstance(error.__cause__, SerializationException):
        detail = (
            f"the request body is not valid JSON ({error.detail}): check its quotes, commas "
            "and brackets, and send Content-Type: application/json"
        )
        problem = ProblemDetailsException(status_code=400, title="Invalid JSON", detail=detail)
        return problem.to_response(request)
    return _http_problem(request, error)


def _not_found_problem(request: AnyRequest, error: NotFoundException) -> Response[Any]:
    """No route matched: say why, and an id that is no UUID first of all."""
    path = request.url.path
    matched = EXECUTION_PATH.match(path)
    if matched and matched["id"] != "bulk" and not _is_uuid(matched["id"]):
        detail = (
            f"{matched['id'][:80]!r} is not an execution id: an execution id is a UUID such "
            "as 3fa85f64-5717-4562-b3fc-2c963f66afa6"
        )
    elif error.detail and error.detail != HTTPStatus.NOT_FOUND.phrase:
        detail = error.detail
    else:
        detail = f"no such path: {request.method} {path} (the API's paths: /schema/openapi.json)"
    return ProblemDetailsException(status_code=404, title="Not found", detail=detail).to_response(
        request
    )


def _http_problem(request: AnyRequest, error: HTTPException) -> Response[Any]:
    title = HTTPStatus(error.status_code).phrase
    return ProblemDetailsException(
        status_code=error.status_code, title=title, detail=error.detail or title,
        extra=error.extra, headers=error.headers,
    ).to_response(request)  # fmt: skip


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


def exception_handlers() -> dict[int | type[Exception], Callable[[AnyRequest, Any], Response[Any]]]:
    """Problems that need the request to be said in the caller's terms (the plugin's map
    below sees the exception alone)."""
    return {
        ValidationException: _validation_problem,
        ClientException: _client_problem,
        NotFoundException: _not_found_problem,
    }


def _query_problem(error: ProjectionError) -> ProblemDetailsException:
    if isinstance(error, ReadNotFound):
        return ProblemDetailsException(status_code=404, title="Not found", detail=str(error))
    if isinstance(error, InvalidQuery):
        return ProblemDetailsException(status_code=400, title="Invalid query", detail=str(error))
    return ProblemDetailsException(
        status_code=503, title="Read model unavailable", detail=str(error)
    )


def problem_details_config() -> ProblemDetailsConfig:
    handled: list[type[Exception]] = [DomainError, *PROBLEMS]
    mapping: dict[type[Exception], Callable[[Any], ProblemDetailsException]] = {
        error_type: _domain_problem for error_type in handled
    }
    for query_error in (ProjectionError, InvalidQuery, ReadNotFound):
        mapping[query_error] = _query_problem
    return ProblemDetailsConfig(
        enable_for_all_http_exceptions=True, exception_to_problem_detail_map=mapping
    )


def is_refusal(error: Exception) -> bool:
    """An error this API answers with a 4xx problem (not a failure worth a trace)."""
    refusals = (HTTPException, DomainError, ProjectionError, *PROBLEMS)
    return isinstance(error, refusals)
