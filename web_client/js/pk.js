// PK battles (issue 20): the score bar, countdown and result, on the viewer page and in the studio.
// Viewer: while the show is in a PK the opponent plays in a second stage tile (stage.js,
// `/whep/{opponent}` with the viewer token GET /api/shows/{id}/pk hands out: any node serves it).
// Studio: invite a live show, accept/decline invites (pk.invited), end the battle, watch the
// opponent. Live state comes from the show's `pk.started` / `pk.score` / `pk.ended` events.
import { api } from "./api.js";
import { addTile, registerTile, removeTile, tile } from "./stage.js";
import { $, clock, errorText, h, toast } from "./util.js";
import { WhepPlayer } from "./whep.js";

const RESULT_SHOWN_MS = 8000;

/** The score bar + countdown + result banner, for one show's point of view. */
class PkBar {
  constructor(root, showId) {
    this.showId = showId;
    this.root = root;
    this.pk = null;
    this.endsAt = 0; // local clock
    this.seq = -1;
    this.el = h(
      "div.pk-bar",
      { role: "group", "aria-label": "PK battle", hidden: true, dataset: { state: "idle" } },
      h(
        "div.pk-names",
        {},
        h("span.pk-name.ours"),
        h("span.pk-timer", { role: "timer", "aria-live": "off" }, "0:00"),
        h("span.pk-name.theirs")
      ),
      h(
        "div.pk-meter",
        { "aria-hidden": "true" },
        h("div.pk-fill.ours", {}, h("b.pk-score.ours", {}, "0")),
        h("div.pk-fill.theirs", {}, h("b.pk-score.theirs", {}, "0"))
      ),
      h("p.pk-result", { role: "status", "aria-live": "assertive", hidden: true })
    );
    root.append(this.el);
    this.timer = setInterval(() => this.tick(), 250);
  }

  q(sel) {
    return this.el.querySelector(sel);
  }

  sides() {
    const [x, y] = this.pk.sides;
    return x.show_id === this.showId ? [x, y] : [y, x];
  }

  show(pk) {
    this.pk = pk;
    this.seq = pk.seq ?? -1;
    this.endsAt = Date.now() + (pk.remaining_ms || 0);
    const [ours, theirs] = this.sides();
    this.q(".pk-name.ours").textContent = ours.title || ours.show_id;
    this.q(".pk-name.theirs").textContent = theirs.title || theirs.show_id;
    this.q(".pk-result").hidden = true;
    this.el.hidden = false;
    this.el.dataset.state = pk.status;
    this.scores(pk.scores);
    this.tick();
  }

  /** A `pk.score` / `pk.ended` event: scores are one set in Redis, identical in both shows. */
  update(e) {
    if (!this.pk || e.pk_id !== this.pk.id || (e.seq ?? 0) < this.seq) return;
    this.seq = e.seq ?? this.seq;
    if (e.remaining_ms !== undefined) this.endsAt = Date.now() + e.remaining_ms;
    this.scores(e.scores);
  }

  scores(scores) {
    const [ours, theirs] = this.sides();
    const a = scores[ours.show_id] || 0;
    const b = scores[theirs.show_id] || 0;
    this.q(".pk-score.ours").textContent = a;
    this.q(".pk-score.theirs").textContent = b;
    const share = a + b ? (100 * a) / (a + b) : 50;
    this.q(".pk-fill.ours").style.width = `${Math.min(90, Math.max(10, share))}%`;
    this.el.dataset.ours = a;
    this.el.dataset.theirs = b;
  }

  tick() {
    if (!this.pk) return;
    const left = this.el.dataset.state === "active" ? (this.endsAt - Date.now()) / 1000 : 0;
    this.q(".pk-timer").textContent = clock(left);
  }

  ended(e) {
    if (!this.pk || e.pk_id !== this.pk.id) return;
    this.update({ ...e, seq: Infinity });
    this.el.dataset.state = "ended";
    const [ours] = this.sides();
    const names = Object.fromEntries(this.pk.sides.map((s) => [s.show_id, s.title || s.show_id]));
    const text =
      e.result === "win"
        ? `${e.winner === ours.show_id ? "You won!" : "They won!"} ${names[e.winner]} wins the PK`
        : e.result === "draw"
          ? "Draw!"
          : e.reason === "host_left"
            ? "PK over: a host left"
            : "PK ended by a host";
    const result = this.q(".pk-result");
    result.textContent = text;
    result.dataset.result = e.result;
    result.hidden = false;
    this.tick();
    clearTimeout(this.hideTimer);
    this.hideTimer = setTimeout(() => this.hide(), RESULT_SHOWN_MS);
  }

  hide() {
    this.el.hidden = true;
    this.pk = null;
  }
}

/** The viewer page's part: bar + the opponent's tile. */
export class ViewerPk {
  constructor({ showId, getToken, socket, mainPlayer, hostName }) {
    this.showId = showId;
    this.getToken = getToken;
    this.socket = socket;
    this.opponentToken = null;
    if (!tile("main")) registerTile("main", $("#video").parentElement, mainPlayer, hostName || "Host");
    this.bar = new PkBar($("#stage"), showId);
  }

