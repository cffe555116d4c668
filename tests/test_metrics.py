"""The `chorus_*` Prometheus series, counted from real pipeline runs' events."""

import pytest
from prometheus_client import CollectorRegistry

from chorus_litellm.core import pipeline
from chorus_litellm.observe.metrics import RunMetrics, Series
from chorus_litellm.core.errors import UpstreamError
from chorus_litellm.core.runlog import RunLog
from chorus_litellm.testing import FakeCompleter, HashEmbedder, Reply
from tests.factories import context, profile, refusing_debate, request


@pytest.fixture
def registry():
    return CollectorRegistry()


async def counted(registry, req, fake, *, payee_label=False, **ports):
    s = Series.create(registry, payee_label=payee_label)
    metrics = RunMetrics(s, req.profile_name, req.debate.protocol)
    # watched=False: metrics alone never make a run measure the live view's map
    ctx = context(req, fake, log=RunLog(metrics, watched=False), **ports)
    error = None
    try:
        async for event in pipeline.run(ctx):
            if event.kind != "run_done":  # the log sees run_done (and decrements) before the client does
                assert registry.get_sample_value("chorus_active_runs", {"profile": "test"}) == 1.0
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        error = exc
    assert registry.get_sample_value("chorus_active_runs", {"profile": "test"}) == 0.0
    return ctx.report, error


def value(registry, name, **labels):
    return registry.get_sample_value(name, {"profile": "test", **labels}) or 0.0


async def test_a_moa_run_with_a_failed_member_counts_as_degraded_with_its_tokens_cost_and_stages(registry):
    fake = FakeCompleter(json_models={"judge"}).enqueue("writer", Reply("The answer is 42."))
    fake.enqueue("model-c", UpstreamError("http_error", "upstream 500", status=500))
    report, error = await counted(registry, request(), fake)
    assert error is None
    assert value(registry, "chorus_runs_total", protocol="moa", outcome="degraded") == 1
    assert value(registry, "chorus_runs_total", protocol="moa", outcome="ok") == 0
    assert value(registry, "chorus_router_decisions_total", decision="fuse") == 1
    assert value(registry, "chorus_member_failures_total", model="model-c", kind="http_error") == 1
    assert value(registry, "chorus_cost_usd_total") == pytest.approx(report.cost) and report.cost > 0
    for stage, usage in report.by_stage().items():
        assert value(registry, "chorus_tokens_total", stage=stage, type="prompt") == usage["prompt_tokens"]
        assert value(registry, "chorus_tokens_total", stage=stage, type="completion") == usage["completion_tokens"]
    for stage in ("gate", "panel", "judge", "synthesis", "settlement", "total"):
        assert value(registry, "chorus_stage_duration_seconds_count", stage=stage) == 1
    assert value(registry, "chorus_stage_duration_seconds_sum", stage="total") == pytest.approx(
        report.timings["total"], abs=1e-3)
    assert value(registry, "chorus_rounds_count") == 1 and value(registry, "chorus_rounds_sum") == 1


async def test_a_debate_counts_rounds_echoes_and_an_agreed_stop(registry):
    fake, req = refusing_debate()
    _report, error = await counted(registry, req, fake, embedder=HashEmbedder())
    assert error is None
    assert value(registry, "chorus_echo_filtered_total", reason="refusal") == 1
    assert value(registry, "chorus_rounds_sum") == 2 and value(registry, "chorus_rounds_bucket", le="1.0") == 0
    assert value(registry, "chorus_consensus_reached_total") == 0  # max_rounds is not an agreement


async def test_a_consensus_vote_that_passes_counts_as_reached(registry):
    fake = FakeCompleter().enqueue("writer", "Candidate: 42.")
    for m in ("model-a", "model-b", "model-c"):
        fake.enqueue(m, "Draft: 42.", "Critique: fine.", '{"accept": true}')
    prof = profile(debate={"protocol": "consensus", "max_rounds": 2})
    _report, error = await counted(registry, request(prof), fake)
    assert error is None
    assert value(registry, "chorus_consensus_reached_total") == 1
    assert value(registry, "chorus_runs_total", protocol="consensus", outcome="ok") == 1


