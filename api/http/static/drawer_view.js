// What the detail drawer shows: overview, time in each status, output, tool calls,
// artifacts and the timeline. Pure drawing from the drawer's state; no requests here.

import { actorName, bytes, clock, duration, el, preciseDuration } from "./format.js";
import { STATUSES, STATUS_NAMES, TERMINAL } from "./model.js";

export function overview(detail) {
  const rows = [
    ["Agent", detail.type === "team" ? `${detail.agent_id} (team ${detail.team_id ?? "?"})` : detail.agent_id],
    ["Type", detail.type],
    ["Queue", detail.worker_queue],
    ["Worker", detail.worker_id || "none"],
    ["Execution id", el("code", {}, detail.id)],
    ["Created by", actorName(detail.created_by)],
    ["Created", clock(detail.created_at)],
    ["Priority", detail.priority],
    ["Attempt", detail.attempt],
    ["Labels", Object.entries(detail.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "none"],
    detail.deadline ? ["Deadline", clock(detail.deadline)] : null,
    detail.blocked ? ["Blocked", `${detail.blocked.reason} (by ${actorName(detail.blocked.by)}, ${clock(detail.blocked.at)})`] : null,
    detail.parent_execution_id ? ["Parent", el("code", {}, detail.parent_execution_id)] : null,
    detail.cancel_requested && !TERMINAL.has(detail.status) ? ["Cancel", "requested"] : null,
    detail.error ? ["Error", `${detail.error}${detail.failure_reason ? ` (${detail.failure_reason})` : ""}`] : null,
    detail.result !== null && detail.result !== undefined ? ["Result", el("code", {}, JSON.stringify(detail.result))] : null,
    detail.completion_notes ? ["Notes", detail.completion_notes] : null,
    detail.usage && detail.usage.reports ? ["Usage", usageText(detail.usage)] : null,
  ].filter(Boolean);
  const list = el("dl", { class: "overview" });
  for (const [term, value] of rows) list.append(el("dt", {}, term), el("dd", {}, value));
  list.append(el("dt", {}, "Prompt"), el("dd", {}, el("p", { class: "prompt-full" }, detail.prompt)));
  if (Object.keys(detail.parameters || {}).length) {
    list.append(el("dt", {}, "Parameters"), el("dd", {}, el("details", {},
      el("summary", {}, "show"), el("pre", {}, JSON.stringify(detail.parameters, null, 2)))));
  }
  return list;
}

export function timeBar(timeInStatus, current, extraSeconds) {
  // One bar, a segment per status in proportion to the time spent in it, and a legend.
  const seconds = { ...timeInStatus };
  if (current && !TERMINAL.has(current)) seconds[current] = (seconds[current] || 0) + extraSeconds;
  const spent = STATUSES.filter((status) => seconds[status] > 0);
  const total = spent.reduce((sum, status) => sum + seconds[status], 0);
  if (!total) return el("p", { class: "muted" }, "No time recorded yet.");
  const bar = el("div", { class: "time-bar", role: "img",
    "aria-label": spent.map((s) => `${STATUS_NAMES[s]} ${duration(seconds[s])}`).join(", ") });
  const legend = el("ul", { class: "time-legend" });
  for (const status of spent) {
    const segment = el("span", { class: `segment status-${status}`, title: `${STATUS_NAMES[status]}: ${duration(seconds[status])}` });
    segment.style.width = `${Math.max(0.5, (100 * seconds[status]) / total)}%`;
    bar.append(segment);
    legend.append(el("li", {}, el("span", { class: `swatch status-${status}` }), STATUS_NAMES[status], " ",
      el("strong", {}, duration(seconds[status]))));
  }
  return [bar, legend];
}

export function toolTable(calls, nowMs) {
  if (!calls.length) return el("p", { class: "muted" }, "No tool calls yet.");
  const body = el("tbody");
  for (const call of calls) {
    const state = call.outcome || "running";
    const took = call.duration_seconds ?? (call.called_at ? (nowMs - Date.parse(call.called_at)) / 1000 : null);
    body.append(el("tr", { class: `tool-${state}` },
      el("td", {}, el("strong", {}, call.tool), el("details", {}, el("summary", {}, "arguments"),
        el("pre", {}, JSON.stringify(call.arguments ?? {}, null, 2)))),
      el("td", {}, el("span", { class: `pill pill-${state}` }, state)),
      el("td", {}, call.outcome || !call.called_at
        ? preciseDuration(took)
        : el("span", { "data-running-since": call.called_at }, duration(took))),
      el("td", {}, call.result_summary || ""),
      el("td", {}, call.attempt ?? "")));
  }
  return el("table", { class: "tools" },
    el("thead", {}, el("tr", {}, ...["Tool", "Status", "Duration", "Result", "Attempt"].map((h) => el("th", { scope: "col" }, h)))),
    body);
}

export function artifactList(artifacts, download) {
  if (!artifacts.length) return el("p", { class: "muted" }, "No artifacts.");
  return el("ul", { class: "artifacts" }, artifacts.map((artifact) =>
    el("li", {},
      el("button", { type: "button", class: "link", onclick: () => download(artifact) },
        `Download ${artifact.name}`),
      ` ${artifact.media_type}, ${bytes(artifact.size)} `,
      el("code", { title: `sha256 ${artifact.sha256}` }, `sha256:${String(artifact.sha256).slice(0, 12)}…`))));
}

export function timeline(items) {
  if (!items.length) return el("p", { class: "muted" }, "No events yet.");
  return el("ol", { class: "timeline" }, items.map((item) =>
    el("li", {},
      el("time", { datetime: item.timestamp }, clock(item.timestamp)), " ",
      el("strong", {}, item.type),
      item.actor ? el("span", { class: "actor" }, ` by ${actorName(item.actor)}`) : null,
      summary(item))));
}

function summary(item) {
  const data = item.data || {};
  const text = {
    PickedUp: () => `worker ${data.worker_id}, attempt ${data.attempt}`,
    ToolCalled: () => data.tool,
    ToolCallFinished: () => `${data.outcome} in ${preciseDuration(data.duration_seconds)}`,
    OutputAppended: () => `${String(data.text || "").length} characters of output`,
    InputRequested: () => data.question,
    InputProvided: () => JSON.stringify(data.answer),
    Blocked: () => data.reason, Unblocked: () => data.reason,
    CancelRequested: () => data.reason, Cancelled: () => data.reason,
    Failed: () => `${data.error} (${data.reason})`,
    RetryScheduled: () => `attempt ${data.attempt}`,
    ArtifactAdded: () => data.name,
    UsageRecorded: () => `${data.model}: ${usageText(data)}`,
  }[item.type];
  const said = text ? text() : "";
  return said ? el("span", { class: "event-summary" }, `: ${said}`) : null;
}

// The token usage its agents reported: "1,200 in + 300 out tokens, $0.0066".
export function usageText(usage) {
  const tokens = `${usage.input_tokens.toLocaleString("en")} in + ${usage.output_tokens.toLocaleString("en")} out tokens`;
  return usage.cost_usd === null || usage.cost_usd === undefined ? tokens : `${tokens}, $${usage.cost_usd.toFixed(4)}`;
}
