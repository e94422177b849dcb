// Host studio: camera + WHIP, live stats, products, flash sales, giveaways, coupons, chat moderation.
// A moderator token opens the same page without the camera ("1 host + N operators").
import { api, fragmentParams, showIdFromPath, tokenClaims } from "./api.js";
import { ChatView } from "./chatview.js";
import { $, errorText, h, money, toast } from "./util.js";
import { WhipPublisher } from "./whip.js";
import { LiveSocket } from "./ws.js";
import { HostCommerce } from "./host_commerce.js";
import { HostInteractive } from "./host_interactive.js";
import { watchHlsStatus } from "./hls_player.js";
import { startInsight } from "./host_insight.js";
import { HostPk } from "./pk.js";
import { HostCohost } from "./host_cohost.js";

const showId = showIdFromPath();
const storeKey = `liveshop.studio.${showId}`;
let token = fragmentParams().get("token") || sessionStorage.getItem(storeKey) || "";
let claims = null;
let socket = null;
let show = null;

const state = {
  stream: null,
  publisher: null,
  live: false,
  chatTimes: [],
  viewers: 0,
  peak: 0,
  likes: 0,
};

window.liveshop = { state }; // for debugging and the browser tests

function showLogin(message) {
  $("#studio").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#login-token").focus();
}

$("#login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("#login-token").value.trim();
  start();
});

async function start() {
  claims = token ? tokenClaims(token) : null;
  if (!claims) return showLogin(token ? "That token is not valid." : "");
  if (claims.show_id !== showId) return showLogin(`That token is for show "${claims.show_id}", not "${showId}".`);
  if (!["host", "moderator", "cohost"].includes(claims.role)) return showLogin("A viewer token cannot open the studio.");
  if (claims.exp * 1000 < Date.now()) return showLogin("That token has expired.");
  sessionStorage.setItem(storeKey, token);
  if (location.hash) history.replaceState(null, "", location.pathname); // keep the token out of screenshots/shares
  $("#login").hidden = true;
  $("#studio").hidden = false;
  document.body.dataset.role = claims.role;
  const cohostMode = claims.role === "cohost"; // issue 20: publishes the show's cohost stream
  $("#whoami").textContent = `${claims.name} · ${cohostMode ? "co-host" : claims.role}`;
  $("#chat-input").placeholder = `Say something as ${claims.role}…`;
  $("#viewer-link").href = `/watch/${encodeURIComponent(showId)}`;
  try {
    show = (await api(`/api/shows/${encodeURIComponent(showId)}`)).show;
    renderShow();
  } catch (err) {
    toast("Could not load the show: " + errorText(err), "error");
  }
  if (cohostMode) {
    // Co-host mode: the camera goes to the cohost stream; no recording, team or co-host invites,
    // and no commerce unless the host gave moderator rights (claim `mod`).
    $("#broadcast-h").textContent = "Broadcast (co-host)";
    $("#recording").hidden = true;
    $("#team").hidden = true;
    $("#cohost").hidden = true;
    $("#hls-state").hidden = true;
    setupBroadcast();
  } else if (claims.role !== "host") {
    $("#broadcast").hidden = true;
    $("#recording").hidden = true;
    $("#team").hidden = true;
    $("#pk").hidden = true; // only the host starts or ends a PK
    $("#cohost").hidden = true;
  } else {
    setupBroadcast();
    setupRecording();
    setupTeam();
  }
  connectSocket();
  if (claims.role === "host") {
    window.liveshop.cohost = new HostCohost({ showId, token, socket, panel: $("#cohost") });
    window.liveshop.cohost.start();
    window.liveshop.cohost.show(show?.cohost);
  }
  if (cohostMode && !claims.mod) {
    $("#commerce-col").hidden = true;
    $("#stats").hidden = true;
    setInterval(renderChatRate, 5000);
    return;
  }
  if (!cohostMode) watchHlsStatus($("#hls-state"), showId, token);
  window.liveshop.commerce = new HostCommerce({ showId, token, socket, onStats: applyStats });
  window.liveshop.commerce.start();
  window.liveshop.interactive = new HostInteractive({ showId, token, socket });
  window.liveshop.interactive.start();
  window.liveshop.pk = new HostPk({ showId, token, socket });
  window.liveshop.pk.start();
  window.liveshop.insight = startInsight({ socket, panel: $("#stats"), showId, token });
  setInterval(renderChatRate, 5000);
}

