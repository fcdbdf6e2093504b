"""The CLI's side of the HTTP API: where it is, which key to send, and what a refusal says.

httpx is imported when a verb makes its client, not with this module: ``--help`` and the
offline verbs (``audit verify``) never pay for it (docs/cli.md, "Start time").
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from infra.client_settings import ClientSettings
from infra.local_keys import ADMIN_KEY_FILE, read_key_file

if TYPE_CHECKING:
    import httpx

UrlOption = Annotated[str | None, typer.Option("--url", help="the API (AGENTBOARD_URL)")]
KeyOption = Annotated[str | None, typer.Option("--api-key", help="an API key (AGENTBOARD_API_KEY)")]

EXIT_REFUSED = 1  # the server said no
EXIT_USAGE = 2  # bad usage or input, or nothing to talk to


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"agentboard: {message}", err=True)
    raise typer.Exit(code)


def import_httpx() -> ModuleType:
    """httpx, without the command line of its own that its ``__init__`` imports when click
    and rich are installed (they are: click, rich's progress bars and syntax highlighting,
    pygments), which is half of its import time (encode/httpx#3547). ``httpx.main`` is
    then a stub, which nothing here calls."""
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    import httpx  # noqa: PLC0415 - see the module's docstring

    return httpx


class ApiClient:
    def __init__(self, settings: ClientSettings, url: str | None, api_key: str | None) -> None:
        self.url = (url or settings.url).rstrip("/")
        key = api_key or settings.api_key or read_key_file(settings.data_dir / ADMIN_KEY_FILE)
        if not key:
            fail(
                "no API key: set AGENTBOARD_API_KEY, pass --api-key, or run `agentboard up` "
                f"(it writes {settings.data_dir / ADMIN_KEY_FILE})",
                EXIT_USAGE,
            )
        self.httpx = import_httpx()
        self.http: httpx.Client = self.httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
            # Every request goes to a path under this URL and no redirect is followed, so an
            # http:// API never negotiates TLS: no SSL context then, whose CA bundle costs a
            # tenth of a second to load. An https:// API is verified as usual.
            verify=not self.url.startswith("http://"),
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None

    def text(self, path: str) -> str:
        return self.request("GET", path).text

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response, or one line on stderr and the exit code a refusal deserves."""
        try:
            response = self.http.request(method, path, **kwargs)
        except self.httpx.HTTPError as error:
            self.unreachable(error)
        if response.status_code >= 400:
            self.refused(response)
        return response

    def unreachable(self, error: httpx.HTTPError) -> NoReturn:
        fail(f"cannot reach {self.url} ({error}); is `agentboard up` running?", EXIT_USAGE)

    def refused(self, response: httpx.Response) -> NoReturn:
        """One line with the problem's detail; exit 2 for bad input or a wrong key, else 1."""
        try:
            problem = response.json()
            detail = problem.get("detail") or problem.get("title")
        except ValueError:
            detail = response.text[:200]
        code = EXIT_USAGE if response.status_code in (400, 401, 422) else EXIT_REFUSED
        fail(f"{detail} (HTTP {response.status_code})", code)
