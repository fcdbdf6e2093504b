// Operator actions in the drawer: cancel, retry, block, unblock, and answering a question.
// The server decides (roles, transitions); the page shows its reason when it refuses.

import { el, parseAnswer } from "./format.js";

const ACTIONS = {
  cancel: { label: "Cancel", done: "Cancel requested", when: ["pending", "running", "requires_input", "blocked"] },
  block: { label: "Block", done: "Blocked", when: ["running"] },
  unblock: { label: "Unblock", done: "Unblocked", when: ["blocked"] },
  retry: { label: "Retry", done: "Retry scheduled", when: ["failed"] },
};

export class Actions {
  constructor(root, api, { onDone, onSignIn }) {
    Object.assign(this, { root, api, onDone, onSignIn });
    this.buttons = root.querySelector("#action-buttons");
    this.reason = root.querySelector("#action-reason");
    this.result = root.querySelector("#action-result");
    this.input = root.querySelector("#drawer-input");
    this.answerForm = root.querySelector("#answer-form");
    this.answerForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = this.answerForm.elements.answer.value;
      if (!text.trim()) {
        this.say("Write an answer first.", true);
        return;
      }
      this.run("input", { answer: parseAnswer(text) }, "Answer sent");
    });
    this.executionId = null;
  }

  show(detail) {
    this.executionId = detail.id;
    const available = Object.entries(ACTIONS).filter(([, action]) => action.when.includes(detail.status));
    this.buttons.replaceChildren(...available.map(([name, action]) =>
      el("button", { type: "button", class: `action action-${name}`, "data-action": name,
        onclick: () => this.run(name, this.reasonBody(name), action.done) }, action.label)));
    this.root.querySelector("#action-reason-field").hidden = !available.some(([name]) => name !== "retry");
    if (!available.length) this.buttons.append(el("span", { class: "muted" }, "No actions in this status."));
    this.showQuestion(detail);
  }

  showQuestion(detail) {
    const waiting = detail.status === "requires_input" && detail.question;
    this.input.hidden = !waiting;
    if (!waiting) return;
    this.input.querySelector("#input-question").textContent = detail.question;
  }

  showSchema(kind, schema) {
    this.input.querySelector("#input-kind").textContent = kind ? `(${kind})` : "";
    const shown = this.input.querySelector("#input-schema");
    shown.hidden = !schema;
    shown.querySelector("pre").textContent = schema ? JSON.stringify(schema, null, 2) : "";
  }

  reasonBody(name) {
    if (name === "retry") return undefined;
    const reason = this.reason.value.trim();
    return reason ? { reason } : undefined;
  }

  async run(name, body, done) {
    const id = this.executionId;
    const controls = this.root.querySelectorAll("#action-buttons button, #answer-form button");
    controls.forEach((button) => { button.disabled = true; });
    this.say(`${name === "input" ? "Sending the answer" : ACTIONS[name].label}…`, false);
    try {
      const execution = await this.api.post(`/v1/executions/${id}/${name}`, body);
      if (id !== this.executionId) return;
      this.say(`${done}.`, false);
      if (name === "input") this.answerForm.reset();
      this.reason.value = "";
      this.onDone(execution);
    } catch (error) {
      if (id !== this.executionId) return;
      if (error.signInAgain) this.onSignIn(error.detail);
      this.say(`Refused: ${error.detail}`, true, error.title);
    } finally {
      controls.forEach((button) => { button.disabled = false; });
    }
  }

  say(text, refused, title) {
    this.result.className = refused ? "action-result refused" : "action-result";
    this.result.setAttribute("role", refused ? "alert" : "status");
    this.result.replaceChildren(title ? el("strong", {}, `${title}. `) : "", text);
  }

  clear() {
    this.result.replaceChildren();
    this.result.className = "action-result";
    this.reason.value = "";
    this.answerForm.reset();
  }
}