function renderShow() {
  if (!show) return;
  $("#show-title").textContent = show.title;
  document.title = `Studio · ${show.title}`;
  const badge = $("#show-status");
  badge.className = `badge ${show.status}`;
  badge.textContent = show.status === "live" ? "LIVE" : show.status;
}

// ---------------------------------------------------------------- realtime: chat, presence, likes
let chat;
function connectSocket() {
  chat = new ChatView($("#chat-list"), { staff: true, onMod: moderate, pinnedEl: $("#pinned-comment") });
  socket = new LiveSocket(showId, token, {
    onState: (s, d) => {
      const el = $("#conn");
      el.dataset.state = s;
      el.textContent = { open: "connected", connecting: "connecting…", reconnecting: "reconnecting…", failed: "disconnected", closed: "closed" }[s] || s;
      if (s === "failed") toast(`Disconnected: ${d?.message || d?.reason || d?.code}`, "error", 8000);
    },
    onWelcome: (w, reconnect) => {
      if (w.show) {
        show = w.show;
        renderShow();
        window.liveshop.cohost?.show(w.show.cohost);
      }
      applyPresence(w);
      state.likes = w.likes ?? state.likes;
      $("#st-likes").textContent = state.likes;
      chat.pin(w.pinned || null);
      if (reconnect && window.liveshop.commerce) window.liveshop.commerce.refresh();
    },
  });
  socket.on("chat", (m) => {
    chat.add(m);
    state.chatTimes.push(Date.now());
    $("#chat-count").textContent = `(${chat.count})`;
  });
  socket.on("chat.delete", (m) => chat.remove(m.id));
  socket.on("chat.pin", (m) => chat.pin(m));
  socket.on("chat.unpin", () => chat.pin(null));
  socket.on("history_lost", (e) => {
    if (e.reason === "epoch_changed") chat.clear();
    else if (e.since === "0-0") return; // chat was empty when we joined: the replay is complete
    chat.system(e.reason === "epoch_changed" ? "Chat history was reset on the server." : "Some messages were missed while reconnecting.");
  });
  socket.on("skipped", (m) => chat.system(`${m.count} messages skipped (slow connection)`));
  socket.on("likes", (m) => {
    state.likes = m.total;
    $("#st-likes").textContent = m.total;
  });
  socket.on("presence", applyPresence);
  // The server's event feed was cut and is back: take its snapshot and reload the shop.
  socket.on("resync", (r) => {
    if (r.show) {
      show = r.show;
      renderShow();
      window.liveshop.cohost?.show(r.show.cohost);
    }
    state.likes = r.likes;
    $("#st-likes").textContent = state.likes;
    chat.pin(r.pinned || null);
    if (window.liveshop.commerce) window.liveshop.commerce.refresh();
  });
  // System lines name people (from the chat seen so far), never raw user ids.
  const by = (m) => (m.by ? ` by ${chat.nameOf(m.by, m.by === claims.user_id ? claims.name : "a moderator")}` : "");
  socket.on("user.muted", (m) => {
    const who = chat.nameOf(m.user_id);
    const minutes = Math.max(1, Math.round((m.until - Date.now()) / 60000));
    chat.system(m.until ? `${who} muted for ${minutes} min${by(m)}` : `${who} unmuted${by(m)}`);
  });
  socket.on("user.banned", (m) => chat.system(`${chat.nameOf(m.user_id)} ${m.banned ? "banned" : "unbanned"}${by(m)}`));
  socket.on("show.live", () => {
    if (show) show.status = "live";
    renderShow();
  });
  socket.on("show.ended", (e) => {
    if (show) show.status = "ended";
    if (show && e.replay_url) show.replay_url = e.replay_url;
    renderShow();
    confirmEnded();
  });
  socket.connect();
  window.liveshop.socket = socket;

  $("#chat-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("#chat-input");
    const text = input.value.trim();
    if (!text) return;
    $("#chat-error").textContent = "";
    try {
      await socket.request("chat", { text });
      input.value = "";
    } catch (err) {
      $("#chat-error").textContent = errorText(err);
    }
  });
}

