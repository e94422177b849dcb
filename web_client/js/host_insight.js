// Studio insight: plots of viewers, chat rate and GMV over the show (uPlot), the per-product
// funnel as bars, dwell time and interaction rate, and the anomaly alerts as a list.
// Fed by the staff-only `stats` and `alert` events (docs/protocol.md "Host insight"); mounts
// itself inside the given panel so the studio layout needs no change.
import uPlot from "../vendor/uPlot.esm.js";
import { api } from "./api.js";
import { h } from "./util.js";

const MAX_POINTS = 1800; // one hour at the ~2 s stats push

function addCss() {
  if (document.querySelector("link[data-uplot]")) return;
  document.head.append(h("link", { rel: "stylesheet", href: "/static/vendor/uPlot.min.css", "data-uplot": "" }));
}

export function startInsight({ socket, panel, showId, token }) {
  addCss();
  const root = h("div", { id: "insight", class: "insight" });
  root.innerHTML = `
    <h3>Over the show</h3><div id="in-plot" aria-label="Viewers, chat per minute and GMV over time"></div>
    <p class="small" id="in-dwell"></p>
    <h3>Products</h3><ol class="plain-list" id="in-funnel" aria-label="Funnel per product"></ol>
    <h3>Alerts</h3><ol class="plain-list" id="in-alerts" aria-label="Alerts"></ol>`;
  panel.append(root);
  const data = [[], [], [], []];
  const plot = new uPlot(
    {
      width: Math.max(panel.clientWidth - 24, 240),
      height: 160,
      scales: { x: { time: true }, n: {}, gmv: {} },
      axes: [{}, { scale: "n" }, { scale: "gmv", side: 1, grid: { show: false } }],
      series: [
        {},
        { label: "Viewers", scale: "n", stroke: "#2563eb" },
        { label: "Chat/min", scale: "n", stroke: "#16a34a" },
        { label: "GMV", scale: "gmv", stroke: "#d97706", value: (_, v) => (v == null ? "—" : (v / 100).toFixed(2)) },
      ],
    },
    data,
    root.querySelector("#in-plot")
  );
  const onStats = (s) => {
    if (!s) return;
    const gmv = Object.values(s.gmv || {}).reduce((a, b) => a + b, 0);
    data[0].push((s.at || Date.now()) / 1000);
    data[1].push(s.viewers ?? 0);
    data[2].push(Math.round(s.chat_per_minute ?? 0));
    data[3].push(gmv);
    if (data[0].length > MAX_POINTS) data.forEach((d) => d.shift());
    plot.setData(data);
    const ins = s.insight;
    if (!ins) return;
    const d = ins.dwell;
    root.querySelector("#in-dwell").textContent =
      `Watch time: median ${d.median_s ?? "—"} s, mean ${d.mean_s ?? "—"} s over ${d.sessions} sessions · ` +
      `bounce ${Math.round(d.bounce_rate * 100)}% · interacting ${Math.round(ins.interaction.any.last_minute_rate * 100)}% ` +
      `(last minute), ${Math.round(ins.interaction.any.show_rate * 100)}% (show)`;
    const list = root.querySelector("#in-funnel");
    list.replaceChildren(
      ...ins.funnel.map((p) => {
        const top = Math.max(p.impressions, p.clicks, 1);
        const bar = (label, n) =>
          h("div", { class: "in-bar", title: `${label}: ${n}` }, [
            h("span", { style: `display:inline-block;height:8px;background:#2563eb;width:${Math.round((n / top) * 100)}%` }),
            ` ${label} ${n}`,
          ]);
        return h("li", { "data-product": p.product_id }, [
          h("b", {}, [p.product_id]),
          bar("seen", p.impressions),
          bar("clicked", p.clicks),
          bar("reserved", p.reservations),
          bar("paid", p.paid),
        ]);
      })
    );
  };
  const onAlert = (a) => {
    const when = new Date(a.at).toLocaleTimeString();
    root
      .querySelector("#in-alerts")
      .prepend(h("li", { class: `alert-${a.state}`, "data-alert": a.alert, "data-state": a.state }, [`${when} ${a.state === "firing" ? "⚠" : "✓"} ${a.reason}`]));
  };
  socket.on("stats", onStats);
  socket.on("alert", onAlert);
  api(`/api/shows/${encodeURIComponent(showId)}/report`, { token })
    .then(({ report }) => report.alerts.forEach(onAlert))
    .catch(() => {});
  return { onStats, onAlert };
}
