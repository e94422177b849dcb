// Viewer cards for interactive commerce (issue 18): bid in a live auction, join a group buy,
// vote in a poll. One compact card per kind, in <div id="interactive"> above the sale bar, so
// together they never cover the video more than a sale does. Payment reuses the checkout sheet.
import { api } from "./api.js";
import { $, clock, errorText, h, money } from "./util.js";

const newKey = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`).replace(/[^A-Za-z0-9_.:-]/g, "");

export class ViewerInteractive {
  constructor({ showId, getToken, socket, claims, commerce }) {
    this.showId = showId;
    this.getToken = getToken;
    this.socket = socket;
    this.claims = claims;
    this.commerce = commerce;
    this.base = `/api/shows/${encodeURIComponent(showId)}`;
    this.auction = null;
    this.deal = null;
    this.poll = null;
    this.myVote = null;
    this.bidKey = newKey();
    this.note = {};
    this.outcomes = {};
    this.focus = null; // which card is open when several run at once
  }

  async command(type, fields, httpPath) {
    if (this.socket.state === "open") return this.socket.request(type, fields);
    return api(httpPath, { token: await this.getToken(), method: "POST", body: fields });
  }

  start() {
    if (!$("#interactive")) return;
    const s = this.socket;
    for (const t of ["auction.started", "auction.bid", "auction.ended"]) s.on(t, (e) => this.onAuction(e));
    for (const t of ["group.created", "group.progress", "group.formed", "group.failed", "group.ended"]) s.on(t, (e) => this.onGroup(e));
    for (const t of ["poll.created", "poll.tally", "poll.closed"]) s.on(t, (e) => this.onPoll(e));
    this.refresh();
    setInterval(() => this.render(), 1000);
  }

  async refresh() {
    try {
      const [{ auctions }, { deals }, { polls }] = await Promise.all([
        api(`${this.base}/auctions`), api(`${this.base}/group-buys`), api(`${this.base}/polls`),
      ]);
      this.auction = auctions.filter((a) => !a.closed).pop() || this.auction;
      this.deal = deals.filter((d) => !d.closed).pop() || this.deal;
      this.poll = polls.filter((p) => !p.final).pop() || this.poll;
      this.render();
    } catch {
      /* no commerce on this server */
    }
  }

  me() {
    return this.claims?.user_id || this.commerce?.claims?.user_id;
  }

  // ------------------------------------------------------------ auction
  onAuction(e) {
    if (!this.auction || this.auction.id !== e.auction_id) this.auction = { id: e.auction_id };
    if (e.type === "auction.started") this.focus = "auction";
    Object.assign(this.auction, {
      title: e.title, currency: e.currency, price: e.price, min_bid: e.min_bid, increment: e.increment,
      bids: e.bids, leader_name: e.leader_name, ends_at: e.ends_at, starts_at: e.starts_at,
    });
    if (e.type === "auction.ended") {
      Object.assign(this.auction, { closed: true, winner_name: e.winner_name });
      if (e.winner_user_id && e.winner_user_id === this.me() && e.reservation_id) {
        this.note.auction = "You won! Pay to get it.";
        this.checkout(e.reservation_id, e.expires_at, { title: e.title, price: e.price, currency: e.currency });
      } else this.note.auction = e.winner_name ? `Sold to ${e.winner_name} for ${money(e.price, e.currency)}` : "Ended without a winner";
    }
    this.render();
  }

  async bid() {
    const a = this.auction;
    if (!a || a.closed) return;
    const amount = a.min_bid;
    const maxCents = Math.round(Number($("#ia-bid-max")?.value || 0) * 100);
    const key = this.bidKey;
    try {
      const r = await this.command("auction.bid", { auction_id: a.id, amount, key, max_amount: maxCents > amount ? maxCents : 0 },
        `/api/auctions/${encodeURIComponent(a.id)}/bid`);
      this.bidKey = newKey(); // decided: the next tap is a new bid
      Object.assign(a, { price: r.price, bids: r.bids, leader_name: r.leader_name, ends_at: r.ends_at });
      a.min_bid = a.bids ? r.price + (a.increment || 0) : a.min_bid;
      this.note.auction = {
        leading: "You are the highest bidder", outbid_by_higher: "Outbid by a higher maximum bid", too_low: "Too low: someone bid first",
        ended: "The auction has ended", not_started: "The auction has not started",
      }[r.outcome] || r.outcome;
      this.outcome("auction", r.outcome);
    } catch (err) {
      this.note.auction = `Could not bid: ${errorText(err)}`;
    }
    this.render();
  }

  // ------------------------------------------------------------ group buy
  onGroup(e) {
    if (e.type === "group.created") this.focus = "group";
    if (!this.deal || this.deal.id !== e.deal_id) {
      api(`/api/group-buys/${encodeURIComponent(e.deal_id)}`).then(({ deal }) => ((this.deal = deal), this.render())).catch(() => {});
      return;
    }
    const d = this.deal;
    if (e.type === "group.progress" || e.type === "group.created") {
      Object.assign(d, { left: e.left, groups_formed: e.groups_formed, open_group: e.group ? { number: e.group, joined: e.joined, ends_at: e.ends_at } : null });
    }
    const mine = (e.members || []).find((m) => (m.user_id || m) === this.me());
    if (e.type === "group.formed" && mine) {
      d.joined = null;
      this.note.group = "Your group formed! Pay the group price.";
      this.checkout(mine.reservation_id, mine.expires_at, { title: d.title, price: d.group_price, currency: d.currency });
    }
    if (e.type === "group.failed" && mine) {
      d.joined = null;
      this.note.group = "Your group did not fill in time: nothing is held any more.";
    }
    if (e.type === "group.ended") d.closed = true;
    this.render();
  }

  async join(leave = false) {
    const d = this.deal;
    if (!d) return;
    const type = leave ? "group.leave" : "group.join";
    try {
      const r = await this.command(type, { deal_id: d.id }, `/api/group-buys/${encodeURIComponent(d.id)}/${leave ? "leave" : "join"}`);
      d.joined = ["joined", "already_joined"].includes(r.outcome) ? r.group : null;
      if (r.group) d.open_group = r.outcome === "formed" ? null : { number: r.group, joined: r.joined, ends_at: r.ends_at };
      d.left = r.left;
      this.note.group = {
        joined: `Joined: ${r.joined} of ${r.size}. Invite friends!`, formed: "You completed the group!", already_joined: "You are in this group",
        sold_out: "No units left for a new group", ended: "The group buy has ended", left: "You left the group", not_joined: "You were not in a group",
        already_formed: "Your group already formed", not_started: "Not started yet",
      }[r.outcome] || r.outcome;
      if (r.outcome === "formed" && r.reservation_id) this.checkout(r.reservation_id, r.expires_at, { title: d.title, price: d.group_price, currency: d.currency });
      this.outcome("group", r.outcome);
    } catch (err) {
      this.note.group = `Could not join: ${errorText(err)}`;
    }
    this.render();
  }

  // ------------------------------------------------------------ poll
  onPoll(e) {
    if (!this.poll || this.poll.id !== e.poll_id) {
      if (e.type !== "poll.created") return;
      this.poll = { id: e.poll_id };
      this.myVote = null;
      this.focus = "poll";
    }
    const p = this.poll;
    for (const k of ["question", "options", "ends_at", "changeable"]) if (e[k] !== undefined) p[k] = e[k];
    Object.assign(p, { tallies: e.tallies, total: e.total });
    if (e.type === "poll.closed") p.final = true;
    this.render();
  }

  async vote(option) {
    const p = this.poll;
    if (!p || p.final) return;
    try {
      const r = await this.command("poll.vote", { poll_id: p.id, option }, `/api/polls/${encodeURIComponent(p.id)}/vote`);
      this.myVote = r.option;
      this.note.poll = { voted: "Thanks for voting", changed: "Vote changed", already_voted: "You already voted", closed: "The poll is closed" }[r.outcome] || r.outcome;
      this.outcome("poll", r.outcome);
    } catch (err) {
      this.note.poll = `Could not vote: ${errorText(err)}`;
    }
    this.render();
  }

  // ------------------------------------------------------------ shared
  outcome(kind, outcome) {
    this.outcomes[kind] = outcome; // kept across renders: tests and styles read data-outcome
  }

  /** The flash sale's checkout sheet, for a reservation won in an auction or a formed group. */
  checkout(id, expiresAt, item) {
    if (!this.commerce) return;
    this.commerce.reservation = { id, expires_at: expiresAt, skew: 0, sale: item };
    this.commerce.showResult("reserved", "");
    this.commerce.openCheckout();
  }

  render() {
    const root = $("#interactive");
    if (!root) return;
    const now = Date.now();
    const cards = [];
    const a = this.auction;
    if (a && a.title && (!a.closed || now - a.ends_at < 20_000)) {
      const soon = !a.closed && now < (a.starts_at || 0);
      const live = !a.closed && !soon && now < a.ends_at;
      cards.push(h("div.ia-card", { id: "ia-auction", "data-status": live ? "live" : "ended", "data-outcome": this.outcomes.auction },
        h("div.ia-info", {},
          h("div.ia-title", {}, `Auction · ${a.title}`),
          h("div.ia-meta", {}, h("b", { id: "ia-auction-price" }, money(a.price, a.currency)), ` · ${a.bids || 0} bids`, a.leader_name ? ` · ${a.leader_name}` : ""),
          h("div.ia-note", {}, live ? `${clock((a.ends_at - now) / 1000)} left` : soon ? `Starts in ${clock((a.starts_at - now) / 1000)}` : "",
            this.note.auction ? ` · ${this.note.auction}` : "")),
        live ? h("input.ia-max", { id: "ia-bid-max", type: "number", step: "0.01", min: "0", placeholder: "max", "aria-label": "Maximum bid (proxy)" }) : null,
        h("button.primary", { type: "button", id: "ia-bid-btn", disabled: !live, onclick: () => this.bid() }, live ? `Bid ${money(a.min_bid, a.currency)}` : soon ? "Soon" : "Ended")));
    }
    const d = this.deal;
    if (d && d.title && !d.closed) {
      const g = d.open_group;
      const inGroup = d.joined && g && d.joined === g.number;
      cards.push(h("div.ia-card", { id: "ia-group", "data-outcome": this.outcomes.group },
        h("div.ia-info", {},
          h("div.ia-title", {}, `Group buy · ${d.title}`),
          h("div.ia-meta", {}, h("b", {}, money(d.group_price, d.currency)), " ", h("s.muted", {}, money(d.list_price, d.currency)),
            h("span", { id: "ia-group-progress" }, g ? ` · ${g.joined} of ${d.group_size} joined, ${clock((g.ends_at - now) / 1000)} left` : ` · groups of ${d.group_size}`)),
          h("div.ia-note", {}, this.note.group || `${d.left} left`)),
        h("button.primary", { type: "button", id: "ia-join-btn", disabled: d.left <= 0 && !inGroup, onclick: () => this.join(inGroup) }, inGroup ? "Leave" : "Join")));
    }
    const p = this.poll;
    if (p && p.options && (!p.final || now - p.ends_at < 20_000)) {
      const total = Math.max(1, p.total || 0);
      cards.push(h("div.ia-card.ia-poll", { id: "ia-poll", "data-final": p.final ? "1" : "0", "data-outcome": this.outcomes.poll },
        h("div.ia-title", {}, p.question, p.final ? " · final" : ` · ${clock((p.ends_at - now) / 1000)}`),
        h("div.ia-options", {}, ...p.options.map((o, i) => {
          const share = Math.round(((p.tallies?.[i] || 0) * 100) / total);
          return h("button.ia-option", { type: "button", "data-option": String(i), "aria-pressed": String(this.myVote === i), disabled: !!p.final,
            style: `--share:${share}%`, onclick: () => this.vote(i) }, `${o.label} · ${share}%`);
        })),
        this.note.poll ? h("div.ia-note", {}, this.note.poll) : null));
    }
    root.hidden = cards.length === 0;
    // One card open at a time (the newest, or the one tapped), the others as one-line chips: the
    // video stays as visible as with a sale bar.
    const kinds = cards.map((c) => c.id.slice(3));
    const open = kinds.includes(this.focus) ? this.focus : kinds[kinds.length - 1];
    const names = { auction: "Auction", group: "Group buy", poll: "Poll" };
    const chips = kinds.filter((k) => k !== open)
      .map((k) => h("button.chip.ia-chip", { type: "button", "data-kind": k, onclick: () => ((this.focus = k), this.render()) }, names[k]));
    root.replaceChildren(...(chips.length ? [h("div.ia-chips", {}, ...chips)] : []), ...cards.filter((c) => c.id === `ia-${open}`));
  }
}
