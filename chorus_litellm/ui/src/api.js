// The proxy's HTTP API, same origin, every call with the caller's Bearer key.

const KEY = "chorus.key";

export function getKey() {
  try {
    return sessionStorage.getItem(KEY) || "";
  } catch {
    return "";
  }
}

export function setKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY, key);
    else sessionStorage.removeItem(KEY);
  } catch {
    /* storage disabled: the key lives for this page only */
  }
}

/** An HTTP answer that was not 2xx: status plus the proxy's own message when it sent one. */
export class HttpError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
  get unauthorized() {
    return this.status === 401 || this.status === 403;
  }
}

export function authHeaders(extra = {}) {
  const key = getKey();
  return key ? { Authorization: `Bearer ${key}`, ...extra } : { ...extra };
}

/** Turn a failed response into an HttpError carrying the best message we can find. */
export async function errorFrom(resp, what) {
  let text = "";
  let body = null;
  try {
    text = await resp.text();
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  let detail = body?.error?.message ?? body?.detail ?? body?.message ?? body?.error ?? text;
  if (typeof detail !== "string") detail = JSON.stringify(detail);
  detail = (detail || resp.statusText || "").slice(0, 400).trim().replace(/\.+$/, "");
  if (resp.status === 401 || resp.status === 403) {
    return new HttpError(
      resp.status,
      `That key was refused by the proxy (${resp.status})${detail ? `: ${detail}` : ""}. Check it and save it again.`,
      body,
    );
  }
  return new HttpError(resp.status, `${what} failed (HTTP ${resp.status})${detail ? `: ${detail}` : ""}`, body);
}

/** fetch(), with a network failure turned into a readable HttpError (status 0). */
export async function request(path, init, what) {
  try {
    return await fetch(path, init);
  } catch (err) {
    if (err?.name === "AbortError") throw err;
    throw new HttpError(0, `${what} failed: the proxy could not be reached (${err?.message ?? err}).`);
  }
}

export async function getJson(path, what, { signal } = {}) {
  const resp = await request(path, { headers: authHeaders({ Accept: "application/json" }), signal }, what);
  if (!resp.ok) throw await errorFrom(resp, what);
  return resp.json();
}

/**
 * The models the page can run: the proxy's chorus profiles (GET /chorus/v1/models: their
 * model names, whatever the prefix, with each one's protocol) that the key may call
 * (GET /v1/models), sorted by id: [{id, protocol}].
 */
export async function listModels() {
  const [callable, served] = await Promise.all([
    getJson("/v1/models", "Listing models"),
    getJson("/chorus/v1/models", "Listing the chorus models").catch((err) => {
      if (err?.status === 404) return null; // an older proxy: its fusion/ aliases below
      throw err;
    }),
  ]);
  const ids = new Set((callable?.data ?? []).map((m) => m.id).filter((id) => typeof id === "string"));
  if (!served) return [...ids].filter((id) => id.startsWith("fusion/")).sort().map((id) => ({ id, protocol: null }));
  return (served.models ?? []).filter((m) => ids.has(m.id)).map((m) => ({ id: m.id, protocol: m.protocol ?? null }));
}

/** The model the picker starts on: the README's fusion/debate, else another debate, else the first. */
export function defaultModel(models) {
  const ids = models.map((m) => m.id);
  return (
    ids.find((id) => id === "fusion/debate") ??
    ids.find((id) => id.endsWith("/debate")) ??
    models.find((m) => m.protocol === "debate")?.id ??
    ids[0] ??
    ""
  );
}

export async function listRuns(limit = 20) {
  const body = await getJson(`/chorus/v1/runs?limit=${limit}`, "Listing runs");
  return Array.isArray(body?.runs) ? body.runs : [];
}

/** Every pool's peers (state, load, earnings, reputation). */
export async function listPeers() {
  return getJson("/chorus/v1/peers", "Listing peers");
}

/** Every fusion profile, the config file's and the stored ones (proxy admins only: 403 otherwise). */
export async function listProfiles() {
  return getJson("/chorus/v1/profiles", "Listing profiles");
}

async function sendJson(method, path, body, what) {
  const init = { method, headers: authHeaders({ "Content-Type": "application/json", Accept: "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const resp = await request(path, init, what);
  if (!resp.ok) throw await errorFrom(resp, what);
  return resp.json();
}

/**
 * Store a profile's block: a new one (no version), or a change of the version read (a
 * stale version is a 409). Resolves to the stored profile, with its new version.
 */
export async function saveProfile({ name, version = null, profile }) {
  if (version == null) return sendJson("POST", "/chorus/v1/profiles", { name, profile }, "Creating the profile");
  return sendJson("PUT", `/chorus/v1/profiles/${encodeURIComponent(name)}`, { version, profile }, "Saving the profile");
}

export async function deleteProfile(name, version) {
  return sendJson("DELETE", `/chorus/v1/profiles/${encodeURIComponent(name)}?version=${version}`, undefined,
    "Deleting the profile");
}

export function eventsUrl(runId, waitS) {
  return `/chorus/v1/runs/${encodeURIComponent(runId)}/events?wait_s=${waitS}`;
}

/**
 * Start a fusion run: a streaming chat completion tagged with our own debate id.
 * Resolves once the response headers are in (throws HttpError when not 200); the body is
 * drained in the background (the page shows the run from its event log instead).
 */
export async function startRun({ model, prompt, debateId, bounty = null, signal }) {
  const resp = await request("/v1/chat/completions", {
    method: "POST",
    headers: authHeaders({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify({
      model,
      messages: [{ role: "user", content: prompt }],
      stream: true,
      chorus: { debate_id: debateId },
      ...(bounty ? { bounty: { amount: bounty, currency: "USD" } } : {}),
    }),
    signal,
  }, "Starting the run");
  if (!resp.ok) throw await errorFrom(resp, "Starting the run");
  drain(resp.body);
  return resp;
}

async function drain(body) {
  if (!body) return;
  const reader = body.getReader();
  try {
    for (;;) {
      const { done } = await reader.read();
      if (done) return;
    }
  } catch {
    /* aborted or dropped: the event stream is what we show */
  }
}

/** Fetch a receipt (needs the Bearer header, so no plain link). */
export async function getReceipt(url) {
  const target = new URL(url, location.href);
  if (target.origin !== location.origin) {
    // Never send the key to another origin.
    throw new HttpError(0, `The receipt lives on another origin (${target.origin}); open it there.`);
  }
  return getJson(target.pathname + target.search, "Fetching the receipt");
}
