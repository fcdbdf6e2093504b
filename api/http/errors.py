"""One table maps what can go wrong to an HTTP problem (RFC 9457, application/problem+json)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar.exceptions import HTTPException, ValidationException
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


def _validation_problem(error: ValidationException) -> ProblemDetailsException:
    """Name every field that is wrong and how, in one line a person can act on."""
    problems = error.extra if isinstance(error.extra, list) else []
    detail = "; ".join(
        f"{item.get('key') or 'body'}: {item.get('message')}"
        for item in problems
        if isinstance(item, dict)
    )
    return ProblemDetailsException(
        status_code=400, title="Invalid request", detail=detail or str(error.detail),
        extra=problems or None,
    )  # fmt: skip


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
    mapping[ValidationException] = _validation_problem
    for query_error in (ProjectionError, InvalidQuery, ReadNotFound):
        mapping[query_error] = _query_problem
    return ProblemDetailsConfig(
        enable_for_all_http_exceptions=True, exception_to_problem_detail_map=mapping
    )


def is_refusal(error: Exception) -> bool:
    """An error this API answers with a 4xx problem (not a failure worth a trace)."""
    refusals = (HTTPException, DomainError, ProjectionError, *PROBLEMS)
    return isinstance(error, refusals)