async function moderate(action, msg) {
  const map = {
    delete: ["mod.delete", { message_id: msg.id }],
    pin: ["mod.pin", { message_id: msg.id }],
    unpin: ["mod.unpin", {}],
    mute: ["mod.mute", { user_id: msg.uid, minutes: 10 }],
    ban: ["mod.ban", { user_id: msg.uid }],
  };
  const [type, fields] = map[action];
  if (action === "ban" && !confirm(`Ban ${msg.name} from this show?`)) return;
  try {
    await socket.request(type, fields);
    if (action === "mute") toast(`${msg.name} muted for 10 minutes`, "ok");
    if (action === "ban") toast(`${msg.name} banned`, "ok");
  } catch (err) {
    toast(`${action} failed: ${errorText(err)}`, "error");
  }
}

function applyPresence(p) {
  if (p.viewers !== undefined) state.viewers = p.viewers;
  if (p.peak !== undefined) state.peak = Math.max(state.peak, p.peak);
  $("#st-viewers").textContent = state.viewers;
  $("#st-peak").textContent = state.peak;
  $("#fn-viewers").textContent = Math.max(state.peak, Number($("#fn-viewers").textContent) || 0);
}

function renderChatRate() {
  const cutoff = Date.now() - 60_000;
  state.chatTimes = state.chatTimes.filter((t) => t > cutoff);
  if (!state.statsChatRate) $("#st-chat").textContent = state.chatTimes.length;
}

/** Live stats from the commerce part (GET /api/shows/{id}/stats and the staff-only `stats` event). */
function applyStats(s) {
  if (!s) return;
  const pick = (...names) => {
    for (const n of names) {
      const v = n.split(".").reduce((o, k) => (o == null ? undefined : o[k]), s);
      if (v !== undefined && v !== null) return v;
    }
    return undefined;
  };
  const set = (id, v, fmt = (x) => x) => v !== undefined && ($(id).textContent = fmt(v));
  const viewers = pick("viewers");
  const peak = pick("peak_viewers", "peak");
  if (viewers !== undefined || peak !== undefined) applyPresence({ viewers, peak });
  const rate = pick("chat_per_minute");
  if (rate !== undefined) {
    state.statsChatRate = true;
    set("#st-chat", Math.round(rate));
  }
  const likes = pick("likes");
  if (likes !== undefined && likes >= state.likes) set("#st-likes", (state.likes = likes));
  set("#st-gmv", pick("gmv"), (v) =>
    typeof v === "object" ? Object.entries(v).map(([cur, cents]) => money(cents, cur)).join(" + ") || money(0) : money(v)
  );
  set("#st-orders", pick("paid_orders", "orders"));
  set("#fn-viewers", pick("funnel.viewers"));
  set("#fn-clicked", pick("funnel.clicked"));
  set("#fn-reserved", pick("funnel.reserved"));
  set("#fn-paid", pick("funnel.paid"));
  $("#stats-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// ---------------------------------------------------------------- broadcast (WHIP)
async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const fill = (sel, kind, label) => {
    const current = sel.value;
    const list = devices.filter((d) => d.kind === kind);
    sel.replaceChildren(...list.map((d, i) => h("option", { value: d.deviceId }, d.label || `${label} ${i + 1}`)));
    if (list.some((d) => d.deviceId === current)) sel.value = current;
  };
  fill($("#camera-select"), "videoinput", "Camera");
  fill($("#mic-select"), "audioinput", "Microphone");
}

async function openCamera() {
  const cam = $("#camera-select").value;
  const mic = $("#mic-select").value;
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { deviceId: cam ? { exact: cam } : undefined, width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
    audio: { deviceId: mic ? { exact: mic } : undefined },
  });
  if (state.stream) {
    if (state.publisher) for (const t of stream.getTracks()) await state.publisher.replaceTrack(t);
    state.stream.getTracks().forEach((t) => t.stop());
  }
  state.stream = stream;
  $("#preview").srcObject = stream;
  $("#camera-btn").textContent = "Camera on";
  $("#golive-btn").disabled = state.live;
  setPublishState(state.live ? "LIVE" : "preview");
  await listDevices();
}

