// Landing page: live and upcoming shows; create a show and jump to its studio.
import { api } from "./api.js";
import { $, h, timeOfDay } from "./util.js";

function card(show) {
  return h(
    "li",
    {},
    h(
      "a.show-card",
      { href: `/watch/${encodeURIComponent(show.id)}`, "data-show": show.id },
      h(`span.badge.${show.status}`, {}, show.status === "live" ? "LIVE" : show.status),
      h("div.title", {}, show.title),
      h("div.muted", {}, `${show.host_name}` + (show.live_since ? ` · live since ${timeOfDay(show.live_since)}` : ""))
    )
  );
}

async function load() {
  try {
    const { shows } = await api("/api/shows");
    const groups = { live: [], upcoming: [], ended: [] };
    for (const s of shows) (groups[s.status] || groups.upcoming).push(s);
    for (const [status, list] of Object.entries(groups)) {
      const ul = $(`#${status}-shows`);
      ul.replaceChildren(...list.map(card));
      if (!list.length) ul.append(h("li.muted", {}, status === "live" ? "Nobody is live right now." : "None."));
    }
  } catch (err) {
    $("#live-shows").replaceChildren(h("li.error-text", {}, "Could not load shows: " + err.message));
  }
}

const SAMPLES = [
  { title: "Cloud Runner sneakers", price: 12000, stock: 50, description: "Featherweight daily trainer" },
  { title: "Trail Blazer boots", price: 8900, stock: 30, description: "Waterproof, grippy, light" },
  { title: "Crew socks (3 pairs)", price: 1500, stock: 200, description: "Cushioned cotton blend" },
];

/** A first look: a few products in the new show (best effort: the show works without them). */
async function addSamples(showId, token) {
  for (const product of SAMPLES) {
    try {
      await api(`/api/shows/${encodeURIComponent(showId)}/products`, { method: "POST", token, body: product });
    } catch {
      return;
    }
  }
}

$("#create-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#create-error").textContent = "";
  const body = {};
  const title = $("#create-title").value.trim();
  const host = $("#create-host").value.trim();
  if (title) body.title = title;
  if (host) body.host_name = host;
  // Creating a show needs the operator API key; kept for this tab only.
  const apiKey = $("#create-key").value.trim();
  sessionStorage.setItem("liveshop.apiKey", apiKey);
  $("#create-btn").disabled = true;
  try {
    const { show, host_token } = await api("/api/shows", { method: "POST", body, token: apiKey });
    if ($("#create-samples").checked) await addSamples(show.id, host_token);
    const studio = `/host/${encodeURIComponent(show.id)}#token=${encodeURIComponent(host_token)}`;
    $("#created-host").href = studio;
    $("#created-watch").href = `/watch/${encodeURIComponent(show.id)}`;
    $("#created").hidden = false;
    $("#created-host").focus();
    load();
  } catch (err) {
    $("#create-error").textContent = `${err.message} (${err.code})`;
  } finally {
    $("#create-btn").disabled = false;
  }
});

$("#create-key").value = sessionStorage.getItem("liveshop.apiKey") || "";
load();
setInterval(load, 10000);
