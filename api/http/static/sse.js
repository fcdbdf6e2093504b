// Server-sent events over fetch(): the browser's EventSource cannot send an Authorization
// header, so the page reads the stream itself, parses it, and reconnects with Last-Event-ID.

const MAX_BACKOFF_MS = 10_000;
const IDLE_MS = 45_000; // the server sends a keepalive comment every 15 s

export class SseParser {
  // Feeds text chunks in; calls onMessage({event, data, id}) per dispatched event.
  constructor(onMessage) {
    this.onMessage = onMessage;
    this.buffer = "";
    this.idBuffer = null;
    this.lastEventId = null; // as the spec says: set when an event is dispatched, not before
    this.resetEvent();
  }

  resetEvent() {
    this.event = "";
    this.data = [];
  }

  feed(text) {
    this.buffer += text;
    let start = 0;
    for (;;) {
      const end = this.buffer.slice(start).search(/\r\n|\r|\n/);
      if (end < 0) break;
      const lineEnd = start + end;
      // a lone \r at the very end may be the first half of \r\n: wait for the next chunk
      if (this.buffer[lineEnd] === "\r" && lineEnd + 1 === this.buffer.length) break;
      const width = this.buffer.startsWith("\r\n", lineEnd) ? 2 : 1;
      this.line(this.buffer.slice(start, lineEnd));
      start = lineEnd + width;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) return; // a comment: the server's keepalive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.idBuffer = value;
  }

  dispatch() {
    this.lastEventId = this.idBuffer;
    if (this.data.length) {
      this.onMessage({
        event: this.event || "message",
        data: this.data.join("\n"),
        id: this.lastEventId,
      });
    }
    this.resetEvent();
  }
}

export class StreamRefused extends Error {
  // The server answered with an error (a problem+json) rather than a stream.
  constructor(problem) {
    super(problem.detail);
    this.problem = problem;
  }
}

export class NotAStream extends Error {
  // The server answered 200 but with something other than text/event-stream (its body is
  // not read).
  constructor(response) {
    super("the server did not answer with an event stream");
    this.response = response;
  }
}

export class LiveStream {
  // Keeps one SSE stream open: open(lastEventId, signal) returns a fetch() Response;
  // onMessage gets every event; onState("live" | "reconnecting") tells the page how it goes;
  // onRefused(problem or NotAStream) ends the stream for good (a bad key, a bad filter).
  constructor({ open, onMessage, onState = () => {}, onRefused = () => {}, lastEventId = null }) {
    Object.assign(this, { open, onMessage, onState, onRefused, lastEventId });
    this.stopped = false;
    this.controller = null;
  }

  start() {
    this.run();
    return this;
  }

  stop() {
    this.stopped = true;
    this.controller?.abort();
  }

  async run() {
    let failures = 0;
    while (!this.stopped) {
      try {
        await this.readOnce();
        failures = 0; // the server ended a stream that worked: reconnect at once
      } catch (error) {
        if (this.stopped) return;
        if (error instanceof StreamRefused || error instanceof NotAStream) {
          this.stopped = true;
          this.onRefused(error);
          return;
        }
        failures += 1;
      }
      if (this.stopped) return;
      this.onState("reconnecting");
      await sleep(backoff(failures));
    }
  }

  async readOnce() {
    const controller = new AbortController();
    this.controller = controller;
    let idle = setTimeout(() => controller.abort(), IDLE_MS);
    try {
      const response = await this.open(this.lastEventId, controller.signal);
      await refuseUnlessStream(response);
      this.onState("live");
      const parser = new SseParser((message) => {
        this.lastEventId = message.id ?? this.lastEventId;
        if (!this.stopped) this.onMessage(message);
      });
      // read the body directly (not through pipeThrough, whose internal pipe reports an
      // aborted stream as an unhandled rejection in Chromium)
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.stopped) break;
        clearTimeout(idle);
        idle = setTimeout(() => controller.abort(), IDLE_MS);
        parser.feed(decoder.decode(value, { stream: true }));
        if (parser.lastEventId !== null) this.lastEventId = parser.lastEventId;
      }
    } finally {
      clearTimeout(idle);
    }
  }
}

async function refuseUnlessStream(response) {
  if (response.status >= 400 && response.status < 500 && ![408, 429].includes(response.status)) {
    throw new StreamRefused(await problemOf(response));
  }
  if (!response.ok) throw new Error(`the stream answered ${response.status}`);
  const type = response.headers.get("content-type") || "";
  if (!type.startsWith("text/event-stream")) {
    response.body?.cancel().catch(() => {}); // not read: it may never end
    throw new NotAStream(response);
  }
}

export async function problemOf(response) {
  // The server's problem+json (RFC 9457), or what can be said without one.
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return {
    status: response.status,
    title: body?.title || response.statusText || "Error",
    detail: body?.detail || `the server answered ${response.status}`,
  };
}

function backoff(failures) {
  const base = Math.min(MAX_BACKOFF_MS, 250 * 2 ** Math.min(failures, 6));
  return base / 2 + Math.random() * (base / 2);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
