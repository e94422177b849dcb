// HTTP API helper: JSON in, JSON out, errors as values with the server's code and message.

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message || code);
    this.status = status;
    this.code = code || "error";
    this.details = details || {};
  }
}

/** fetch() a JSON endpoint; resolves to the parsed body, rejects with ApiError. */
export async function api(path, { method = "GET", body, token, headers = {}, signal } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (token) init.headers.Authorization = `Bearer ${token}`;
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "network", "network error: " + (err && err.message ? err.message : err));
  }
  const text = await resp.text();
  let data = {};
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { raw: text };
    }
  }
  if (!resp.ok) {
    const e = data.error || {};
    throw new ApiError(resp.status, e.code || `http_${resp.status}`, e.message || resp.statusText, e.details);
  }
  return data;
}

/** Values kept in the URL fragment (#token=…): never sent to the server, never logged. */
export function fragmentParams() {
  return new URLSearchParams(location.hash.replace(/^#/, ""));
}

/** The show id from /host/{id} or /watch/{id}. */
export function showIdFromPath() {
  const parts = location.pathname.split("/").filter(Boolean);
  return decodeURIComponent(parts[parts.length - 1] || "");
}

/** Decode a liveshop token's claims (no verification: for display and role only).
 *  Tokens are JWTs (header.payload.signature); `user_id`/`show_id` mirror `sub`/`show`. */
export function tokenClaims(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      Array.from(atob(payload + "===".slice((payload.length + 3) % 4)))
        .map((c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0"))
        .join("")
    );
    const claims = JSON.parse(json);
    return { ...claims, user_id: claims.sub, show_id: claims.show };
  } catch {
    return null;
  }
}

/** A guest viewer token for the show, cached per tab (sessionStorage) while it is valid. */
export async function guestToken(showId, name) {
  const key = `liveshop.guest.${showId}`;
  const cached = sessionStorage.getItem(key);
  if (cached) {
    const claims = tokenClaims(cached);
    if (claims && claims.exp * 1000 > Date.now() + 60_000) return cached;
  }
  const data = await api(`/api/shows/${encodeURIComponent(showId)}/guest`, {
    method: "POST",
    body: name ? { name } : {},
  });
  sessionStorage.setItem(key, data.token);
  return data.token;
}
