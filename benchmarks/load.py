"""Load: throughput, proxy CPU per request and tail latency, through the real LiteLLM proxy.

A fake upstream answers every call after a fixed latency L (default 0.2 s); the proxy
runs with 2 workers. Four cases: `plain` (one model call), `moa` (3 panel members, judge,
synthesizer: 5 inner calls, run event log on), `moa+bounty` (the same with a default
bounty: settlement and an Ed25519-signed receipt per request) and `debate2` (3 members,
2 fixed rounds). Measured:

- closed-loop saturation per case: C clients (--concurrency) each send their next request
  as soon as the last one finished, for --requests requests after a warm-up of 2C requests.
  Requests/s, p50/p99 latency, errors, and proxy CPU seconds per request: user + system
  CPU of the proxy's whole process tree (master and workers, from /proc; the fake upstream
  is a separate process) across the measured window / requests, and each worker's CPU
  seconds (how evenly the workers share the load). Ratio to `plain`, targets moa <= 5.0
  and moa+bounty <= 5.5. A moa+bounty answer without its settlement receipt is an error;
- burst: --burst requests sent at once, half streamed (latency: to the last chunk), for
  plain, moa and moa+bounty; target p50(moa+bounty) / p50(moa) <= 1.2;
- concurrency 1: 5 sequential plain, moa and moa+bounty requests, p50 / floor (L for
  plain; 3L for a fusion: panel, judge, synthesis); target <= 1.05, report only.

--embedding-model NAME runs every profile on another embedder (e.g. the transformer,
packaged:all-MiniLM-L6-v2, for the before/after comparison); default: the profile default.

Run: python benchmarks/load.py [--latency 0.2] [--concurrency 32] [--requests 200] [--burst 200]
Writes benchmarks/results/load.{json,md} (--out to change) and prints the tables.

--profile-worker S: during the moa+bounty closed-loop case, py-spy samples each proxy
worker for S seconds (a flamegraph <out>.<pid>.svg each) and the busiest one (most CPU in
the warm-up) also as raw collapsed stacks (<out>.<pid>.txt: one stack per line, root
first, then its sample count; grep it). py-spy is no package dependency: pip install
py-spy. It takes CPU from the proxy on a small machine: the profiled case's numbers are not
comparable with an unprofiled run's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import write  # noqa: E402
from fusion_latency import HARD, MASTER, pct  # noqa: E402

from chorus_litellm.testing import TEST_SIGNING_SEED  # noqa: E402
from tests.servers import children, fake_upstream, fusion_entry, litellm_proxy, model_entry  # noqa: E402
from tests.servers import process_tree as tree  # noqa: E402

CASES = {"plain": "model-a", "moa": "fusion/moa", "moa+bounty": "fusion/moa-bounty", "debate2": "fusion/debate2"}
CPU_TARGETS = {"moa": 5.0, "moa+bounty": 5.5}
BURST_TARGET, SEQUENTIAL_TARGET = 1.2, 1.05


def config(upstream: str, embedding_model: str | None) -> dict:
    # min_quorum 3: every run waits for all three members, so each request does the same work.
    base = {"panel": {"members": ["model-a", "model-b", "model-c"], "min_quorum": 3, "timeout_s": 120},
            "aggregator": {"judge": "judge", "synthesizer": "writer"},
            "debate": {"embedding_model": embedding_model} if embedding_model else {}}
    return {
        "model_list": [
            *(model_entry(n, upstream) for n in ["model-a", "model-b", "model-c", "judge", "writer"]),
            fusion_entry("moa", base),
            fusion_entry("moa-bounty", {**base, "settlement": {"default_bounty": {"amount": 1000, "currency": "USD"}}}),
            fusion_entry("debate2", {**base, "debate": {**base["debate"], "protocol": "debate", "max_rounds": 2,
                                                        "adaptive_stop": False}}),
        ],
        "litellm_settings": {
            "custom_provider_map": [{"provider": "fusion", "custom_handler": "chorus_litellm.proxy_handler"}],
        },
        "general_settings": {"master_key": MASTER},
    }


# -- the proxy's process tree, from /proc ------------------------------------------------
def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def cpu_seconds(root: int) -> dict[int, float]:
    """User + system CPU seconds of each process in the tree (all its threads)."""
    seconds = {}
    for pid in tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return seconds


def spent(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    return {pid: after[pid] - before.get(pid, 0.0) for pid in after}


async def settled(root: int, timeout: float = 180.0) -> float:
    """Wait until the proxy is idle (its start-up work, e.g. loading the embedding model in
    the background, would otherwise land in the first case's CPU); the seconds waited."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        before = cpu_seconds(root)
        await asyncio.sleep(1.0)
        if sum(spent(before, cpu_seconds(root)).values()) < 0.05:
            break
    return round(time.perf_counter() - started, 1)


def proxy_pid(port: int) -> int:
    """Our child that runs `litellm ... --port <port>`: fake_upstream is another child, not below it."""
    (pid,) = [p for p in children(os.getpid()) if "litellm" in cmdline(p) and f"--port {port} " in cmdline(p)]
    return pid


def worker_pids(root: int) -> list[int]:
    return [p for p in tree(root)[1:] if "spawn_main" in cmdline(p) and "resource_tracker" not in cmdline(p)]


# -- requests ------------------------------------------------------------------------------
async def one(client: openai.AsyncOpenAI, case: str, stream: bool) -> float:
    """Seconds to the whole answer (a stream's last chunk); a bounty run must carry its receipt."""
    started = time.perf_counter()
    resp = await client.chat.completions.create(model=CASES[case], messages=HARD, stream=stream)
    if stream:
        extra = {}
        async for chunk in resp:
            extra = (chunk.model_extra or {}).get("provider_specific_fields") or extra
    else:
        extra = resp.model_extra or {}
    if case == "moa+bounty" and "receipt_id" not in ((extra.get("chorus") or {}).get("settlement") or {}):
        raise RuntimeError("no settlement receipt in the response")
    return time.perf_counter() - started


async def run_all(client, case: str, n: int, concurrency: int, stream_every: int = 0, bar=None):
    """n requests, at most `concurrency` in flight; every `stream_every`-th streamed."""
    lat, errors, sem = [], {}, asyncio.Semaphore(concurrency)

    async def guarded(i: int) -> None:
        async with sem:
            try:
                lat.append(await one(client, case, bool(stream_every) and i % stream_every == 0))
            except Exception as exc:  # noqa: BLE001 - counted and reported
                cause = f" ({type(exc.__cause__).__name__})" if exc.__cause__ else ""
                key = f"{type(exc).__name__}{cause}: {str(exc)[:120]}"
                errors[key] = errors.get(key, 0) + 1
            if bar is not None:
                bar.update()

    await asyncio.gather(*(guarded(i) for i in range(n)))
    return lat, errors


def stats(lat: list[float], errors: dict, n: int, wall: float) -> dict:
    ok = lat or [float("nan")]
    return {"requests": n, "errors": sum(errors.values()), "error_kinds": errors, "wall_s": round(wall, 2),
            "rps": round(n / wall, 2), "p50_s": round(statistics.median(ok), 4), "p99_s": round(pct(ok, 0.99), 4)}


def profile(pids: list[int], seconds: int, out: str) -> list[subprocess.Popen]:
    spy = str(Path(sys.executable).with_name("py-spy"))
    cmd = lambda pid, fmt, ext: [spy, "record", "--nonblocking", "-d", str(seconds), "--pid", str(pid),  # noqa: E731
                                 "--format", fmt, "-o", f"{out}.{pid}.{ext}"]
    procs = [subprocess.Popen(cmd(pid, "flamegraph", "svg"), stdout=subprocess.DEVNULL) for pid in pids]
    return procs + [subprocess.Popen(cmd(pids[0], "raw", "txt"), stdout=subprocess.DEVNULL)]


async def run(args) -> dict:
    L, C = args.latency, args.concurrency
    env = {"CHORUS_SIGNING_KEY": base64.b64encode(TEST_SIGNING_SEED).decode()}
    http = openai.DefaultAsyncHttpxClient(limits=httpx.Limits(max_connections=400, max_keepalive_connections=400))
    closed, burst, sequential = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp, fake_upstream(latency=L) as up:
        env.update(CHORUS_DB_PATH=f"{tmp}/chorus.sqlite3", CHORUS_OUTBOX_PATH=f"{tmp}/outbox.sqlite3")
        with litellm_proxy(config(up, args.embedding_model), Path(tmp), env=env, workers=args.workers) as (url, _):
            root = proxy_pid(int(url.rsplit(":", 1)[1]))
            client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=MASTER, max_retries=0, timeout=600,
                                        http_client=http)
            pids = worker_pids(root)
            settle_s = await settled(root)
            for case in CASES:
                # Warm-up: imports, the embedding model, connection pools, in every worker.
                before = cpu_seconds(root)
                await run_all(client, case, 2 * C, C)
                warm = spent(before, cpu_seconds(root))
                idle = [p for p in pids if warm.get(p, 0) < 0.05]
                if idle:
                    print(f"warning: worker(s) {idle} idle in the {case} warm-up (no connection of theirs?): "
                          "any first-request costs of theirs land in the measurement", file=sys.stderr)
                spies = profile(sorted(pids, key=lambda p: -warm.get(p, 0)), args.profile_worker, args.out) \
                    if args.profile_worker and case == "moa+bounty" else []
                with tqdm(total=args.requests, desc=f"{case} closed loop", leave=False) as bar:
                    before, t0 = cpu_seconds(root), time.perf_counter()
                    lat, errors = await run_all(client, case, args.requests, C, bar=bar)
                    wall, cpu = time.perf_counter() - t0, spent(before, cpu_seconds(root))
                for spy in spies:
                    spy.wait()
                closed[case] = {**stats(lat, errors, args.requests, wall),
                                "cpu_s_per_request": round(sum(cpu.values()) / args.requests, 5),
                                "worker_cpu_s": [round(cpu.get(p, 0), 2) for p in pids],
                                # uvicorn kills a worker that misses its 5 s health check (a slow
                                # start on a busy machine) and starts another: CPU then is not per request.
                                "worker_restarts": len(set(worker_pids(root)) - set(pids))}
                pids = worker_pids(root)
            for case in ("plain", "moa", "moa+bounty"):
                with tqdm(total=args.burst, desc=f"{case} burst", leave=False) as bar:
                    t0 = time.perf_counter()
                    lat, errors = await run_all(client, case, args.burst, args.burst, stream_every=2, bar=bar)
                    burst[case] = stats(lat, errors, args.burst, time.perf_counter() - t0)
            for case, floor in (("plain", L), ("moa", 3 * L), ("moa+bounty", 3 * L)):
                lat, errors = await run_all(client, case, args.sequential, 1)
                p50 = statistics.median(lat or [float("nan")])
                sequential[case] = {"requests": args.sequential, "errors": sum(errors.values()),
                                    "p50_s": round(p50, 4), "floor_s": floor, "p50_over_floor": round(p50 / floor, 3)}
    plain = closed["plain"]["cpu_s_per_request"]
    for case, row in closed.items():
        row["cpu_over_plain"] = round(row["cpu_s_per_request"] / plain, 2) if plain else None
        row["target"] = CPU_TARGETS.get(case)
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()  # noqa: E731
    return {
        "benchmark": "load", "latency_L_s": L, "proxy_workers": args.workers, "concurrency": C,
        "embedding_model": args.embedding_model or "profile default", "idle_wait_after_start_s": settle_s,
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "profiled": bool(args.profile_worker),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "closed_loop": closed, "burst": burst,
        "burst_p50_bounty_over_moa": {"ratio": round(burst["moa+bounty"]["p50_s"] / burst["moa"]["p50_s"], 3),
                                      "target": BURST_TARGET},
        "sequential": sequential, "sequential_target": SEQUENTIAL_TARGET,
    }


