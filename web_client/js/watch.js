// Viewer page: WHEP video, danmaku over it, chat, likes, viewer count, reconnecting state;
// shopping (pinned products, flash sale, checkout, giveaway, coupons) lives in viewer_commerce.js.
import { api, guestToken, showIdFromPath, tokenClaims } from "./api.js";
import { Danmaku } from "./danmaku.js";
import { HlsPlayer, withHlsFallback } from "./hls_player.js";
import { $, clock, errorText, h } from "./util.js";
import { ViewerCommerce } from "./viewer_commerce.js";
import { ViewerInteractive } from "./viewer_interactive.js";
import { WhepPlayer } from "./whep.js";
import { LiveSocket } from "./ws.js";
import { ViewerPk } from "./pk.js";
import { addTile, configureStage, registerTile, removeTile, setLabel, setMuted } from "./stage.js";

const showId = showIdFromPath();
const params = new URLSearchParams(location.search);
const state = { token: null, claims: null, show: null, likes: 0, wsState: "idle", videoState: "idle" };
window.liveshop = { state };

const danmaku = new Danmaku($("#danmaku"));
window.liveshop.danmaku = danmaku;

function renderShow() {
  const s = state.show;
  if (!s) return;
  $("#show-title").textContent = s.title;
  document.title = `${s.title} · liveshop`;
  const b = $("#live-badge");
  b.className = `badge ${s.status}`;
  b.textContent = s.status === "live" ? "LIVE" : s.status;
}

function renderConnState() {
  const ws = state.wsState;
  const v = state.videoState;
  const reconnecting = ws === "reconnecting" || v === "reconnecting";
  const banner = $("#reconnecting");
  banner.hidden = !reconnecting;
  $("#reconnecting-text").textContent =
    ws === "reconnecting" && v === "reconnecting" ? "Reconnecting…" : ws === "reconnecting" ? "Reconnecting chat…" : "Reconnecting video…";
  const conn = $("#conn");
  conn.dataset.state = ws;
  conn.textContent = { open: "●", connecting: "…", reconnecting: "…", failed: "offline", closed: "closed" }[ws] || ws;
  conn.setAttribute("aria-label", `chat ${ws}`);
  conn.title = `chat: ${ws}, video: ${v}`;
  const offline = $("#offline");
  const ended = state.show?.status === "ended";
  offline.classList.toggle("end-card", ended);
  $("#replay-link").hidden = !(ended && state.show?.replay_url);
  if (ended) {
    // The end card covers the frozen last frame: the show is over, not stalled.
    offline.hidden = false;
    $("#offline-text").textContent = "This show has ended.";
    $("#offline-sub").textContent = "Thanks for watching!";
    if (state.show.replay_url) $("#replay-link").href = state.show.replay_url;
  } else if (v === "playing") offline.hidden = true;
  else if (v === "offline") {
    $("#offline-sub").textContent = "";
    offline.hidden = false;
    $("#offline-text").textContent = "Waiting for the host to go live…";
  } else offline.hidden = true;
}

// ---------------------------------------------------------------- co-host (issue 20)
/** The co-host's tile beside the host's while one is live (welcome/resync snapshot, `cohost` event). */
function showCohost(cohost) {
  if (cohost && state.show?.status !== "ended") {
    addTile("cohost", `/whep/${encodeURIComponent(showId)}/cohost`, cohost.name || "Co-host");
  } else removeTile("cohost");
  window.liveshop.cohost = cohost || null;
}

// ---------------------------------------------------------------- chat
/** The last few comments over the video: whole messages only (each at most two lines, name first);
 * the oldest go when the next would not fit, so nothing shows as a nameless fragment. */
function addRecent(m) {
  const ol = $("#chat-recent");
  ol.append(h("li", { "data-id": m.id }, h("b", {}, m.name + ": "), m.text));
  // The list is bottom-aligned, so overflow goes out of the top (scrollHeight does not see it).
  const clipped = () => ol.firstElementChild.getBoundingClientRect().top < ol.getBoundingClientRect().top - 1;
  while (ol.children.length > 5 || (ol.children.length > 1 && clipped())) ol.firstElementChild.remove();
}

function pinComment(m) {
  const el = $("#pinned-comment");
  if (!m) {
    el.hidden = true;
    el.dataset.id = "";
    return;
  }
  el.hidden = false;
  el.dataset.id = m.id;
  el.replaceChildren(h("span.pin-tag", {}, "Pinned"), " ", h("b", {}, m.name + ": "), m.text);
}

