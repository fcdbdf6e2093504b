"""The board page (DESIGN §6, ``GET /``): plain static files, no build step.

The page carries no data of its own, so it is served without a key; everything it shows
comes from ``/v1`` with the key the person signed in with, kept in their browser.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from litestar import Router, get
from litestar.datastructures import CacheControlHeader
from litestar.enums import MediaType
from litestar.response import Response
from litestar.static_files import create_static_files_router

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/static"
PUBLIC_PATTERNS = ["^/$", f"^{STATIC_PATH}/"]
"""Paths the key check skips (the auth middleware's ``exclude``)."""

# Only our own files and our own API: the key lives in this origin's storage, so no other
# script may run here, and no page may frame this one (clickjacking the action buttons).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
# Revalidate every time (cheap: an ETag check) so a new version is never mixed with an old one.
REVALIDATE = CacheControlHeader(no_cache=True)


@cache
def _index_html() -> bytes:
    return (STATIC_DIR / "index.html").read_bytes()


@get("/", operation_id="boardPage", include_in_schema=False, sync_to_thread=False)
def board_page() -> Response[bytes]:
    """The live Kanban board."""
    return Response(
        _index_html(),
        media_type=MediaType.HTML,
        headers={**SECURITY_HEADERS, "Cache-Control": REVALIDATE.to_header()},
    )


def page_router() -> Router:
    """``GET /`` and the page's assets under ``/static/``."""
    assets = create_static_files_router(
        path=STATIC_PATH,
        directories=[STATIC_DIR],
        cache_control=REVALIDATE,
        include_in_schema=False,
        name="board-static",
    )
    return Router(path="/", route_handlers=[board_page, assets])
