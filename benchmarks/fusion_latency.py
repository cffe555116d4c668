"""Fusion latency against its critical-path floor, through the real LiteLLM proxy.

A fake upstream answers every call after a fixed latency L. A fused request cannot beat
panel L + judge L + synthesis L = 3L (the floor), so we report latency / floor:

- fused, non-streaming, p50 and p95, at concurrency 1 and 64;
- the same with one panel member answering at 10 x L (a straggler cut by the quorum grace);
- streaming time to first content token / (panel + judge + synthesizer's first token);
- a single-model request through the same proxy, for reference (floor L);
- the fused case with the run event log off (`storage.events: false`): the log's cost is
  the ratio fused / fused-without-events (target <= 1.02 at both concurrencies).

Run: python benchmarks/fusion_latency.py [--latency 2.0] [--requests 128]
Writes benchmarks/results/fusion_latency.{json,md} and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import write  # noqa: E402
from tests.servers import fake_upstream, fusion_entry, litellm_proxy, model_entry  # noqa: E402

HARD = [{"role": "user", "content": "Compare Raft and Paxos and explain the trade-offs in detail."}]
MASTER = "sk-chorus-bench-7d1e0b9c4a2f6e83"
TARGETS = {"fused": {1: 1.05, 64: 1.15}, "straggler": {1: 1.25, 64: 1.25}}


def config(upstream: str, grace: float | None) -> dict:
    def profile(members):
        panel = {"members": members, "min_quorum": 2, "timeout_s": 120}
        if grace is not None:
            panel["quorum_grace_s"] = grace
        return {"panel": panel,
                "aggregator": {"judge": "judge", "synthesizer": "writer"}}

    names = ["model-a", "model-b", "model-c", "slow-c", "judge", "writer"]
    return {
        "model_list": [
            *(model_entry(n, upstream) for n in names),
            fusion_entry("bench", profile(["model-a", "model-b", "model-c"])),
            fusion_entry("straggler", profile(["model-a", "model-b", "slow-c"])),
            fusion_entry("quiet", {**profile(["model-a", "model-b", "model-c"]), "storage": {"events": False}}),
        ],
        "litellm_settings": {
            "custom_provider_map": [{"provider": "fusion", "custom_handler": "chorus_litellm.proxy_handler"}],
        },
        "general_settings": {"master_key": MASTER},
    }


async def one(client: openai.AsyncOpenAI, model: str, stream: bool) -> float:
    started = time.perf_counter()
    if not stream:
        await client.chat.completions.create(model=model, messages=HARD)
        return time.perf_counter() - started
    first = None
    async for chunk in await client.chat.completions.create(model=model, messages=HARD, stream=True):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    return first if first is not None else float("nan")


async def measure(client, model: str, concurrency: int, requests: int, stream: bool = False) -> list[float]:
    sem = asyncio.Semaphore(concurrency)

    async def guarded():
        async with sem:
            return await one(client, model, stream)

    return list(await asyncio.gather(*(guarded() for _ in range(requests))))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def run(args) -> dict:
    L = args.latency
    rows = []
    with tempfile.TemporaryDirectory() as tmp, fake_upstream(latency=L) as up, \
            litellm_proxy(config(up, args.grace), Path(tmp), workers=args.workers) as (url, _):
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=MASTER, max_retries=0, timeout=600,
                                    http_client=None)
        await measure(client, "fusion/bench", 4, 4)  # warm-up: imports, connection pools
        await measure(client, "model-a", 4, 4)
        cases = [
            ("fused", "fusion/bench", False, 3 * L),
            ("straggler", "fusion/straggler", False, 3 * L),
            ("stream TTFT", "fusion/bench", True, 3 * L),
            ("single model", "model-a", False, L),
            ("fused, no events", "fusion/quiet", False, 3 * L),
        ]
        for concurrency in (1, 64):
            n = args.sequential if concurrency == 1 else args.requests
            for name, model, stream, floor in cases:
                started = time.perf_counter()
                lat = await measure(client, model, concurrency, n, stream)
                wall = time.perf_counter() - started
                rows.append({
                    "case": name, "concurrency": concurrency, "requests": n, "floor_s": floor,
                    "p50_s": round(statistics.median(lat), 4), "p95_s": round(pct(lat, 0.95), 4),
                    "p50_ratio": round(statistics.median(lat) / floor, 3),
                    "p95_ratio": round(pct(lat, 0.95) / floor, 3),
                    "target": TARGETS.get(name, {}).get(concurrency),
                    "throughput_rps": round(n / wall, 2),
                })
                print(f"{name:17s} c={concurrency:<3d} p50/floor={rows[-1]['p50_ratio']:.3f} "
                      f"p95/floor={rows[-1]['p95_ratio']:.3f}", flush=True)
    by = {(r["case"], r["concurrency"]): r for r in rows}
    events_cost = {c: {"p50_ratio": round(by["fused", c]["p50_s"] / by["fused, no events", c]["p50_s"], 4),
                       "p95_ratio": round(by["fused", c]["p95_s"] / by["fused, no events", c]["p95_s"], 4),
                       "target": 1.02} for c in (1, 64)}
    return {
        "benchmark": "fusion_latency",
        "events_on_over_off": events_cost,
        "latency_L_s": L, "quorum_grace_s": args.grace, "proxy_workers": args.workers,
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count(),
                    "platform": platform.platform()},
        "rows": rows,
    }


def table(result: dict) -> str:
    lines = [
        f"L = {result['latency_L_s']} s per upstream call, quorum grace "
        f"{result['quorum_grace_s'] or 'min(2 s, 0.2 x time-to-quorum) (profile default)'}, "
        f"{result['proxy_workers']} proxy worker(s), {result['machine']['cpus']} CPUs.",
        "",
        "| case | concurrency | requests | floor (s) | p50 (s) | p95 (s) | p50 / floor | p95 / floor | target | req/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        target = f"<= {r['target']}" if r["target"] else "-"
        lines.append(f"| {r['case']} | {r['concurrency']} | {r['requests']} | {r['floor_s']:g} | {r['p50_s']} | "
                     f"{r['p95_s']} | {r['p50_ratio']} | {r['p95_ratio']} | {target} | {r['throughput_rps']} |")
    lines += ["", "Run event log (live view) on / off, fused requests:", "",
              "| concurrency | p50 on / off | p95 on / off | target |", "|---|---|---|---|"]
    for c, r in result["events_on_over_off"].items():
        lines.append(f"| {c} | {r['p50_ratio']} | {r['p95_ratio']} | <= {r['target']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=2.0, help="L: seconds per upstream call")
    parser.add_argument("--grace", type=float, default=None, help="panel.quorum_grace_s (default: the profile default)")
    parser.add_argument("--requests", type=int, default=128, help="requests per case at concurrency 64")
    parser.add_argument("--sequential", type=int, default=5, help="requests per case at concurrency 1")
    parser.add_argument("--workers", type=int, default=__import__("os").cpu_count() or 1,
                        help="proxy worker processes (default: one per core, as `chorus serve`)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fusion_latency"))
    args = parser.parse_args()
    result = asyncio.run(run(args))
    write(args.out, result, table(result))


if __name__ == "__main__":
    main()
