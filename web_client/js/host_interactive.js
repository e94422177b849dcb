// Studio panel for interactive commerce (issue 18): live auctions, group buys, polls — create,
// watch live, end early. Self-contained: it fills <section id="interactive"> and speaks the HTTP
// API of docs/protocol.md "Interactive commerce"; live state comes from the show's events.
import { api } from "./api.js";
import { $, clock, errorText, h, money, toast } from "./util.js";

const toCents = (value) => Math.round(Number(value) * 100);
const num = (id) => Number($(id).value);

export class HostInteractive {
  constructor({ showId, token, socket }) {
    this.showId = showId;
    this.token = token;
    this.socket = socket;
    this.base = `/api/shows/${encodeURIComponent(showId)}`;
    this.items = new Map(); // id → {kind, state}
  }

  call(path, opts = {}) {
    return api(path, { token: this.token, ...opts });
  }

  start() {
    const root = $("#interactive");
    if (!root) return;
    root.replaceChildren(...this.build());
    const s = this.socket;
    for (const t of ["auction.started", "auction.bid", "auction.ended"]) s.on(t, (e) => this.onAuction(e));
    for (const t of ["group.created", "group.progress", "group.formed", "group.failed", "group.ended"]) s.on(t, (e) => this.onGroup(e));
    for (const t of ["poll.created", "poll.tally", "poll.closed"]) s.on(t, (e) => this.onPoll(e));
    s.on("stats", (e) => this.onStats(e));
    s.on("products", () => this.loadProducts());
    s.on("product.pinned", () => this.loadProducts());
    this.refresh();
    setInterval(() => this.render(), 1000);
  }

  build() {
    const field = (label, id, attrs = {}) => h("label", {}, label, " ", h("input", { id, ...attrs }));
    const auction = h(
      "form.form-grid", { id: "ia-auction-form" },
      h("label.wide", {}, "Product ", h("select.ia-product", { id: "ia-a-product", required: true })),
      field("Start price", "ia-a-start", { type: "number", min: "0.01", step: "0.01", value: "10", required: true }),
      field("Increment", "ia-a-inc", { type: "number", min: "0.01", step: "0.01", value: "1", required: true }),
      field("Duration (s)", "ia-a-duration", { type: "number", min: "5", value: "60", required: true }),
      field("Soft close (s)", "ia-a-soft", { type: "number", min: "1", value: "10", required: true }),
      field("Reserve (0 = none)", "ia-a-reserve", { type: "number", min: "0", step: "0.01", value: "0" }),
      h("div.row.wide", {}, h("button.primary", { type: "submit", id: "ia-a-start-btn" }, "Start auction"))
    );
    const group = h(
      "form.form-grid", { id: "ia-group-form" },
      h("label.wide", {}, "Product ", h("select.ia-product", { id: "ia-g-product", required: true })),
      field("Group price", "ia-g-price", { type: "number", min: "0.01", step: "0.01", value: "8", required: true }),
      field("Group size", "ia-g-size", { type: "number", min: "2", value: "3", required: true }),
      field("Units", "ia-g-qty", { type: "number", min: "2", value: "9", required: true }),
      field("Join time (s)", "ia-g-window", { type: "number", min: "5", value: "120", required: true }),
      h("div.row.wide", {}, h("button.primary", { type: "submit", id: "ia-g-start-btn" }, "Start group buy"))
    );
    const poll = h(
      "form.form-grid", { id: "ia-poll-form" },
      h("label.wide", {}, "Question ", h("input", { id: "ia-p-question", maxlength: "200", required: true, value: "Which should we show next?" })),
      h("label.wide", {}, "Options (one per line; a product id makes a product option) ", h("textarea", { id: "ia-p-options", rows: "3", required: true })),
      field("Duration (s)", "ia-p-duration", { type: "number", min: "5", max: "3600", value: "60", required: true }),
      h("label", {}, h("input", { type: "checkbox", id: "ia-p-changeable" }), " votes may change"),
      h("div.row.wide", {}, h("button.primary", { type: "submit", id: "ia-p-start-btn" }, "Start poll"))
    );
    auction.addEventListener("submit", (ev) => this.submit(ev, "auctions", () => ({
      product_id: $("#ia-a-product").value, start_price: toCents($("#ia-a-start").value), increment: toCents($("#ia-a-inc").value),
      duration_s: num("#ia-a-duration"), soft_close_s: num("#ia-a-soft"), reserve_price: toCents($("#ia-a-reserve").value || 0),
    })));
    group.addEventListener("submit", (ev) => this.submit(ev, "group-buys", () => ({
      product_id: $("#ia-g-product").value, group_price: toCents($("#ia-g-price").value), group_size: num("#ia-g-size"),
      quantity: num("#ia-g-qty"), window_s: num("#ia-g-window"),
    })));
    poll.addEventListener("submit", (ev) => this.submit(ev, "polls", () => ({
      question: $("#ia-p-question").value, duration_s: num("#ia-p-duration"), changeable: $("#ia-p-changeable").checked,
      options: $("#ia-p-options").value.split("\n").map((o) => o.trim()).filter(Boolean),
    })));
    return [
      h("h2", { id: "interactive-h" }, "Auctions · group buys · polls"),
      h("ul.plain-list", { id: "ia-live", "aria-live": "polite" }),
      h("p.muted.small", { id: "ia-funnel" }, "Bids 0 · group joins 0 · votes 0"),
      h("details", {}, h("summary", {}, "Live auction"), auction),
      h("details", {}, h("summary", {}, "Group buy (拼團)"), group),
      h("details", {}, h("summary", {}, "Poll"), poll),
      h("p.error-text", { id: "ia-error", role: "alert" }),
    ];
  }

