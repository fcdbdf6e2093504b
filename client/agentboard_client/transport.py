"""One HTTP connection to the API, sync or async: where it is, the key it sends, an
``Idempotency-Key`` on every POST, a retry of what failed in transit, and a refusal raised as
``ApiError``. Returns JSON as it came: the typed layer (agentboard_client/client.py) and the
command line both build on it, and neither pydantic nor httpx is imported before a request.
"""

from __future__ import annotations

import sys
import time
import uuid
from types import ModuleType
from typing import TYPE_CHECKING, Any

from agentboard_client.errors import ApiError, Unreachable

if TYPE_CHECKING:
    import httpx

IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRY_PAUSE_SECONDS = 0.25
DEFAULT_TIMEOUT_SECONDS = 30.0


def import_httpx() -> ModuleType:
    """httpx, without the command line of its own that its ``__init__`` imports when click
    and rich are installed, which is half of its import time (encode/httpx#3547).
    ``httpx.main`` is then a stub, which nothing here calls."""
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    import httpx  # noqa: PLC0415 - see the docstring

    return httpx


def _options(url: str, api_key: str, timeout: float, http_transport: Any) -> dict[str, Any]:
    extra = {"transport": http_transport} if http_transport is not None else {}
    return {
        **extra,
        "base_url": url.rstrip("/"),
        "headers": {"Authorization": f"Bearer {api_key}"},
        "timeout": timeout,
        # Every request goes to a path under this URL and no redirect is followed, so an
        # http:// API never negotiates TLS: no SSL context then, whose CA bundle costs a
        # tenth of a second to load. An https:// API is verified as usual.
        "verify": not url.startswith("http://"),
    }


def _with_key(method: str, kwargs: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
    """A POST carries an ``Idempotency-Key`` (the caller's, or a fresh one), so a retry after
    a lost answer is applied once."""
    if method.upper() != "POST":
        return kwargs
    headers = dict(kwargs.get("headers") or {})
    headers.setdefault(IDEMPOTENCY_HEADER, idempotency_key or str(uuid.uuid4()))
    return {**kwargs, "headers": headers}


def checked(response: httpx.Response) -> httpx.Response:
    """``response``, or ``ApiError`` with its problem when it is a refusal."""
    if response.status_code >= 400:
        response.read()
        raise ApiError.of(response.status_code, response.content)
    return response


class Transport:
    """Synchronous: ``call`` gives the JSON of an answer, ``request`` the response."""

    def __init__(
        self, url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retries: int = 2, http_transport: Any = None,
    ) -> None:  # fmt: skip
        """``http_transport``: an httpx transport to use instead of the network (tests)."""
        self.url = url.rstrip("/")
        self.retries = retries
        self.httpx = import_httpx()
        options = _options(url, api_key, timeout, http_transport)
        self.http: httpx.Client = self.httpx.Client(**options)

    def call(self, method: str, path: str, *, idempotency_key: str | None = None,
             **kwargs: Any) -> Any:  # fmt: skip
        response = self.request(method, path, idempotency_key=idempotency_key, **kwargs)
        return response.json() if response.content else None

    def request(self, method: str, path: str, *, idempotency_key: str | None = None,
                **kwargs: Any) -> httpx.Response:  # fmt: skip
        kwargs = _with_key(method, kwargs, idempotency_key)
        attempt = 0
        while True:
            try:
                return checked(self.http.request(method, path, **kwargs))
            except self.httpx.TransportError as error:
                if attempt >= self.retries:
                    raise Unreachable(self.url, error) from error
            attempt += 1
            time.sleep(RETRY_PAUSE_SECONDS * attempt)

    def close(self) -> None:
        self.http.close()


class AsyncTransport:
    """Asynchronous, as ``Transport``."""

    def __init__(
        self, url: str, api_key: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retries: int = 2, http_transport: Any = None,
    ) -> None:  # fmt: skip
        """``http_transport``: an httpx transport to use instead of the network (tests)."""
        self.url = url.rstrip("/")
        self.retries = retries
        self.httpx = import_httpx()
        options = _options(url, api_key, timeout, http_transport)
        self.http: httpx.AsyncClient = self.httpx.AsyncClient(**options)

    async def call(self, method: str, path: str, *, idempotency_key: str | None = None,
                   **kwargs: Any) -> Any:  # fmt: skip
        response = await self.request(method, path, idempotency_key=idempotency_key, **kwargs)
        return response.json() if response.content else None

    async def request(self, method: str, path: str, *, idempotency_key: str | None = None,
                      **kwargs: Any) -> httpx.Response:  # fmt: skip
        import asyncio  # noqa: PLC0415

        kwargs = _with_key(method, kwargs, idempotency_key)
        attempt = 0
        while True:
            try:
                response = await self.http.request(method, path, **kwargs)
            except self.httpx.TransportError as error:
                if attempt >= self.retries:
                    raise Unreachable(self.url, error) from error
            else:
                if response.status_code >= 400:
                    await response.aread()
                return checked(response)
            attempt += 1
            await asyncio.sleep(RETRY_PAUSE_SECONDS * attempt)

    async def aclose(self) -> None:
        await self.http.aclose()
