// The live board: loads GET /v1/board, then follows GET /v1/board/stream from the board's
// position, so nothing falls between the two; cards move and counts change as events arrive.

import { Api, query } from "./api.js";
import { BoardView } from "./cards.js";
import { Drawer } from "./drawer.js";
import { FilterForm, readView, writeView } from "./filters.js";
import { clock } from "./format.js";
import { BoardModel } from "./model.js";
import { Keys, SignIn } from "./signin.js";
import { LiveStream, NotAStream } from "./sse.js";

const PAGE = 50; // cards a column shows before "show more"
const MAX_LIMIT = 500; // the board API's own limit
const $ = (selector) => document.querySelector(selector);

const keys = new Keys();
const api = new Api(keys);
const now = () => api.now();
const model = new BoardModel(PAGE);
// a past board's ages and times in status are as they were at that moment
const boardNow = () => (model.asOf ? Date.parse(model.asOf) : now());
const view = new BoardView($("#board"), model, { onOpen: openCard, onMore: showMore, now: boardNow });
const drawer = new Drawer($("#drawer"), api, {
  onSignIn: askToSignIn,
  onClosed: (id) => view.focusCard(id),
  now,
});
const signIn = new SignIn($("#signin"), keys, () => loadBoard());
const filterForm = new FilterForm($("#filters"), (filters) => changeView({ ...current, filters }));
const banner = new (class {
  show(text, retry) {
    $("#board-error-text").textContent = text;
    $("#board-error-retry").hidden = !retry;
    $("#board-error").hidden = false;
  }
  hide() {
    $("#board-error").hidden = true;
  }
})();

let current = readView();
let stream = null;
let generation = 0; // a newer load makes the answers of older ones moot
let pastLimit = PAGE;
let changes = [];
let flushPending = false;
let recounting = false;
let recountAgain = false;
let waiting = 0;

function changeView(next) {
  current = next;
  pastLimit = PAGE;
  writeView(current);
  loadBoard();
}

async function loadBoard() {
  const mine = ++generation;
  stopStream();
  filterForm.show(current.filters);
  showTravel();
  if (!keys.get()) {
    askToSignIn(null);
    return;
  }
  setConnection(current.asOf ? "past" : "connecting");
  const limit = current.asOf ? pastLimit : PAGE;
  try {
    const board = await api.json(`/v1/board${query({ ...current.filters, limit, as_of: current.asOf })}`);
    if (mine !== generation) return;
    banner.hide();
    model.load(board);
    view.draw();
    noteWaiting();
    if (current.asOf) showPast(board);
    else follow(board.position);
  } catch (error) {
    if (mine !== generation) return;
    if (error.signInAgain) askToSignIn(error.detail);
    else if (error.status === 0) {
      setConnection("reconnecting");
      setTimeout(() => mine === generation && loadBoard(), 2000);
    } else banner.show(`The board could not be loaded: ${error.detail}`, true);
  }
}

function follow(position) {
  stream = new LiveStream({
    lastEventId: String(position),
    open: (last, signal) => api.openStream(`/v1/board/stream${query(current.filters)}`, last, signal),
    onMessage: received,
    onState: setConnection,
    onRefused: (error) => {
      if (error instanceof NotAStream || error.problem.status === 404) setConnection("no-stream");
      else if (error.problem.status === 401) askToSignIn(error.problem.detail);
      else banner.show(`Live updates stopped: ${error.problem.detail}`, true);
    },
  }).start();
}

function stopStream() {
  stream?.stop();
  stream = null;
  changes = [];
}

function received(message) {
  if (message.event === "reset") {
    loadBoard(); // too far behind to replay: start again from a fresh board
    return;
  }
  if (message.event !== "execution") return;
  changes.push(JSON.parse(message.data));
  if (!flushPending) {
    flushPending = true;
    requestAnimationFrame(flush); // a burst of events is drawn once per frame
  }
}

function flush() {
  flushPending = false;
  let recount = false;
  for (const change of changes) {
    recount = model.apply(change) || recount;
    drawer.cardChanged(change.execution);
  }
  changes = [];
  view.draw();
  noteWaiting();
  if (recount) recountSoon();
}