  start() {
    this.socket.on("pk.started", () => this.refresh());
    this.socket.on("pk.score", (e) => this.bar.update(e));
    this.socket.on("pk.ended", (e) => this.ended(e));
    this.socket.on("resync", () => this.refresh());
    this.refresh();
  }

  async refresh() {
    let reply;
    try {
      reply = await api(`/api/shows/${encodeURIComponent(this.showId)}/pk`, { token: await this.getToken() });
    } catch {
      return; // the next pk event or resync tries again
    }
    const pk = reply.pk;
    if (!pk || pk.status !== "active") {
      if (this.bar.pk?.status === "active") this.ended({ pk_id: this.bar.pk.id, result: "cancelled", scores: this.bar.pk.scores });
      return;
    }
    this.opponentToken = reply.opponent_token;
    this.bar.show(pk);
    const opponent = pk.sides.find((s) => s.show_id === pk.opponent);
    addTile("pk", `/whep/${encodeURIComponent(pk.opponent)}`, opponent.title || opponent.host_name, {
      getToken: async () => this.opponentToken,
    });
    window.liveshop.pkState = pk;
  }

  ended(e) {
    this.bar.ended(e);
    removeTile("pk");
  }
}

/** The studio's PK panel: fills <section id="pk">. */
export class HostPk {
  constructor({ showId, token, socket }) {
    this.showId = showId;
    this.token = token;
    this.socket = socket;
    this.base = `/api/shows/${encodeURIComponent(showId)}/pk`;
    this.player = null;
  }

  start() {
    const root = $("#pk");
    if (!root) return;
    this.invites = h("ul.pk-invites", { "aria-label": "PK invites", "aria-live": "polite" });
    this.video = h("video.pk-opponent", { autoplay: true, muted: true, playsinline: true, hidden: true, "aria-label": "Opponent (live video)" });
    this.error = h("p.error-text", { role: "alert" });
    this.endBtn = h("button.danger", { type: "button", id: "pk-end-btn", hidden: true, onclick: () => this.end() }, "End PK");
    const form = h(
      "form.row",
      { id: "pk-form", onsubmit: (ev) => (ev.preventDefault(), this.invite()) },
      h("label.grow", {}, "Opponent show id ", h("input", { id: "pk-opponent", required: true, maxlength: 64, autocomplete: "off" })),
      h("label", {}, "Length (s) ", h("input", { id: "pk-seconds", type: "number", min: "5", max: "3600", value: "180", required: true })),
      h("button.primary", { type: "submit", id: "pk-invite-btn" }, "Invite to PK")
    );
    root.replaceChildren(h("h2", { id: "pk-h" }, "PK battle"), form, this.invites, this.video, this.endBtn, this.error);
    this.bar = new PkBar(root, this.showId);
    this.socket.on("pk.invited", (e) => this.invited(e));
    this.socket.on("pk.declined", (e) => toast(`${e.by_show} declined your PK invite`));
    this.socket.on("pk.started", () => this.refresh());
    this.socket.on("pk.score", (e) => this.bar.update(e));
    this.socket.on("pk.ended", (e) => this.ended(e));
    this.refresh();
  }

  call(path, body) {
    return api(this.base + path, { method: body ? "POST" : "GET", body, token: this.token });
  }

  async invite() {
    this.error.textContent = "";
    const show_id = $("#pk-opponent").value.trim();
    try {
      await this.call("", { show_id, duration_s: Math.round(Number($("#pk-seconds").value)) });
      toast(`PK invite sent to ${show_id}`);
    } catch (err) {
      this.error.textContent = errorText(err);
      this.error.dataset.code = err.code || "";
    }
  }

  invited(e) {
    const li = h(
      "li.pk-invite",
      { dataset: { pk: e.pk_id } },
      h("span.grow", {}, `${e.from.title} (${e.from.host_name}) invites you to a ${clock(e.duration_s)} PK`),
      h("button.primary", { type: "button", onclick: () => this.answer(li, e, "accept") }, "Accept"),
      h("button", { type: "button", onclick: () => this.answer(li, e, "decline") }, "Decline")
    );
    this.invites.append(li);
    setTimeout(() => li.remove(), Math.max(0, e.expires_at - Date.now()));
  }

  async answer(li, e, verb) {
    this.error.textContent = "";
    try {
      await this.call(`/${verb}`, { invite: e.invite });
      li.remove();
      if (verb === "accept") this.refresh();
    } catch (err) {
      this.error.textContent = errorText(err);
      this.error.dataset.code = err.code || "";
    }
  }

  async end() {
    try {
      await this.call("/end", {});
    } catch (err) {
      this.error.textContent = errorText(err);
    }
  }

  async refresh() {
    let reply;
    try {
      reply = await this.call("");
    } catch {
      return;
    }
    const pk = reply.pk;
    if (!pk || pk.status !== "active") return;
    this.bar.show(pk);
    this.endBtn.hidden = false;
    $("#pk-form").hidden = true; // one battle at a time
    if (!this.player) {
      this.video.hidden = false;
      this.player = new WhepPlayer(this.video, pk.opponent, async () => reply.opponent_token);
      this.player.start();
    }
  }

  ended(e) {
    this.bar.ended(e);
    this.endBtn.hidden = true;
    $("#pk-form").hidden = false;
    this.player?.stop();
    this.player = null;
    this.video.hidden = true;
  }
}