function setupChat(socket) {
  socket.on("chat", (m) => {
    // History replayed on join/recovery goes to the chat list; only fresh comments fly.
    const mine = m.uid === state.claims?.user_id;
    const fly = () => danmaku.add({ text: m.text, mine, role: m.role });
    // over LL-HLS the picture is seconds behind: others' comments wait for it (PROGRAM-DATE-TIME)
    const delay = mine ? 0 : player?.delayMs || 0;
    if (!m.ts || Date.now() - m.ts < 30_000) delay ? setTimeout(fly, delay) : fly();
    addRecent(m);
  });
  socket.on("chat.delete", (m) => {
    const li = $(`#chat-recent li[data-id="${CSS.escape(m.id)}"]`);
    if (li) li.remove();
    if ($("#pinned-comment").dataset.id === m.id) pinComment(null);
  });
  socket.on("chat.pin", pinComment);
  socket.on("chat.unpin", () => pinComment(null));
  socket.on("history_lost", (e) => e.reason === "epoch_changed" && $("#chat-recent").replaceChildren());
  socket.on("presence", (p) => ($("#viewer-count").textContent = p.viewers));
  socket.on("likes", (m) => setLikes(m.total));
  // A moderator muted (or unmuted) me: say so at once, with the time left (`seconds`, not our clock).
  socket.on("user.muted", (m) => {
    if (m.user_id !== state.claims?.user_id) return;
    showMuted(m.until && m.seconds != null ? Date.now() + m.seconds * 1000 : m.until);
  });
  // The server's event feed was cut and is back: take its snapshot (the shop follows as events).
  socket.on("resync", (r) => {
    setLikes(r.likes);
    pinComment(r.pinned || null);
    if (r.show) state.show = r.show;
    renderShow();
    renderConnState();
    if (r.show) showCohost(r.show.cohost);
  });
  socket.on("cohost", (c) => showCohost(c.live ? { user_id: c.user_id, name: c.name } : null));
  socket.on("show.live", () => {
    if (state.show) state.show.status = "live";
    renderShow();
    player.kick();
  });
  socket.on("show.ended", (e) => {
    if (state.show) state.show.status = "ended";
    if (state.show && e.replay_url) state.show.replay_url = e.replay_url; // the end card links it
    renderShow();
    renderConnState();
    showCohost(null);
  });

  let retryTimer;
  $("#chat-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("#chat-input");
    const text = input.value.trim();
    if (!text) return;
    const errEl = $("#chat-error");
    errEl.textContent = "";
    clearTimeout(retryTimer);
    try {
      await socket.request("chat", { text });
      input.value = "";
    } catch (err) {
      let msg = errorText(err);
      if (err.code === "rate_limited") msg = `Slow down — you can send again in ${Math.ceil((err.retry_after_ms || err.details?.retry_after_ms || 1000) / 1000)} s.`;
      if (err.code === "banned_word") msg = "That message contains a word that is not allowed here.";
      if (err.code === "muted") return showMuted(err.until || err.details?.until);
      if (err.code === "banned") msg = "You are banned from this show.";
      errEl.textContent = msg;
      errEl.dataset.code = err.code || "";
      retryTimer = setTimeout(() => (errEl.textContent = ""), 8000);
    }
  });
}

/** "You are muted by a moderator · 9:41 left", counting down, cleared when the mute ends. */
let mutedTimer;
function showMuted(until) {
  const errEl = $("#chat-error");
  clearInterval(mutedTimer);
  if (!until || until <= Date.now()) {
    if (errEl.dataset.code === "muted") errEl.textContent = "";
    errEl.dataset.code = "";
    return;
  }
  errEl.dataset.code = "muted";
  const render = () => {
    const left = (until - Date.now()) / 1000;
    if (left <= 0) {
      clearInterval(mutedTimer);
      errEl.textContent = "You can chat again.";
      return;
    }
    errEl.textContent = `You are muted by a moderator · ${clock(left)} left`;
  };
  render();
  mutedTimer = setInterval(render, 1000);
}

// ---------------------------------------------------------------- likes
let pendingLikes = 0;
function setLikes(total) {
  state.likes = Math.max(state.likes, total);
  $("#like-count").textContent = state.likes;
}

function burst() {
  if (matchMedia("(prefers-reduced-motion: reduce)").matches) return;
  const layer = $("#hearts");
  for (let i = 0; i < 3; i++) {
    const el = h("span.heart", {}, "♥");
    layer.append(el);
    const dx = (Math.random() - 0.5) * 60;
    el.animate(
      [
        { transform: "translate(0, 0) scale(.6)", opacity: 1 },
        { transform: `translate(${dx}px, -200px) scale(1.3)`, opacity: 0 },
      ],
      { duration: 900 + Math.random() * 500, easing: "ease-out", delay: i * 80 }
    ).onfinish = () => el.remove();
  }
}

function setupLikes(socket) {
  $("#like-btn").addEventListener("click", () => {
    pendingLikes += 1;
    setLikes(state.likes + 1);
    burst();
  });
  setInterval(() => {
    if (!pendingLikes) return;
    const count = Math.min(50, pendingLikes);
    pendingLikes -= count;
    socket.send("like", { count });
  }, 250);
}