async def test_a_missed_quorum_and_a_client_that_leaves_have_their_outcomes(registry):
    fake = FakeCompleter()
    for m in ("model-a", "model-b"):
        fake.enqueue(m, UpstreamError("timeout", "deadline exceeded"))
    _report, error = await counted(registry, request(), fake)
    assert error is not None
    assert value(registry, "chorus_runs_total", protocol="moa", outcome="quorum_failed") == 1
    assert value(registry, "chorus_member_failures_total", model="model-a", kind="timeout") == 1
    assert value(registry, "chorus_cost_usd_total") > 0  # model-c answered and was charged
    assert value(registry, "chorus_tokens_total", stage="panel", type="completion") > 0

    registry2 = CollectorRegistry()
    slow = FakeCompleter(json_models={"judge"}).enqueue("writer", Reply("word " * 50, word_delay=0.01))
    req = request(stream=True)
    metrics = RunMetrics(Series.create(registry2), "test", "moa")
    run = pipeline.run(context(req, slow, log=RunLog(metrics)))
    async for event in run:
        if event.kind == "answer_delta":
            break
    await run.aclose()
    assert registry2.get_sample_value("chorus_runs_total", {"profile": "test", "protocol": "moa",
                                                            "outcome": "cancelled"}) == 1
    assert registry2.get_sample_value("chorus_active_runs", {"profile": "test"}) == 0


def test_bounty_payouts_count_per_currency_and_payees_only_when_asked(registry):
    settled = {"status": "settled", "bounty": {"amount": 1000, "currency": "USD"},
               "payouts": [{"seat": "a", "payee": "alice", "amount": 600}, {"seat": "b", "payee": "bob", "amount": 400}]}
    plain = RunMetrics(Series.create(registry), "test", "moa")
    plain.on_settled(settled)
    plain.on_settled({**settled, "status": "unsettled"})  # nothing was paid
    assert value(registry, "chorus_bounty_paid_minor_units_total", currency="USD") == 1000
    names = {s.name for m in registry.collect() for s in m.samples}
    assert not any("payee" in s.labels for m in registry.collect() for s in m.samples)
    assert "chorus_bounty_paid_minor_units_total" in names

    opted = CollectorRegistry()
    RunMetrics(Series.create(opted, payee_label=True), "test", "moa").on_settled(settled)
    assert opted.get_sample_value("chorus_bounty_paid_minor_units_total",
                                  {"profile": "test", "currency": "USD", "payee": "bob"}) == 400


def test_the_grafana_dashboard_queries_only_series_that_exist(registry):
    import json
    import re
    from pathlib import Path

    Series.create(registry)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exposed = {m.name + suffix for m in registry.collect() for suffix in suffixes[m.type]}
    dashboard = json.loads((Path(__file__).parents[1] / "docs" / "grafana-dashboard.json").read_text())
    used = {name for p in dashboard["panels"] for t in p["targets"] for name in re.findall(r"chorus_\w+", t["expr"])}
    assert len(used) >= 13 and used <= exposed, used - exposed


async def test_a_failed_peer_counts_under_one_bounded_label(registry):
    from chorus_litellm.market import peers

    offers = [{"peer_id": f"ed25519:{n:016x}", "pool": "gpu", "model": "m", "payee": "p", "personas": [],
               "max_concurrency": 2} for n in range(3)]
    fake = FakeCompleter(json_models={"judge"})
    for o in offers[:2]:
        fake.enqueue(peers.model_name(o["peer_id"]), UpstreamError("connection", "refused"))

    async def pool(name):
        return offers

    req = request(profile(panel={"pool": "gpu", "seats": 3, "min_quorum": 1}))
    report, error = await counted(registry, req, fake, pool=pool)
    assert error is None and len(report.panel.failures) == 2
    assert value(registry, "chorus_member_failures_total", model="peer/*", kind="connection") == 2


async def test_early_stop_counts_seats_asked_and_saved_and_the_cost_saved(registry):
    fake = FakeCompleter(json_models={"judge"}).enqueue("writer", "13")
    fake.enqueue("model-a", "6 + 7 = 13.").enqueue("model-b", "It is 13.")
    report, error = await counted(registry, request(messages=[{"role": "user", "content": "What is 6 + 7?"}]), fake)
    assert error is None and report.early_stop["saved"] == 1
    assert value(registry, "chorus_early_stop_seats_total", kind="asked") == 2
    assert value(registry, "chorus_early_stop_seats_total", kind="saved") == 1
    assert value(registry, "chorus_early_stop_saved_usd_total") == pytest.approx(report.early_stop["cost_saved_usd"])
    assert report.early_stop["cost_saved_usd"] > 0
