// Re-run a giveaway draw in the browser from its proof (mirrors server/verify_lottery.py):
// 1. sha256(seed) == commitment; 2. entrants sorted + unique and sha256(canonical JSON) ==
// entrants_hash; 3. a partial Fisher–Yates with HMAC-SHA256(seed, entrants_hash || counter)
// reproduces the winners.
import { api, showIdFromPath } from "./api.js";
import { $, h } from "./util.js";

const hexToBytes = (hex) => new Uint8Array(hex.match(/../g).map((b) => parseInt(b, 16)));
const bytesToHex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
const sha256Hex = async (bytes) => bytesToHex(await crypto.subtle.digest("SHA-256", bytes));

export async function drawWinners(seedHex, entrantsHash, entrants, count) {
  const key = await crypto.subtle.importKey("raw", hexToBytes(seedHex), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const message = hexToBytes(entrantsHash);
  const pool = entrants.slice();
  let counter = 0n;
  const TWO256 = 1n << 256n;
  async function uniform(m) {
    const big = BigInt(m);
    const limit = TWO256 - (TWO256 % big);
    for (;;) {
      const data = new Uint8Array(message.length + 8);
      data.set(message);
      new DataView(data.buffer).setBigUint64(message.length, counter);
      counter += 1n;
      const value = BigInt("0x" + bytesToHex(await crypto.subtle.sign("HMAC", key, data)));
      if (value < limit) return Number(value % big);
    }
  }
  const picks = Math.min(count, pool.length);
  for (let i = 0; i < picks; i++) {
    const j = i + (await uniform(pool.length - i));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, picks);
}

export async function verifyProof(p) {
  const checks = [];
  const enc = new TextEncoder();
  checks.push({ ok: p.algorithm === "liveshop-lottery-v1", text: `algorithm is liveshop-lottery-v1 (${p.algorithm})` });
  const commitment = await sha256Hex(hexToBytes(p.seed));
  checks.push({ ok: commitment === p.commitment, text: `sha256(seed) equals the commitment published when the giveaway opened` });
  const sorted = [...new Set(p.entrants)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  checks.push({ ok: JSON.stringify(sorted) === JSON.stringify(p.entrants), text: `the ${p.entrants.length} entrants are sorted and unique` });
  const eh = await sha256Hex(enc.encode(JSON.stringify(p.entrants)));
  checks.push({ ok: eh === p.entrants_hash, text: "sha256(entrant list) equals the entrants hash frozen at the draw" });
  const winners = await drawWinners(p.seed, p.entrants_hash, p.entrants, p.winners_count);
  checks.push({ ok: JSON.stringify(winners) === JSON.stringify(p.winners), text: `re-running the draw gives the published winners: ${winners.join(", ") || "(none)"}` });
  return checks;
}

/** Winners by display name (the proof's `winner_names`, same order as `winners`; not verified data). */
function renderWinners(proof) {
  const names = proof.winner_names || [];
  const list = $("#winner-names");
  list.replaceChildren(
    ...(proof.winners || []).map((uid, i) => h("li", { "data-uid": uid }, h("b", {}, names[i] || uid), names[i] && names[i] !== uid ? h("span.muted.small", {}, ` (${uid})`) : null))
  );
  $("#winners-h").hidden = !proof.winners?.length;
}

async function main() {
  const lotteryId = showIdFromPath();
  const url = `/api/lotteries/${encodeURIComponent(lotteryId)}/proof`;
  $("#proof-link").href = url;
  const verdict = $("#verdict");
  let proof;
  try {
    proof = await api(url);
  } catch (err) {
    verdict.dataset.ok = "false";
    verdict.textContent = err.code === "not_drawn" ? "This giveaway has not been drawn yet." : `Could not load the proof: ${err.message}`;
    return;
  }
  $("#proof").textContent = JSON.stringify(proof, null, 2);
  renderWinners(proof);
  if (!crypto.subtle) {
    verdict.textContent = "This page needs a secure context (https or localhost) for WebCrypto; verify offline with python -m server.verify_lottery.";
    return;
  }
  const checks = await verifyProof(proof);
  $("#checks").replaceChildren(...checks.map((c) => h("li", { "data-ok": String(c.ok) }, c.text)));
  const ok = checks.every((c) => c.ok);
  verdict.dataset.ok = String(ok);
  verdict.textContent = ok ? `Verified: the draw of "${proof.prize}" is fair and reproducible.` : "NOT verified: the proof does not check out.";
  document.body.dataset.verified = String(ok);
}

main();
