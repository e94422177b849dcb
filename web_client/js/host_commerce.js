// Studio commerce: products (add/edit/pin), flash sales, giveaways, coupons, live stats.
// Speaks the commerce HTTP API (docs/protocol.md "Commerce") and listens to its events.
import { api } from "./api.js";
import { $, clock, errorText, h, money, toast } from "./util.js";

const toCents = (value) => Math.round(Number(value) * 100);

export class HostCommerce {
  constructor({ showId, token, socket, onStats }) {
    this.showId = showId;
    this.token = token;
    this.socket = socket;
    this.onStats = onStats || (() => {});
    this.products = [];
    this.sales = new Map(); // sale id → sale: every live and scheduled sale has its own card
    this.lottery = null;
    this.base = `/api/shows/${encodeURIComponent(showId)}`;
  }

  call(path, opts = {}) {
    return api(path, { token: this.token, ...opts });
  }

  start() {
    this.bindForms();
    const s = this.socket;
    s.on("products", () => this.loadProducts());
    s.on("product.pinned", () => this.loadProducts());
    s.on("product.unpinned", () => this.loadProducts());
    for (const t of ["sale.countdown", "sale.started", "sale.stock", "sale.ended"]) s.on(t, (e) => this.onSaleEvent(e));
    s.on("order.paid", (e) => toast(e.text || `${e.buyer} bought ${e.product}`, "ok"));
    s.on("stats", (e) => this.onStats(e));
    s.on("lottery.created", (e) => this.showLottery(e.lottery));
    s.on("lottery.drawn", (e) => {
      if (!this.lottery || this.lottery.id !== e.lottery_id) return this.reloadLottery(e.lottery_id);
      Object.assign(this.lottery, {
        status: "drawn",
        winners: e.winners.map((w) => w.user_id),
        winner_names: e.winners.map((w) => w.name),
        entrants_count: e.entrants_count,
      });
      this.renderLottery(true);
    });
    s.on("coupon.dropped", (e) => this.renderCoupon(e.coupon));
    this.refresh();
    setInterval(() => this.loadStats(), 5000);
    setInterval(() => this.loadCoupons(), 3000); // claims have no event: keep "N claimed · M left" current
    setInterval(() => this.renderSales(), 500);
    setInterval(() => this.renderLottery(), 1000);
  }

  refresh() {
    this.loadCoupons();
    this.loadProducts();
    this.loadSales();
    this.loadLotteries();
    this.loadStats();
  }

  async loadStats() {
    try {
      const { stats } = await this.call(`${this.base}/stats`);
      this.onStats(stats);
    } catch {
      /* stats unavailable (e.g. commerce part missing): the realtime counters still work */
    }
  }

  // ------------------------------------------------------------ products
  async loadProducts() {
    try {
      const { products } = await this.call(`${this.base}/products`);
      this.products = products;
      this.renderProducts();
      $("#product-error").textContent = "";
    } catch (err) {
      $("#product-error").textContent = err.status === 404 && err.code !== "show_not_found" ? "Products are not available on this server." : errorText(err);
    }
  }

  renderProducts() {
    const list = $("#product-list");
    const pinnedCount = this.products.filter((p) => p.pinned).length;
    list.replaceChildren(
      ...this.products.map((p) =>
        h(
          `li${p.pinned ? ".pinned" : ""}`,
          { "data-product": p.id },
          h("span.pname", { title: p.description || "" }, p.title),
          h("span.meta", {}, `${money(p.price, p.currency)} · ${p.stock} in stock`),
          h("span.actions", {}, h(
            "button.small",
            {
              type: "button",
              "aria-pressed": String(!!p.pinned),
              "aria-label": `${p.pinned ? "Unpin" : "Pin"} ${p.title}`,
              disabled: !p.pinned && pinnedCount >= 3 ? true : undefined,
              title: !p.pinned && pinnedCount >= 3 ? "3 products are pinned: unpin one first" : "",
              onclick: () => this.togglePin(p),
            },
            p.pinned ? "Unpin" : "Pin"
          ),
          h("button.small", { type: "button", "aria-label": `Edit ${p.title}`, onclick: () => this.editProduct(p) }, "Edit"),
          h("button.small", { type: "button", "aria-label": `Flash sale for ${p.title}`, onclick: () => this.prepareSale(p) }, "Sale…"))
        )
      )
    );
    if (!this.products.length) list.append(h("li.muted", {}, "No products yet: add one below."));
    const sel = $("#sf-product");
    const current = sel.value;
    sel.replaceChildren(...this.products.map((p) => h("option", { value: p.id }, `${p.title} (${p.stock} in stock)`)));
    if (current && this.products.some((p) => p.id === current)) sel.value = current;
  }

