// WHEP player: POST /whep/{show} with a viewer token; reconnects by itself when the stream
// is not there yet, or when ICE fails / disconnects for a while (host restart, network change).
import { deleteResource, iceServersFrom, postOffer, waitIceGathering } from "./webrtc.js";

export class WhepPlayer {
  constructor(video, showId, getToken, { iceServers = [], onState } = {}) {
    this.video = video;
    this.url = new URL(`/whep/${encodeURIComponent(showId)}`, location.href).toString();
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

  start() {
    this.stopped = false;
    this._connect();
  }

  async _connect() {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this._teardown();
    this._set(this.everPlayed ? "reconnecting" : "connecting");
    const pc = new RTCPeerConnection({ iceServers: iceServersFrom(this.iceServers) });
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
      // 404/409: the host is not live yet — wait quietly; anything else: a visible retry.
      const waiting = err.status === 404 || err.status === 409 || err.code === "not_live";
      this._set(waiting ? "offline" : "reconnecting", err);
      this._retry(waiting ? 2000 : undefined);
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
    if (this.pc) this.pc.close();
    this.pc = null;
    if (this.location && !gone) deleteResource(this.location, this.token);
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
