// The detail drawer: one execution, live. Its events come from the follow stream
// (GET /v1/executions/{id}/logs?follow=true), replayed from the start and then live; a server
// without that stream gets the stored events and output, read again whenever its card changes.

import { Actions } from "./actions.js";
import { overview, timeBar, toolTable, artifactList, timeline } from "./drawer_view.js";
import { duration, el } from "./format.js";
import { STATUS_NAMES } from "./model.js";
import { LiveStream, NotAStream } from "./sse.js";

const STATUS_EVENTS = new Set([
  "PickedUp", "InputRequested", "InputProvided", "Blocked", "Unblocked", "Cancelled",
  "Completed", "Failed", "RetryScheduled", "LeaseExpired", "CancelRequested",
]);

export class Drawer {
  constructor(dialog, api, { onSignIn, onClosed, now }) {
    Object.assign(this, { dialog, api, onSignIn, onClosed, now });
    this.part = (id) => dialog.querySelector(`#${id}`);
    this.actions = new Actions(dialog, api, {
      onDone: () => this.refreshSoon(),
      onSignIn,
    });
    dialog.querySelector("[data-close]").addEventListener("click", () => this.close());
    dialog.addEventListener("close", () => this.closed());
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) this.close(); // a click on the backdrop
    });
    this.part("download-output").addEventListener("click", () => this.downloadOutput());
    this.id = null;
  }

  open(id, opener) {
    this.stop();
    Object.assign(this, {
      id, opener, detail: null, fetchedAt: 0, items: new Map(), output: "", calls: new Map(),
      artifacts: new Map(), attempt: 1, stream: null, refreshTimer: null, live: false,
    });
    this.part("drawer-title").textContent = "Loading…";
    this.part("drawer-status").textContent = "";
    this.part("drawer-connection").textContent = "";
    this.part("drawer-error").hidden = true;
    this.part("artifact-error").hidden = true;
    for (const part of ["drawer-overview", "drawer-times", "drawer-tools", "drawer-artifacts", "drawer-timeline"]) {
      this.part(part).replaceChildren();
    }
    this.part("drawer-output").textContent = "";
    this.actions.clear();
    if (!this.dialog.open) this.dialog.showModal();
    this.part("drawer-close").focus();
    this.loadDetail();
    this.follow();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  closed() {
    this.stop();
    const id = this.id;
    this.id = null;
    if (this.opener?.isConnected) this.opener.focus();
    else if (id) this.onClosed(id); // its card was drawn again: focus goes back to it
  }

  stop() {
    this.stream?.stop();
    clearTimeout(this.refreshTimer);
  }

  async loadDetail() {
    const id = this.id;
    try {
      const detail = await this.api.json(`/v1/executions/${id}`);
      if (id === this.id) this.showDetail(detail);
    } catch (error) {
      if (id !== this.id) return;
      if (error.signInAgain) this.onSignIn(error.detail);
      this.showError(error.detail);
    }
  }

  showDetail(detail) {
    this.detail = detail;
    this.fetchedAt = this.now();
    this.part("drawer-title").textContent = `${detail.agent_id}: ${detail.prompt.slice(0, 80)}`;
    const status = this.part("drawer-status");
    status.textContent = STATUS_NAMES[detail.status] || detail.status;
    status.className = `status-badge status-${detail.status}`;
    this.part("drawer-overview").replaceChildren(overview(detail));
    for (const call of detail.tool_calls || []) this.mergeCall(`${call.attempt}:${call.call_id}`, call);
    for (const artifact of detail.artifacts || []) this.artifacts.set(artifact.name, artifact);
    this.actions.show(detail);
    this.draw();
  }

  follow() {
    const id = this.id;
    this.stream = new LiveStream({
      open: (last, signal) => this.api.openStream(`/v1/executions/${id}/logs?follow=true`, last, signal),
      onMessage: (message) => this.received(message),
      onState: (state) => {
        this.live = state === "live";
        this.part("drawer-connection").textContent = this.live ? "" : "Reconnecting…";
      },
      onRefused: (error) => this.refused(id, error),
    }).start();
  }

  refused(id, error) {
    if (id !== this.id) return;
    if (error instanceof NotAStream) {
      // no live stream from this server: what is stored now, again whenever the card changes
      this.reloadEvents();
      return;
    }
    if (error.problem.status === 401) this.onSignIn(error.problem.detail);
    this.showError(error.problem.detail);
  }

  async reloadEvents() {
    const id = this.id;
    try {
      const [events, output] = await Promise.all([
        this.api.json(`/v1/executions/${id}/events`),
        this.api.text(`/v1/executions/${id}/logs`),
      ]);
      if (id !== this.id) return;
      this.items.clear();
      this.calls.clear();
      this.artifacts.clear();
      this.output = "";
      events.forEach((item) => this.record(item));
      this.output = output;
      this.draw();
    } catch (error) {
      if (id === this.id) this.showError(error.detail);
    }
  }

  received(message) {
    if (message.event === "end") {
      this.stream.stop();
      this.refreshSoon();
      return;
    }
    const item = JSON.parse(message.data);
    if (this.items.has(item.position)) return;
    this.record(item);
    if (STATUS_EVENTS.has(item.type)) this.refreshSoon();
    this.drawSoon();
  }

  record(item) {
    this.items.set(item.position ?? `v${item.version}`, item);
    const data = item.data || {};
    if (item.type === "OutputAppended") this.output += data.text || "";
    else if (item.type === "PickedUp") this.attempt = data.attempt;
    else if (item.type === "ToolCalled") {
      this.mergeCall(`${this.attempt}:${data.call_id}`, {
        attempt: this.attempt, call_id: data.call_id, tool: data.tool,
        arguments: data.arguments, called_at: item.timestamp, outcome: null,
      });
    } else if (item.type === "ToolCallFinished") {
      this.mergeCall(`${this.attempt}:${data.call_id}`, {
        outcome: data.outcome, result_summary: data.result_summary,
        duration_seconds: data.duration_seconds, finished_at: item.timestamp,
      });
    } else if (item.type === "ArtifactAdded") this.artifacts.set(data.name, data);
    else if (item.type === "InputRequested") this.actions.showSchema(data.kind, data.answer_schema);
  }

  mergeCall(key, fields) {
    const known = this.calls.get(key) || {};
    const merged = { ...known };
    for (const [name, value] of Object.entries(fields)) if (value !== null && value !== undefined) merged[name] = value;
    if (known.outcome && !fields.outcome) merged.outcome = known.outcome;
    this.calls.set(key, merged);
  }

  cardChanged(card) {
    // The board saw this execution change: read it again (and its events, without a stream).
    if (card.id !== this.id) return;
    this.refreshSoon();
    if (this.stream?.stopped && !this.live) this.reloadEventsSoon();
  }

  refreshSoon() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.loadDetail(), 150);
  }

  reloadEventsSoon() {
    clearTimeout(this.eventsTimer);
    this.eventsTimer = setTimeout(() => this.reloadEvents(), 150);
  }

  drawSoon() {
    if (this.drawPending) return;
    this.drawPending = true;
    requestAnimationFrame(() => {
      this.drawPending = false;
      this.draw();
    });
  }

  draw() {
    if (this.id === null) return;
    const output = this.part("drawer-output");
    if (output.textContent !== this.output) {
      const atEnd = output.scrollTop + output.clientHeight >= output.scrollHeight - 8;
      output.textContent = this.output;
      if (atEnd) output.scrollTop = output.scrollHeight;
    }
    this.part("download-output").hidden = !this.output;
    this.part("drawer-artifacts").replaceChildren(
      artifactList([...this.artifacts.values()], (artifact) => this.download(artifact)));
    this.part("drawer-timeline").replaceChildren(timeline([...this.items.values()]));
    this.part("drawer-tools").replaceChildren(toolTable([...this.calls.values()], this.now()));
    this.tick();
  }

  tick() {
    // What grows with time: the current status's share of the bar, running tool calls.
    if (this.id === null || !this.detail) return;
    const now = this.now();
    const extra = (now - this.fetchedAt) / 1000;
    this.part("drawer-times").replaceChildren(...[timeBar(this.detail.time_in_status || {}, this.detail.status, extra)].flat());
    for (const span of this.part("drawer-tools").querySelectorAll("[data-running-since]")) {
      span.textContent = duration((now - Date.parse(span.dataset.runningSince)) / 1000);
    }
  }

  showError(detail) {
    const box = this.part("drawer-error");
    box.hidden = false;
    box.replaceChildren(el("strong", {}, "Could not load this execution: "), detail);
  }

  downloadOutput() {
    save(new Blob([this.output], { type: "text/plain" }), `${this.id}.log`);
  }

  async download(artifact) {
    // A link cannot carry the key, so the bytes are fetched with it and saved from memory.
    const id = this.id;
    const url = artifact.url || `/v1/executions/${id}/artifacts/${encodeURIComponent(artifact.name)}`;
    const error = this.part("artifact-error");
    error.hidden = true;
    try {
      const response = await this.api.fetch(url, { headers: { Accept: "*/*" } });
      save(await response.blob(), artifact.name);
    } catch (refusal) {
      if (id !== this.id) return;
      if (refusal.signInAgain) this.onSignIn(refusal.detail);
      error.hidden = false;
      error.textContent = `${artifact.name} could not be downloaded: ${refusal.detail}`;
    }
  }
}

function save(blob, name) {
  const link = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}