function setPublishState(text, live = false) {
  const el = $("#publish-state");
  el.textContent = text;
  el.dataset.live = live ? "1" : "0";
}

function setupBroadcast() {
  if (!navigator.mediaDevices?.getUserMedia) {
    $("#broadcast-error").textContent = "This browser cannot open a camera (getUserMedia is missing; use https or localhost).";
    $("#golive-btn").disabled = true;
    return;
  }
  listDevices().catch(() => {});
  $("#camera-btn").addEventListener("click", async () => {
    $("#broadcast-error").textContent = "";
    try {
      await openCamera();
    } catch (err) {
      $("#broadcast-error").textContent = `Camera: ${err.name || ""} ${err.message}`;
    }
  });
  for (const sel of ["#camera-select", "#mic-select"]) {
    $(sel).addEventListener("change", () => state.stream && openCamera().catch((e) => ($("#broadcast-error").textContent = e.message)));
  }
  $("#golive-btn").addEventListener("click", goLive);
  $("#end-btn").addEventListener("click", endLive);
  window.addEventListener("beforeunload", () => state.publisher && state.publisher.stop());
}

async function goLive() {
  $("#broadcast-error").textContent = "";
  $("#golive-btn").disabled = true;
  try {
    if (!state.stream) {
      setPublishState("asking for the camera…");
      await openCamera();
    }
    setPublishState("connecting…");
    const pub = new WhipPublisher(showId, token, {
      onState: (s) => {
        if (s === "connected") setPublishState("LIVE", true);
        else if (s === "failed" || s === "disconnected") setPublishState(`connection ${s}`);
      },
    });
    try {
      await pub.start(state.stream);
    } catch (err) {
      const taken = err.code === "already_live" || (err.code === "cohost_live" && claims.role === "cohost");
      if (!taken || !confirm("This show already has a live publisher (another tab or OBS). Take over?")) throw err;
      await pub.start(state.stream, { replace: true });
    }
    state.publisher = pub;
    state.live = true;
    $("#end-confirm").hidden = true;
    $("#golive-hint").hidden = true;
    window.liveshop.publisher = pub;
    $("#end-btn").disabled = false;
    if (show && claims.role === "host") show.status = "live";
    renderShow();
  } catch (err) {
    $("#broadcast-error").textContent = `Go live failed: ${errorText(err)}`;
    $("#golive-btn").disabled = false;
    setPublishState("preview");
  }
}

async function endLive() {
  $("#end-btn").disabled = true;
  if (state.publisher) await state.publisher.stop();
  state.publisher = null;
  state.live = false;
  $("#golive-btn").disabled = false;
  setPublishState("ended");
  if (show && claims.role === "host") show.status = "ended"; // a co-host leaving ends nothing else
  renderShow();
  confirmEnded();
}

/** The host sees that the show really ended, and what viewers see now. */
function confirmEnded() {
  if (claims.role !== "host" || state.live) return;
  const box = $("#end-confirm");
  box.hidden = false;
  box.replaceChildren(
    h("b", {}, `Show ended at ${new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}.`),
    " Viewers now see the end card. Your recordings are listed under Recording; press Go live to start again.",
    show?.replay_url ? h("a", { id: "end-replay-link", href: show.replay_url, target: "_blank", rel: "noopener" }, " Watch the replay") : null
  );
}

