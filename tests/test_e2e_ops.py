"""Operating it like the rest of LiteLLM, through the real proxy with two workers: the
`chorus_*` series on the proxy's own /metrics (multiprocess), and spans per stage under
LiteLLM's request span (LiteLLM's `otel` callback, the SDK's in-memory exporter)."""

import concurrent.futures
import importlib.metadata
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import e2e_config, proxy_env, spend_records, whole_lines
from tests.servers import litellm_proxy

LITELLM = tuple(int(p) for p in importlib.metadata.version("litellm").split(".")[:2])
HARD = [{"role": "user", "content": "Compare Raft and Paxos and explain the trade-offs."}]
EASY = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def ops(upstream, signing_key, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ops")
    spend, spans, prom = workdir / "spend.jsonl", workdir / "spans", workdir / "prom"
    spend.touch()
    spans.mkdir()
    prom.mkdir()
    config = e2e_config(upstream)
    config["litellm_settings"]["callbacks"] = ["proxy_support.spend_log", "otel", "prometheus"]
    env = {**proxy_env(workdir, signing_key, spend), "CHORUS_TEST_SPANS": str(spans),
           "PROMETHEUS_MULTIPROC_DIR": str(prom), "OTEL_EXPORTER": "in_memory"}
    with litellm_proxy(config, workdir, env=env, workers=2) as (url, log):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-team-a", max_retries=0, timeout=60)
        jobs = [("research", HARD, {}), ("research", HARD, {"stream": True, "stream_options": {"include_usage": True}}), ("flaky", HARD, {}),
                ("down", HARD, {}), ("auto", EASY, {}), ("debate", HARD, {}),
                ("research", HARD, {"extra_body": {"bounty": {"amount": 1000, "currency": "USD"}}})]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda job: ask(client, *job), jobs))
        yield type("Ops", (), {"url": url, "spend": spend, "spans": spans, "results": results})


def ask(client, profile, messages, kwargs):
    try:
        resp = client.chat.completions.create(model=f"fusion/{profile}", messages=messages, **kwargs)
        return list(resp) if kwargs.get("stream") else resp
    except openai.APIStatusError as exc:
        return exc


def scrape(url) -> dict:
    samples = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics/", headers={"Authorization": "Bearer sk-team-a"}, timeout=10).text):
        for s in family.samples:
            if s.name.startswith("chorus_"):
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_every_run_on_either_worker_with_its_outcome_cost_and_failures(ops):
    assert isinstance(ops.results[3], openai.APIStatusError) and ops.results[3].status_code == 502
    m = scrape(ops.url)
    runs = {labels: v for (name, labels), v in m.items() if name == "chorus_runs_total"}
    assert sum(runs.values()) == 7
    assert value(m, "chorus_runs_total", profile="research", protocol="moa", outcome="ok") == 3
    assert value(m, "chorus_runs_total", profile="flaky", protocol="moa", outcome="degraded") == 1
    assert value(m, "chorus_runs_total", profile="down", protocol="moa", outcome="quorum_failed") == 1
    assert value(m, "chorus_runs_total", profile="auto", protocol="moa", outcome="forwarded") == 1
    assert value(m, "chorus_runs_total", profile="debate", protocol="debate", outcome="ok") == 1
    assert value(m, "chorus_router_decisions_total", profile="auto", decision="single") == 1
    assert value(m, "chorus_router_decisions_total", profile="research", decision="fuse") == 3
    assert value(m, "chorus_member_failures_total", profile="flaky", model="fail500-b", kind="http_error") == 1
    down = {dict(labels)["model"]: v for (name, labels), v in m.items()
            if name == "chorus_member_failures_total" and ("profile", "down") in labels}
    assert down == {"fail500-a": 1, "fail429-b": 1, "hang-c": 1}  # hang-c cancelled: no quorum was possible
    assert value(m, "chorus_bounty_paid_minor_units_total", profile="research", currency="USD") == 1000
    assert value(m, "chorus_stage_duration_seconds_count", profile="research", stage="total") == 3
    assert value(m, "chorus_stage_duration_seconds_count", profile="auto", stage="forward") == 1
    assert value(m, "chorus_rounds_count", profile="debate") == 1
    assert value(m, "chorus_active_runs", profile="research") == 0
    # The cost counted is what LiteLLM charged the caller for those runs (its spend log).
    charged = spend_records(ops.spend, wait=0)
    research = sum(r["response_cost"] or 0.0 for r in charged if r.get("model_group") == "fusion/research")
    assert research > 0 and value(m, "chorus_cost_usd_total", profile="research") == pytest.approx(research, rel=1e-6)
    tokens = sum(r.usage.total_tokens for r in (ops.results[0], ops.results[6]))
    tokens += next(c.usage.total_tokens for c in ops.results[1] if c.usage)
    counted = sum(v for (name, labels), v in m.items() if name == "chorus_tokens_total"
                  and ("profile", "research") in labels)
    assert counted == tokens


def spans(folder, wait=10.0) -> list[dict]:
    deadline = time.monotonic() + wait
    while True:
        found = [span for f in folder.glob("*.jsonl") for span in whole_lines(f)]
        if sum(s["name"] == "chorus.run" for s in found) >= 7 or time.monotonic() > deadline:
            return found


def test_each_run_is_a_tree_of_stage_spans_under_litellms_request_span(ops):
    found = spans(ops.spans)
    by_id = {s["context"]["span_id"]: s for s in found}
    runs = [s for s in found if s["name"] == "chorus.run"]
    assert len(runs) == 7
    outcomes = sorted(r["attributes"]["chorus.outcome"] for r in runs)
    assert outcomes == ["degraded", "forwarded", "ok", "ok", "ok", "ok", "quorum_failed"]
    for run in runs:
        if LITELLM < (1, 106) and run["parent_id"] is None:
            continue  # older releases may hand the provider no request span (1.98.0 with FastAPI 0.140): a root
        parent = by_id.get(run["parent_id"])
        assert parent is not None and not parent["name"].startswith("chorus."), run["parent_id"]
        assert parent["context"]["trace_id"] == run["context"]["trace_id"]
    paid = next(r for r in runs if r["attributes"]["chorus.profile"] == "research"
                and any(c["name"] == "chorus.settlement" and c["attributes"].get("chorus.settlement.status") == "settled"
                        for c in found if c["parent_id"] == r["context"]["span_id"]))
    children = [s for s in found if s["parent_id"] == paid["context"]["span_id"]]
    assert sorted(c["name"] for c in children) == ["chorus.gate", "chorus.judge", "chorus.round",
                                                   "chorus.settlement", "chorus.synthesis"]
    rnd = next(c for c in children if c["name"] == "chorus.round")
    members = [s for s in found if s["parent_id"] == rnd["context"]["span_id"]]
    assert sorted(m["attributes"]["chorus.seat"] for m in members) == ["model-a", "model-b", "model-c"]
    assert all(m["attributes"]["gen_ai.usage.output_tokens"] > 0 for m in members)
    failed = next(r for r in runs if r["attributes"]["chorus.outcome"] == "quorum_failed")
    assert failed["status"]["status_code"] == "ERROR"
