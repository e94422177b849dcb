// Replay page: the recording (seekable: the server answers range requests) with the show's
// commerce on the recording's clock. The timeline (GET /api/replays/{id}/timeline) lists events
// in recording seconds; the page folds every event up to the playhead into "this moment" (pinned
// products, sales, auctions, polls, group buys, recent chat) on every tick and after each seek,
// and flies the danmaku the playhead passes. Buy orders the product at its list price now
// (POST /api/replays/{id}/buy, one idempotency key per click until it succeeds) and pays through
// the normal checkout (POST /api/orders/{id}/pay): an ended flash sale is shown, never re-opened.
import { api, guestToken } from "./api.js";
import { Danmaku } from "./danmaku.js";
import { $, clock, errorText, h, money } from "./util.js";
import { newKey, placeholder } from "./viewer_commerce.js";

const replayId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const FLY_BACK_S = 2; // after a seek, the comments of the last seconds fly again
const RECENT_CHAT = 30;

const state = {
  replay: null,
  events: [],
  products: {},
  applied: -1, // events[0 .. applied) are folded into `moment`
  moment: null,
  lastT: 0,
  token: null,
  buyKeys: new Map(), // product id → idempotency key of the click not yet answered
  buying: null, // product id of the Buy in flight
  reservation: null,
  payKey: null,
  order: null,
};
window.liveshop = { state };

const video = $("#video");
const danmaku = new Danmaku($("#danmaku"));
window.liveshop.danmaku = danmaku;

function showError(text) {
  const el = $("#replay-error");
  el.hidden = false;
  el.textContent = text;
}

