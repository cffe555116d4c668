// The peer network: every pool's peers, grouped by the model they serve, as the proxy
// lists them (GET /chorus/v1/peers): live or away, calls in flight against their limit,
// what they earned, their reputation. Peers seated in the run on screen are marked.
import { ago, fmtMinor, fmtNum, h, put } from "./util.js";

/** {pool -> {model -> [peer]}}, pools and models in name order, peers live first. */
export function groupPeers(peers) {
  const pools = new Map();
  for (const p of [...peers].sort((a, b) => (a.state === b.state ? a.peer_id.localeCompare(b.peer_id) : a.state === "live" ? -1 : 1))) {
    const models = pools.get(p.pool) ?? new Map();
    pools.set(p.pool, models);
    const list = models.get(p.model) ?? [];
    models.set(p.model, list);
    list.push(p);
  }
  const sorted = (m) => new Map([...m].sort(([a], [b]) => String(a).localeCompare(String(b))));
  return new Map([...sorted(pools)].map(([pool, models]) => [pool, sorted(models)]));
}

const runs = (n) => `${n} run${n === 1 ? "" : "s"}`;

function earned(totals) {
  return (totals ?? []).map((t) => fmtMinor(t.amount, t.currency)).join(" + ") || "—";
}

function peerTile(p, seated) {
  const load = p.load ?? 0;
  const max = Math.max(1, p.max_concurrency ?? 1);
  const score = p.reputation?.score;
  const short = p.peer_id.split(":")[1]?.slice(0, 8) ?? p.peer_id;
  return h("div", {
    class: `peer st-${p.state}${seated ? " seated" : ""}`, "data-testid": "peer",
    dataset: { peer: p.peer_id, state: p.state, load: String(load), seated: seated ? "1" : "" },
    title: `${p.peer_id}\npaid to ${p.payee}\nlast heartbeat ${ago(p.last_seen)}`,
  },
  h("div", { class: "peer-head" },
    h("span", { class: "dot" }), h("b", null, p.payee), h("span", { class: "muted mono" }, short),
    seated ? h("span", { class: "badge st-ok" }, "in this run") : null,
    h("span", { class: `badge ${p.state === "live" ? "st-ok" : "st-cancelled"}` }, p.state)),
  h("div", { class: "peer-load", title: `${load} of ${max} calls in flight` },
    h("i", { style: { width: `${Math.min(100, (100 * load) / max)}%` } }),
    h("span", null, `load ${load}/${max}`)),
  h("div", { class: "peer-facts" },
    h("span", null, "earned ", h("b", { "data-testid": "peer-earned" }, earned(p.earnings))),
    h("span", null, "score ", h("b", null, score == null ? `new (${runs(p.reputation?.runs ?? 0)})` : fmtNum(score, 2))),
    p.price_per_token != null ? h("span", null, `$${fmtNum(p.price_per_token * 1e6, 2)}/Mtok`) : h("span", null, "free"),
    (p.personas ?? []).length ? h("span", { class: "muted" }, p.personas.join(", ")) : null));
}

export class NetworkView {
  constructor(root, sub) {
    this.root = root;
    this.sub = sub;
  }

  /** Draw the listing; `seated` is the set of peer ids on the run on screen. */
  render(listing, seated = new Set()) {
    const peers = listing?.peers ?? [];
    const live = peers.filter((p) => p.state === "live").length;
    const load = peers.reduce((s, p) => s + (p.load ?? 0), 0);
    const pools = groupPeers(peers);
    this.sub.textContent = peers.length
      ? `${pools.size} pool${pools.size === 1 ? "" : "s"} · ${live} live, ${peers.length - live} away · ${load} call${load === 1 ? "" : "s"} in flight`
      : "";
    if (!peers.length) {
      put(this.root, h("p", { class: "muted" }, "No peers have joined. A peer runs ",
        h("code", null, "chorus peer join --proxy URL --pool NAME --base-url URL --model M --payee X"),
        " (docs/peers.md)."));
      return { pools: 0, live, away: 0, load };
    }
    put(this.root, [...pools].map(([pool, models]) =>
      h("div", { class: "pool", "data-testid": "pool", dataset: { pool } },
        h("h3", null, "pool ", h("b", null, pool)),
        [...models].map(([model, list]) =>
          h("div", { class: "model-group", "data-testid": "model-group", dataset: { model } },
            h("div", { class: "model-name" }, h("code", null, model), h("span", { class: "muted" }, ` ${list.length} peer${list.length === 1 ? "" : "s"}`)),
            h("div", { class: "peers" }, list.map((p) => peerTile(p, seated.has(p.peer_id)))))))));
    return { pools: pools.size, live, away: peers.length - live, load };
  }
}
