"""The board page (``GET /``) in headless Chromium against the running stack.

Screenshots of every step go to ``test-artifacts/board-page/`` (gitignored), so a person can
look at what the tests saw.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from infra.keys import KeyStore, Role
from tests.e2e.conftest import RunningStack, start_stack
from tests.e2e.tcp_link import TcpLink

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "board-page"
WAIT_MS = 30_000  # how long a step may take on a busy shared machine before the test fails
PARKED = "parked"  # a queue no worker serves: its executions stay pending

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium (/usr/bin/chromium) is not installed"
)
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A stack of this module's own: a test fills the worker's four slots on purpose, which
    work left running by other modules would upset."""
    stack = start_stack(tmp_path_factory.mktemp("board-page") / "data")
    yield stack
    if stack.process.poll() is None:
        stack.stop()


@pytest.fixture(scope="module")
def keys(running: RunningStack) -> dict[str, str]:
    store = KeyStore(running.stack["database_url"])
    return {
        "admin": (running.data_dir / "admin.key").read_text().strip(),
        "operator": store.create("default", Role.OPERATOR, "board page"),
        "viewer": store.create("default", Role.VIEWER, "board page"),
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-background-networking"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [], f"the page threw: {errors}"


def shoot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png")


def sign_in(page: Page, running: RunningStack, key: str, path: str = "/") -> None:
    """Open the page through the sign-in link that ``agentboard up`` prints."""
    page.goto(f"{running.url}{path}#key={key}")
    expect(page.locator("#connection")).to_have_text("Live")


def create(running: RunningStack, key: str, steps: list[Any], **fields: Any) -> dict[str, Any]:
    body = {"agent_id": "script", "prompt": "board page", "parameters": {"steps": steps}, **fields}
    response = httpx.post(
        f"{running.url}/v1/executions", json=body, timeout=10,
        headers={"Authorization": f"Bearer {key}"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def card(page: Page, status: str, execution_id: str) -> Any:
    return page.locator(f'section[data-status="{status}"] button.card[data-id="{execution_id}"]')


def test_a_card_appears_in_pending_then_moves_to_running_and_completed(
    page: Page, running: RunningStack, keys: dict[str, str]
) -> None:
    board_loads: list[str] = []
    page.on("request", lambda r: board_loads.append(r.url) if "/v1/board?" in r.url else None)
    sign_in(page, running, keys["admin"])
    assert "key=" not in page.url  # the key left the address bar
    shoot(page, "01-board-signed-in")

    # four slow runs fill the worker's four slots, so the next one waits in Pending
    busy = [
        create(running, keys["operator"], [{"sleep": 6}], prompt="keeps the worker busy")
        for _ in range(4)
    ]
    for execution in busy:
        expect(card(page, "running", execution["id"])).to_be_visible()
    steps = [{"tool": "search", "args": {"q": "docs"}, "seconds": 2}, {"say": "found it"}]
    watched = create(running, keys["operator"], steps, prompt="find the docs")

    expect(card(page, "pending", watched["id"])).to_be_visible()
    expect(card(page, "pending", watched["id"])).to_contain_text("find the docs")
    shoot(page, "02-card-pending")
    running_card = card(page, "running", watched["id"])
    expect(running_card).to_be_visible()
    expect(running_card).to_contain_text("search")  # the last tool call, live
    shoot(page, "03-card-running")
    expect(card(page, "completed", watched["id"])).to_be_visible()
    expect(card(page, "pending", watched["id"])).to_have_count(0)
    expect(card(page, "running", watched["id"])).to_have_count(0)
    shoot(page, "04-card-completed")

    unfiltered = [url for url in board_loads if "limit=50" in url]
    assert len(unfiltered) == 1, "the card moved by the stream, not by loading the board again"


def test_answering_an_input_request_from_the_drawer_resumes_the_run(
    page: Page, running: RunningStack, keys: dict[str, str]
) -> None:
    sign_in(page, running, keys["operator"])
    steps = [
        {"say": "looking around\n"},
        {"artifact": {"name": "plan.md", "text": "# the plan", "media_type": "text/markdown"}},
        {"ask": "Which branch?"},
        {"say": "deploying"},
    ]
    execution = create(running, keys["operator"], steps, prompt="deploy the site")
    waiting = card(page, "requires_input", execution["id"])
    expect(waiting).to_contain_text("Which branch?")
    expect(page.locator("section.column-requires_input .needs-you")).to_be_visible()
    shoot(page, "05-requires-input")

    waiting.focus()  # by keyboard: a card is a button
    page.keyboard.press("Enter")
    drawer = page.locator("#drawer")
    expect(drawer).to_be_visible()
    expect(drawer.locator("#input-question")).to_have_text("Which branch?")
    expect(drawer.locator("#drawer-output")).to_contain_text("looking around")
    shoot(page, "06-drawer-question")
    drawer.get_by_role("textbox", name="Your answer").fill("main")
    drawer.get_by_role("button", name="Send answer").click()

    expect(drawer.locator("#drawer-status")).to_have_text("Completed")
    expect(drawer.locator("#drawer-output")).to_contain_text("deploying")
    expect(drawer.locator("#drawer-timeline")).to_contain_text("InputProvided")
    expect(drawer.locator("#drawer-input")).to_be_hidden()
    shoot(page, "07-drawer-answered")
    with page.expect_download() as download:
        drawer.get_by_role("button", name="Download plan.md").click()
    assert download.value.suggested_filename == "plan.md"
    assert Path(download.value.path()).read_text() == "# the plan"
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    expect(card(page, "completed", execution["id"])).to_be_focused()  # focus came back

    done = httpx.get(
        f"{running.url}/v1/executions/{execution['id']}", timeout=10,
        headers={"Authorization": f"Bearer {keys['viewer']}"},
    ).json()  # fmt: skip
    assert done["result"] == {"answers": ["main"]}


def test_a_filter_narrows_the_board_and_a_shared_link_keeps_it(
    page: Page, running: RunningStack, keys: dict[str, str], browser: Browser
) -> None:
    tag = uuid4().hex[:8]
    alpha = create(running, keys["operator"], [], agent_id=f"alpha-{tag}", worker_queue=PARKED)
    beta = create(running, keys["operator"], [], agent_id=f"beta-{tag}", worker_queue=PARKED,
                  prompt=f"summarise the {tag} report")  # fmt: skip
    sign_in(page, running, keys["viewer"])
    expect(card(page, "pending", alpha["id"])).to_be_visible()
    expect(card(page, "pending", beta["id"])).to_be_visible()

    filters = page.get_by_role("search")
    filters.get_by_label("Agent", exact=True).fill(f"alpha-{tag}")
    filters.get_by_role("button", name="Apply").click()
    expect(card(page, "pending", beta["id"])).to_have_count(0)
    expect(card(page, "pending", alpha["id"])).to_be_visible()
    expect(page.locator('section[data-status="pending"] .column-count')).to_have_text("1")
    assert f"agent=alpha-{tag}" in page.url
    shoot(page, "08-filtered-by-agent")

    # the link opens the same filtered board elsewhere (the key is already in this browser)
    shared = page.context.new_page()
    shared.goto(page.url)
    shared_agent = shared.get_by_role("search").get_by_label("Agent", exact=True)
    expect(shared_agent).to_have_value(f"alpha-{tag}")
    expect(card(shared, "pending", beta["id"])).to_have_count(0)
    expect(card(shared, "pending", alpha["id"])).to_be_visible()
    shared.close()

    filters.get_by_role("button", name="Clear").click()
    filters.get_by_label("Text in prompt").fill(f"{tag} report")
    filters.get_by_label("Text in prompt").press("Enter")
    expect(card(page, "pending", alpha["id"])).to_have_count(0)
    expect(card(page, "pending", beta["id"])).to_be_visible()
    assert "q=" in page.url
    assert "agent=" not in page.url


def test_a_wrong_key_shows_the_sign_in_prompt_and_a_good_one_opens_the_board(
    page: Page, running: RunningStack, keys: dict[str, str]
) -> None:
    page.goto(f"{running.url}/#key=ab_not_a_real_key")
    prompt = page.locator("#signin")
    expect(prompt).to_be_visible()
    expect(prompt).to_contain_text("unknown or revoked")
    assert "key=" not in page.url
    shoot(page, "09-wrong-key")

    prompt.get_by_label("API key").fill(keys["viewer"])
    prompt.get_by_role("button", name="Sign in").click()
    expect(prompt).to_be_hidden()
    expect(page.locator("#connection")).to_have_text("Live")

    page.get_by_role("button", name="Sign out").click()
    expect(prompt).to_be_visible()
    page.reload()  # nothing kept: it asks again
    expect(prompt).to_be_visible()
    expect(prompt).to_contain_text("Sign in with an API key")


def test_an_action_the_server_refuses_shows_its_reason(
    page: Page, running: RunningStack, keys: dict[str, str]
) -> None:
    execution = create(running, keys["operator"], [], worker_queue=PARKED, prompt="not yours")
    sign_in(page, running, keys["viewer"])
    card(page, "pending", execution["id"]).click()
    drawer = page.locator("#drawer")
    drawer.get_by_role("button", name="Cancel").click()
    refusal = drawer.get_by_role("alert").filter(has_text="Refused")
    expect(refusal).to_contain_text("needs the operator role")
    expect(refusal).to_contain_text("viewer")
    shoot(page, "10-refused-action")
    page.keyboard.press("Escape")
    expect(card(page, "pending", execution["id"])).to_be_visible()  # still pending


def test_time_travel_shows_the_board_as_it_was(
    page: Page, running: RunningStack, keys: dict[str, str]
) -> None:
    execution = create(running, keys["operator"], [], worker_queue=PARKED, prompt="cancel me")
    created = datetime.fromisoformat(execution["created_at"]).timestamp()
    moment = math.ceil(created)  # a whole second after it was created, before the cancel
    time.sleep(max(0.0, moment + 1 - time.time()))  # the time under test: that moment passes
    cancelled = httpx.post(
        f"{running.url}/v1/executions/{execution['id']}/cancel", timeout=10,
        headers={"Authorization": f"Bearer {keys['operator']}"},
    )  # fmt: skip
    assert cancelled.status_code == 200, cancelled.text
    sign_in(page, running, keys["viewer"])
    expect(card(page, "cancelled", execution["id"])).to_be_visible()

    local = page.evaluate(
        "(ms) => { const d = new Date(ms); return new Date(ms - d.getTimezoneOffset() * 60000)"
        ".toISOString().slice(0, 19); }",
        moment * 1000,
    )
    page.get_by_label("Board as of").fill(local)
    page.get_by_role("button", name="Show", exact=True).click()
    expect(card(page, "pending", execution["id"])).to_be_visible()
    expect(page.locator("#past-banner")).to_contain_text("as it was")
    assert "as_of=" in page.url
    shoot(page, "11-time-travel")

    page.get_by_role("button", name="Back to live").click()
    expect(page.locator("#connection")).to_have_text("Live")
    expect(card(page, "cancelled", execution["id"])).to_be_visible()


def test_a_lost_connection_shows_reconnecting_and_resumes_from_the_last_event(
    page: Page, running: RunningStack, keys: dict[str, str]
) -> None:
    resumed_from: list[str] = []
    page.on("request", lambda r: resumed_from.append(r.headers.get("last-event-id", ""))
            if "/v1/board/stream" in r.url else None)  # fmt: skip
    link = TcpLink(int(running.url.rsplit(":", 1)[1]))
    page.emulate_media(color_scheme="dark")
    page.goto(f"{link.url}/#key={keys['viewer']}")
    expect(page.locator("#connection")).to_have_text("Live")
    before = create(running, keys["operator"], [], worker_queue=PARKED, prompt="before the cut")
    expect(card(page, "pending", before["id"])).to_be_visible()

    link.cut()
    expect(page.locator("#connection")).to_have_text("Reconnecting…")
    during = create(running, keys["operator"], [], worker_queue=PARKED, prompt="during the cut")
    shoot(page, "12-reconnecting-dark")
    link.restore()
    expect(page.locator("#connection")).to_have_text("Live")
    expect(card(page, "pending", during["id"])).to_be_visible()  # replayed after the cut
    shoot(page, "13-recovered-dark")
    assert int(resumed_from[-1]) >= before["position"]  # not from the start
    link.cut()


def test_the_page_and_its_assets_need_no_key_but_the_api_still_does(
    running: RunningStack,
) -> None:
    page = httpx.get(f"{running.url}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    script = httpx.get(f"{running.url}/static/board.js", timeout=10)
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert httpx.get(f"{running.url}/static/nothing.js", timeout=10).status_code == 404
    assert httpx.get(f"{running.url}/v1/board", timeout=10).status_code == 401


def test_a_blocked_card_and_its_drawer_say_who_blocked_it_and_why(
    page: Page, running: RunningStack, keys: dict[str, str]
) -> None:
    sign_in(page, running, keys["operator"])
    held = create(running, keys["operator"], [{"tool": "migrate", "seconds": 600}])
    expect(card(page, "running", held["id"])).to_be_visible()
    operator = {"Authorization": f"Bearer {keys['operator']}"}
    url = f"{running.url}/v1/executions/{held['id']}"
    httpx.post(f"{url}/block", json={"reason": "disk full"}, headers=operator, timeout=10)

    blocked = card(page, "blocked", held["id"])
    expect(blocked).to_contain_text("Blocked by user:key:")
    expect(blocked).to_contain_text("disk full")
    blocked.click()
    expect(page.locator("#drawer-overview")).to_contain_text("disk full")
    shoot(page, "blocked-card-drawer")
    page.keyboard.press("Escape")
    httpx.post(f"{url}/cancel", headers=operator, timeout=10)
    expect(card(page, "cancelled", held["id"])).to_be_visible()
