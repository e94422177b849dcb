// The stage of the viewer page: one tile per video — the host's, a co-host's (issue 20), a PK
// opponent's — side by side once there is more than one. Other modules only call this API:
//   addTile(key, whepUrl, label, { getToken }) → { el, video, player }   (idempotent per key)
//   removeTile(key)                                                      (stops its player)
//   setMuted(muted), tileKeys(), tile(key)
// The host's tile is in the page's HTML (`.stage-tile[data-key="main"]`, with its own player
// and LL-HLS fallback) and is registered with registerTile(); added tiles play WHEP.
import { h } from "./util.js";
import { WhepPlayer } from "./whep.js";

const tiles = new Map(); // key → { el, video, player, own }
let defaultToken = null;
let muted = true; // autoplay needs muted video; the page's Unmute button calls setMuted(false)

function stageEl() {
  return document.getElementById("stage");
}

function layout() {
  const stage = stageEl();
  const list = [...tiles.values()];
  stage.dataset.tiles = String(list.length);
  stage.classList.toggle("stage-split", list.length > 1);
  list.forEach((t, i) => {
    t.el.style.left = list.length > 1 ? `${(100 * i) / list.length}%` : "";
    t.el.style.width = list.length > 1 ? `${100 / list.length}%` : "";
    t.el.querySelector(".stage-label").hidden = list.length < 2 || !t.el.dataset.label;
  });
}

/** Where added tiles get their (viewer) token from, unless addTile is given one. */
export function configureStage({ getToken }) {
  defaultToken = getToken;
}

/** Register a tile already in the page (the host's), with the player that drives it. */
export function registerTile(key, el, player, label = "") {
  el.dataset.key = key;
  el.dataset.label = label;
  let tag = el.querySelector(".stage-label");
  if (!tag) el.append((tag = h("span.stage-label", {}, label)));
  else tag.textContent = label;
  tiles.set(key, { el, video: el.querySelector("video"), player, own: false });
  layout();
}

export function setLabel(key, label) {
  const t = tiles.get(key);
  if (!t) return;
  t.el.dataset.label = label;
  t.el.querySelector(".stage-label").textContent = label;
  layout();
}

/** A tile playing `whepUrl` (e.g. `/whep/{show}/cohost`), labelled with a display name. */
export function addTile(key, whepUrl, label, { getToken } = {}) {
  const existing = tiles.get(key);
  if (existing) {
    setLabel(key, label);
    existing.player?.kick?.();
    return existing;
  }
  const video = h("video", { autoplay: true, playsinline: true, "aria-label": `${label} (live video)` });
  video.muted = muted;
  const el = h("div.stage-tile", { dataset: { key, label } }, video, h("span.stage-label", {}, label));
  const stage = stageEl();
  const after = [...tiles.values()].at(-1)?.el;
  if (after) after.after(el);
  else stage.prepend(el);
  const player = new WhepPlayer(video, null, getToken || defaultToken, {
    url: whepUrl,
    onState: (s) => (el.dataset.state = s),
  });
  const t = { el, video, player, own: true };
  tiles.set(key, t);
  layout();
  player.start();
  return t;
}

export function removeTile(key) {
  const t = tiles.get(key);
  if (!t || !t.own) return; // the host's tile stays
  tiles.delete(key);
  t.player.stop();
  t.el.remove();
  layout();
}

export function setMuted(value) {
  muted = value;
  for (const t of tiles.values()) {
    t.video.muted = value;
    if (!value) t.video.play().catch(() => {});
  }
}

export const tileKeys = () => [...tiles.keys()];
export const tile = (key) => tiles.get(key);
