// A chat list: appends `chat` events, applies deletes/pins, optional moderation buttons for staff.
import { h, timeOfDay } from "./util.js";

export class ChatView {
  constructor(list, { staff = false, onMod, max = 300, pinnedEl } = {}) {
    this.list = list;
    this.staff = staff;
    this.onMod = onMod || (() => {});
    this.max = max;
    this.pinnedEl = pinnedEl;
    this.count = 0;
    this.names = new Map(); // user id → display name, for system lines ("Mia muted", not "g_05a8… muted")
  }

  /** The display name of a user seen in this chat (fallback when never seen). */
  nameOf(uid, fallback = "a viewer") {
    return this.names.get(uid) || fallback;
  }

  add(msg) {
    this.count += 1;
    if (msg.uid && msg.name) this.names.set(msg.uid, msg.name);
    const stick = this.list.scrollTop + this.list.clientHeight >= this.list.scrollHeight - 40;
    const who = h(`span.who${msg.role && msg.role !== "viewer" ? ".staff" : ""}`, { title: msg.uid }, msg.name + ":");
    const li = h(
      "li",
      { "data-id": msg.id, "data-uid": msg.uid },
      h("span.muted.small", {}, timeOfDay(msg.ts)),
      who,
      h("span.text", {}, msg.text)
    );
    if (this.staff && msg.role === "viewer") {
      const act = (action, label, extra) =>
        h("button.small", { type: "button", "data-action": action, "aria-label": `${label} ${msg.name}: ${msg.text}`, onclick: () => this.onMod(action, msg, extra) }, label);
      li.append(h("span.mod", {}, act("delete", "Delete"), act("mute", "Mute"), act("ban", "Ban"), act("pin", "Pin")));
    } else if (this.staff) {
      li.append(h("span.mod", {}, h("button.small", { type: "button", "data-action": "pin", "aria-label": `Pin ${msg.text}`, onclick: () => this.onMod("pin", msg) }, "Pin")));
    }
    this.list.append(li);
    while (this.list.children.length > this.max) this.list.firstElementChild.remove();
    if (stick) this.list.scrollTop = this.list.scrollHeight;
  }

  system(text) {
    this.list.append(h("li.system", {}, text));
    this.list.scrollTop = this.list.scrollHeight;
  }

  remove(id) {
    const li = this.list.querySelector(`li[data-id="${CSS.escape(id)}"]`);
    if (li) li.remove();
    if (this.pinnedEl && this.pinnedEl.dataset.id === id) this.pin(null);
  }

  pin(msg) {
    if (!this.pinnedEl) return;
    if (!msg) {
      this.pinnedEl.hidden = true;
      this.pinnedEl.dataset.id = "";
      this.pinnedEl.replaceChildren();
      return;
    }
    this.pinnedEl.hidden = false;
    this.pinnedEl.dataset.id = msg.id;
    const parts = [h("span.pin-tag", {}, "Pinned"), " ", h("b", {}, msg.name + ": "), h("span.pinned-text", {}, msg.text)];
    if (this.staff) parts.push(" ", h("button.small", { type: "button", onclick: () => this.onMod("unpin", msg) }, "Unpin"));
    this.pinnedEl.replaceChildren(...parts);
  }

  clear() {
    this.list.replaceChildren();
  }
}
