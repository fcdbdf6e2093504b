// Small pure helpers to show times, durations and text on the page.

export function duration(seconds) {
  // 42s, 3m 05s, 2h 07m, 3d 4h: two units at most, the way people read a board.
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor(s / 3600) % 24}h`;
}

export function since(iso, nowMs) {
  return duration((nowMs - Date.parse(iso)) / 1000);
}

export function preciseDuration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return seconds < 10 ? `${Number(seconds).toFixed(2)}s` : duration(seconds);
}

export function clock(iso) {
  // A local date and time to the second, for the timeline and the time-travel banner.
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export function excerpt(text, length = 140) {
  const flat = String(text || "").replace(/\s+/g, " ").trim();
  return flat.length > length ? `${flat.slice(0, length - 1)}…` : flat;
}

export function actorName(actor) {
  if (!actor) return "";
  return actor.kind ? `${actor.kind}:${actor.id}` : String(actor.id ?? "");
}

export function bytes(size) {
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KiB`;
  return `${(size / 1024 / 1024).toFixed(1)} MiB`;
}

export function el(tag, attributes = {}, ...children) {
  // A DOM element; text goes in as text (never as HTML), so no data can inject markup.
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function parseAnswer(text) {
  // An answer is JSON when it parses as JSON (42, true, {"a": 1}), else the text itself,
  // the same rule as the CLI's --param.
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
