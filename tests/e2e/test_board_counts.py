"""The board page's counting (``api/http/static/model.js``) in Chromium, without a server: the
column counts a person reads must stay exact on a board too big to show whole."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
STATIC = Path(__file__).resolve().parents[2] / "api" / "http" / "static"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium (/usr/bin/chromium) is not installed"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-background-networking"]
        )
        yield chromium
        chromium.close()


# The board's counting, in the browser, over a board too big to show whole: what a person
# sees in the column headers must stay exact whatever the page has or has not seen. The
# tenant: 120 pending (x among them), 2 running (y and z); the page shows 2 cards a column.
COUNTING = """async () => {
  const { BoardModel } = await import("/static/model.js");
  const card = (id, status, position, second) => ({
    id, status, position, priority: 0, created_at: `2026-01-01T00:00:${second}+00:00` });
  const columns = ["pending", "running", "requires_input", "blocked", "completed", "failed",
    "cancelled"].map((status) => ({ status, count: 0, items: [], next_cursor: null }));
  columns[0] = { status: "pending", count: 120, next_cursor: "more",
    items: [card("a", "pending", 1, "01"), card("b", "pending", 2, "02")] };
  columns[1] = { status: "running", count: 2, next_cursor: "more", items: [] };
  const model = new BoardModel(2);
  model.load({ columns, position: 10, as_of: null });
  const counts = () => Object.fromEntries([...model.columns].map(([s, c]) => [s, c.count]));
  const seen = { asked: [] };
  const apply = (position, event, execution) =>
    seen.asked.push(model.apply({ position, event, execution }));

  apply(11, "PickedUp", card("x", "running", 11, "50")); // unseen: it came from pending
  seen.picked = counts();
  apply(12, "Created", card("late", "pending", 12, "59")); // sorts past the cards shown
  apply(13, "Created", card("early", "pending", 13, "00")); // sorts first
  seen.shown = model.column("pending").items.map((c) => c.id);

  model.beginRecount();
  apply(14, "Completed", card("y", "completed", 14, "51")); // from running? blocked? ask
  apply(15, "Completed", card("x", "completed", 15, "50")); // seen: from running
  const at14 = { pending: 121, running: 2, completed: 1 }; // the server's board at 14
  model.finishRecount({ position: 14,
    columns: columns.map((c) => ({ status: c.status, count: at14[c.status] ?? 0 })) });
  seen.recounted = counts();

  apply(16, "ToolCalled", card("z", "requires_input", 17, "52")); // shows a later event
  seen.early = counts();
  apply(17, "InputRequested", card("z", "requires_input", 17, "52"));
  seen.last = counts();
  return seen;
}"""


def test_counts_stay_exact_for_cards_the_page_never_showed(browser: Browser) -> None:
    context = browser.new_context()
    context.route(  # the page's modules, from disk: no server needed
        "http://board.test/static/*.js",
        lambda route: route.fulfill(
            path=STATIC / route.request.url.rsplit("/", 1)[1], content_type="text/javascript"
        ),
    )
    context.route("http://board.test/", lambda route: route.fulfill(body="<!doctype html>"))
    page = context.new_page()
    page.goto("http://board.test/")
    seen = page.evaluate(COUNTING)
    context.close()

    assert (seen["picked"]["pending"], seen["picked"]["running"]) == (119, 3)
    assert seen["shown"] == ["early", "a"]
    assert seen["asked"] == [False, False, False, True, False, False, False]  # only y's end
    assert seen["recounted"]["pending"] == 121
    assert seen["recounted"]["running"] == 1  # z; x completed after the recount's position
    assert seen["recounted"]["completed"] == 2
    assert seen["early"]["running"] == 1  # z's message showed a later state: not yet counted
    assert (seen["last"]["running"], seen["last"]["requires_input"]) == (0, 1)
