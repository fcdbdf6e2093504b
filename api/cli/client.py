"""The CLI's side of the HTTP API: where it is, which key to send, and what a refusal says.

The HTTP client is the SDK's (agentboard_client), imported when a verb makes its client, not
with this module: ``--help`` and the offline verbs (``audit verify``) never pay for httpx
(docs/cli.md, "Start time").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from infra.client_settings import ClientSettings
from infra.local_keys import ADMIN_KEY_FILE, read_key_file

if TYPE_CHECKING:
    import httpx
    from agentboard_client.errors import ApiError

UrlOption = Annotated[str | None, typer.Option("--url", help="the API (AGENTBOARD_URL)")]
KeyOption = Annotated[str | None, typer.Option("--api-key", help="an API key (AGENTBOARD_API_KEY)")]

EXIT_REFUSED = 1  # the server said no
EXIT_USAGE = 2  # bad usage or input, or nothing to talk to


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"agentboard: {message}", err=True)
    raise typer.Exit(code)


class ApiClient:
    """The SDK's transport (agentboard_client/transport.py: the one HTTP client), with the
    command line's key lookup, and a refusal as one line on stderr and an exit code."""

    def __init__(self, settings: ClientSettings, url: str | None, api_key: str | None) -> None:
        from agentboard_client.transport import Transport  # noqa: PLC0415 - httpx, per verb

        self.url = (url or settings.url).rstrip("/")
        key = api_key or settings.api_key or read_key_file(settings.data_dir / ADMIN_KEY_FILE)
        if not key:
            fail(
                "no API key: set AGENTBOARD_API_KEY, pass --api-key, or run `agentboard up` "
                f"(it writes {settings.data_dir / ADMIN_KEY_FILE})",
                EXIT_USAGE,
            )
        # no retry: a person at a terminal hears at once that nothing answers
        self.transport = Transport(self.url, key, retries=0)
        self.httpx = self.transport.httpx
        self.http: httpx.Client = self.transport.http

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None

    def text(self, path: str) -> str:
        return self.request("GET", path).text

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response, or one line on stderr and the exit code a refusal deserves."""
        from agentboard_client.errors import ApiError, Unreachable  # noqa: PLC0415

        try:
            return self.transport.request(method, path, **kwargs)
        except Unreachable as error:
            self.unreachable(error.error)
        except ApiError as error:
            self.refused_with(error)

    def unreachable(self, error: Exception) -> NoReturn:
        fail(f"cannot reach {self.url} ({error}); is `agentboard up` running?", EXIT_USAGE)

    def refused(self, response: httpx.Response) -> NoReturn:
        from agentboard_client.errors import ApiError  # noqa: PLC0415

        response.read()
        self.refused_with(ApiError.of(response.status_code, response.content))

    def refused_with(self, error: ApiError) -> NoReturn:
        """One line with the problem's detail; exit 2 for bad input or a wrong key, else 1."""
        code = EXIT_USAGE if error.status in (400, 401, 422) else EXIT_REFUSED
        fail(f"{error.detail or error.title} (HTTP {error.status})", code)
