// Studio, co-hosts (issue 20). The host: "Invite co-host" makes a studio link carrying a cohost
// token; while the co-host is live their picture plays here (WHEP /whep/{show}/cohost) with a
// Remove button (ends their stream, revokes their token). The co-host: the same studio in
// co-host mode publishes to the show's cohost stream (WhipPublisher with the cohost token).
import { api } from "./api.js";
import { $, errorText, h, toast } from "./util.js";
import { WhepPlayer } from "./whep.js";

export class HostCohost {
  constructor({ showId, token, socket, panel }) {
    this.showId = showId;
    this.token = token;
    this.socket = socket;
    this.panel = panel;
    this.player = null;
    this.cohost = null;
  }

  start() {
    const base = `/api/shows/${encodeURIComponent(this.showId)}/cohost`;
    this.panel.replaceChildren(
      h("h2", { id: "cohost-h" }, "Co-host"),
      h("p.muted", { id: "cohost-state", role: "status", "aria-live": "polite" }, "No co-host live."),
      h("div.preview-wrap.cohost-preview", { hidden: true },
        h("video", { id: "cohost-preview", autoplay: true, muted: true, playsinline: true, "aria-label": "Co-host preview" })),
      h("div.row", {},
        h("button.danger", { id: "cohost-remove", type: "button", hidden: true, onclick: () => this.remove(base) }, "Remove co-host")),
      h("form.row", { id: "cohost-form", onsubmit: (ev) => (ev.preventDefault(), this.invite(base)) },
        h("label.grow", {}, "Co-host name ", h("input", { id: "cohost-name", maxlength: "40", value: "Co-host" })),
        h("label", {}, h("input", { id: "cohost-mod", type: "checkbox" }), " moderator rights"),
        h("button", { id: "cohost-invite", type: "submit" }, "Invite co-host")),
      h("p", {}, h("input.wide-input", { id: "cohost-link", readonly: true, "aria-label": "Co-host link", hidden: true })),
      h("p.error-text", { id: "cohost-error", role: "alert" })
    ); // prettier-ignore
    this.socket.on("cohost", (c) => this.show(c.live ? { user_id: c.user_id, name: c.name } : null));
  }

  /** The welcome / resync / show snapshot, or a `cohost` event. */
  show(cohost) {
    this.cohost = cohost || null;
    const live = !!this.cohost;
    $("#cohost-state").textContent = live ? `${this.cohost.name} is live with you.` : "No co-host live.";
    $("#cohost-remove").hidden = !live;
    this.panel.querySelector(".cohost-preview").hidden = !live;
    if (live && !this.player) {
      $("#cohost-preview").muted = true; // the attribute alone does not mute a scripted <video>
      this.player = new WhepPlayer($("#cohost-preview"), this.showId, async () => this.token, {
        url: `/whep/${encodeURIComponent(this.showId)}/cohost`,
      });
      window.liveshop.cohostPlayer = this.player;
      this.player.start();
    } else if (!live && this.player) {
      this.player.stop();
      this.player = null;
      window.liveshop.cohostPlayer = null;
    }
  }

  async invite(base) {
    $("#cohost-error").textContent = "";
    try {
      const data = await api(`${base}/invite`, {
        method: "POST",
        token: this.token,
        body: { name: $("#cohost-name").value.trim() || "Co-host", moderator: $("#cohost-mod").checked },
      });
      const input = $("#cohost-link");
      input.hidden = false;
      input.value = location.origin + data.studio_path;
      input.select();
    } catch (err) {
      $("#cohost-error").textContent = errorText(err);
    }
  }

  async remove(base) {
    $("#cohost-error").textContent = "";
    try {
      await api(`${base}/remove`, { method: "POST", token: this.token, body: {} });
      toast("Co-host removed", "ok");
      this.show(null);
    } catch (err) {
      $("#cohost-error").textContent = errorText(err);
    }
  }
}
