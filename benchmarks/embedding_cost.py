"""What the debate's embeddings cost: per round, under 32 concurrent debates, and the
longest event-loop stall.

A debate round has 4 agents whose 300-word answers arrive between 0.83 s and 1.0 s (the
upstream calls take about 1 s; up to 20 ms of seeded jitter per answer). The round runs
through the real engine (`core/stages/debate.py`) with each real embedder (the default static
model distilled from all-MiniLM-L6-v2, and the MiniLM transformer itself), and with a
free bag-of-words embedder as the no-embedding baseline. The difference is what
embedding adds to the round.
A 1 ms ticker measures how late the event loop runs while all this happens.

Run: python benchmarks/embedding_cost.py
Writes benchmarks/results/embedding_cost.{json,md}.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import write  # noqa: E402

from chorus_litellm.gateway.embeddings import PACKAGED, STATIC, BatchedEmbedder  # noqa: E402
from chorus_litellm.core.stages import debate  # noqa: E402
from chorus_litellm.core.stages.panel import seats  # noqa: E402
from chorus_litellm.testing import FakeCompleter, HashEmbedder, Reply  # noqa: E402
from tests.factories import context, profile, request  # noqa: E402

WORDS = ("the a of to and in that is for it as with was on be by this are or from at an but not "
         "system latency throughput consensus replica leader follower quorum partition network "
         "failure recovery log commit snapshot election timeout heartbeat client request write "
         "read consistency linearizable availability trade off design cost memory disk cache "
         "because however therefore first second finally consider evidence result argument").split()
QUESTION = "Compare Raft and Paxos for a geo-distributed database and recommend one."


def answer(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(300)) + ". The answer is A."


class Ticker:
    """Measures the event loop's worst lateness with a 1 ms periodic task."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + 0.001
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, loop.time() - expected)

    def __enter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc) -> None:
        self._task.cancel()


async def one_round(embedder, texts: list[str], jitter: list[float]) -> float:
    fake = FakeCompleter()
    members = [f"agent{i}" for i in range(4)]
    for i, (m, text) in enumerate(zip(members, texts, strict=True)):
        fake.enqueue(m, Reply(text, delay=0.85 + 0.05 * i - jitter[i]))
    prof = profile(panel={"members": members, "min_quorum": 4, "quorum_grace_s": 0},
                   debate={"protocol": "debate", "max_rounds": 1})
    req = request(prof, messages=[{"role": "user", "content": QUESTION}])
    ctx = context(req, fake, embedder=embedder)
    ctx.seats = seats(ctx.panel)
    started = time.perf_counter()
    async for _ in debate.deliberate(ctx):
        pass
    return time.perf_counter() - started


async def measure(embedder, debates: int, repeats: int) -> tuple[float, float]:
    walls, worst = [], 0.0
    for r in range(repeats):
        rngs = [random.Random(1000 * r + d) for d in range(debates)]
        texts = [[answer(rng) for _ in range(4)] for rng in rngs]  # made before the clock starts
        # Real calls never finish in the same microsecond: up to 20 ms of arrival jitter
        # keeps 32 fake debates from waking in one loop iteration (an artifact of the fake).
        jitter = [[rng.uniform(0, 0.02) for _ in range(4)] for rng in rngs]
        with Ticker() as ticker:
            t = time.perf_counter()
            await asyncio.gather(*(one_round(embedder, t4, j) for t4, j in zip(texts, jitter, strict=True)))
            walls.append(time.perf_counter() - t)
        worst = max(worst, ticker.worst)
    walls.sort()
    return walls[len(walls) // 2], worst


async def encode_alone(real: BatchedEmbedder, repeats: int) -> float:
    await real.warm_up()
    rng = random.Random(1)
    texts = [answer(rng) for _ in range(4)]
    await real.encode(texts)  # warm the kernels
    t = time.perf_counter()
    for _ in range(repeats):
        await real.encode(texts)
    return (time.perf_counter() - t) / repeats


async def main_async(repeats: int) -> dict:
    rows = []
    for model in (STATIC, PACKAGED):
        real = BatchedEmbedder(model)
        encode_4 = await encode_alone(real, repeats)
        for debates in (1, 32):
            base, base_stall = await measure(HashEmbedder(), debates, repeats)
            with_emb, stall = await measure(real, debates, repeats)
            rows.append({
                "model": model, "encode_4_answers_alone_s": round(encode_4, 4),
                "debates": debates, "round_s_without": round(base, 4), "round_s_with": round(with_emb, 4),
                "added_s": round(with_emb - base, 4), "added_fraction": round((with_emb - base) / base, 4),
                "worst_loop_stall_ms": round(stall * 1000, 2), "baseline_loop_stall_ms": round(base_stall * 1000, 2),
            })
            print(rows[-1], flush=True)
    return {
        "benchmark": "embedding_cost", "agents": 4, "words_per_answer": 300, "repeats": repeats, "rows": rows,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "targets": {"added_fraction": 0.10, "worst_loop_stall_ms": 10},
    }


def table(result: dict) -> str:
    lines = [
        f"4 agents x 300-word answers arriving at 0.85-1.0 s, {result['machine']['cpus']} CPUs, median of "
        f"{result['repeats']} runs.",
        "",
        "| model | encode 4 answers alone (s) | debates at once | round without embeddings (s) | "
        "round with embeddings (s) | added | target | worst loop stall (ms) | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['encode_4_answers_alone_s']} | {r['debates']} | {r['round_s_without']} | "
                     f"{r['round_s_with']} | {r['added_fraction']:.1%} | <= 10% | {r['worst_loop_stall_ms']} | <= 10 |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "embedding_cost"))
    args = parser.parse_args()
    result = asyncio.run(main_async(args.repeats))
    write(args.out, result, table(result))


if __name__ == "__main__":
    main()