def table(r: dict) -> str:
    target = lambda t: f"<= {t}" if t else "-"  # noqa: E731
    lines = [f"L = {r['latency_L_s']} s per upstream call, {r['proxy_workers']} proxy workers, "
             f"{r['machine']['cpus']} CPUs, embedding model: {r['embedding_model']}, commit {r['git_commit']}{' + local changes' * r['git_dirty']}"
             f"{', profiled' * r['profiled']}.", "",
             f"Closed loop, {r['concurrency']} clients:", "",
             "| case | requests | errors | req/s | p50 (s) | p99 (s) | proxy CPU s / req | CPU / plain | target "
             "| CPU s per worker |", "|---|---|---|---|---|---|---|---|---|---|"]
    for case, x in r["closed_loop"].items():
        lines.append(f"| {case} | {x['requests']} | {x['errors']} | {x['rps']} | {x['p50_s']} | {x['p99_s']} | "
                     f"{x['cpu_s_per_request']} | {x['cpu_over_plain']} | {target(x['target'])} | "
                     f"{' / '.join(map(str, x['worker_cpu_s']))} |")
    b = r["burst_p50_bounty_over_moa"]
    lines += ["", "Burst, all at once, half streamed (latency to the last chunk):", "",
              "| case | requests | errors | p50 (s) | p99 (s) | wall (s) |", "|---|---|---|---|---|---|"]
    lines += [f"| {case} | {x['requests']} | {x['errors']} | {x['p50_s']} | {x['p99_s']} | {x['wall_s']} |"
              for case, x in r["burst"].items()]
    lines += ["", f"Burst p50 moa+bounty / moa: {b['ratio']} (target <= {b['target']}).", "",
              "Concurrency 1 (report only):", "",
              "| case | requests | errors | p50 (s) | floor (s) | p50 / floor | target |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {case} | {x['requests']} | {x['errors']} | {x['p50_s']} | {x['floor_s']:g} | "
              f"{x['p50_over_floor']} | <= {r['sequential_target']} |" for case, x in r["sequential"].items()]
    errors = {f"{where} {case}": x["error_kinds"] for where in ("closed_loop", "burst")
              for case, x in r[where].items() if x["error_kinds"]}
    errors.update({f"closed_loop {case} restarts": f"{x['worker_restarts']} worker(s) restarted: CPU figures not valid"
                   for case, x in r["closed_loop"].items() if x["worker_restarts"]})
    lines += ["", "Errors:", ""] + [f"- {k}: {v}" for k, v in errors.items()] if errors else []
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="L: seconds per upstream call")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients")
    parser.add_argument("--requests", type=int, default=200, help="closed-loop requests per case")
    parser.add_argument("--burst", type=int, default=200, help="requests sent at once per burst case")
    parser.add_argument("--sequential", type=int, default=5, help="requests per case at concurrency 1")
    parser.add_argument("--workers", type=int, default=2, help="proxy worker processes")
    parser.add_argument("--embedding-model", help="every profile's debate.embedding_model")
    parser.add_argument("--profile-worker", type=int, metavar="SECONDS",
                        help="py-spy the workers for SECONDS during the moa+bounty closed loop")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "load"))
    args = parser.parse_args()
    if args.profile_worker and not Path(sys.executable).with_name("py-spy").exists():
        parser.error("--profile-worker needs py-spy in this environment: pip install py-spy")
    started = time.perf_counter()
    result = asyncio.run(run(args))
    result["run_wall_s"] = round(time.perf_counter() - started, 1)
    write(args.out, result, table(result))


if __name__ == "__main__":
    main()