// ---------------------------------------------------------------- recording
function setupRecording() {
  const base = `/api/shows/${encodeURIComponent(showId)}/recordings`;
  const download = async (name) => {
    // The token goes in a header, never in a URL: fetch the file and hand it to the browser.
    try {
      const resp = await fetch(`${base}/${encodeURIComponent(name)}`, { headers: { Authorization: `Bearer ${token}` } });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      const url = URL.createObjectURL(await resp.blob());
      const a = h("a", { href: url, download: name });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (err) {
      $("#rec-error").textContent = `Download failed: ${errorText(err)}`;
    }
  };
  const refresh = async () => {
    try {
      const { recordings = [] } = await api(base, { token });
      // Replays (server/insight/replay.py): a finished recording's public page, which the host can take down.
      const { replays = [] } = await api(`/api/shows/${encodeURIComponent(showId)}/replays`, { token }).catch(() => ({}));
      const replayOf = new Map(replays.map((r) => [r.file, r]));
      const active = recordings.find((r) => r.recording);
      $("#rec-start").disabled = !!active;
      $("#rec-stop").disabled = !active;
      $("#rec-state").textContent = active ? "● recording" : "";
      $("#rec-list").replaceChildren(
        ...recordings.map((r) =>
          h(
            "li.row",
            { "data-name": r.name },
            h("span.grow", {}, r.name),
            h("span.muted.small", {}, r.recording ? "recording…" : `${Math.max(1, Math.round(r.bytes / 1024))} KiB`),
            r.recording ? null : h("button.small", { type: "button", "aria-label": `Download ${r.name}`, onclick: () => download(r.name) }, "Download"),
            replayControls(replayOf.get(r.name))
          )
        )
      );
      if (!recordings.length) $("#rec-list").append(h("li.muted", {}, "No recordings yet."));
      $("#rec-error").textContent = "";
    } catch (err) {
      $("#rec-error").textContent = err.status === 404 && err.code === "not_found" ? "Recording is not available on this server." : errorText(err);
    }
  };
  const replayControls = (replay) => {
    if (!replay) return null;
    const setPublished = async (on) => {
      try {
        await api(`/api/replays/${encodeURIComponent(replay.id)}/${on ? "publish" : "unpublish"}`, { method: "POST", token, body: {} });
        toast(on ? "Replay published" : "Replay taken down", "ok");
      } catch (err) {
        $("#rec-error").textContent = errorText(err);
      }
      refresh();
    };
    return [
      replay.published ? h("a.small", { href: replay.url, target: "_blank", rel: "noopener", "data-replay": replay.id }, "Replay") : h("span.muted.small", {}, "unpublished"),
      h("button.small", { type: "button", "data-publish": replay.id, onclick: () => setPublished(!replay.published) }, replay.published ? "Unpublish" : "Publish"),
    ];
  };
  $("#rec-start").addEventListener("click", async () => {
    $("#rec-error").textContent = "";
    try {
      await api(base, { method: "POST", token, body: {} });
      toast("Recording started", "ok");
    } catch (err) {
      $("#rec-error").textContent = err.code === "not_live" ? "Go live first: recording saves the live stream." : errorText(err);
    }
    refresh();
  });
  $("#rec-stop").addEventListener("click", async () => {
    $("#rec-error").textContent = "";
    try {
      const { recording } = await api(`${base}/stop`, { method: "POST", token, body: {} });
      toast(`Saved ${recording.name}`, "ok");
    } catch (err) {
      $("#rec-error").textContent = errorText(err);
    }
    refresh();
  });
  refresh();
  setInterval(refresh, 5000);
}

// ---------------------------------------------------------------- team
function setupTeam() {
  $("#team-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("#team-error").textContent = "";
    try {
      const data = await api(`/api/shows/${encodeURIComponent(showId)}/tokens`, {
        method: "POST",
        token,
        body: { role: "moderator", name: $("#team-name").value.trim() || "Operator" },
      });
      const link = `${location.origin}/host/${encodeURIComponent(showId)}#token=${encodeURIComponent(data.token)}`;
      const input = $("#team-link");
      input.hidden = false;
      input.value = link;
      input.select();
    } catch (err) {
      $("#team-error").textContent = errorText(err);
    }
  });
}

start();
