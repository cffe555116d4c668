"""Dev harness for the run viewer: serves ../static at /chorus/ui/ and fakes the proxy's API.

Stdlib only. Runs replay on a clock, so the page sees them live:

    python chorus_litellm/ui/src/dev_server.py --port 8787 --key sk-dev --speed 2
    open http://127.0.0.1:8787/chorus/ui/?run=demo-sample   (key: sk-dev)

Seeded runs (each starts its clock the first time its events are asked for, then stays done):
  demo-sample  sample-run.json: 5 seats x 3 rounds, a timeout in round 1, an echo in round 2
  demo-big     synthetic: 10 seats x 5 rounds
  demo-failed  quorum not met: run_failed (502)
  demo-single  routed to a single model: no rounds
"Try a prompt" (POST /v1/chat/completions) starts a new run with the page's debate id: the
sample, or by keyword in the prompt: "big", "fail" (502 after round 1), "single", "400"
(refused with a 400 before any run exists), "deg" (degraded judge, unsettled bounty).
--drop-after N cuts each run's first event stream after N events (tests Last-Event-ID resume).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import mimetypes
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse
import contextlib

HERE = Path(__file__).resolve().parent
STATIC = (HERE.parent / "static").resolve()
TERMINAL = {"run_done", "run_failed"}


# ---------------------------------------------------------------- runs


class Run:
    """A scripted event list (offsets in seconds from the start) replayed on a clock."""

    def __init__(self, run_id: str, script: list[tuple[float, str, dict]], *, speed: float, lazy: bool):
        self.id = run_id
        self.script = sorted(script, key=lambda e: e[0])
        self.speed = speed
        self.start = None if lazy else time.time()
        self.created = time.time()
        self.connections = 0
        self.lock = threading.Lock()

    def begin(self) -> None:
        with self.lock:
            if self.start is None:
                self.start = time.time()

    def envelopes(self) -> list[dict]:
        base = self.start or self.created
        out = []
        for seq, (offset, typ, data) in enumerate(self.script, 1):
            if typ == "settled" and data.get("receipt_url"):
                data = {**data, "receipt_url": f"/chorus/v1/receipts/{self.id}"}
            out.append({"seq": seq, "type": typ, "time": round(base + offset / self.speed, 3), "data": data,
                        "_due": offset / self.speed})
        return out

    def elapsed(self) -> float:
        return -1.0 if self.start is None else time.time() - self.start

    def released(self) -> list[dict]:
        el = self.elapsed()
        return [e for e in self.envelopes() if e["_due"] <= el]

    def summary(self) -> dict:
        info = next((d for _, t, d in self.script if t == "run_started"), {})
        rel = self.released()
        state = "running"
        if rel and rel[-1]["type"] == "run_done":
            state = "done"
        elif rel and rel[-1]["type"] == "run_failed":
            state = "failed"
        done = next((e["data"] for e in rel if e["type"] == "run_done"), None)
        cost = done["cost"] if done else sum(e["data"].get("cost", 0) for e in rel if e["type"] == "answer")
        return {
            "id": self.id, "profile": info.get("profile"), "protocol": info.get("protocol"),
            "model": info.get("model"), "started": round(self.start or self.created, 3),
            "updated": rel[-1]["time"] if rel else round(self.start or self.created, 3),
            "state": state, "cost": round(cost, 6),
            "rounds": sum(1 for e in rel if e["type"] == "round_done"), "prompt": info.get("prompt", ""),
        }


def load_sample(prompt: str | None = None) -> list[tuple[float, str, dict]]:
    events = json.loads((HERE / "sample-run.json").read_text())
    t0 = events[0]["time"]
    script = [(e["time"] - t0, e["type"], copy.deepcopy(e["data"])) for e in events]
    if prompt:
        script[0][2]["prompt"] = prompt
    return script


WORDS = ("latency budget cache shard replica quorum schema index migrate rollback canary feature flag "
         "monorepo pipeline tracing retry backoff idempotent contract vendor audit risk cost team").split()


def synthetic(n_seats: int, n_rounds: int, *, seed: int = 7, prompt: str | None = None,
              fail_after: int | None = None, degraded: bool = False) -> list[tuple[float, str, dict]]:
    """A plausible debate: answers start in 3-4 camps and mostly converge round by round."""
    rng = random.Random(seed)
    models = ["gpt-4o-mini", "claude-haiku", "gemini-flash", "llama-70b", "mistral-large", "qwen-72b",
              "deepseek-v3", "command-r", "phi-4", "grok-mini", "nova-pro", "yi-large"]
    personas = ["skeptic", "optimist", "analyst", "contrarian", None]
    seats = [{"seat": models[i % len(models)] + (f"#{i // len(models) + 1}" if i >= len(models) else ""),
              "model": models[i % len(models)], "persona": personas[i % len(personas)],
              "payee": f"peer:{chr(97 + i)}"} for i in range(n_seats)]
    names = [s["seat"] for s in seats]
    script: list[tuple[float, str, dict]] = []
    t = 0.0

    def add(dt: float, typ: str, data: dict) -> None:
        nonlocal t
        t += dt
        script.append((round(t, 3), typ, data))

    add(0.0, "run_started", {"profile": "debate-xl", "protocol": "debate", "model": "fusion/debate-xl",
                             "prompt": prompt or f"Synthetic stress run: {n_seats} seats x {n_rounds} rounds. Which rollout plan is safest?",
                             "seats": seats, "quorum": math.ceil(n_seats / 2) + (1 if fail_after else 0),
                             "max_rounds": n_rounds, "bounty": {"amount": 5000, "currency": "EUR"}})
    add(0.03, "route", {"decision": "fuse", "policy": "always", "reason": "profile always fuses", "score": None})
    camps = [(rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-1, 1)) for _ in range(4)]
    camp_of = {s: rng.randrange(4) for s in names}
    pos: dict[str, tuple[float, float, float]] = {}
    points: list[dict] = []
    prev_cluster: dict[str, int] = {}
    seat_cost = dict.fromkeys(names, 0.0)
    for r in range(1, n_rounds + 1):
        add(0.1, "round_started", {"round": r, "stage": "panel" if r == 1 else "debate", "seats": names})
        pull = min(0.85, 0.22 * (r - 1))  # how far each answer moves to the common centre
        answered, filtered, failed = [], {}, set()
        order = names[:]
        rng.shuffle(order)
        for s in order:
            lat = round(rng.uniform(0.8, 3.5), 2)
            fail = (r == 1 and rng.random() < 0.12) or (fail_after is not None and r == fail_after and rng.random() < 0.7)
            cost = round(rng.uniform(0.0002, 0.002), 6)
            seat_cost[s] += cost
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(25, 70))).capitalize() + "."
            base = {"round": r, "seat": s, "model": s.split("#")[0], "latency_s": lat,
                    "tokens": {"prompt": 200 + 400 * (r - 1), "completion": rng.randint(60, 240)}, "cost": cost,
                    "truncated": False, "kind": None, "detail": None, "reason": None}
            if fail:
                failed.add(s)
                add(rng.uniform(0.05, 0.25), "answer", {**base, "status": "failed", "text": "", "kind": "timeout",
                                                         "detail": f"no answer within {lat + 4:.1f} s"})
                continue
            add(rng.uniform(0.05, 0.25), "answer", {**base, "status": "ok", "text": f"[{s}, round {r}] {text}"})
            if r > 1 and rng.random() < 0.08:
                filtered[s] = rng.choice(["copy", "parrot"])
                add(0.02, "answer", {**base, "status": "echo", "text": f"[{s}, round {r}] {text}", "reason": filtered[s]})
            answered.append(s)
        if fail_after is not None and r == fail_after:
            ok = len(answered)
            need = math.ceil(n_seats / 2) + 1
            add(0.2, "run_failed", {"status": 502, "error": {
                "type": "quorum_not_met",
                "message": f"quorum not met in round {r}: {ok} of {n_seats} seats answered, {need} needed"}})
            return script
        # Positions: each camp drifts to the centre; the contrarian camp 3 holds out.
        for s in answered:
            cx, cy, cz = camps[camp_of[s]]
            k = pull if camp_of[s] != 3 else pull * 0.3
            j = 0.18 * (1 - pull)
            pos[s] = (round(cx * (1 - k) + rng.gauss(0, j), 3), round(cy * (1 - k) + rng.gauss(0, j), 3),
                      round(cz * (1 - k) + rng.gauss(0, j), 3))
            if r > 2 and camp_of[s] in (1, 2) and rng.random() < 0.5:
                camp_of[s] = 0  # flips join the majority camp
        live = [s for s in answered if s not in filtered]
        groups: dict[int, list[str]] = {}
        for s in live:
            key = camp_of[s] if pull < 0.6 or camp_of[s] == 3 else 0
            groups.setdefault(key, []).append(s)
        clusters = sorted(groups.values(), key=len, reverse=True)
        cl_of = {s: i for i, c in enumerate(clusters) for s in c}
        centre = tuple(sum(pos[s][i] for s in live) / max(1, len(live)) for i in range(3))
        cons = min(clusters[0], key=lambda s: math.dist(pos[s], centre)) if clusters else None
        diss = max(live, key=lambda s: math.dist(pos[s], centre)) if len(clusters) > 1 else None
        flips = [{"seat": s, "round": r, "from": prev_cluster[s], "to": cl_of[s]}
                 for s in live if s in prev_cluster and prev_cluster[s] != cl_of[s] and r > 1 and rng.random() < 0.6]
        prev_cluster.update(cl_of)
        for s in answered:
            d = math.dist(pos[s], centre)
            points.append({"seat": s, "round": r, "x": pos[s][0], "y": pos[s][1], "z": pos[s][2],
                           "cluster": cl_of.get(s, -1), "centrality": round(max(0.05, 1 - d / 1.8), 3),
                           "voice": "consensus" if s == cons else "dissent" if s == diss else None,
                           "echo": s in filtered})
        links = []
        for s in live:
            near = sorted((x for x in live if x != s), key=lambda x: math.dist(pos[s], pos[x]))[:2]
            for x in near:
                sim = round(max(0.5, 1 - math.dist(pos[s], pos[x]) / 2.5), 3)
                if sim >= 0.6 and [x, s, sim] not in links:
                    links.append([s, x, sim])
        agreement = round(min(0.97, 0.35 + 0.14 * (r - 1) + rng.uniform(-0.03, 0.03)), 3)
        # the leading extracted answer's share: open-ended (null) in every third scenario
        answer_agreement = None if seed % 3 == 0 else round(min(1.0, 0.4 + 0.15 * (r - 1)), 3)
        add(0.2, "round_done", {"round": r, "agreement": agreement, "answer_agreement": answer_agreement,
                                "shift": None if r == 1 else round(0.3 / r + rng.uniform(0, 0.02), 3),
                                "clusters": clusters, "consensus": cons, "dissent": diss, "filtered": filtered,
                                "flips": flips, "vote": None, "links": links, "points": copy.deepcopy(points)})
    best = names[0]
    add(1.5, "judge_done", {"degraded": degraded, "error": "judge JSON unparseable after repair" if degraded else None,
                            "consensus": [] if degraded else [{"claim": "Roll out behind a feature flag to a canary first.", "support": names[: n_seats // 2]}],
                            "contradictions": [] if degraded else [{"claim": "Whether to migrate the schema before or after the rollout.", "support": names[-3:]}],
                            "insights": [] if degraded else [{"claim": "Idempotent retries make the rollback path safe.", "support": [names[-1]]}],
                            "blind_spots": [] if degraded else ["Cost of running both versions in parallel."],
                            "best": None if degraded else best, "duration_s": 1.4})
    add(0.1, "synthesis_started", {"model": "claude-haiku"})
    final = ("Safest plan: ship behind a feature flag, canary to 5% of traffic with automated rollback on error "
             "budget burn, migrate the schema in an expand/contract pair so both versions run, then ramp in "
             "steps of 25% with a soak period at each step. ") * 2
    for piece in re.findall(r"(?:\S+\s*){1,5}", final):
        add(0.05, "answer_delta", {"text": piece})
    amount = 5000
    eligible = [s for s in names if s in pos]
    eq = (amount * 3 // 4) // max(1, len(eligible))
    pool = amount - eq * len(eligible)
    weights = [rng.random() for _ in eligible]
    tot = sum(weights) or 1
    imp = [int(pool * w / tot) for w in weights]
    imp[0] += pool - sum(imp)
    payouts = [{"seat": s, "payee": next(x["payee"] for x in seats if x["seat"] == s), "amount": eq + i,
                "equal": eq, "impact": i} for s, i in zip(eligible, imp, strict=True)]
    if degraded:
        add(0.2, "settled", {"status": "unsettled", "receipt_id": None, "bounty": {"amount": amount, "currency": "EUR"},
                             "unallocated": amount, "payouts": [], "receipt_url": None,
                             "error": "the receipt could not be stored (store unavailable); nothing was paid"})
    else:
        add(0.2, "settled", {"status": "settled", "receipt_id": f"rcpt_synthetic{seed:04d}", "bounty": {"amount": amount, "currency": "EUR"},
                             "unallocated": 0, "payouts": payouts, "receipt_url": "/chorus/v1/receipts/x", "error": None})
    total = round(sum(seat_cost.values()) + 0.004, 6)
    tokens = sum(200 + 400 * (r - 1) + 150 for r in range(1, n_rounds + 1)) * n_seats
    add(0.1, "run_done", {"answer": final, "usage": {"prompt_tokens": int(tokens * 0.8), "completion_tokens": int(tokens * 0.2), "total_tokens": tokens},
                          "cost": total, "stages": {"panel": {"calls": n_seats, "prompt_tokens": 200 * n_seats, "completion_tokens": 150 * n_seats, "total_tokens": 350 * n_seats, "cost": round(total * 0.2, 6)},
                                                    "debate": {"calls": n_seats * (n_rounds - 1), "prompt_tokens": tokens - 350 * n_seats, "completion_tokens": 0, "total_tokens": tokens - 350 * n_seats, "cost": round(total * 0.7, 6)},
                                                    "judge": {"calls": 1, "prompt_tokens": 3000, "completion_tokens": 300, "total_tokens": 3300, "cost": 0.002},
                                                    "synthesis": {"calls": 1, "prompt_tokens": 3500, "completion_tokens": 120, "total_tokens": 3620, "cost": 0.002}},
                          "seats": {s: {"calls": n_rounds, "total_tokens": tokens // n_seats, "cost": round(c, 6)} for s, c in seat_cost.items()},
                          "timings": {"gate": 0.03, "panel": round(t - 1.8, 2), "judge": 1.4, "synthesis": 1.0, "total": round(t + 0.1, 2)},
                          "rounds": n_rounds, "stop_reason": "max_rounds", "fallback": False})
    return script


def single_run(prompt: str | None = None) -> list[tuple[float, str, dict]]:
    text = "Paris is the capital of France."
    return [
        (0.0, "run_started", {"profile": "auto", "protocol": "moa", "model": "fusion/auto", "prompt": prompt or "What is the capital of France?",
                              "seats": [{"seat": "gpt-4o-mini", "model": "gpt-4o-mini", "persona": None, "payee": "model:gpt-4o-mini"},
                                        {"seat": "claude-haiku", "model": "claude-haiku", "persona": None, "payee": "model:claude-haiku"}],
                              "quorum": 2, "max_rounds": 1, "bounty": None}),
        (0.05, "route", {"decision": "single", "policy": "auto", "reason": "factual lookup: difficulty 0.12 below 0.4", "score": 0.12}),
        (0.9, "run_done", {"answer": text, "usage": {"prompt_tokens": 24, "completion_tokens": 9, "total_tokens": 33}, "cost": 0.00002,
                           "stages": {"gate": {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost": 0},
                                      "forward": {"calls": 1, "prompt_tokens": 24, "completion_tokens": 9, "total_tokens": 33, "cost": 0.00002}},
                           "seats": {}, "timings": {"gate": 0.05, "total": 0.9}, "rounds": 0, "stop_reason": None, "fallback": False}),
    ]


# ---------------------------------------------------------------- server


class State:
    def __init__(self, args):
        self.args = args
        self.runs: dict[str, Run] = {}
        self.lock = threading.Lock()
        sp = args.speed
        self.add(Run("demo-sample", load_sample(), speed=sp, lazy=True))
        self.add(Run("demo-big", synthetic(10, 5), speed=sp, lazy=True))
        self.add(Run("demo-failed", synthetic(5, 3, seed=3, fail_after=2, prompt="Summarise the incident report (most upstreams are down)"), speed=sp, lazy=True))
        self.add(Run("demo-single", single_run(), speed=sp, lazy=True))

    def add(self, run: Run) -> None:
        with self.lock:
            self.runs[run.id] = run

    def get(self, run_id: str) -> Run | None:
        with self.lock:
            return self.runs.get(run_id)


def make_handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        server_version = "chorus-dev/1"

        def log_message(self, fmt, *a):  # quieter
            if not state.args.quiet:
                super().log_message(fmt, *a)

        # -- helpers
        def send_json(self, status: int, body) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def authorized(self) -> bool:
            auth = self.headers.get("Authorization", "")
            if auth == f"Bearer {state.args.key}":
                return True
            self.send_json(401, {"error": {"message": "Authentication Error, invalid proxy server token passed.",
                                           "type": "auth_error", "code": "401"}})
            return False

        # -- routes
        def do_GET(self):
            url = urlparse(self.path)
            path = url.path
            if path in ("/", "/chorus/ui"):
                self.send_response(302)
                self.send_header("Location", "/chorus/ui/" + (f"?{url.query}" if url.query else ""))
                self.end_headers()
                return
            if path.startswith("/chorus/ui/"):
                return self.static(path[len("/chorus/ui/"):])
            if not self.authorized():
                return
            if path == "/v1/models":
                ids = ["fusion/debate", "fusion/moa", "fusion/consensus", "gpt-4o-mini", "claude-haiku"]
                return self.send_json(200, {"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})
            if path == "/chorus/v1/models":  # the chorus profiles among them, as the proxy lists them
                models = [("fusion/consensus", "consensus"), ("fusion/debate", "debate"), ("fusion/moa", "moa")]
                return self.send_json(200, {"models": [{"id": i, "profile": i.split("/", 1)[1], "protocol": p}
                                                       for i, p in models]})
            if path == "/chorus/v1/profiles":  # read-only here: the config file's profiles, as an admin sees them
                block = {"panel": {"members": ["gpt-4o-mini", "claude-haiku"]},
                         "aggregator": {"judge": "gpt-4o-mini", "synthesizer": "claude-haiku"}}
                everywhere = {"workers": 2, "serving": 2, "versions": {"0": 2}, "complete": True}
                return self.send_json(200, {"workers": 2, "profiles": [
                    {"name": p, "model": f"fusion/{p}", "source": "config", "version": 0, "read_only": True,
                     "protocol": p, "profile": {**block, "debate": {"protocol": p}}, "rollout": everywhere}
                    for p in ("consensus", "debate", "moa")]})
            if path == "/chorus/v1/runs":
                limit = int(parse_qs(url.query).get("limit", ["20"])[0])
                with state.lock:
                    runs = [r.summary() for r in state.runs.values()]
                runs.sort(key=lambda r: (r["state"] != "running", -r["started"]))
                return self.send_json(200, {"runs": runs[:limit]})
            m = re.fullmatch(r"/chorus/v1/runs/([^/]+)/events", path)
            if m:
                wait = float(parse_qs(url.query).get("wait_s", ["2"])[0])
                return self.events(m.group(1), min(wait, 60.0))
            m = re.fullmatch(r"/chorus/v1/receipts/([^/]+)", path)
            if m:
                return self.send_json(200, {"payload": {"receipt_id": "rcpt_dev", "debate_id": m.group(1), "formula": "chorus-split/1",
                                                        "bounty": {"amount": 1000, "currency": "USD"}},
                                            "alg": "Ed25519", "key_id": "ed25519:0123456789abcdef", "signature": "ZmFrZS1zaWduYXR1cmU="})
            self.send_json(404, {"error": {"message": f"no route {path}"}})

        def do_POST(self):
            path = urlparse(self.path).path
            if path != "/v1/chat/completions":
                return self.send_json(404, {"error": {"message": f"no route {path}"}})
            if not self.authorized():
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0") or 0)) or b"{}")
            prompt = (body.get("messages") or [{}])[-1].get("content", "")
            run_id = (body.get("chorus") or {}).get("debate_id")
            model = body.get("model", "")
            if not str(model).startswith("fusion/"):
                return self.send_json(400, {"error": {"message": f"{model!r} is not a fusion model", "type": "invalid_request_error"}})
            if "400" in prompt:
                return self.send_json(400, {"error": {"message": "bounty.amount must be an integer number of minor units (cents)",
                                                      "type": "invalid_request_error", "param": "bounty.amount"}})
            if not run_id:
                return self.send_json(400, {"error": {"message": "dev server: send chorus.debate_id"}})
            if state.get(run_id):
                return self.send_json(409, {"error": {"message": f"debate id {run_id} already used with another request"}})
            sp = state.args.speed
            low = prompt.lower()
            if "fail" in low:
                script = synthetic(5, 3, seed=11, fail_after=1, prompt=prompt)
            elif "big" in low:
                script = synthetic(10, 5, seed=5, prompt=prompt)
            elif "single" in low:
                script = single_run(prompt)
            elif "deg" in low:
                script = synthetic(6, 3, seed=9, prompt=prompt, degraded=True)
            else:
                script = load_sample(prompt)
            time.sleep(state.args.post_delay)  # the run appears a moment after the page opens its stream
            run = Run(run_id, script, speed=sp, lazy=False)
            state.add(run)
            failed = next((d for _, t, d in script if t == "run_failed"), None)
            if failed:
                # The client gets a clean HTTP error once the quorum is known to be missed.
                due = next(o for o, t, _ in script if t == "run_failed") / sp
                time.sleep(max(0.0, due - run.elapsed()))
                return self.send_json(failed["status"], {"error": {"message": failed["error"]["message"], "type": failed["error"]["type"]}})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            try:
                for env in run.envelopes():
                    time.sleep(max(0.0, env["_due"] - run.elapsed()))
                    if env["type"] == "answer_delta":
                        chunk = {"id": run_id, "object": "chat.completion.chunk", "model": model,
                                 "choices": [{"index": 0, "delta": {"content": env["data"]["text"]}}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def events(self, run_id: str, wait_s: float) -> None:
            deadline = time.time() + wait_s
            run = state.get(run_id)
            while run is None and time.time() < deadline:
                time.sleep(0.1)
                run = state.get(run_id)
            if run is None:
                return self.send_json(404, {"error": {"message": f"run {run_id} not found"}})
            run.begin()
            with run.lock:
                run.connections += 1
                conn = run.connections
            last = int(self.headers.get("Last-Event-ID") or 0)
            drop_after = state.args.drop_after if conn == 1 else 0
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            sent = 0
            last_write = time.time()
            try:
                self.wfile.write(b": connected\n\n")
                self.wfile.flush()
                while True:
                    for env in run.released():
                        if env["seq"] <= last:
                            continue
                        out = {k: v for k, v in env.items() if not k.startswith("_")}
                        self.wfile.write(f"id: {env['seq']}\nevent: {env['type']}\ndata: {json.dumps(out)}\n\n".encode())
                        self.wfile.flush()
                        last, sent, last_write = env["seq"], sent + 1, time.time()
                        if env["type"] in TERMINAL:
                            return
                        if drop_after and sent >= drop_after:
                            return  # simulate a dropped connection
                    if time.time() - last_write > 3:
                        self.wfile.write(b": keep-alive\n\n")
                        self.wfile.flush()
                        last_write = time.time()
                    time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                return

        def static(self, rel: str) -> None:
            rel = rel or "index.html"
            target = (STATIC / rel).resolve()
            if (STATIC not in target.parents and target != STATIC) or not target.is_file():
                return self.send_json(404, {"error": {"message": "not found"}})
            data = target.read_bytes()
            ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            if ctype.startswith("text/") or ctype in ("application/javascript",):
                ctype += "; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8787)
    ap.add_argument("--key", default="sk-dev", help="the only Bearer key accepted")
    ap.add_argument("--speed", type=float, default=1.0, help="replay speed multiplier")
    ap.add_argument("--drop-after", type=int, default=0, help="cut each run's first stream after N events")
    ap.add_argument("--post-delay", type=float, default=0.3, help="seconds before a POSTed run exists")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    state = State(args)
    srv = ThreadingHTTPServer((args.host, args.port), make_handler(state))
    srv.daemon_threads = True
    print(f"run viewer dev server: http://{args.host}:{args.port}/chorus/ui/  (key {args.key})", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        srv.serve_forever()


if __name__ == "__main__":
    main()
