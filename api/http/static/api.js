// The page's only way to the server: every /v1 call carries the signed-in key.

import { problemOf } from "./sse.js";

export class ApiError extends Error {
  // A refusal (problem+json) or an unreachable server (status 0).
  constructor({ status, title, detail }) {
    super(detail);
    Object.assign(this, { status, title, detail });
  }

  get signInAgain() {
    return this.status === 401;
  }
}

export class Api {
  constructor(keys) {
    this.keys = keys; // { get(): string | null }
    this.serverOffsetMs = 0; // server clock minus ours, from the Date header
  }

  headers(extra = {}) {
    const headers = { Accept: "application/json", ...extra };
    const key = this.keys.get();
    if (key) headers.Authorization = `Bearer ${key}`;
    return headers;
  }

  async fetch(path, { method = "GET", body, headers = {}, signal } = {}) {
    const init = { method, headers: this.headers(headers), signal, cache: "no-store" };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError({ status: 0, title: "Offline", detail: "the server cannot be reached" });
    }
    this.noteClock(response);
    if (!response.ok) throw new ApiError(await problemOf(response));
    return response;
  }

  async json(path, options) {
    return (await this.fetch(path, options)).json();
  }

  async text(path, options) {
    return (await this.fetch(path, { ...options, headers: { Accept: "text/plain" } })).text();
  }

  post(path, body) {
    return this.json(path, { method: "POST", body });
  }

  // An SSE stream (see LiveStream): resumes after lastEventId when given.
  openStream(path, lastEventId, signal) {
    const headers = this.headers({ Accept: "text/event-stream" });
    if (lastEventId !== null && lastEventId !== undefined) headers["Last-Event-ID"] = lastEventId;
    return fetch(path, { headers, signal, cache: "no-store" });
  }

  noteClock(response) {
    const date = Date.parse(response.headers.get("date") || "");
    if (Number.isNaN(date)) return;
    const offset = date - Date.now();
    // the header counts whole seconds: only a clock really off is worth correcting
    this.serverOffsetMs = Math.abs(offset) > 2000 ? offset : 0;
  }

  now() {
    // Ages and times in status are counted on the server's clock (to the second).
    return Date.now() + this.serverOffsetMs;
  }
}

export function query(params) {
  // A query string from an object; empty values are left out.
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
