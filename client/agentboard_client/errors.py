"""What a refusal or an unreachable server raises: the problem (RFC 9457) the API answered."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """The API refused a request: its ``status``, and the problem's ``title`` and ``detail``
    (``problem`` holds the whole problem+json body)."""

    def __init__(self, status: int, title: str, detail: str, problem: dict[str, Any]) -> None:
        super().__init__(f"{detail or title} (HTTP {status})")
        self.status = status
        self.title = title
        self.detail = detail
        self.problem = problem

    @classmethod
    def of(cls, status: int, body: bytes) -> ApiError:
        import json  # noqa: PLC0415 - only on a refusal

        try:
            problem = json.loads(body)
        except ValueError:
            problem = None
        if not isinstance(problem, dict):
            text = body[:200].decode(errors="replace")
            return _by_status(status)(status, "", text, {"detail": text})
        title = str(problem.get("title") or "")
        detail = str(problem.get("detail") or title)
        return _by_status(status)(status, title, detail, problem)


class BadRequest(ApiError):
    """400 or 422: the request was not valid (``detail`` names the field)."""


class Unauthorized(ApiError):
    """401 or 403: no key, a wrong key, or a key whose role may not do this."""


class NotFound(ApiError):
    """404: no such execution (in this key's tenant), or no such route on this server."""


class Conflict(ApiError):
    """409: not allowed in the execution's current status (e.g. cancelling a finished one)."""


class Unreachable(ConnectionError):
    """No answer from the API (``url``): not running, or the network failed."""

    def __init__(self, url: str, error: Exception) -> None:
        super().__init__(f"cannot reach {url} ({error or type(error).__name__})")
        self.url = url
        self.error = error


def _by_status(status: int) -> type[ApiError]:
    if status in (400, 422):
        return BadRequest
    if status in (401, 403):
        return Unauthorized
    if status == 404:
        return NotFound
    if status == 409:
        return Conflict
    return ApiError
