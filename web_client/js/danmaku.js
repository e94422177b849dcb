// Danmaku: comments fly right-to-left over the video in lanes, never overlapping.
//
// Every comment moves at the same speed, so two comments in one lane never meet once the
// earlier one's tail has entered the screen (plus a gap). A new comment takes the first lane
// that is free; with none free it waits in a short queue and is dropped when it gets stale.
// Density picks how many lanes are used; "off" hides the layer. The layer never takes
// pointer events (CSS), so it never blocks the controls under it.

const DENSITY_LANES = { low: 0.34, medium: 0.67, high: 1 };

export class Danmaku {
  constructor(layer, { laneHeight = 30, speed = 140, gap = 24, maxQueue = 40 } = {}) {
    this.layer = layer;
    this.laneHeight = laneHeight;
    this.speed = speed; // px per second
    this.gap = gap;
    this.maxQueue = maxQueue;
    this.lanes = []; // per lane: time (ms) when the lane is free again
    this.queue = [];
    this.density = "medium";
    this.enabled = true;
    this.shown = 0;
    this.layer.setAttribute("aria-hidden", "true");
    this._tick = this._tick.bind(this);
    this.interval = setInterval(this._tick, 120);
  }

  laneCount() {
    const height = this.layer.clientHeight || 300;
    const all = Math.max(1, Math.floor(height / this.laneHeight));
    return Math.max(1, Math.floor(all * DENSITY_LANES[this.density]));
  }

  setDensity(density) {
    if (DENSITY_LANES[density]) this.density = density;
  }

  setEnabled(on) {
    this.enabled = on;
    this.layer.hidden = !on;
    if (!on) {
      this.queue = [];
      this.layer.replaceChildren();
      this.lanes = [];
    }
  }

  /** Queue a comment: {text, name, mine, role}. */
  add(item) {
    if (!this.enabled || document.hidden) return; // a background tab would only pile them up
    this.queue.push({ ...item, at: performance.now() });
    if (this.queue.length > this.maxQueue) this.queue.splice(0, this.queue.length - this.maxQueue);
    this._tick();
  }

  _tick() {
    if (!this.enabled || !this.queue.length) return;
    const now = performance.now();
    this.queue = this.queue.filter((q) => now - q.at < 6000 || q.mine);
    const lanes = this.laneCount();
    while (this.queue.length) {
      const lane = this._freeLane(now, lanes);
      if (lane < 0) return;
      this._fly(this.queue.shift(), lane, now);
    }
  }

  _freeLane(now, lanes) {
    for (let i = 0; i < lanes; i++) {
      if (!this.lanes[i] || this.lanes[i] <= now) return i;
    }
    return -1;
  }

  _fly(item, lane, now) {
    const el = document.createElement("div");
    el.className = "danmaku-item" + (item.mine ? " mine" : "") + (item.role && item.role !== "viewer" ? " staff" : "");
    el.textContent = item.text;
    el.dataset.lane = String(lane);
    el.style.top = `${lane * this.laneHeight + 4}px`;
    this.layer.append(el);
    const width = el.offsetWidth;
    const screen = this.layer.clientWidth || 360;
    const distance = screen + width;
    const duration = (distance / this.speed) * 1000;
    // The lane is free once this comment's tail is on screen plus a gap (same speed: no catch-up).
    this.lanes[lane] = now + ((width + this.gap) / this.speed) * 1000;
    this.shown += 1;
    const anim = el.animate(
      [{ transform: `translateX(${screen}px)` }, { transform: `translateX(${-width}px)` }],
      { duration, easing: "linear", fill: "forwards" }
    );
    anim.onfinish = () => el.remove();
  }

  destroy() {
    clearInterval(this.interval);
  }
}
