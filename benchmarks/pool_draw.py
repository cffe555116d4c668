"""What drawing a panel from a peer pool adds to a run's critical path, by pool size.

A pool profile does three things before its panel is asked, on every run: read the
pool's live peers from the store (`PeerSync.available`: one read, then a filter by the
peers this worker's Router holds), read their reputation (one read), and seat them
(`core/stages/draw.py`, pure). This measures the three together, per run, for pools of
3 to 1,000 registered peers on each backend (SQLite file; a real redis-server on
loopback), with `select: reputation` (the default, and the one that reads scores),
`seats: 5`, every peer live and deployed, and half of them with a score.

The ratio is against the critical-path floor of a fused run as benchmarks/fusion_latency.py
measures it (panel + judge + synthesis at L = 2 s per upstream call: 6 s); a hosted
model's single call is usually 1-10 s, so the ratio is the overhead's order of size.

Run: python benchmarks/pool_draw.py [--runs 200]
Writes benchmarks/results/pool_draw.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import write  # noqa: E402

from chorus_litellm.market import peers  # noqa: E402
from chorus_litellm.observe.netguard import Allowlist  # noqa: E402
from chorus_litellm.market.sync import PeerSync  # noqa: E402
from chorus_litellm.storage.redis_backend import RedisStore  # noqa: E402
from chorus_litellm.storage.sqlite_backend import SQLiteStore  # noqa: E402
from chorus_litellm.core.config import parse_profile  # noqa: E402
from chorus_litellm.core.stages import draw
from chorus_litellm.core.stages import prompts
from chorus_litellm.core.stages import reputation  # noqa: E402

SIZES = (3, 30, 300, 1000)
FLOOR_S = 6.0  # benchmarks/fusion_latency.py: 3 x L, L = 2 s


def record(n: int) -> dict:
    return {"peer_id": f"ed25519:{n:016x}", "pool": "bench", "base_url": "http://10.0.0.1/v1", "model": f"m{n % 7}",
            "payee": f"payee-{n}", "personas": [], "max_concurrency": 2, "price_per_token": None,
            "registered_at": 1.0}


async def fill(store, size: int) -> PeerSync:
    now = store.clock()
    for n in range(size):
        await store.put_peer(record(n)["peer_id"], "bench", record(n), now, n + 1)
    await store.add_reputation({record(n)["peer_id"]: {"runs": 10, "eligible": 9, "impact_ratio": 9.0 * (n % 3)}
                                for n in range(0, size, 2)})
    sync = PeerSync(store, lambda: None, peers.Policy(admission="open", away_after_s=60), Allowlist.parse(""))
    sync.deployed = {record(n)["peer_id"]: record(n) for n in range(size)}  # every peer in the Router
    return sync


async def one_run(store, sync: PeerSync, config, rng: random.Random) -> int:
    """The pipeline's seat step for a pool profile (pipeline._seats, pool part)."""
    offers = await sync.available("bench")
    counters = await store.reputation(sorted(o["peer_id"] for o in offers))
    scores = {k: reputation.summary(c, config.reputation.min_runs)["score"] for k, c in counters.items()}
    return len(draw.draw(offers, config, scores, list(prompts.PERSONAS), rng).seats)


async def measure(store, size: int, runs: int) -> dict:
    config = parse_profile("bench", {"panel": {"pool": "bench", "seats": 5, "min_quorum": 3},
                                     "aggregator": {"judge": "j", "synthesizer": "w"}}).panel
    sync, rng = await fill(store, size), random.Random(0)
    for _ in range(5):  # warm the connection and caches
        await one_run(store, sync, config, rng)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        assert await one_run(store, sync, config, rng) == min(5, size)
        times.append(time.perf_counter() - t)
    times.sort()
    p50, p95 = statistics.median(times), times[int(0.95 * (len(times) - 1))]
    return {"peers": size, "runs": runs, "p50_ms": round(p50 * 1000, 3), "p95_ms": round(p95 * 1000, 3),
            "p50_of_floor": round(p50 / FLOOR_S, 6)}


def progress(done: int, total: int, label: str) -> None:
    bar = "#" * int(30 * done / total)
    print(f"\r[{bar:<30}] {done}/{total} {label:<24}", end="", file=sys.stderr, flush=True)


async def main(runs: int) -> dict:
    rows, total, done = [], 2 * len(SIZES), 0
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", "0", "--unixsocket",
                                   f"{tmp}/redis.sock", "--save", ""], stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            for backend in ("sqlite", "redis"):
                for size in SIZES:
                    progress(done, total, f"{backend}, {size} peers")
                    if backend == "sqlite":
                        store = SQLiteStore(f"{tmp}/{size}.sqlite3", outbox=f"{tmp}/{size}.outbox.sqlite3")
                    else:
                        store = RedisStore(f"unix://{tmp}/redis.sock", outbox=f"{tmp}/r{size}.outbox.sqlite3",
                                           prefix=f"bench{size}")
                    rows.append({"backend": backend, **await measure(store, size, runs)})
                    await store.aclose()
                    done += 1
            progress(done, total, "done")
            print(file=sys.stderr)
        finally:
            server.terminate()
            server.wait()
    return {"benchmark": "pool_draw", "seats": 5, "select": "reputation", "floor_s": FLOOR_S, "rows": rows,
            "machine": {"python": platform.python_version(), "platform": platform.platform()}}


def table(result: dict) -> str:
    lines = [f"Seat step of a pool profile (read live peers, read scores, draw {result['seats']} seats by "
             f"{result['select']}), per run; floor = {result['floor_s']:g} s (fusion_latency.py).", "",
             "| backend | peers in pool | runs | p50 (ms) | p95 (ms) | p50 / floor |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['backend']} | {r['peers']} | {r['runs']} | {r['p50_ms']} | {r['p95_ms']} | "
                     f"{r['p50_of_floor']:.6f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pool_draw"))
    args = parser.parse_args()
    result = asyncio.run(main(args.runs))
    write(args.out, result, table(result))
