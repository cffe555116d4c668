"""What metrics and spans cost a run: CPU per run for each listener of its events.

A real run (the pipeline on a scripted completer: a 3-seat MoA run, and a 3-seat,
3-round debate) is recorded once as its events; then the same events are delivered
`--runs` times to each listener, freshly made per run as the provider makes them:
- `metrics`: the chorus_* Prometheus series (observe/metrics.py, a private registry);
- `spans, no SDK`: observe/tracing.py with the OpenTelemetry API's default provider;
- `spans, SDK`: the same with an SDK TracerProvider and an in-memory exporter (the
  worst case for the request path: a simple, synchronous span processor);
- `all`: metrics and SDK spans together.
Two baselines: the pipeline's own CPU per run with no listener (the same scripted run,
in process: a floor that leaves out LiteLLM's own per-call work), and the proxy's CPU
per request for the same shape of run as `benchmarks/load.py` last measured it
(`results/load.json`, closed loop: `moa`, `debate2`).

Run: python benchmarks/observability_cost.py [--runs 2000]
Writes benchmarks/results/observability_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import write  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from chorus_litellm.core import pipeline  # noqa: E402
from chorus_litellm.observe.metrics import RunMetrics, Series  # noqa: E402
from chorus_litellm.observe.tracing import RunSpans  # noqa: E402
from chorus_litellm.core.runlog import RunEvent, RunLog  # noqa: E402
from chorus_litellm.testing import FakeCompleter, HashEmbedder, Reply  # noqa: E402
from tests.factories import context, profile, request  # noqa: E402


def scenario(name: str):
    """A fresh completer and request for one scripted run."""
    fake = FakeCompleter(json_models={"judge"}).enqueue("writer", Reply("The answer is 42."))
    if name == "moa":
        return fake, request(), None
    for seat in ("a", "b", "c"):
        fake.enqueue(seat, *(f"Seat {seat} round {r}: the answer is 42 because of reasons." for r in (1, 2, 3)))
    prof = profile(debate={"protocol": "debate", "max_rounds": 3, "adaptive_stop": False},
                   panel={"members": ["a", "b", "c"], "min_quorum": 2})
    return fake, request(prof), HashEmbedder()


async def one_run(name: str, *listeners) -> list[RunEvent]:
    fake, req, embedder = scenario(name)
    seen: list[RunEvent] = []
    log = RunLog(seen.append, *listeners, watched=False) if listeners is not None else RunLog()
    async for _ in pipeline.run(context(req, fake, embedder=embedder, log=log)):
        pass
    return seen


async def pipeline_cpu(name: str, runs: int) -> float:
    """CPU seconds per run of the pipeline itself, with no listener."""
    start = time.process_time()
    for _ in range(runs):
        fake, req, embedder = scenario(name)
        async for _ in pipeline.run(context(req, fake, embedder=embedder)):
            pass
    return (time.process_time() - start) / runs


def listener_cpu(events: list[RunEvent], make, runs: int) -> float:
    """CPU seconds per run to deliver a run's events to a fresh listener."""
    start = time.process_time()
    for _ in range(runs):
        listener = make()
        for event in events:
            listener(event)
    return (time.process_time() - start) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "observability_cost"))
    args = parser.parse_args()

    registry = CollectorRegistry()
    series = Series.create(registry)
    sdk = TracerProvider()
    exporter = InMemorySpanExporter()
    sdk.add_span_processor(SimpleSpanProcessor(exporter))
    sdk_tracer = sdk.get_tracer("bench")

    load = json.loads((ROOT / "benchmarks" / "results" / "load.json").read_text())
    proxy_cpu = {"moa": load["closed_loop"]["moa"]["cpu_s_per_request"],
                 "debate": load["closed_loop"]["debate2"]["cpu_s_per_request"]}
    rows = []
    for name in ("moa", "debate"):
        events = asyncio.run(one_run(name))
        _fake, req, _e = scenario(name)
        base = asyncio.run(pipeline_cpu(name, max(50, args.runs // 10)))

        def metrics(req=req):
            return RunMetrics(series, req.profile_name, req.debate.protocol)

        def spans_noop(req=req):
            return RunSpans(req)

        def spans_sdk(req=req):
            exporter.clear()
            return RunSpans(req, tracer=sdk_tracer)

        def both(req=req):
            m, s = metrics(), spans_sdk()
            return lambda e: (m(e), s(e))

        for label, make in (("metrics", metrics), ("spans, no SDK", spans_noop), ("spans, SDK", spans_sdk),
                            ("all", both)):
            cost = listener_cpu(events, make, args.runs)
            rows.append({"run": name, "events": len(events), "listener": label, "us_per_run": round(cost * 1e6, 1),
                         "pipeline_us_per_run": round(base * 1e6, 1), "share_of_pipeline": round(cost / base, 4),
                         "proxy_us_per_request": round(proxy_cpu[name] * 1e6), "load_commit": load["git_commit"],
                         "share_of_proxy": round(cost / proxy_cpu[name], 4)})

    result = {"runs": args.runs, "python": platform.python_version(), "machine": platform.machine(), "rows": rows}
    lines = [f"Listener CPU per run ({args.runs} runs each, Python {platform.python_version()}), against the",
             "pipeline's own CPU per run (scripted completer, no listener) and the proxy's CPU per request",
             f"(benchmarks/load.py at {load['git_commit']}: moa, debate2).", "",
             "| run | events | listener | µs per run | pipeline µs | share | proxy µs | share |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['run']} | {r['events']} | {r['listener']} | {r['us_per_run']:.1f} | "
              f"{r['pipeline_us_per_run']:.0f} | {r['share_of_pipeline']:.1%} | {r['proxy_us_per_request']} | "
              f"{r['share_of_proxy']:.2%} |" for r in rows]
    write(args.out, result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