async function recountSoon() {
  // An event that cannot say which column a card left (one this page never saw): the counts
  // are read again, and the changes seen meanwhile are added on top.
  if (current.asOf) return;
  if (recounting) {
    recountAgain = true;
    return;
  }
  recounting = true;
  const mine = generation;
  model.beginRecount();
  try {
    const board = await api.json(`/v1/board${query({ ...current.filters, limit: 1 })}`);
    if (mine === generation) {
      model.finishRecount(board);
      view.draw();
    }
  } catch {
    model.abandonRecount();
  } finally {
    recounting = false;
    if (recountAgain) {
      recountAgain = false;
      recountSoon();
    }
  }
}

async function showMore(status) {
  if (current.asOf) {
    pastLimit = Math.min(MAX_LIMIT, pastLimit + PAGE);
    loadBoard();
    return;
  }
  const column = model.column(status);
  const fromTop = column.trimmed;
  const limit = fromTop ? Math.min(MAX_LIMIT, column.shown + PAGE) : PAGE;
  const cursor = fromTop ? undefined : column.cursor;
  try {
    const page = await api.json(`/v1/executions${query({ ...current.filters, status, limit, cursor })}`);
    model.addPage(status, page, fromTop);
    view.draw();
  } catch (error) {
    if (error.signInAgain) askToSignIn(error.detail);
    else banner.show(`More cards could not be loaded: ${error.detail}`, false);
  }
}

function openCard(id, button) {
  drawer.open(id, button);
}

function noteWaiting() {
  // The Requires Input column is what waits for a person: say so when it grows.
  const column = model.column("requires_input");
  const count = column ? column.count ?? column.items.length : 0;
  if (count > waiting) $("#announce").textContent = `${count} execution${count === 1 ? "" : "s"} waiting for input`;
  waiting = count;
  $("#board").classList.toggle("has-waiting", count > 0);
  $("#board .needs-you").hidden = count === 0;
  document.title = count ? `(${count} waiting) agentboard` : "agentboard";
}

function setConnection(state) {
  const text = {
    connecting: "Connecting…",
    live: "Live",
    reconnecting: "Reconnecting…",
    past: "Past view (not live)",
    "no-stream": "Not live: this server has no board stream; reload to update",
    "signed-out": "Signed out",
  }[state];
  const status = $("#connection");
  status.textContent = text;
  status.dataset.state = state;
}

function showTravel() {
  $("#travel-live").hidden = !current.asOf;
  $("#past-banner").hidden = !current.asOf;
  if (!current.asOf) $("#travel-at").value = "";
}

function showPast(board) {
  $("#past-text").textContent =
    `The board as it was at ${clock(board.as_of || current.asOf)} (log position ${board.position}). ` +
    "It does not change; actions in the drawer act on executions as they are now.";
  const at = new Date(board.as_of || current.asOf);
  if (!Number.isNaN(at.getTime())) {
    const local = new Date(at.getTime() - at.getTimezoneOffset() * 60000);
    $("#travel-at").value = local.toISOString().slice(0, 19);
  }
}

function askToSignIn(detail) {
  generation += 1;
  stopStream();
  drawer.close();
  setConnection("signed-out");
  signIn.ask(detail
    ? `The server refused this key: ${detail}. Sign in with another one.`
    : "Sign in with an API key. `agentboard up` prints a sign-in link, and keeps the admin key in <data dir>/admin.key.");
}

$("#travel").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("#travel-at").value;
  const at = new Date(value);
  if (!value || Number.isNaN(at.getTime())) {
    banner.show("Pick a date and time to see the board as it was then.", false);
    return;
  }
  changeView({ ...current, asOf: at.toISOString() });
});
$("#travel-live").addEventListener("click", () => changeView({ ...current, asOf: "" }));
$("#board-error-retry").addEventListener("click", () => loadBoard());
$("#sign-out").addEventListener("click", () => {
  keys.forget();
  askToSignIn(null);
});
window.addEventListener("popstate", () => {
  current = readView();
  loadBoard();
});
document.addEventListener("keydown", (event) => {
  const typing = event.target.closest?.("input, textarea, select");
  if (event.key === "/" && !typing && !document.querySelector("dialog[open]")) {
    event.preventDefault();
    $("#filter-q").focus();
  }
});
setInterval(() => {
  view.tick();
  drawer.tick();
}, 1000);

keys.takeFromFragment();
loadBoard();
