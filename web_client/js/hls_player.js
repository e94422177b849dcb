// LL-HLS player: hls.js (vendored, loaded on first use) in low-latency mode, or the browser's own
// HLS (Safari). Same interface and states as WhepPlayer, so the viewer page, its danmaku overlay,
// products and Buy button do not care which one plays. `?hls=1` chooses it; `withHlsFallback`
// switches a WHEP player over when WebRTC cannot connect (e.g. UDP blocked).
let hlsModule;
const loadHls = () => (hlsModule ||= import("/static/vendor/hls.min.mjs").then((m) => m.default));

export class HlsPlayer {
  constructor(video, showId, getToken, { onState } = {}) {
    this.video = video;
    this.showId = showId;
    this.getToken = getToken;
    this.onState = onState || (() => {});
    this.hls = null;
    this.stopped = true;
    this.state = "idle";
    this.mode = "hls";
    this.retryMs = 1000;
    this._onPlaying = () => {
      this.everPlayed = true;
      this._set("playing");
    };
  }

  _set(state, detail) {
    this.state = state;
    this.onState(state, detail);
  }

  start({ live = true } = {}) {
    this.stopped = false;
    this.video.addEventListener("playing", this._onPlaying);
    if (live) this._connect();
    else {
      this._set("offline");
      this._retry(15000);
    }
  }

  /** Seconds behind the live edge's PROGRAM-DATE-TIME (hls.js), or null. */
  get latency() {
    return this.hls && Number.isFinite(this.hls.latency) ? this.hls.latency : null;
  }

  /** How long to hold chat so it lands with the picture it answers (0 when unknown). */
  get delayMs() {
    const latency = this.latency;
    return latency && latency < 10 ? Math.round(latency * 1000) : 0;
  }

  async _connect() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this._teardown();
    this._set(this.everPlayed ? "reconnecting" : "connecting");
    const gen = (this.gen = (this.gen || 0) + 1);
    const token = await this.getToken();
    const url = new URL(`/hls/${encodeURIComponent(this.showId)}/index.m3u8`, location.href);
    url.searchParams.set("token", token);
    // Ask once ourselves: a 409 says why there is no stream (not live yet, or VP8 → no HLS).
    const probe = await fetch(url, { cache: "no-store" }).catch((err) => ({ ok: false, status: 0, err }));
    if (this.stopped || gen !== this.gen) return;
    if (!probe.ok) {
      const body = probe.json ? await probe.json().catch(() => ({})) : {};
      const err = Object.assign(new Error(body.error?.message || "HLS is not available"), { status: probe.status, code: body.error?.code });
      this._set(probe.status === 409 ? "offline" : "reconnecting", err);
      this._retry(probe.status === 409 ? 15000 : undefined);
      return;
    }
    this.video.srcObject = null; // a WHEP stream we fell back from
    const Hls = await loadHls();
    if (this.stopped || gen !== this.gen) return;
    if (Hls.isSupported()) {
      const hls = new Hls({ lowLatencyMode: true, backBufferLength: 10, enableWorker: false });
      this.hls = hls;
      hls.on(Hls.Events.MANIFEST_PARSED, () => this.video.play().catch(() => {}));
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (!data.fatal || hls !== this.hls) return;
        this._set("reconnecting", data);
        this._retry();
      });
      hls.loadSource(url.toString());
      hls.attachMedia(this.video);
    } else if (this.video.canPlayType("application/vnd.apple.mpegurl")) {
      this.video.src = url.toString(); // Safari plays LL-HLS itself
      this.video.play().catch(() => {});
    } else {
      this._set("failed", new Error("this browser cannot play HLS"));
      return;
    }
    this.retryMs = 1000;
  }

  _retry(ms) {
    clearTimeout(this.timer);
    if (this.stopped) return;
    const delay = ms ?? this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, 8000);
    this.timer = setTimeout(() => this._connect(), delay);
  }

  kick() {
    if (this.state !== "playing") this._retry(100);
  }

  _teardown() {
    if (this.hls) this.hls.destroy();
    this.hls = null;
    if (this.video.src) {
      this.video.removeAttribute("src");
      this.video.load();
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.video.removeEventListener("playing", this._onPlaying);
    this._teardown();
    this._set("stopped");
  }
}

/**
 * A WHEP player that hands over to HLS when WebRTC keeps failing before it ever played
 * (a network that blocks UDP, a node without WebRTC capacity). Same interface as both players.
 */
export function withHlsFallback(whep, makeHls, { attempts = 2 } = {}) {
  let failures = 0;
  const wrapper = {
    current: whep,
    get state() {
      return this.current.state;
    },
    get pc() {
      return this.current.pc;
    },
    get mode() {
      return this.current === whep ? "webrtc" : "hls";
    },
    get delayMs() {
      return this.current.delayMs || 0;
    },
    start: (opts) => wrapper.current.start(opts),
    kick: () => wrapper.current.kick(),
    stop: () => wrapper.current.stop(),
    // called by the page's onState with every WHEP state
    observe(state, detail) {
      if (wrapper.current !== whep || whep.everPlayed) return;
      if (state === "reconnecting" && !(detail && detail.status === 409)) failures += 1;
      if (failures >= attempts) {
        wrapper.current = makeHls(); // first: stopping the WHEP player reports "stopped" here
        whep.stop();
        wrapper.current.start({ live: true });
      }
    },
  };
  return wrapper;
}

/** The studio's "HLS" indicator: on/off and the expected viewer latency, every few seconds. */
export function watchHlsStatus(el, showId, token, everyMs = 3000) {
  const render = async () => {
    try {
      const resp = await fetch(`/hls/${encodeURIComponent(showId)}/status?token=${encodeURIComponent(token)}`, { cache: "no-store" });
      const { hls } = await resp.json();
      el.dataset.available = String(Boolean(hls?.available));
      el.textContent = hls?.available
        ? `HLS on · ~${(hls.expected_latency_s ?? 0).toFixed(1)} s behind`
        : hls?.code === "hls_unavailable"
          ? "HLS off (VP8)"
          : "HLS off";
      el.title = hls?.available ? `LL-HLS ${hls.codecs}: ${hls.segments} segments in the window` : hls?.reason || "";
    } catch {
      /* the next tick tries again */
    }
  };
  render();
  return setInterval(render, everyMs);
}
