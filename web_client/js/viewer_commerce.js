// Viewer shopping: pinned product cards, flash-sale countdown + Buy, checkout sheet (simulated
// provider), coupons, giveaway entry and winners with a link to verify the draw.
import { api } from "./api.js";
import { $, clock, errorText, h, money, toast } from "./util.js";

export const newKey = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`).replace(/[^A-Za-z0-9_.:-]/g, "");

export class ViewerCommerce {
  constructor({ showId, getToken, socket, claims }) {
    this.showId = showId;
    this.getToken = getToken;
    this.socket = socket;
    this.claims = claims;
    this.base = `/api/shows/${encodeURIComponent(showId)}`;
    this.pinned = [];
    this.sales = new Map(); // sale id → sale (+ skew); every live and scheduled sale is shown
    this.buyKeys = new Map(); // sale id → idempotency key of the pending tap
    this.buying = new Set();
    this.reservation = null; // {reservation_id, expires_at, sale}
    this.order = null;
    this.coupon = null; // dropped coupon {id,…, claimed}
    this.lottery = null;
  }

  async call(path, opts = {}) {
    return api(path, { token: await this.getToken(), ...opts });
  }

  /** A command over the socket when it is up, else the equivalent HTTP call. */
  async command(type, fields, httpPath) {
    if (this.socket.state === "open") return this.socket.request(type, fields);
    return this.call(httpPath, { method: "POST", body: fields });
  }

  start() {
    const s = this.socket;
    s.on("products", (e) => this.setPinned(e.pinned));
    s.on("product.pinned", () => this.loadProducts());
    s.on("product.unpinned", (e) => this.setPinned(this.pinned.filter((p) => p.id !== e.product_id)));
    for (const t of ["sale.countdown", "sale.started", "sale.stock", "sale.ended"]) s.on(t, (e) => this.onSaleEvent(e));
    s.on("order.paid", (e) => this.socialProof(e));
    s.on("coupon.dropped", (e) => this.showCoupon(e.coupon));
    s.on("lottery.created", (e) => this.showLottery(e.lottery));
    s.on("lottery.drawn", (e) => this.onDrawn(e));
    $("#pay-btn").addEventListener("click", () => this.pay());
    $("#checkout-close").addEventListener("click", () => $("#checkout").close());
    this.refresh();
    setInterval(() => this.tick(), 250);
  }

  refresh() {
    this.loadProducts();
    this.loadSales();
    this.loadLotteries();
    this.loadCoupons();
  }

  // ------------------------------------------------------------ pinned products
  async loadProducts() {
    try {
      const { pinned } = await api(`${this.base}/products`);
      this.setPinned(pinned);
    } catch {
      /* no commerce on this server */
    }
  }

  setPinned(list) {
    this.pinned = list || [];
    const ul = $("#products");
    ul.replaceChildren(
      ...this.pinned.map((p) => {
        const sale = this.saleOf(p.id);
        return h(
          "li",
          {},
          h(
            "button.product-card",
            { type: "button", "data-product": p.id, "aria-label": `${p.title}, ${money(p.price, p.currency)}, ${p.stock} left`, onclick: () => this.click(p) },
            p.image ? h("img", { src: p.image, alt: "" }) : h("img", { alt: "", src: "data:image/svg+xml," + encodeURIComponent(placeholder(p.title)) }),
            h("div", {}, h("div.pt", {}, p.title), h("div.pp", {}, h("b", {}, money(sale ? sale.price : p.price, p.currency)), ` · ${sale ? sale.left : p.stock} left`))
          )
        );
      })
    );
  }

  click(p) {
    this.command("product.click", { product_id: p.id }, `/api/products/${encodeURIComponent(p.id)}/click`).catch(() => {});
    const sale = this.saleOf(p.id);
    if (sale) $(`#sale .sale-bar[data-sale="${CSS.escape(sale.id)}"] button.buy`)?.focus();
    else toast(`${p.title}: ${money(p.price, p.currency)} · ${p.stock} in stock${p.description ? " — " + p.description : ""}`);
  }

  // ------------------------------------------------------------ flash sales (any number at once)
  /** Every live and scheduled sale (and ones that ended a moment ago) from the server. */
  async loadSales() {
    try {
      const { sales } = await api(`${this.base}/sales`);
      for (const sale of sales) if (sale.status !== "ended" || this.sales.has(sale.id)) this.setSale(sale);
    } catch {
      /* no commerce */
    }
  }

  setSale(sale) {
    const old = this.sales.get(sale.id);
    const skew = sale.now ? sale.now - Date.now() : old?.skew ?? this.skew ?? 0;
    this.skew = skew;
    this.sales.set(sale.id, { ...old, ...sale, skew });
    if (!this.buyKeys.has(sale.id)) this.buyKeys.set(sale.id, newKey());
    this.renderSales(true);
    this.setPinned(this.pinned);
  }

  onSaleEvent(e) {
    const s = this.sales.get(e.sale_id);
    if (!s) {
      api(`/api/sales/${encodeURIComponent(e.sale_id)}`).then(({ sale }) => this.setSale(sale)).catch(() => {});
      return;
    }
    if (e.type === "sale.countdown") Object.assign(s, { status: "scheduled", starts_at: e.starts_at });
    if (e.type === "sale.started") Object.assign(s, { status: "live", left: e.left, ends_at: e.ends_at });
    if (e.type === "sale.stock") Object.assign(s, { left: e.left, sold: e.sold });
    if (e.type === "sale.ended") Object.assign(s, { status: "ended", left: e.left, ended_seen: Date.now() });
    this.renderSales(true);
    this.setPinned(this.pinned);
  }

  /** The live sale of a product, if any (pinned cards show its price and stock). */
  saleOf(productId) {
    for (const s of this.sales.values()) if (s.product_id === productId && this.phase(s).status !== "ended") return s;
    return null;
  }

  phase(s) {
    const now = Date.now() + (s.skew || 0);
    if (s.status === "ended" || now >= s.ends_at) return { status: "ended", now };
    if (now < s.starts_at) return { status: "scheduled", now };
    return { status: "live", now };
  }

  /** Sales to show, live first (soonest end first), then scheduled (soonest start), then just ended. */
  visibleSales() {
    const order = { live: 0, scheduled: 1, ended: 2 };
    const rows = [];
    for (const s of this.sales.values()) {
      const { status, now } = this.phase(s);
      const endedFor = now - Math.min(s.ends_at, s.ended_seen ? s.ended_seen + (s.skew || 0) : s.ends_at);
      if (status === "ended" && endedFor > 15000 && this.reservation?.sale.id !== s.id) continue;
      rows.push({ s, status, now });
    }
    return rows.sort((a, b) => order[a.status] - order[b.status] || (a.status === "scheduled" ? a.s.starts_at - b.s.starts_at : a.s.ends_at - b.s.ends_at));
  }

  /** One card per sale, each with its own countdown, stock and Buy. The first card keeps the
   * historical ids (#sale-title, #buy-btn, …). Cards are rebuilt only when the set changes. */
  renderSales(force = false) {
    const box = $("#sale");
    const rows = this.visibleSales();
    box.hidden = rows.length === 0;
    box.dataset.count = String(rows.length);
    box.classList.toggle("many", rows.length > 1);
    const ids = rows.map((r) => r.s.id).join(",");
    if (force || ids !== this.renderedIds) {
      this.renderedIds = ids;
      box.replaceChildren(...rows.map((r, i) => this.saleCard(r.s, i === 0)));
    }
    for (const r of rows) this.updateCard(r);
    const status = rows[0]?.status || "none";
    box.dataset.status = status;
  }

  saleCard(s, first) {
    const id = (name) => (first ? name : undefined);
    return h(
      "div.sale-bar",
      { "data-sale": s.id, role: "group", "aria-label": `Flash sale: ${s.title}` },
      h(
        "div.sale-info",
        {},
        h("div.sale-title", { id: id("sale-title") }, s.title),
        h("div.sale-meta", {}, h("b.sale-price", { id: id("sale-price") }, money(s.price, s.currency)), " ",
          h("s.muted.sale-list-price", { id: id("sale-list") }, s.list_price && s.list_price !== s.price ? money(s.list_price, s.currency) : ""), " · ",
          h("span.sale-left", { id: id("sale-left") })),
        h("div.sale-clock", { id: id("sale-clock") })
      ),
      h("button.primary.buy", { type: "button", id: id("buy-btn"), onclick: () => this.buy(s.id) }, "Buy")
    );
  }

  updateCard({ s, status, now }) {
    const card = $(`#sale .sale-bar[data-sale="${CSS.escape(s.id)}"]`);
    if (!card) return;
    card.dataset.status = status;
    card.querySelector(".sale-left").textContent = s.left > 0 ? `${s.left} left` : "sold out";
    const clockEl = card.querySelector(".sale-clock");
    const btn = card.querySelector("button.buy");
    const buying = this.buying.has(s.id);
    if (status === "scheduled") {
      clockEl.textContent = `Starts in ${clock((s.starts_at - now) / 1000)}`;
      btn.disabled = true;
      btn.textContent = "Soon";
    } else if (status === "live") {
      clockEl.textContent = `Ends in ${clock((s.ends_at - now) / 1000)} · limit ${s.per_user_limit} per person`;
      btn.disabled = buying || s.left <= 0;
      btn.textContent = s.left <= 0 ? "Sold out" : buying ? "…" : "Buy";
    } else {
      clockEl.textContent = "Sale ended";
      btn.disabled = true;
      btn.textContent = "Ended";
    }
    btn.setAttribute("aria-label", `${btn.textContent} ${s.title}`);
  }

  async buy(saleId) {
    const s = this.sales.get(saleId);
    if (!s || this.buying.has(saleId)) return;
    this.buying.add(saleId);
    this.renderSales();
    const key = this.buyKeys.get(saleId);
    try {
      const r = await this.command("buy", { sale_id: s.id, key }, `/api/sales/${encodeURIComponent(s.id)}/buy`);
      this.buyKeys.set(saleId, newKey()); // decided: the next tap is a new attempt
      this.showOutcome(r, s);
    } catch (err) {
      // Same key on retry: the server answers the first outcome, never a second unit.
      this.showResult("error", `Could not buy: ${errorText(err)}`);
    } finally {
      this.buying.delete(saleId);
      this.renderSales();
    }
  }

  showOutcome(r, s) {
    if (r.outcome === "reserved") {
      this.reservation = { id: r.reservation_id, expires_at: r.expires_at, skew: s.skew || 0, sale: s };
      this.showResult("reserved", "");
      this.openCheckout();
    } else if (r.outcome === "sold_out") this.showResult("sold_out", `${s.title}: sold out — every unit is taken.`);
    else if (r.outcome === "limit_reached") this.showResult("limit_reached", `Limit reached: ${s.per_user_limit} per person.`);
    else if (r.outcome === "not_started") this.showResult("not_started", "The sale has not started yet.");
    else if (r.outcome === "ended") this.showResult("ended", "The sale has ended.");
    else this.showResult("error", `Outcome: ${r.outcome}`);
  }

  showResult(outcome, text) {
    const el = $("#buy-result");
    el.hidden = false;
    el.dataset.outcome = outcome;
    if (outcome === "reserved") {
      el.replaceChildren(
        h("span", { id: "hold-text" }, this.holdText()),
        h("button.small.primary", { type: "button", id: "checkout-btn", onclick: () => this.openCheckout() }, "Checkout")
      );
    } else el.replaceChildren(text);
    clearTimeout(this.resultTimer);
    if (outcome !== "reserved" && outcome !== "paid") this.resultTimer = setTimeout(() => (el.hidden = true), 8000);
  }

  holdLeft() {
    const r = this.reservation;
    return r ? (r.expires_at - (Date.now() + r.skew)) / 1000 : 0;
  }

  holdText() {
    return `Reserved! Pay within ${clock(this.holdLeft())}`;
  }

  // ------------------------------------------------------------ checkout
  openCheckout() {
    const r = this.reservation;
    if (!r) return;
    const s = r.sale;
    const rows = [
      ["Item", s.title],
      ["Price", money(s.price, s.currency)],
      ["Order", r.id],
      ["Hold", h("span", { id: "checkout-hold" }, clock(this.holdLeft()))],
    ];
    const body = [h("dl", {}, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))];
    if (this.coupon && this.coupon.claimed) {
      body.push(h("label.row", {}, h("input", { type: "checkbox", id: "use-coupon", checked: true, onchange: () => this.renderPayLabel() }), `Apply coupon "${this.coupon.title}"`));
    }
    body.push(h("p.muted.small", {}, "Payments go through liveshop's simulated provider: no real money moves."));
    $("#checkout-body").replaceChildren(...body);
    $("#checkout-error").textContent = "";
    $("#pay-btn").hidden = false;
    $("#pay-btn").disabled = false;
    this.renderPayLabel();
    this.payKey = this.payKey && this.payKey.order === r.id ? this.payKey : { order: r.id, key: newKey() };
    const dlg = $("#checkout");
    if (!dlg.open) dlg.showModal();
    $("#pay-btn").focus();
  }

  /** The amount to pay, with the claimed coupon when it is ticked (the server computes the real one). */
  renderPayLabel() {
    const s = this.reservation?.sale;
    if (!s) return;
    let amount = s.price;
    const c = this.coupon;
    if (c && c.claimed && $("#use-coupon")?.checked) {
      amount = c.percent_off ? Math.round((s.price * (100 - c.percent_off)) / 100) : Math.max(0, s.price - (c.amount_off || 0));
    }
    $("#pay-btn").textContent = `Pay ${money(amount, s.currency)}`;
  }

  async pay() {
    const r = this.reservation;
    if (!r) return;
    const btn = $("#pay-btn");
    btn.disabled = true;
    btn.textContent = "Paying…";
    $("#checkout-error").textContent = "";
    const body = { key: this.payKey.key };
    if (this.coupon && this.coupon.claimed && $("#use-coupon")?.checked) body.coupon_id = this.coupon.id;
    try {
      const res = await this.call(`/api/orders/${encodeURIComponent(r.id)}/pay`, { method: "POST", body });
      if (res.status === "paid") this.paid(res.order);
      else {
        this.payKey = { order: r.id, key: newKey() };
        $("#checkout-error").textContent = `Payment ${res.status}: ${res.order?.failure || "declined"}. You can try again.`;
        btn.disabled = false;
        btn.textContent = "Try again";
      }
    } catch (err) {
      $("#checkout-error").textContent = errorText(err);
      btn.disabled = false;
      btn.textContent = "Try again";
      if (err.code === "order_not_payable") {
        this.reservation = null;
        btn.hidden = true;
      }
    }
  }

  paid(order) {
    this.order = order;
    this.reservation = null;
    $("#pay-btn").hidden = true;
    $("#checkout-body").replaceChildren(
      h(
        "div.order-ok",
        { id: "order-done", "data-order": order.id },
        h("h3", {}, "Paid — thank you!"),
        h(
          "dl",
          {},
          h("dt", {}, "Order"), h("dd", { id: "order-id" }, order.id),
          h("dt", {}, "Item"), h("dd", {}, order.title),
          h("dt", {}, "Amount"), h("dd", { id: "order-amount" }, money(order.amount ?? order.price, order.currency)),
          order.discount ? [h("dt", {}, "Discount"), h("dd", {}, money(order.discount, order.currency))] : null,
          h("dt", {}, "Status"), h("dd", { id: "order-status" }, order.status),
          order.charge_id ? [h("dt", {}, "Charge"), h("dd", {}, order.charge_id)] : null
        )
      )
    );
    this.showResult("paid", `Paid: order ${order.id}`);
    $("#buy-result").replaceChildren(`Paid ✓ order ${order.id}`);
    $("#checkout-close").focus();
  }

  tick() {
    this.renderSales();
    if (this.reservation) {
      const left = this.holdLeft();
      const hold = $("#hold-text");
      if (hold) hold.textContent = left > 0 ? this.holdText() : "Your hold expired.";
      const ch = $("#checkout-hold");
      if (ch) ch.textContent = left > 0 ? clock(left) : "expired";
      if (left <= 0) {
        this.reservation = null;
        $("#pay-btn").disabled = true;
        $("#checkout-error").textContent = "The hold expired: the unit went back to the sale.";
      }
    }
    this.renderLottery();
    this.renderCoupon();
  }

  socialProof(e) {
    const ol = $("#chat-recent");
    ol.append(h("li.social", {}, `${e.text || `${e.buyer} just bought ${e.product}`}`));
    while (ol.children.length > 5) ol.firstElementChild.remove();
    const sale = this.sales.get(e.sale_id);
    if (sale && typeof e.left === "number") {
      sale.left = e.left;
      this.renderSales();
    }
  }

  // ------------------------------------------------------------ coupons
  /** Catch up on coupons dropped before we joined (or while the socket was down). */
  async loadCoupons() {
    try {
      const { coupons } = await this.call(`${this.base}/coupons`);
      const open = coupons.filter((c) => !c.expired && !c.used && (c.claimed || c.left > 0));
      const last = open[open.length - 1];
      if (!last) return;
      this.coupon = { ...last };
      this.renderCoupon(true);
    } catch {
      /* no commerce or no token */
    }
  }

  showCoupon(coupon) {
    this.coupon = { ...coupon, claimed: false };
    this.renderCoupon(true);
  }

  renderCoupon(force) {
    const c = this.coupon;
    const box = $("#coupon");
    if (!c) return;
    const left = (c.expires_at - Date.now()) / 1000;
    if (left <= 0 && !c.claimed) {
      box.hidden = true;
      return;
    }
    if (!force && !box.hidden) {
      const t = $("#coupon-time");
      if (t) t.textContent = clock(left);
      return;
    }
    box.hidden = false;
    const off = c.percent_off ? `${c.percent_off}% off` : `${money(c.amount_off, c.currency)} off`;
    box.replaceChildren(
      h(
        "div.row",
        {},
        h("span", {}, h("b", {}, c.title), ` · ${off} · `, h("span", { id: "coupon-time" }, clock(left))),
        c.claimed
          ? h("span.ok-text", {}, "Claimed ✓ applied at checkout")
          : h("button.small.primary", { type: "button", id: "claim-btn", onclick: () => this.claimCoupon() }, "Claim")
      )
    );
  }

  async claimCoupon() {
    const c = this.coupon;
    try {
      const r = await this.command("coupon.claim", { coupon_id: c.id }, `/api/coupons/${encodeURIComponent(c.id)}/claim`);
      if (r.outcome === "claimed" || r.outcome === "already_claimed") {
        c.claimed = true;
        this.renderCoupon(true);
      } else toast(`Coupon ${r.outcome.replace("_", " ")}`, "error");
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  // ------------------------------------------------------------ giveaway
  async loadLotteries() {
    try {
      const { lotteries } = await api(`${this.base}/lotteries`);
      const last = lotteries[lotteries.length - 1];
      if (last && (last.status !== "drawn" || Date.now() - (last.drawn_at || 0) < 120000)) this.showLottery(last);
    } catch {
      /* no commerce */
    }
  }

  showLottery(l) {
    if (this.lottery && this.lottery.id === l.id && this.lottery.status === "drawn") return;
    this.lottery = { ...l, entered: this.lottery?.id === l.id ? this.lottery.entered : false };
    this.renderLottery(true);
  }

  onDrawn(e) {
    const base = this.lottery && this.lottery.id === e.lottery_id ? this.lottery : { id: e.lottery_id };
    this.lottery = { ...base, status: "drawn", prize: e.prize, winnerList: e.winners, entrants_count: e.entrants_count };
    this.renderLottery(true);
  }

  renderLottery(force) {
    const l = this.lottery;
    const box = $("#giveaway");
    if (!l) return;
    if (!force) {
      const t = $("#ga-time");
      if (t && l.status !== "drawn") t.textContent = clock((l.closes_at - Date.now()) / 1000);
      return;
    }
    box.hidden = false;
    box.dataset.status = l.status;
    const close = h("button.small", { type: "button", "aria-label": "Hide giveaway", onclick: () => (box.hidden = true) }, "×");
    if (l.status === "drawn") {
      // After a reload the lottery comes from the API: names are in `winner_names` (same order as `winners`).
      const winners = l.winnerList || (l.winners || []).map((id, i) => ({ user_id: id, name: l.winner_names?.[i] || "a viewer" }));
      const me = this.claims && winners.some((w) => w.user_id === this.claims.user_id);
      const entered = l.entered || (this.claims && (l.entrants || []).includes(this.claims.user_id));
      // replaceChildren() would print a null child as the text "null": build the list without gaps.
      const parts = [
        h("div.row", {}, h("b", {}, `Giveaway: ${l.prize}`), close),
        me ? h("div.ok-text", { id: "you-won" }, "You won!") : entered ? h("div.muted", { id: "not-won" }, "Not this time — thanks for entering.") : null,
        winners.length
          ? h("div", {}, "Winners:", h("ol.winners", { id: "winners" }, ...winners.map((w) => h("li", { "data-uid": w.user_id }, w.name))))
          : h("div", { id: "winners" }, "No eligible entrants."),
        h("a", { href: `/verify/${encodeURIComponent(l.id)}`, id: "verify-link", target: "_blank", rel: "noopener" }, "Verify the draw"),
      ].filter(Boolean);
      box.replaceChildren(...parts);
      return;
    }
    const how =
      l.eligibility === "keyword"
        ? h("span", {}, `Type "${l.keyword}" in chat to enter`)
        : l.eligibility === "buyers"
          ? h("span", {}, "Buyers in this show are entered automatically")
          : l.entered
            ? h("span.ok-text", { id: "entered" }, "You're in ✓")
            : h("button.small.primary", { type: "button", id: "enter-btn", onclick: () => this.enter() }, "Enter");
    box.replaceChildren(
      h("div.row", {}, h("b", {}, `Giveaway: ${l.prize}`), close),
      h("div.row", {}, h("span", {}, `${l.winners_count} winner(s) · closes in `, h("span", { id: "ga-time" }, clock((l.closes_at - Date.now()) / 1000))), how)
    );
  }

  async enter() {
    const l = this.lottery;
    try {
      await this.command("lottery.enter", { lottery_id: l.id }, `/api/lotteries/${encodeURIComponent(l.id)}/enter`);
      l.entered = true;
    } catch (err) {
      toast(errorText(err), "error");
    }
    this.renderLottery(true);
  }
}

export function placeholder(title) {
  const letter = (title || "?").trim().charAt(0).toUpperCase();
  return `<svg xmlns="http://www.w3.org/2000/svg" width="44" height="44"><rect width="44" height="44" rx="6" fill="#2d3342"/><text x="22" y="29" font-size="20" text-anchor="middle" fill="#fff" font-family="sans-serif">${letter.replace(/[<&>]/g, "")}</text></svg>`;
}
