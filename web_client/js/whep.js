// WHEP player: POST /whep/{show} with a viewer token; reconnects by itself when the stream
// is not there yet, or when ICE fails / disconnects for a while (host restart, network change).
import { deleteResource, discoverIceServers, iceServersFrom, postOffer, waitIceGathering } from "./webrtc.js";

export class WhepPlayer {
  // `url`: another WHEP endpoint than the show's main stream (a co-host's: /whep/{show}/cohost).
  constructor(video, showId, getToken, { iceServers = [], onState, url } = {}) {
    this.video = video;
    this.url = new URL(url || `/whep/${encodeURIComponent(showId)}`, location.href).toString();
    this.getToken = getToken;
    this.iceServers = iceServers;
    this.onState = onState || (() => {});
    this.pc = null;
    this.location = null;
    this.stopped = true;
    this.retryMs = 1000;
    this.state = "idle";
  }

  _set(state, detail) {
    this.state = state;
    this.onState(state, detail);
  }

  /** Start playing; with `live` false, wait for kick() (the show is not live yet). */
  start({ live = true } = {}) {
    this.stopped = false;
    if (live) this._connect();
    else {
      this._set("offline");
      this._retry(15000);
    }
  }

  async _connect() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this._teardown();
    this._set(this.everPlayed ? "reconnecting" : "connecting");
    const gen = (this.gen = (this.gen || 0) + 1);
    const iceServers = this.iceServers.length ? iceServersFrom(this.iceServers) : await discoverIceServers(this.url);
    if (this.stopped || gen !== this.gen) return; // a newer attempt started meanwhile
    const pc = new RTCPeerConnection({ iceServers });
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream();
    pc.addEventListener("track", (ev) => {
      stream.addTrack(ev.track);
      if (this.video.srcObject !== stream) this.video.srcObject = stream;
      this.video.play().catch(() => {});
    });
    pc.addEventListener("connectionstatechange", () => this._onPcState(pc));
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await waitIceGathering(pc);
      if (pc !== this.pc) return;
      const token = await this.getToken();
      const { answer, location } = await postOffer(this.url, token, pc.localDescription.sdp);
      if (pc !== this.pc) {
        deleteResource(location, token);
        return;
      }
      this.location = location;
      this.token = token;
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      this.retryMs = 1000;
    } catch (err) {
      if (pc !== this.pc) return;
      // 409 not_live: wait quietly (the page kicks us when the show goes live; slow retry as a
      // fallback); anything else: a visible retry with backoff.
      const waiting = err.status === 404 || err.status === 409 || err.code === "not_live";
      this._set(waiting ? "offline" : "reconnecting", err);
      this._retry(waiting ? 15000 : undefined);
    }
  }

  _onPcState(pc) {
    if (pc !== this.pc) return;
    const s = pc.connectionState;
    clearTimeout(this.disconnectTimer);
    if (s === "connected") {
      this.everPlayed = true;
      this._set("playing");
    } else if (s === "failed" || s === "closed") {
      this._set("reconnecting");
      this._retry(300);
    } else if (s === "disconnected") {
      this._set("reconnecting");
      this.disconnectTimer = setTimeout(() => this._connect(), 2500);
    }
  }

  _retry(ms) {
    clearTimeout(this.timer);
    if (this.stopped) return;
    const delay = ms ?? this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, 8000);
    this.timer = setTimeout(() => this._connect(), delay);
  }

  /** Reconnect now (e.g. the show just went live). */
  kick() {
    if (this.state !== "playing") this._retry(100);
  }

  _teardown() {
    // A session the server already ended (ICE failed/closed) has nothing left to DELETE.
    const gone = !this.pc || ["failed", "closed"].includes(this.pc.connectionState);
    const pc = this.pc;
    this.pc = null;
    if (this.location && !gone) deleteResource(this.location, this.token).finally(() => pc.close());
    else if (pc) pc.close();
    this.location = null;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.disconnectTimer);
    this._teardown();
    this._set("stopped");
  }
}
