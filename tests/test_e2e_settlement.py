"""Bounties end to end: the real proxy, signed receipts, team-scoped retrieval, offline verify."""

import json
import subprocess
import sys

import httpx
import openai
import pytest

from tests.conftest import e2e_config
from tests.servers import litellm_proxy

HARD = [{"role": "user", "content": "Compare Raft and Paxos and explain the trade-offs."}]
BOUNTY = {"bounty": {"amount": 1000, "currency": "USD"}}


@pytest.fixture
def client(proxy):
    return openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-team-a", max_retries=0, timeout=60)


def get(proxy, path, key="sk-team-a"):
    return httpx.get(f"{proxy.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_bounty_receipt_verifies_offline_and_is_team_scoped(client, proxy, tmp_path):
    resp = client.chat.completions.create(model="fusion/flaky", messages=HARD, extra_body=BOUNTY)
    s = resp.model_extra["chorus"]["settlement"]
    amounts = {p["seat"]: p["amount"] for p in s["payouts"]}
    assert sum(amounts.values()) == 1000 and amounts["fail500-b"] == 0
    assert {p["payee"] for p in s["payouts"]} == {"model:model-a", "model:fail500-b", "model:model-c"}
    receipt = get(proxy, f"/chorus/v1/receipts/{s['debate_id']}").json()
    assert receipt["payload"]["receipt_id"] == s["receipt_id"]
    failed = [c for c in receipt["payload"]["contributions"] if not c["eligible"]]
    assert [(c["seat"], c["ineligible_reason"]) for c in failed] == [("fail500-b", "http_error")]
    keys = get(proxy, "/chorus/v1/keys").json()["keys"]
    assert keys[0]["key_id"] == s["key_id"] and "private" not in json.dumps(keys)
    (tmp_path / "receipt.json").write_text(json.dumps(receipt))
    out = subprocess.run([sys.executable, "-m", "chorus_litellm.cli", "verify", str(tmp_path / "receipt.json"),
                          "--public-key", keys[0]["public_key"]], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert get(proxy, f"/chorus/v1/receipts/{s['debate_id']}", key="sk-team-b").status_code == 404
    assert get(proxy, "/chorus/v1/receipts/nope").status_code == 404


def test_streaming_bounty_summary_rides_on_the_last_chunk(client):
    stream = client.chat.completions.create(model="fusion/research", messages=HARD, stream=True, extra_body=BOUNTY)
    ext = None
    for chunk in stream:
        ext = (chunk.model_extra or {}).get("provider_specific_fields", {}) or ext
    s = ext["chorus"]["settlement"]
    assert sum(p["amount"] for p in s["payouts"]) == 1000 and s["receipt_id"].startswith("rcpt_")


def test_retry_with_the_same_debate_id_is_paid_once(client):
    body = {**BOUNTY, "chorus": {"debate_id": "client-retry-42"}}
    first = client.chat.completions.create(model="fusion/research", messages=HARD, extra_body=body)
    second = client.chat.completions.create(model="fusion/research", messages=HARD, extra_body=body)
    a, b = first.model_extra["chorus"]["settlement"], second.model_extra["chorus"]["settlement"]
    assert a["receipt_id"] == b["receipt_id"] and a["payouts"] == b["payouts"]
    assert not a["duplicate"] and b["duplicate"]


@pytest.mark.parametrize(
    "bounty, match",
    [
        ({"amount": -5, "currency": "USD"}, "must not be negative"),
        ({"amount": 10.5, "currency": "USD"}, "must be an integer"),
        ({"amount": "100", "currency": "USD"}, "must be an integer"),
        ({"amount": 100, "currency": "XXX"}, "not a supported ISO 4217"),
        ({"amount": 10**15, "currency": "USD"}, "more than this profile's limit"),
        ({"amount": 100, "currency": "USD", "tip": 1}, "bounty must be"),
        ("lots", "bounty must be"),
    ],
)
def test_bad_bounties_are_400(client, bounty, match):
    with pytest.raises(openai.BadRequestError, match=match):
        client.chat.completions.create(model="fusion/research", messages=HARD, extra_body={"bounty": bounty})


def test_receipt_survives_a_restart(client, proxy, upstream):
    resp = client.chat.completions.create(model="fusion/research", messages=HARD, extra_body=BOUNTY)
    debate_id = resp.model_extra["chorus"]["settlement"]["debate_id"]
    with litellm_proxy(e2e_config(upstream), proxy.workdir / "second", env=proxy.env) as (url, _):
        again = httpx.get(f"{url}/chorus/v1/receipts/{debate_id}", headers={"Authorization": "Bearer sk-team-a"})
    assert again.status_code == 200 and again.json()["payload"]["debate_id"] == debate_id


def test_transcript_is_kept_for_the_team_only(client, proxy):
    resp = client.chat.completions.create(model="fusion/debate", messages=HARD)
    run_id = resp.model_extra["chorus"]["id"]
    run = get(proxy, f"/chorus/v1/runs/{run_id}")
    assert run.status_code == 200
    t = run.json()
    assert t["route"]["decision"] == "fuse" and t["caller"]["team_id"] == "team-a"
    assert t["deliberation"]["protocol"] == "debate" and t["transcript"]["rounds"]
    assert t["usage"]["total"]["total_tokens"] == resp.usage.total_tokens and "panel" in t["timings_s"]
    assert t["judge"]["analysis"]["consensus"]
    assert get(proxy, f"/chorus/v1/runs/{run_id}", key="sk-team-b").status_code == 404


def test_redis_store_survives_a_proxy_restart(upstream, redis_proxy, redis_server, tmp_path):
    """A proxy on Redis answers and stops; another process on the same store (the session's
    two Redis workers, tests/conftest.py, which never saw the run) serves its receipt and
    transcript."""
    from tests.conftest import redis_config

    assert redis_proxy.env["CHORUS_REDIS_URL"] == redis_server.url
    env = {**redis_proxy.env, "CHORUS_DB_PATH": str(tmp_path / "chorus.sqlite3"),
           "CHORUS_OUTBOX_PATH": str(tmp_path / "outbox.sqlite3"), "CHORUS_SPEND_LOG": str(tmp_path / "spend.jsonl")}
    (tmp_path / "spend.jsonl").touch()
    with litellm_proxy(redis_config(upstream), tmp_path / "one", env=env) as (url, _):
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-team-a", max_retries=0)
        resp = c.chat.completions.create(model="fusion/research", messages=HARD, extra_body=BOUNTY)
    s = resp.model_extra["chorus"]["settlement"]
    assert not (tmp_path / "chorus.sqlite3").exists()  # it really used Redis
    url = redis_proxy.url  # the other process, up before this run and after the first stopped
    r = httpx.get(f"{url}/chorus/v1/receipts/{s['debate_id']}", headers={"Authorization": "Bearer sk-team-a"})
    t = httpx.get(f"{url}/chorus/v1/runs/{s['debate_id']}", headers={"Authorization": "Bearer sk-team-a"})
    assert r.status_code == 200 and r.json()["payload"]["receipt_id"] == s["receipt_id"]
    assert t.status_code == 200 and t.json()["settlement"]["receipt_id"] == s["receipt_id"]


def test_reputation_route_reports_payees(client, proxy):
    for _ in range(2):
        client.chat.completions.create(model="fusion/flaky", messages=HARD)
    payees = get(proxy, "/chorus/v1/reputation").json()["payees"]
    assert payees["model:fail500-b"]["failure_rate"] == 1.0
    assert payees["model:model-a"]["runs"] >= 2 and payees["model:model-a"]["failure_rate"] == 0.0


@pytest.mark.parametrize("stream", [False, True])
def test_a_forwarded_request_is_settled_too(client, proxy, stream):
    easy = [{"role": "user", "content": "hi"}]
    if stream:
        ext = None
        for chunk in client.chat.completions.create(model="fusion/auto", messages=easy, stream=True,
                                                    extra_body=BOUNTY):
            ext = (chunk.model_extra or {}).get("provider_specific_fields", {}) or ext
        ext = ext["chorus"]
    else:
        ext = client.chat.completions.create(model="fusion/auto", messages=easy, extra_body=BOUNTY).model_extra["chorus"]
    assert ext["route"]["decision"] == "single"
    assert ext["settlement"]["payouts"] == [{"seat": "single_model", "payee": "model:model-a", "amount": 1000}]
    run = get(proxy, f"/chorus/v1/runs/{ext['id']}").json()
    assert run["settlement"]["receipt_id"] == ext["settlement"]["receipt_id"]
