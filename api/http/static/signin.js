// Sign-in: the key comes from the link `agentboard up` prints (#key=...), or from the person.
// It is kept in this browser (localStorage) and only ever sent in the Authorization header.

const STORAGE_KEY = "agentboard.key";

export class Keys {
  constructor() {
    this.memory = null; // when the browser refuses storage (private windows, policies)
  }

  get() {
    try {
      return localStorage.getItem(STORAGE_KEY) ?? this.memory;
    } catch {
      return this.memory;
    }
  }

  set(key) {
    this.memory = key;
    try {
      localStorage.setItem(STORAGE_KEY, key);
    } catch {
      // kept in memory only: signed in until the page closes
    }
  }

  forget() {
    this.memory = null;
    try {
      localStorage.removeItem(STORAGE_KEY);
    } catch {
      // nothing stored
    }
  }

  takeFromFragment() {
    // Reads #key=... and removes it from the address bar (and so from history and bookmarks).
    const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
    const key = fragment.get("key");
    if (key === null) return false;
    fragment.delete("key");
    const rest = fragment.toString() ? `#${fragment}` : "";
    history.replaceState(history.state, "", location.pathname + location.search + rest);
    if (!key.trim()) return false;
    this.set(key.trim());
    return true;
  }
}

export class SignIn {
  // The sign-in dialog: asks for a key, says why (none yet, or the server refused it).
  constructor(dialog, keys, onSignedIn) {
    Object.assign(this, { dialog, keys, onSignedIn });
    this.form = dialog.querySelector("form");
    this.input = dialog.querySelector("#signin-key");
    this.reason = dialog.querySelector("#signin-reason");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const key = this.input.value.trim();
      if (!key) {
        this.reason.textContent = "Paste an API key to sign in.";
        this.input.focus();
        return;
      }
      this.keys.set(key);
      this.input.value = "";
      this.dialog.close();
      this.onSignedIn();
    });
    // Esc must not leave a board with no key behind: the prompt stays until signed in.
    dialog.addEventListener("cancel", (event) => event.preventDefault());
  }

  ask(reason) {
    this.reason.textContent = reason;
    if (!this.dialog.open) this.dialog.showModal();
    this.input.focus();
  }

  get open() {
    return this.dialog.open;
  }
}