  async submit(ev, path, body) {
    ev.preventDefault();
    $("#ia-error").textContent = "";
    try {
      const reply = await this.call(`${this.base}/${path}`, { method: "POST", body: body() });
      const item = reply.auction || reply.deal || reply.poll;
      toast(`Started ${item.id}`, "ok");
      await this.refresh();
    } catch (err) {
      $("#ia-error").textContent = errorText(err);
    }
  }

  async refresh() {
    await this.loadProducts();
    try {
      const [{ auctions }, { deals }, { polls }] = await Promise.all([
        api(`${this.base}/auctions`), api(`${this.base}/group-buys`), api(`${this.base}/polls`),
      ]);
      for (const a of auctions) this.items.set(a.id, { kind: "auction", state: a });
      for (const d of deals) this.items.set(d.id, { kind: "group", state: d });
      for (const p of polls) this.items.set(p.id, { kind: "poll", state: p });
      this.render();
    } catch {
      /* no commerce on this server */
    }
  }

  async loadProducts() {
    try {
      const { products } = await api(`${this.base}/products`);
      for (const select of document.querySelectorAll(".ia-product")) {
        const chosen = select.value;
        select.replaceChildren(...products.map((p) => h("option", { value: p.id }, `${p.title} (${p.stock} in stock)`)));
        if (chosen) select.value = chosen;
      }
    } catch {
      /* keep the old list */
    }
  }

  merge(id, kind, fields) {
    const item = this.items.get(id);
    if (!item) return this.reload(id, kind);
    Object.assign(item.state, fields);
    this.render();
  }

  async reload(id, kind) {
    const path = { auction: "auctions", group: "group-buys", poll: "polls" }[kind];
    try {
      const reply = await api(`/api/${path}/${encodeURIComponent(id)}`);
      this.items.set(id, { kind, state: reply.auction || reply.deal || reply.poll });
      this.render();
    } catch {
      /* gone */
    }
  }

  onAuction(e) {
    const fields = { price: e.price, bids: e.bids, leader_name: e.leader_name, ends_at: e.ends_at, min_bid: e.min_bid };
    if (e.type === "auction.ended") Object.assign(fields, { closed: true, status: "ended", winner_name: e.winner_name });
    this.merge(e.auction_id, "auction", fields);
  }

  onGroup(e) {
    if (e.type === "group.formed") toast(`Group ${e.group} formed: ${e.members.map((m) => m.name).join(", ")}`, "ok");
    if (e.type === "group.failed") toast(`Group ${e.group} fell short: ${e.released} units released`);
    if (e.type === "group.progress" || e.type === "group.created") {
      this.merge(e.deal_id, "group", {
        left: e.left, groups_formed: e.groups_formed,
        open_group: e.group ? { number: e.group, joined: e.joined, ends_at: e.ends_at } : null,
      });
    } else if (e.type === "group.ended") this.merge(e.deal_id, "group", { closed: true, status: "ended" });
    else this.reload(e.deal_id, "group");
  }

  onPoll(e) {
    const fields = { tallies: e.tallies, total: e.total };
    if (e.type === "poll.closed") Object.assign(fields, { status: "closed", final: true });
    this.merge(e.poll_id, "poll", fields);
  }

  onStats(e) {
    $("#ia-funnel").textContent = `Bids ${e.bids ?? 0} (${e.funnel?.bid ?? 0} bidders) · group joins ${e.group_joins ?? 0} (${e.funnel?.group_joined ?? 0} people) · votes ${e.votes ?? 0}`;
  }

  async end(id, kind) {
    const path = { auction: `/api/auctions/${id}/end`, group: `/api/group-buys/${id}/end`, poll: `/api/polls/${id}/close` }[kind];
    try {
      await this.call(path, { method: "POST" });
      await this.reload(id, kind);
    } catch (err) {
      $("#ia-error").textContent = errorText(err);
    }
  }

  render() {
    const list = $("#ia-live");
    if (!list) return;
    const now = Date.now();
    const rows = [];
    for (const [id, { kind, state: s }] of this.items) {
      const open = !(s.closed || s.final || s.status === "ended" || s.status === "closed");
      if (!open && now - (s.ends_at || 0) > 120_000) continue;
      let text;
      if (kind === "auction") {
        text = `Auction · ${s.title}: ${money(s.price, s.currency)} · ${s.bids} bids · ${s.leader_name || "no bids yet"}` +
          (open ? ` · ${clock((s.ends_at - now) / 1000)} left` : s.winner_name ? ` · won by ${s.winner_name}` : " · no winner");
      } else if (kind === "group") {
        const g = s.open_group;
        text = `Group buy · ${s.title} at ${money(s.group_price, s.currency)}: ${s.groups_formed} formed · ${s.left} units left` +
          (g ? ` · ${g.joined} of ${s.group_size} joined, ${clock((g.ends_at - now) / 1000)} left` : "");
      } else {
        const total = s.total || 0;
        text = `Poll · ${s.question} ` + s.options.map((o, i) => `${o.label} ${s.tallies[i] ?? 0}`).join(" / ") + ` (${total} votes)` +
          (open ? ` · ${clock((s.ends_at - now) / 1000)} left` : " · final");
      }
      rows.push(h("li.row", { "data-id": id, "data-kind": kind }, h("span.grow", {}, text),
        open ? h("button.small.danger", { type: "button", onclick: () => this.end(id, kind) }, kind === "poll" ? "Close" : "End") : null));
    }
    list.replaceChildren(...rows);
  }
}