// ---------------------------------------------------------------- danmaku controls, audio
function setupControls() {
  const toggle = $("#danmaku-toggle");
  const saved = localStorage.getItem("liveshop.danmaku");
  const apply = (on) => {
    danmaku.setEnabled(on);
    toggle.setAttribute("aria-pressed", String(on));
    toggle.textContent = on ? "Danmaku on" : "Danmaku off";
    localStorage.setItem("liveshop.danmaku", on ? "on" : "off");
  };
  apply(saved !== "off");
  toggle.addEventListener("click", () => apply(!danmaku.enabled));
  const density = $("#danmaku-density");
  density.value = localStorage.getItem("liveshop.density") || "medium";
  danmaku.setDensity(density.value);
  density.addEventListener("change", () => {
    danmaku.setDensity(density.value);
    localStorage.setItem("liveshop.density", density.value);
  });
  const video = $("#video");
  const unmute = $("#unmute-btn");
  unmute.addEventListener("click", () => {
    setMuted(!video.muted); // every tile: the host and the co-host are both heard
    unmute.textContent = video.muted ? "Unmute" : "Mute";
  });
}

// ---------------------------------------------------------------- start
let player;
async function start() {
  setupControls();
  try {
    state.show = (await api(`/api/shows/${encodeURIComponent(showId)}`)).show;
    renderShow();
  } catch (err) {
    $("#offline").hidden = false;
    $("#offline-text").textContent = err.status === 404 ? "There is no such show." : "Could not load the show: " + errorText(err);
    return;
  }
  const getToken = async () => {
    if (!state.token || (state.claims && state.claims.exp * 1000 < Date.now() + 60_000)) {
      state.token = await guestToken(showId, params.get("name") || undefined);
      state.claims = tokenClaims(state.token);
    }
    return state.token;
  };
  try {
    await getToken();
  } catch (err) {
    $("#chat-error").textContent = "Could not join: " + errorText(err);
    return;
  }
  const onState = (s) => {
    state.videoState = s;
    renderConnState();
  };
  // ?hls=1: LL-HLS; otherwise WebRTC (WHEP), handing over to LL-HLS if WebRTC cannot connect
  const makeHls = () => new HlsPlayer($("#video"), showId, getToken, { onState });
  if (params.get("hls") === "1") player = makeHls();
  else {
    const whep = new WhepPlayer($("#video"), showId, getToken, { onState: (s, d) => (onState(s), player?.observe(s, d)) });
    player = withHlsFallback(whep, makeHls);
  }
  window.liveshop.player = player;
  player.start({ live: state.show.status === "live" });
  configureStage({ getToken });
  registerTile("main", $("#video").parentElement, player, state.show.host_name || "Host");
  showCohost(state.show.cohost);

  const socket = new LiveSocket(showId, state.token, {
    onState: (s, d) => {
      state.wsState = s;
      renderConnState();
      if (s === "failed" && (d?.error === "token_expired" || d?.error === "unauthorized") && !state.renewed) {
        // A guest token that expired (a very long session): get a fresh one and rejoin once.
        state.renewed = true;
        sessionStorage.removeItem(`liveshop.guest.${showId}`);
        state.token = null;
        getToken().then((t) => {
          socket.token = t;
          socket.connect();
        });
        return;
      }
      if (s === "failed") $("#chat-error").textContent = d?.error === "banned" ? "You are banned from this show." : `Disconnected: ${d?.message || d?.code}`;
      if (s === "open") state.renewed = false;
    },
    onWelcome: (w, reconnect) => {
      if (w.show) {
        const wasLive = state.show?.status === "live";
        state.show = w.show;
        renderShow();
        if (!wasLive && w.show.status === "live") player.kick();
        setLabel("main", w.show.host_name || "Host");
        showCohost(w.show.cohost);
      }
      $("#viewer-count").textContent = w.viewers ?? 0;
      setLikes(w.likes ?? 0);
      pinComment(w.pinned || null);
      if (reconnect) commerce.refresh();
      if (reconnect) window.liveshop.interactive?.refresh();
    },
  });
  window.liveshop.socket = socket;
  setupChat(socket);
  setupLikes(socket);
  const commerce = new ViewerCommerce({ showId, getToken, socket, claims: state.claims });
  window.liveshop.commerce = commerce;
  socket.connect();
  commerce.start();
  window.liveshop.interactive = new ViewerInteractive({ showId, getToken, socket, claims: state.claims, commerce });
  window.liveshop.interactive.start();
  window.liveshop.pk = new ViewerPk({ showId, getToken, socket, mainPlayer: player, hostName: state.show.host_name });
  window.liveshop.pk.start();
  // Poll the show's status while not live, so the video starts as soon as the host goes live.
  setInterval(async () => {
    if (state.videoState === "playing") return;
    try {
      const s = (await api(`/api/shows/${encodeURIComponent(showId)}`)).show;
      const changed = s.status !== state.show?.status;
      state.show = s;
      showCohost(s.cohost);
      if (changed) {
        renderShow();
        renderConnState();
      }
      if (s.status === "live" && state.videoState === "offline") player.kick();
    } catch {
      /* keep trying */
    }
  }, 3000);
}

start();
