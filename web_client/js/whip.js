// WHIP publisher: POST /whip/{show} with the host token; DELETE the Location to end.
import { deleteResource, discoverIceServers, iceServersFrom, postOffer, preferH264, waitIceGathering } from "./webrtc.js";

export class WhipPublisher {
  constructor(showId, token, { iceServers = [], onState } = {}) {
    this.url = new URL(`/whip/${encodeURIComponent(showId)}`, location.href).toString();
    this.token = token;
    this.iceServers = iceServers;
    this.onState = onState || (() => {});
    this.pc = null;
    this.location = null;
  }

  async start(stream, { replace = false } = {}) {
    const iceServers = this.iceServers.length ? iceServersFrom(this.iceServers) : await discoverIceServers(this.url);
    const pc = new RTCPeerConnection({ iceServers });
    this.pc = pc;
    pc.addEventListener("connectionstatechange", () => this.onState(pc.connectionState));
    for (const track of stream.getTracks()) {
      const tr = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
      if (track.kind === "video") preferH264(tr);
    }
    await pc.setLocalDescription(await pc.createOffer());
    await waitIceGathering(pc);
    try {
      const url = replace ? `${this.url}?replace=1` : this.url;
      const { answer, location } = await postOffer(url, this.token, pc.localDescription.sdp);
      this.location = location;
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
    } catch (err) {
      pc.close();
      this.pc = null;
      throw err;
    }
    return pc;
  }

  /** Swap the camera or microphone while live (device picker). */
  async replaceTrack(track) {
    if (!this.pc) return;
    const sender = this.pc.getSenders().find((s) => s.track && s.track.kind === track.kind);
    if (sender) await sender.replaceTrack(track);
  }

  async stop() {
    const loc = this.location;
    this.location = null;
    // DELETE first: closing the peer connection first ends the session on the server by itself.
    await deleteResource(loc, this.token);
    if (this.pc) this.pc.close();
    this.pc = null;
  }
}