/** The number of events at or before recording second `t` (events are sorted by t). */
function countUpTo(t) {
  let lo = 0;
  let hi = state.events.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (state.events[mid].t <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** What a viewer saw at the playhead: the fold of every event up to it. */
function foldMoment(n) {
  const m = { pinned: [], sales: new Map(), auctions: new Map(), polls: new Map(), groups: new Map(), chat: [], pinnedComment: null, paid: null };
  for (let i = 0; i < n; i++) {
    const e = state.events[i];
    const type = e.type;
    if (type === "products") m.pinned = e.pinned || [];
    else if (type === "chat") {
      m.chat.push(e);
      if (m.chat.length > RECENT_CHAT) m.chat.shift();
    } else if (type === "chat.pin") m.pinnedComment = e;
    else if (type === "chat.unpin") m.pinnedComment = null;
    else if (type.startsWith("sale.")) {
      const s = { ...(m.sales.get(e.sale_id) || {}), ...e };
      s.status = type === "sale.ended" ? "ended" : type === "sale.countdown" ? "scheduled" : "live";
      m.sales.set(e.sale_id, s);
    } else if (type.startsWith("auction.")) m.auctions.set(e.auction_id, { ...(m.auctions.get(e.auction_id) || {}), ...e, ended: type === "auction.ended" });
    else if (type.startsWith("poll.")) m.polls.set(e.poll_id, { ...(m.polls.get(e.poll_id) || {}), ...e, closed: type === "poll.closed" });
    else if (type.startsWith("group.")) m.groups.set(e.deal_id, { ...(m.groups.get(e.deal_id) || {}), ...e, ended: type === "group.ended" });
    else if (type === "order.paid") m.paid = e;
  }
  return m;
}

function renderProducts(m) {
  const ul = $("#products");
  $("#no-products").hidden = m.pinned.length > 0;
  ul.replaceChildren(
    ...m.pinned.map((shown) => {
      const now = state.products[shown.id] || shown; // Buy sells it as it is now, at its list price
      const sale = [...m.sales.values()].find((s) => s.product_id === shown.id && s.status !== "ended");
      const busy = state.buyKeys.has(shown.id) && state.buying === shown.id;
      const out = (now.stock ?? 0) <= 0;
      return h(
        "li.replay-product",
        { "data-product": shown.id },
        h("img", { alt: "", src: now.image || "data:image/svg+xml," + encodeURIComponent(placeholder(now.title)) }),
        h(
          "div.info",
          {},
          h("div.pt", {}, now.title),
          h("div.pp", {}, `${money(now.price, now.currency)} · ${out ? "sold out" : `${now.stock} left`}`),
          sale ? h("div.then", {}, `Flash sale at this moment: ${money(sale.price, sale.currency)} (ended)`) : null
        ),
        h(
          "button.primary.small",
          { type: "button", "data-buy": shown.id, disabled: busy || out, "aria-label": `Buy ${now.title} for ${money(now.price, now.currency)}`, onclick: () => buy(shown.id) },
          busy ? "Buying…" : out ? "Sold out" : "Buy"
        )
      );
    })
  );
}

function renderHappenings(m) {
  const items = [];
  for (const s of m.sales.values()) {
    const what = s.status === "ended" ? `ended · ${s.sold ?? 0} sold` : s.status === "scheduled" ? "starting soon" : `live · ${s.left ?? s.quantity} left`;
    items.push(h("li", { "data-sale": s.sale_id }, h("span.kind", {}, "Flash sale"), `${s.title || ""} ${money(s.price, s.currency)} — ${what}`));
  }
  for (const a of m.auctions.values()) {
    const lead = a.leader_name ? ` · leader ${a.leader_name}` : "";
    items.push(h("li", { "data-auction": a.auction_id }, h("span.kind", {}, "Auction"), `${a.title} ${money(a.price, a.currency)} · ${a.bids} bids${lead}${a.ended ? " — ended" : ""}`));
  }
  for (const p of m.polls.values()) {
    const tallies = (p.options || []).map((o, i) => `${o}: ${(p.tallies || [])[i] ?? 0}`).join(", ");
    items.push(h("li", { "data-poll": p.poll_id }, h("span.kind", {}, "Poll"), `${p.question} — ${tallies}${p.closed ? " (closed)" : ""}`));
  }
  for (const g of m.groups.values()) {
    items.push(h("li", { "data-group": g.deal_id }, h("span.kind", {}, "Group buy"), `${g.title} ${money(g.group_price, g.currency)} · ${g.joined ?? 0}/${g.size} joined${g.ended ? " — ended" : ""}`));
  }
  $("#happenings").replaceChildren(...items);
}

function renderChat(m) {
  $("#chat-recent").replaceChildren(
    ...m.chat.map((c) => h("li", { "data-id": c.id }, h("span.at", {}, clock(c.t)), h("b", {}, `${c.name}: `), c.text))
  );
  const list = $("#chat-recent");
  list.scrollTop = list.scrollHeight;
  const pin = $("#pinned-comment");
  pin.hidden = !m.pinnedComment;
  if (m.pinnedComment) pin.replaceChildren(h("b", {}, "Pinned · "), h("b", {}, `${m.pinnedComment.name}: `), m.pinnedComment.text);
}

function render(force = false) {
  const t = video.currentTime || 0;
  $("#moment-clock").textContent = clock(t);
  $("#moment-at").textContent = `(${clock(t)} into the show)`;
  const n = countUpTo(t);
  if (n === state.applied && !force) return;
  state.applied = n;
  const m = (state.moment = foldMoment(n));
  renderProducts(m);
  renderHappenings(m);
  renderChat(m);
  const proof = $("#social-proof");
  const recent = m.paid && t - m.paid.t < 6;
  proof.hidden = !recent;
  if (recent) proof.textContent = m.paid.text || `${m.paid.buyer} bought ${m.paid.product}`;
}

/** Comments the playhead just passed fly; a jump (seek) replays the last seconds' instead. */
function fly(jumped) {
  const t = video.currentTime || 0;
  const from = jumped ? t - FLY_BACK_S : state.lastT;
  state.lastT = t;
  if (jumped) {
    danmaku.setEnabled(false);
    danmaku.setEnabled(true);
  }
  for (let i = countUpTo(Math.max(0, from)); i < state.events.length && state.events[i].t <= t; i++) {
    const e = state.events[i];
    if (e.type === "chat" && (jumped || e.t > from)) danmaku.add({ text: e.text, role: e.role });
  }
}

function tick() {
  const t = video.currentTime || 0;
  const jumped = t < state.lastT || t - state.lastT > 1.5;
  fly(jumped);
  render();
}

// ------------------------------------------------------------------ buy after the show
async function token() {
  if (!state.token) state.token = await guestToken(state.replay.show_id);
  return state.token;
}

async function buy(productId) {
  if (state.buying) return;
  // A retried click (after a network error) sends the same key: the server answers the same order.
  if (!state.buyKeys.has(productId)) state.buyKeys.set(productId, newKey());
  state.buying = productId;
  render(true);
  const result = $("#buy-result");
  result.hidden = true;
  try {
    const reply = await api(`/api/replays/${encodeURIComponent(replayId)}/buy`, {
      method: "POST",
      token: await token(),
      body: { product_id: productId, key: state.buyKeys.get(productId) },
    });
    state.buyKeys.delete(productId);
    state.reservation = { ...reply, product: state.products[productId] };
    openCheckout();
  } catch (err) {
    if (err.code !== "network") state.buyKeys.delete(productId); // answered: the next click is a new order
    result.hidden = false;
    result.textContent = err.code === "out_of_stock" ? "Sold out — none left." : `Buy failed: ${errorText(err)}`;
  } finally {
    state.buying = null;
    render(true);
  }
}

function openCheckout() {
  const r = state.reservation;
  const p = r.product || {};
  const rows = [
    ["Item", p.title || r.product_id],
    ["Price", money(r.price, r.currency)],
    ["Order", r.reservation_id],
    ["Hold", `until ${new Date(r.expires_at).toLocaleTimeString()}`],
  ];
  $("#checkout-body").replaceChildren(
    h("dl", {}, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("p.muted.small", {}, "Bought from the replay at the list price. Payments go through liveshop's simulated provider: no real money moves.")
  );
  $("#checkout-error").textContent = "";
  const btn = $("#pay-btn");
  btn.hidden = false;
  btn.disabled = false;
  btn.textContent = `Pay ${money(r.price, r.currency)}`;
  state.payKey = { order: r.reservation_id, key: newKey() };
  const dlg = $("#checkout");
  if (!dlg.open) dlg.showModal();
  btn.focus();
}

async function pay() {
  const r = state.reservation;
  if (!r) return;
  const btn = $("#pay-btn");
  btn.disabled = true;
  btn.textContent = "Paying…";
  try {
    const res = await api(`/api/orders/${encodeURIComponent(r.reservation_id)}/pay`, { method: "POST", token: await token(), body: { key: state.payKey.key } });
    if (res.status !== "paid") {
      state.payKey = { order: r.reservation_id, key: newKey() };
      $("#checkout-error").textContent = `Payment ${res.status}: ${res.order?.failure || "declined"}. You can try again.`;
      btn.disabled = false;
      btn.textContent = "Try again";
      return;
    }
    const order = (state.order = res.order);
    state.reservation = null;
    btn.hidden = true;
    $("#checkout-body").replaceChildren(
      h(
        "div.order-ok",
        { id: "order-done", "data-order": order.id },
        h("h3", {}, "Paid — thank you!"),
        h("dl", {}, h("dt", {}, "Order"), h("dd", { id: "order-id" }, order.id), h("dt", {}, "Item"), h("dd", {}, order.title), h("dt", {}, "Amount"), h("dd", { id: "order-amount" }, money(order.amount, order.currency)), h("dt", {}, "Status"), h("dd", { id: "order-status" }, order.status))
      )
    );
    const result = $("#buy-result");
    result.hidden = false;
    result.textContent = `Paid ✓ order ${order.id}`;
  } catch (err) {
    $("#checkout-error").textContent = errorText(err); // same key on retry: never charged twice
    btn.disabled = false;
    btn.textContent = "Try again";
  }
}

// ------------------------------------------------------------------ start
async function start() {
  $("#pay-btn").addEventListener("click", pay);
  $("#checkout-close").addEventListener("click", () => $("#checkout").close());
  let data;
  try {
    data = await api(`/api/replays/${encodeURIComponent(replayId)}/timeline`);
  } catch (err) {
    showError(err.code === "replay_not_found" ? "This replay is not available (it may have been taken down)." : `Could not load the replay: ${errorText(err)}`);
    return;
  }
  state.replay = data.replay;
  state.events = data.events;
  state.products = data.products || {};
  api(`/api/shows/${encodeURIComponent(data.replay.show_id)}`)
    .then(({ show }) => {
      $("#show-title").textContent = show.title;
      document.title = `${show.title} · replay · liveshop`;
    })
    .catch(() => {});
  video.addEventListener("timeupdate", tick);
  video.addEventListener("seeked", () => {
    fly(true);
    render();
  });
  video.addEventListener("error", () => showError("The video could not be played in this browser."));
  setInterval(() => !video.paused && tick(), 200);
  video.src = `/api/replays/${encodeURIComponent(replayId)}/media`;
  render(true);
}

start();
