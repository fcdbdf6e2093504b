// The columns and their cards, drawn from the BoardModel; only what changed is drawn again.

import { actorName, duration, el, excerpt } from "./format.js";
import { STATUSES, STATUS_NAMES } from "./model.js";

const TOOL_STATE = { success: "succeeded", failed: "failed" };

export function cardContent(card) {
  const agent = card.type === "team" ? `team ${card.team_id ?? card.agent_id}` : card.agent_id;
  const tool = card.last_tool
    ? el("span", { class: `card-tool tool-${card.last_tool_outcome || "running"}` },
        "last tool ", el("strong", {}, card.last_tool), " ",
        TOOL_STATE[card.last_tool_outcome] || "running")
    : null;
  return [
    el("span", { class: "card-head" },
      el("span", { class: "card-agent" }, agent),
      el("span", { class: "card-priority", title: "priority" }, `P${card.priority}`)),
    el("span", { class: "card-prompt" }, excerpt(card.prompt)),
    card.question ? el("span", { class: "card-question" }, "Waits for you: ", excerpt(card.question, 100)) : null,
    card.blocked ? el("span", { class: "card-blocked" }, "Blocked by ", actorName(card.blocked.by), ": ",
      excerpt(card.blocked.reason, 100)) : null,
    card.error ? el("span", { class: "card-error" }, excerpt(card.error, 100)) : null,
    card.cancel_requested && !["cancelled", "completed", "failed"].includes(card.status)
      ? el("span", { class: "card-flag" }, "cancel requested") : null,
    tool,
    el("span", { class: "card-meta" },
      el("span", {}, "queue ", el("strong", {}, card.worker_queue)),
      card.worker_id ? el("span", {}, "worker ", el("strong", {}, card.worker_id)) : null,
      el("span", {}, "attempt ", el("strong", {}, card.attempt))),
    el("span", { class: "card-times" },
      el("span", { "data-since": card.created_at, "data-label": "age " }),
      el("span", { "data-since": card.status_entered_at, "data-label": "in status " })),
  ];
}

export class BoardView {
  constructor(root, model, { onOpen, onMore, now }) {
    Object.assign(this, { root, model, onOpen, onMore, now });
    this.sections = new Map();
    this.elements = new Map(); // card id -> {item, button, position}
    this.filtered = false;
    for (const status of STATUSES) this.root.append(this.section(status));
    root.addEventListener("click", (event) => {
      const button = event.target.closest("button.card");
      if (button) this.onOpen(button.dataset.id, button);
    });
  }

  section(status) {
    const title = `column-${status}`;
    const count = el("span", { class: "column-count" }, "…");
    const list = el("ol", { class: "cards", "aria-labelledby": title });
    const more = el("button", { type: "button", class: "show-more", hidden: true,
      onclick: () => this.onMore(status) }, "Show more");
    const section = el("section", { class: `column column-${status}`, "data-status": status,
      "aria-labelledby": title },
      el("h2", { id: title }, el("span", { class: "column-name" }, STATUS_NAMES[status]),
        status === "requires_input" ? el("span", { class: "needs-you", hidden: true }, "needs you") : null,
        " ", count),
      list, more);
    this.sections.set(status, { section, count, list, more });
    return section;
  }

  draw() {
    for (const status of this.model.dirty) this.drawColumn(status);
    this.model.dirty.clear();
  }

  drawColumn(status) {
    const parts = this.sections.get(status);
    const column = this.model.column(status);
    if (!parts) return;
    const items = column ? column.items : [];
    parts.section.hidden = !column;
    setText(parts.count, this.countText(column, items));
    parts.more.hidden = !column?.hasMore;
    const wanted = items.map((card) => this.element(card).item);
    // move only what is out of place, so a focused card keeps its focus
    wanted.forEach((item, index) => {
      if (parts.list.children[index] !== item) parts.list.insertBefore(item, parts.list.children[index] ?? null);
    });
    while (parts.list.children.length > wanted.length) {
      const extra = parts.list.lastElementChild;
      const id = extra.firstElementChild.dataset.id;
      extra.remove();
      // a card that moved to another column keeps its element (and so its focus)
      if (!this.model.cardById(id)) this.elements.delete(id);
    }
  }

  countText(column, items) {
    if (!column) return "";
    if (column.count !== null && column.count !== undefined) return String(column.count);
    return `${items.length}${column.hasMore ? "+" : ""}`;
  }

  element(card) {
    let entry = this.elements.get(card.id);
    if (entry && entry.position === card.position) return entry;
    if (!entry) {
      const button = el("button", { type: "button", class: "card" });
      entry = { item: el("li", {}, button), button };
      this.elements.set(card.id, entry);
    }
    entry.position = card.position;
    Object.assign(entry.button.dataset, { id: card.id, status: card.status });
    entry.button.classList.toggle("card-waiting", card.status === "requires_input");
    entry.button.replaceChildren(...cardContent(card).filter(Boolean));
    this.tick(entry.button);
    return entry;
  }

  tick(scope = this.root) {
    // Only text that changed is written: a write costs a style pass even when it is the same.
    const now = this.now();
    for (const span of scope.querySelectorAll("[data-since]")) {
      setText(span, `${span.dataset.label}${duration((now - Date.parse(span.dataset.since)) / 1000)}`);
    }
  }

  focusCard(id) {
    const button = this.elements.get(id)?.button;
    if (button?.isConnected) button.focus();
    else this.root.focus();
  }
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}