  async togglePin(p) {
    $("#product-error").textContent = "";
    try {
      await this.call(`/api/products/${encodeURIComponent(p.id)}/pin`, { method: p.pinned ? "DELETE" : "POST" });
      await this.loadProducts();
    } catch (err) {
      $("#product-error").textContent = errorText(err);
    }
  }

  editProduct(p) {
    $("#product-editor").open = true;
    $("#pf-id").value = p.id;
    $("#pf-name").value = p.title;
    $("#pf-price").value = (p.price / 100).toFixed(2);
    $("#pf-stock").value = p.stock;
    $("#pf-image").value = p.image || "";
    $("#pf-desc").value = p.description || "";
    $("#pf-save").textContent = "Save changes";
    $("#pf-name").focus();
  }

  resetProductForm() {
    $("#product-form").reset();
    $("#pf-id").value = "";
    $("#pf-save").textContent = "Add product";
  }

  prepareSale(p) {
    $("#sf-product").value = p.id;
    $("#sf-price").value = ((p.price * 0.8) / 100).toFixed(2);
    $("#sf-qty").value = Math.max(1, Math.min(p.stock, Number($("#sf-qty").value) || 10));
    $("#sf-qty").focus();
  }

  // ------------------------------------------------------------ forms
  bindForms() {
    $("#gf-elig").replaceChildren(
      h("option", { value: "present" }, "Everyone watching (tap to enter)"),
      h("option", { value: "keyword" }, "Viewers who type a keyword in chat"),
      h("option", { value: "buyers" }, "Buyers in this show")
    );
    const kw = h("label.wide", { id: "gf-keyword-label", hidden: true }, "Keyword ", h("input", { id: "gf-keyword", maxlength: "40" }));
    $("#gf-elig").closest("label").after(kw);
    $("#gf-elig").addEventListener("change", () => ($("#gf-keyword-label").hidden = $("#gf-elig").value !== "keyword"));

    $("#pf-cancel").addEventListener("click", () => {
      this.resetProductForm();
      $("#product-editor").open = false;
    });
    $("#product-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      $("#product-error").textContent = "";
      const id = $("#pf-id").value;
      const body = {
        title: $("#pf-name").value.trim(),
        price: toCents($("#pf-price").value),
        stock: Number($("#pf-stock").value || 0),
        description: $("#pf-desc").value.trim(),
      };
      const image = $("#pf-image").value.trim();
      if (image || id) body.image = image;
      try {
        if (id) await this.call(`/api/products/${encodeURIComponent(id)}`, { method: "PATCH", body });
        else await this.call(`${this.base}/products`, { method: "POST", body });
        toast(id ? "Product saved" : `Added ${body.title}`, "ok");
        this.resetProductForm();
        await this.loadProducts();
      } catch (err) {
        $("#product-error").textContent = errorText(err);
      }
    });

