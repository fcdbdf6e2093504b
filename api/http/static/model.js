// The board's state, without the DOM: columns of cards in the board's order, exact counts
// kept live from the stream, and what the page must ask again when an event cannot say.

export const STATUSES = [
  "pending", "running", "requires_input", "blocked", "completed", "failed", "cancelled",
];
export const STATUS_NAMES = {
  pending: "Pending", running: "Running", requires_input: "Requires Input", blocked: "Blocked",
  completed: "Completed", failed: "Failed", cancelled: "Cancelled",
};
export const TERMINAL = new Set(["completed", "failed", "cancelled"]);

// For a card the page has not seen before: where an event must have moved it from. Events
// that end or requeue work (Completed, Failed, Cancelled, RetryScheduled) leave from several
// statuses, so for those the page asks the server for the counts again.
const MOVED_FROM = {
  PickedUp: "pending", InputRequested: "running", InputProvided: "requires_input",
  Blocked: "running", Unblocked: "blocked",
};
const STAYS = new Set([
  "ToolCalled", "ToolCallFinished", "OutputAppended", "ArtifactAdded", "CancelRequested",
  "LeaseExpired", "UsageRecorded",
]);

export function compareCards(a, b) {
  // The server's order: highest priority first, then oldest, then id.
  if (a.priority !== b.priority) return b.priority - a.priority;
  const at = Date.parse(a.created_at) - Date.parse(b.created_at);
  if (at) return at;
  if (a.created_at !== b.created_at) return a.created_at < b.created_at ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

class Column {
  constructor(status, { count, items, next_cursor: cursor }, shown) {
    this.status = status;
    this.count = count; // null on a filtered board: the server keeps counts per tenant only
    this.items = items;
    this.cursor = cursor; // the next page of /v1/executions?status=..., null at the end
    this.trimmed = false; // cards past `shown` were let go; "show more" pages from the top
    this.shown = shown; // how many cards this column shows at most
  }

  get hasMore() {
    return Boolean(this.cursor) || this.trimmed;
  }

  remove(id) {
    const index = this.items.findIndex((card) => card.id === id);
    if (index >= 0) this.items.splice(index, 1);
    return index >= 0;
  }

  place(card) {
    // In order, if it falls among the cards shown; past them it waits for "show more".
    const last = this.items[this.items.length - 1];
    if (this.hasMore && last && compareCards(card, last) > 0) return false;
    if (this.hasMore && !last) return false;
    let index = this.items.findIndex((other) => compareCards(card, other) < 0);
    if (index < 0) index = this.items.length;
    this.items.splice(index, 0, card);
    if (this.items.length > this.shown) {
      this.items.length = this.shown;
      this.cursor = null;
      this.trimmed = true;
    }
    return true;
  }
}

export class BoardModel {
  constructor(pageSize) {
    this.pageSize = pageSize;
    this.columns = new Map();
    this.position = 0;
    this.asOf = null;
    this.statusOf = new Map(); // id -> status as counted (from the board load and the stream)
    this.deltas = null; // while counts are being fetched again: the changes made meanwhile
    this.dirty = new Set(); // columns to draw again
  }

  load(board) {
    this.columns.clear();
    this.statusOf.clear();
    this.deltas = null;
    for (const column of board.columns) {
      const shown = Math.max(this.pageSize, column.items.length);
      const loaded = new Column(column.status, column, shown);
      // a past board has no cursors: "show more" asks for it again with a larger limit
      if (board.as_of && column.count > column.items.length && column.items.length < 500) {
        loaded.trimmed = true;
      }
      this.columns.set(column.status, loaded);
      for (const card of column.items) this.statusOf.set(card.id, card.status);
    }
    this.position = board.position;
    this.asOf = board.as_of;
    STATUSES.forEach((status) => this.dirty.add(status));
  }

  column(status) {
    return this.columns.get(status);
  }

  cardById(id) {
    for (const column of this.columns.values()) {
      const card = column.items.find((item) => item.id === id);
      if (card) return card;
    }
    return null;
  }

  // One change from the stream: {position, event, execution}. The columns whose cards or
  // count changed are added to `dirty`; returns true when the counts must be fetched again.
  apply({ position, event, execution: card }) {
    this.position = Math.max(this.position, position);
    const shown = this.cardById(card.id);
    if (shown && shown.position > card.position) return false; // an older state of the card
    const recount = this.count(position, event, card);
    if (shown && shown.status === card.status) {
      // same column, same place: priority and creation time never change
      const column = this.column(card.status);
      column.items[column.items.indexOf(shown)] = card;
      this.dirty.add(card.status);
      return recount;
    }
    if (shown && this.column(shown.status).remove(card.id)) this.dirty.add(shown.status);
    if (this.column(card.status)?.place(card)) this.dirty.add(card.status);
    return recount;
  }

  count(position, event, card) {
    const counted = this.statusOf.get(card.id);
    let from;
    if (counted !== undefined) from = counted;
    else if (event === "Created") from = null;
    else if (card.position !== position) return false; // later events will count it
    else if (STAYS.has(event)) from = card.status; // the card is as this event left it
    else from = MOVED_FROM[event];
    this.statusOf.set(card.id, card.status);
    if (from === undefined) return true;
    this.move(from, card.status, card.position);
    return false;
  }

  move(from, to, position) {
    if (from === to) return;
    if (this.deltas) this.deltas.push({ from, to, position });
    for (const [status, step] of [[from, -1], [to, 1]]) {
      const column = status && this.column(status);
      if (column && column.count !== null) {
        column.count = Math.max(0, column.count + step);
        this.dirty.add(status);
      }
    }
  }

  beginRecount() {
    this.deltas = this.deltas || [];
  }

  abandonRecount() {
    this.deltas = null;
  }

  finishRecount(board) {
    // Exact counts at board.position, plus the changes seen since that position.
    const counts = new Map(board.columns.map((column) => [column.status, column.count]));
    for (const { from, to, position } of this.deltas || []) {
      if (position <= board.position) continue;
      if (from) counts.set(from, counts.get(from) - 1);
      counts.set(to, counts.get(to) + 1);
    }
    for (const [status, count] of counts) {
      const column = this.column(status);
      if (column && column.count !== null && count !== null) {
        column.count = Math.max(0, count);
        this.dirty.add(status);
      }
    }
    this.deltas = null;
  }

  addPage(status, page, fromTop) {
    // "Show more": the next page of a column (or, after a trim, the column from the top).
    const column = this.column(status);
    const fresh = page.items.filter((card) => {
      const counted = this.statusOf.get(card.id);
      return card.status === status && (counted === undefined || counted === status);
    });
    if (fromTop) {
      column.items = [];
      column.trimmed = false;
    }
    const ids = new Set(column.items.map((card) => card.id));
    for (const card of fresh) if (!ids.has(card.id)) column.items.push(card);
    column.items.sort(compareCards);
    column.cursor = page.next_cursor;
    column.shown = Math.max(column.shown, column.items.length);
    this.dirty.add(status);
  }
}
