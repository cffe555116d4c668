// Server-sent events over fetch (EventSource cannot send an Authorization header).
import { authHeaders, errorFrom, eventsUrl, HttpError } from "./api.js";

/**
 * Parse a text/event-stream body into frames {id, event, data}.
 * Handles \n, \r\n and \r line ends, multi-line data, comments (": keep-alive") and
 * frames split across network chunks.
 */
export async function* parseSSE(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  let frame = { id: null, event: null, data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buf += done ? decoder.decode() : decoder.decode(value, { stream: true });
      // Split into complete lines; keep the tail (and a lone trailing \r, which may be half a \r\n).
      let start = 0;
      for (let i = 0; i < buf.length; i++) {
        const c = buf[i];
        if (c !== "\n" && c !== "\r") continue;
        if (c === "\r" && i === buf.length - 1 && !done) break;
        const line = buf.slice(start, i);
        if (c === "\r" && buf[i + 1] === "\n") i++;
        start = i + 1;
        if (line === "") {
          if (frame.data.length || frame.event) yield { id: frame.id, event: frame.event || "message", data: frame.data.join("\n") };
          frame = { id: null, event: null, data: [] };
          continue;
        }
        if (line.startsWith(":")) continue; // comment / keep-alive
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (field === "data") frame.data.push(val);
        else if (field === "event") frame.event = val;
        else if (field === "id") frame.id = val;
      }
      buf = buf.slice(start);
      if (done) return;
    }
  } finally {
    reader.releaseLock?.();
  }
}

export class NotFound extends Error {}

const TERMINAL = new Set(["run_done", "run_failed"]);

/**
 * Follow one run's event log to its end: replay, then live; reconnects with Last-Event-ID
 * when the connection drops before run_done / run_failed.
 *
 * onEnvelope(env) gets each envelope once, in seq order; onPhase(phase) gets
 * "connecting" | "live" | "reconnecting". Resolves with the terminal envelope type; rejects with
 * NotFound, HttpError (401/403 and other refusals) or an AbortError.
 */
export async function followRun(runId, { waitS, signal, onEnvelope, onPhase }) {
  let lastSeq = null;
  let failures = 0;
  let first = true;
  for (;;) {
    if (signal?.aborted) throw new DOMException("aborted", "AbortError");
    onPhase?.(first ? "connecting" : "reconnecting");
    let resp;
    try {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (lastSeq != null) headers["Last-Event-ID"] = String(lastSeq);
      resp = await fetch(eventsUrl(runId, waitS), { headers, signal, cache: "no-store" });
    } catch (err) {
      if (err?.name === "AbortError") throw err;
      resp = null; // network error: retry below
    }
    if (resp && resp.status === 404) {
      await resp.body?.cancel().catch(() => {});
      throw new NotFound(`Run ${runId} not found (or it belongs to another team)`);
    }
    if (resp && !resp.ok) {
      const err = await errorFrom(resp, "Opening the event stream");
      if (err.unauthorized || (err.status >= 400 && err.status < 500)) throw err;
      // 5xx: retry below
    }
    if (resp && resp.ok) {
      first = false;
      onPhase?.("live");
      try {
        for await (const frame of parseSSE(resp.body)) {
          if (!frame.data) continue;
          let env;
          try {
            env = JSON.parse(frame.data);
          } catch {
            continue; // not an envelope
          }
          if (typeof env?.seq !== "number") env.seq = frame.id != null ? Number(frame.id) : (lastSeq ?? 0) + 1;
          if (!env.type) env.type = frame.event;
          if (lastSeq != null && env.seq <= lastSeq) continue; // replayed twice across a reconnect
          lastSeq = env.seq;
          failures = 0;
          onEnvelope(env);
          if (TERMINAL.has(env.type)) {
            resp.body.cancel?.().catch(() => {});
            return env.type;
          }
        }
      } catch (err) {
        if (err?.name === "AbortError" || signal?.aborted) throw new DOMException("aborted", "AbortError");
        // dropped mid-stream: reconnect
      }
      // The stream ended before the run did (dropped, or the server closed an idle stream):
      // resume from lastSeq after a short pause, for as long as the run goes on.
      await sleep(1000, signal);
      continue;
    }
    failures += 1;
    if (failures > 8) throw new HttpError(0, "Lost the event stream: the proxy stopped answering. Pick the run again to retry.");
    await sleep(Math.min(500 * 2 ** (failures - 1), 5000), signal);
  }
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        reject(new DOMException("aborted", "AbortError"));
      },
      { once: true },
    );
  });
}