    $("#sale-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      $("#sale-error").textContent = "";
      const body = {
        product_id: $("#sf-product").value,
        quantity: Number($("#sf-qty").value),
        price: toCents($("#sf-price").value),
        per_user_limit: Number($("#sf-limit").value),
        starts_in_s: Number($("#sf-countdown").value),
        duration_s: Number($("#sf-duration").value),
      };
      try {
        const { sale } = await this.call(`${this.base}/sales`, { method: "POST", body });
        this.setSale(sale);
        toast(`Flash sale ${sale.status === "scheduled" ? "scheduled" : "started"}`, "ok");
        this.loadProducts();
      } catch (err) {
        $("#sale-error").textContent = errorText(err);
      }
    });

    $("#ga-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      $("#ga-error").textContent = "";
      const body = {
        prize: $("#gf-prize").value.trim(),
        winners: Number($("#gf-winners").value),
        duration_s: Number($("#gf-window").value),
        eligibility: $("#gf-elig").value,
      };
      if (body.eligibility === "keyword") body.keyword = $("#gf-keyword").value.trim();
      try {
        const { lottery } = await this.call(`${this.base}/lotteries`, { method: "POST", body });
        this.showLottery(lottery);
      } catch (err) {
        $("#ga-error").textContent = errorText(err);
      }
    });

    $("#cp-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      $("#cp-error").textContent = "";
      const body = {
        title: $("#cf-code").value.trim() || `${$("#cf-percent").value}% off`,
        percent_off: Number($("#cf-percent").value),
        count: Number($("#cf-qty").value),
        expires_in_s: Number($("#cf-ttl").value),
      };
      try {
        const { coupon } = await this.call(`${this.base}/coupons`, { method: "POST", body });
        this.renderCoupon(coupon);
        toast(`Coupon "${coupon.title}" dropped`, "ok");
      } catch (err) {
        $("#cp-error").textContent = errorText(err);
      }
    });
  }

  // ------------------------------------------------------------ coupons
  async loadCoupons() {
    try {
      const { coupons } = await this.call(`${this.base}/coupons`);
      const last = coupons[coupons.length - 1];
      if (last) this.renderCoupon(last);
    } catch {
      /* commerce not available */
    }
  }

  /** "Dropped "SPRING10" · 3 claimed · 47 left · 4:12 to go" for the newest coupon. */
  renderCoupon(c) {
    const claimed = Math.max(0, (c.count ?? c.left) - c.left);
    const secs = (c.expires_at - Date.now()) / 1000;
    const when = c.expired || secs <= 0 ? "expired" : `${clock(secs)} to go`;
    $("#cp-state").textContent = `Dropped "${c.title}" · ${claimed} claimed · ${c.left} left · ${when}`;
  }

  // ------------------------------------------------------------ flash sales (any number at once)
  async loadSales() {
    try {
      const { sales } = await this.call(`${this.base}/sales`);
      const ended = sales.filter((s) => s.status === "ended").slice(-3); // the latest results stay in view
      for (const sale of sales) if (sale.status !== "ended" || ended.includes(sale)) this.setSale(sale);
    } catch {
      /* commerce not available */
    }
  }

  setSale(sale) {
    const old = this.sales.get(sale.id);
    this.sales.set(sale.id, { ...old, ...sale, clockSkew: sale.now ? sale.now - Date.now() : old?.clockSkew || 0 });
    this.renderSales(true);
  }

  onSaleEvent(e) {
    const s = this.sales.get(e.sale_id);
    if (!s) {
      this.call(`/api/sales/${encodeURIComponent(e.sale_id)}`).then(({ sale }) => this.setSale(sale)).catch(() => {});
      return;
    }
    if (e.type === "sale.countdown") Object.assign(s, { status: "scheduled", starts_at: e.starts_at });
    if (e.type === "sale.started") Object.assign(s, { status: "live", left: e.left, ends_at: e.ends_at });
    if (e.type === "sale.stock") Object.assign(s, { left: e.left, sold: e.sold });
    if (e.type === "sale.ended") Object.assign(s, { status: "ended", left: e.left, sold: e.sold, reserved: e.reserved });
    this.renderSales(true);
  }

  phase(s) {
    const now = Date.now() + (s.clockSkew || 0);
    let status = s.status;
    if (status !== "ended" && now >= s.ends_at) status = "ended";
    else if (status === "scheduled" && now >= s.starts_at) status = "live";
    return { status, now };
  }

  /** Live sales first (soonest end first), then scheduled, then the last three that ended. */
  renderSales(force = false) {
    const box = $("#sale-active");
    const order = { live: 0, scheduled: 1, ended: 2 };
    const rows = [...this.sales.values()].map((s) => ({ s, ...this.phase(s) }));
    rows.sort((a, b) => order[a.status] - order[b.status] || (a.status === "ended" ? b.s.ends_at - a.s.ends_at : a.s.ends_at - b.s.ends_at));
    const shown = rows.filter((r, i) => r.status !== "ended" || i < rows.findIndex((x) => x.status === "ended") + 3);
    box.hidden = shown.length === 0;
    const key = shown.map((r) => `${r.s.id}:${r.status}`).join(",");
    if (force || key !== this.renderedKey) {
      this.renderedKey = key;
      box.replaceChildren(...shown.map((r) => this.saleCard(r)));
    }
    for (const r of shown) this.updateCard(r);
  }

  saleCard({ s, status }) {
    return h(
      "div.sale-card",
      { "data-sale": s.id, "data-status": status, role: "group", "aria-label": `Flash sale ${s.title}` },
      h("div.row", {}, h("b.grow", {}, s.title), h("span.badge.sale-phase", {})),
      h("div", {}, `${money(s.price, s.currency)} (list ${money(s.list_price, s.currency)}) · limit ${s.per_user_limit} per person`),
      h("div.stock-bar", { role: "progressbar", "aria-label": `Stock left of ${s.title}`, "aria-valuemin": "0", "aria-valuemax": String(s.quantity) }, h("i", {})),
      h("div.row", {}, h("span.grow.sale-left", {}), h("span.muted.sale-sold", {}),
        status !== "ended" ? h("button.small", { type: "button", "aria-label": `End sale ${s.title}`, onclick: () => this.endSale(s.id) }, "End sale") : null)
    );
  }

  updateCard({ s, status, now }) {
    const card = $(`#sale-active .sale-card[data-sale="${CSS.escape(s.id)}"]`);
    if (!card) return;
    card.dataset.status = status;
    const badge = card.querySelector(".sale-phase");
    badge.className = `badge sale-phase ${status === "live" ? "live" : status === "ended" ? "ended" : "upcoming"}`;
    badge.textContent = status === "scheduled" ? `starts in ${clock((s.starts_at - now) / 1000)}` : status === "live" ? `ends in ${clock((s.ends_at - now) / 1000)}` : "ended";
    const pct = s.quantity ? Math.round((100 * s.left) / s.quantity) : 0;
    card.querySelector(".stock-bar").setAttribute("aria-valuenow", String(s.left));
    card.querySelector(".stock-bar > i").style.width = `${pct}%`;
    card.querySelector(".sale-left").textContent = `${s.left} of ${s.quantity} left`;
    card.querySelector(".sale-sold").textContent = `sold ${s.sold ?? 0}`;
  }

  async endSale(id) {
    try {
      const { sale } = await this.call(`/api/sales/${encodeURIComponent(id)}/end`, { method: "POST", body: {} });
      this.setSale(sale);
    } catch (err) {
      $("#sale-error").textContent = errorText(err);
    }
  }

  // ------------------------------------------------------------ giveaway
  async loadLotteries() {
    try {
      const { lotteries } = await this.call(`${this.base}/lotteries`);
      if (lotteries.length) this.showLottery(lotteries[lotteries.length - 1]);
    } catch {
      /* commerce not available */
    }
  }

  async reloadLottery(id) {
    try {
      const { lottery } = await this.call(`/api/lotteries/${encodeURIComponent(id || this.lottery.id)}`);
      // Drawn giveaways carry winner_names; older data may not, so keep the names from the event.
      if (!lottery.winner_names && this.lottery && this.lottery.id === lottery.id && this.lottery.winner_names) lottery.winner_names = this.lottery.winner_names;
      this.showLottery(lottery);
    } catch {
      /* keep what we have */
    }
  }

  showLottery(lottery) {
    if (!lottery) return;
    if (this.lottery && this.lottery.id !== lottery.id && lottery.opens_at < this.lottery.opens_at) return;
    this.lottery = lottery;
    this.renderLottery(true);
  }

  renderLottery(force = false) {
    const box = $("#ga-active");
    const l = this.lottery;
    if (!l) return;
    if (!force && l.status === "drawn") return;
    box.hidden = false;
    box.dataset.status = l.status;
    const left = (l.closes_at - Date.now()) / 1000;
    const parts = [h("div.row", {}, h("b.grow", {}, `Prize: ${l.prize}`), h("span.muted", {}, `${l.winners_count} winner(s) · ${l.eligibility}${l.keyword ? ` "${l.keyword}"` : ""}`))];
    if (l.status === "drawn") {
      const names = l.winner_names || l.winners || [];
      parts.push(
        h("div", { id: "ga-winners" }, names.length ? `Winners: ${names.join(", ")}` : "No eligible entrants."),
        h("div.muted.small", {}, `${l.entrants_count ?? 0} entrants`),
        h("div.proof", {}, h("a", { href: `/verify/${encodeURIComponent(l.id)}`, target: "_blank", rel: "noopener" }, "Verify the draw"), " · ", h("a", { href: l.proof_url, target: "_blank", rel: "noopener" }, "proof JSON"), h("div.muted", {}, `commitment ${l.commitment}`))
      );
    } else {
      parts.push(
        h("div", {}, left > 0 ? `Entries close in ${clock(left)}` : "Entries closed: drawing…"),
        h("div.proof.muted", {}, `commitment ${l.commitment}`),
        h("button.primary", { type: "button", id: "ga-draw", onclick: () => this.draw() }, "Draw now")
      );
    }
    box.replaceChildren(...parts);
  }

  async draw() {
    $("#ga-error").textContent = "";
    try {
      const { lottery } = await this.call(`/api/lotteries/${encodeURIComponent(this.lottery.id)}/draw`, { method: "POST", body: {} });
      if (!lottery.winner_names && this.lottery.winner_names) lottery.winner_names = this.lottery.winner_names;
      this.showLottery(lottery);
    } catch (err) {
      $("#ga-error").textContent = errorText(err);
    }
  }
}
