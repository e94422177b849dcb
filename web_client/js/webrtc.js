// Shared WebRTC helpers for WHIP (publish) and WHEP (play): no trickle ICE, so the offer is
// sent once gathering is complete (or after a short timeout with what we have).

export function waitIceGathering(pc, timeoutMs = 2000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      pc.removeEventListener("icecandidate", onCandidate);
      resolve();
    };
    const check = () => pc.iceGatheringState === "complete" && done();
    const onCandidate = (ev) => !ev.candidate && done();
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
    pc.addEventListener("icecandidate", onCandidate);
  });
}

/** Prefer H.264 constrained baseline (packetization-mode=1) where the browser offers it. */
export function preferH264(transceiver) {
  if (!transceiver || !transceiver.setCodecPreferences || !window.RTCRtpReceiver?.getCapabilities) return;
  const caps = RTCRtpReceiver.getCapabilities("video");
  if (!caps) return;
  const score = (c) => {
    const f = c.sdpFmtpLine || "";
    if (c.mimeType.toLowerCase() !== "video/h264") return 2;
    if (/packetization-mode=1/.test(f) && /profile-level-id=42/.test(f)) return 0;
    return 1;
  };
  const codecs = caps.codecs.slice().sort((a, b) => score(a) - score(b));
  try {
    transceiver.setCodecPreferences(codecs);
  } catch {
    /* Some browsers refuse reordering: keep their default order. */
  }
}

/** POST an SDP offer; returns {answer, location}. Errors carry the server's code. */
export async function postOffer(url, token, sdp) {
  const resp = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
    body: sdp,
  });
  const text = await resp.text();
  if (resp.status !== 201 && resp.status !== 200) {
    let code = `http_${resp.status}`;
    let message = text || resp.statusText;
    try {
      const e = JSON.parse(text).error || {};
      code = e.code || code;
      message = e.message || message;
    } catch {
      /* plain text error */
    }
    const err = new Error(message);
    err.code = code;
    err.status = resp.status;
    throw err;
  }
  const location = resp.headers.get("Location");
  return { answer: text, location: location ? new URL(location, url).toString() : null };
}

export async function deleteResource(location, token) {
  if (!location) return;
  try {
    await fetch(location, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } });
  } catch {
    /* the server may already be gone */
  }
}

export function iceServersFrom(list) {
  return (list || []).map((u) => (typeof u === "string" ? { urls: u } : u));
}

/** Parse `Link: <url>; rel="ice-server"; username="…"; credential="…"` (RFC 9725 §4.6). */
export function parseIceLinks(header) {
  const servers = [];
  for (const part of (header || "").split(/,(?=\s*<)/)) {
    const m = part.match(/<([^>]+)>(.*)/);
    if (!m || !/rel="?ice-server"?/.test(m[2])) continue;
    const server = { urls: m[1] };
    const user = m[2].match(/username="([^"]*)"/);
    const cred = m[2].match(/credential="([^"]*)"/);
    if (user) server.username = user[1];
    if (cred) server.credential = cred[1];
    servers.push(server);
  }
  return servers;
}

const iceCache = new Map();

/** The STUN/TURN servers the server hands out (OPTIONS on the WHIP/WHEP endpoint), cached. */
export async function discoverIceServers(url) {
  if (!iceCache.has(url)) {
    iceCache.set(
      url,
      fetch(url, { method: "OPTIONS" })
        .then((resp) => parseIceLinks(resp.headers.get("Link")))
        .catch(() => [])
    );
  }
  return iceCache.get(url);
}

/** Sum a numeric field over stats reports of one type and kind. */
export async function statSum(pc, type, kind, field) {
  if (!pc) return 0;
  const stats = await pc.getStats();
  let total = 0;
  stats.forEach((r) => {
    if (r.type === type && (r.kind || r.mediaType) === kind && typeof r[field] === "number") total += r[field];
  });
  return total;
}
