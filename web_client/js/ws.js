// The realtime connection: WebSocket /ws/{show}?token=… speaking the `liveshop.json` subprotocol.
//
// - request(type, fields) sends {type, id, ...fields} and resolves with the `reply` of that id
//   (rejects with {code, message} on an `error` of that id or on timeout);
// - events arrive in {"type":"batch","events":[...]} and are dispatched one by one to on(type);
// - on an unexpected close the socket reconnects with backoff, asking for `since=<last chat id>`
//   and the `epoch` of the welcome, so missed chat is recovered; state changes go to onState.

const FATAL_CLOSE = new Set([4001, 4003, 4004, 1008]); // bad token / other show / no show / banned or policy

export class LiveSocket {
  constructor(showId, token, { onState, onWelcome } = {}) {
    this.showId = showId;
    this.token = token;
    this.onState = onState || (() => {});
    this.onWelcome = onWelcome || (() => {});
    this.handlers = new Map();
    this.pending = new Map();
    this.nextId = 1;
    this.lastId = null;
    this.epoch = null;
    this.state = "idle";
    this.ws = null;
    this.attempt = 0;
    this.closedByUs = false;
    this.seenChat = new Set();
    this.welcome = null;
    this.outbox = [];
  }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(fn);
    return this;
  }

  _emit(type, msg) {
    for (const fn of this.handlers.get(type) || []) {
      try {
        fn(msg);
      } catch (err) {
        console.error("handler for", type, "failed", err);
      }
    }
    for (const fn of this.handlers.get("*") || []) fn(msg);
  }

  _setState(state, detail) {
    this.state = state;
    this.onState(state, detail);
  }

  url() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const q = new URLSearchParams({ token: this.token });
    if (this.lastId !== null && this.lastId !== undefined) q.set("since", String(this.lastId));
    if (this.epoch !== null && this.epoch !== undefined) q.set("epoch", String(this.epoch));
    return `${proto}//${location.host}/ws/${encodeURIComponent(this.showId)}?${q}`;
  }

  connect() {
    this.closedByUs = false;
    this._setState(this.attempt ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new WebSocket(this.url(), "liveshop.json");
    } catch (err) {
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => this._onMessage(ev);
    ws.onclose = (ev) => this._onClose(ev);
    ws.onerror = () => {};
  }

  close() {
    this.closedByUs = true;
    clearTimeout(this.retryTimer);
    if (this.ws) this.ws.close(1000, "bye");
    this._setState("closed");
  }

  /** Drop the connection as if the network failed for `ms` (tests; a flaky network). */
  simulateOutage(ms = 0) {
    this.holdUntil = performance.now() + ms;
    if (this.ws) this.ws.close(4999, "simulated outage");
  }

  /** End a simulated outage now. */
  resume() {
    this.holdUntil = 0;
    if (this.state === "reconnecting" && !this.ws) {
      clearTimeout(this.retryTimer);
      this.connect();
    }
  }

  _onMessage(ev) {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    switch (msg.type) {
      case "welcome":
        this._onWelcome(msg);
        break;
      case "reply": {
        const p = this.pending.get(msg.id);
        if (p) {
          this.pending.delete(msg.id);
          clearTimeout(p.timer);
          p.resolve(msg);
        }
        break;
      }
      case "error": {
        const p = msg.id !== undefined && this.pending.get(msg.id);
        if (p) {
          this.pending.delete(msg.id);
          clearTimeout(p.timer);
          p.reject({ code: msg.code, message: msg.message, details: msg.details });
        } else {
          this.lastError = msg;
          this._emit("error", msg);
        }
        break;
      }
      case "batch":
        for (const event of msg.events || []) this._event(event);
        break;
      default:
        this._event(msg);
    }
  }

  _event(event) {
    // Ids stay unique within an epoch: keep de-duplicating unless the history itself was reset.
    if (event.type === "history_lost" && event.reason === "epoch_changed") this.seenChat.clear();
    if (event.type === "chat" && event.id !== undefined) {
      if (this.seenChat.has(event.id)) return; // replayed after a reconnect: already shown
      this.seenChat.add(event.id);
      if (this.seenChat.size > 2000) this.seenChat = new Set(Array.from(this.seenChat).slice(-1000));
      this.lastId = event.id;
    }
    this._emit(event.type, event);
  }

  _onWelcome(msg) {
    const reconnect = this.attempt > 0 || this.welcome !== null;
    if (this.epoch !== null && msg.epoch !== undefined && msg.epoch !== this.epoch) {
      this.seenChat.clear(); // history was reset on the server: ids start again
    }
    if (msg.epoch !== undefined) this.epoch = msg.epoch;
    if (this.lastId === null && msg.last_id !== undefined) this.lastId = msg.last_id;
    this.welcome = msg;
    this.attempt = 0;
    this._setState("open", { reconnect });
    this.onWelcome(msg, reconnect);
    const queued = this.outbox.splice(0);
    for (const [data] of queued) this.ws.send(data);
    this._startHeartbeat();
  }

  /** A half-open connection (laptop sleep, network switch) never fires `close`: ping to notice. */
  _startHeartbeat() {
    clearInterval(this.heartbeat);
    const ws = this.ws;
    this.heartbeat = setInterval(() => {
      if (this.ws !== ws || this.state !== "open") return clearInterval(this.heartbeat);
      this.request("ping", {}, 10000).catch((err) => {
        if (err.code !== "timeout" || this.ws !== ws) return;
        // Do not wait for a close handshake that cannot happen: detach and reconnect now.
        ws.onclose = ws.onmessage = null;
        ws.close(4998, "heartbeat timeout");
        this._onClose({ code: 4998, reason: "heartbeat timeout" });
      });
    }, 25000);
  }

  _onClose(ev) {
    this.ws = null;
    clearInterval(this.heartbeat);
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject({ code: "disconnected", message: "connection lost; try again" });
    }
    this.pending.clear();
    if (this.closedByUs) return;
    if (FATAL_CLOSE.has(ev.code)) {
      const err = this.lastError || {};
      this._setState("failed", { code: ev.code, reason: ev.reason, error: err.code, message: err.message });
      return;
    }
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    this.attempt += 1;
    const delay = Math.min(5000, 300 * 2 ** Math.min(this.attempt - 1, 5)) * (0.8 + Math.random() * 0.4);
    this._setState("reconnecting", { attempt: this.attempt, delay });
    clearTimeout(this.retryTimer);
    const held = Math.max(0, (this.holdUntil || 0) - performance.now());
    this.retryTimer = setTimeout(() => this.connect(), Math.max(delay, held));
  }

  /** Send a command and wait for its reply. */
  request(type, fields = {}, timeoutMs = 10000) {
    const id = this.nextId++;
    const data = JSON.stringify({ type, id, ...fields });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject({ code: "timeout", message: "no answer from the server" });
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      if (this.ws && this.ws.readyState === WebSocket.OPEN && this.state === "open") this.ws.send(data);
      else this.outbox.push([data]);
    });
  }

  /** Fire and forget (likes). */
  send(type, fields = {}) {
    const data = JSON.stringify({ type, ...fields });
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.state === "open") this.ws.send(data);
  }
}
