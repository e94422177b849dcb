// Re-run a giveaway draw in the browser from its proof (mirrors server/verify_lottery.py,
// algorithm liveshop-lottery-v2): 0. every field present with exactly its type; 1. commitment ==
// sha256(key-sorted compact JSON of the terms: algorithm, eligibility, keyword, lottery_id, prize,
// seed, show_id, winners_count) — the commitment published at creation binds the seed to this
// giveaway; 2. entrants sorted + unique and sha256(canonical JSON) == entrants_hash; 3. a partial
// Fisher–Yates with HMAC-SHA256(seed, entrants_hash || counter) reproduces the winners.
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

export const ALGORITHM = "liveshop-lottery-v2";
const HEX64 = /^[0-9a-f]{64}$/;
const isStr = (v) => typeof v === "string";
const isStrList = (v) => Array.isArray(v) && v.every(isStr);

// The committed terms in sorted key order (JSON.stringify keeps insertion order), compact.
export function termsJson(p) {
  return JSON.stringify({
    algorithm: p.algorithm, eligibility: p.eligibility, keyword: p.keyword, lottery_id: p.lottery_id,
    prize: p.prize, seed: p.seed, show_id: p.show_id, winners_count: p.winners_count,
  });
}

function shapeProblems(p) {
  if (p === null || typeof p !== "object" || Array.isArray(p)) return ["the proof is not an object"];
  const bad = [];
  for (const name of ["algorithm", "lottery_id", "show_id", "prize", "eligibility"]) if (!isStr(p[name])) bad.push(name);
  if (!("keyword" in p) || !(p.keyword === null || isStr(p.keyword))) bad.push("keyword");
  if (!Number.isSafeInteger(p.winners_count) || p.winners_count < 1) bad.push("winners_count");
  for (const name of ["seed", "commitment", "entrants_hash"]) if (!isStr(p[name]) || !HEX64.test(p[name])) bad.push(name);
  for (const name of ["entrants", "winners"]) if (!isStrList(p[name])) bad.push(name);
  return bad;
}

// Five checks, always in this order: algorithm and field types, commitment, entrant list, entrants hash, winners.
export async function verifyProof(p) {
  const bad = shapeProblems(p);
  const shapeOk = bad.length === 0 && p.algorithm === ALGORITHM;
  const checks = [{
    ok: shapeOk,
    text: shapeOk ? `algorithm is ${ALGORITHM} and every field is present with its type`
      : bad.length ? `missing or malformed: ${bad.join(", ")}` : `unknown algorithm ${p.algorithm} (expected ${ALGORITHM})`,
  }];
  if (!shapeOk) {
    // Nothing below can be trusted on a malformed proof: every remaining check fails.
    for (const text of ["commitment", "entrant list", "entrants hash", "winners"]) checks.push({ ok: false, text: `${text}: not checked` });
    return checks;
  }
  const enc = new TextEncoder();
  const owned = p.lottery_id.startsWith(p.show_id + ".l");
  const commitment = await sha256Hex(enc.encode(termsJson(p)));
  checks.push({ ok: owned && commitment === p.commitment, text: "the commitment published when the giveaway opened matches this seed and these terms (giveaway, show, prize, eligibility, winners)" });
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
