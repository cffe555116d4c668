"""Several proxy workers end to end: one store shared by processes, receipts and retries
that land on any worker, and a store outage in the middle of requests. The session's
two-worker proxies (tests/conftest.py): `sqlite_workers`, and `redis_proxy` for the outage
(the last test on it: it stops Redis and starts it again)."""

import concurrent.futures
import time

import httpx
import openai
import pytest

HARD = [{"role": "user", "content": "Compare Raft and Paxos and explain the trade-offs."}]
KEYS = ("sk-team-a", "sk-team-b")


@pytest.fixture
def two_workers(sqlite_workers):
    return sqlite_workers.url


def ask(url, key, debate_id, messages=HARD):
    c = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)
    return c.chat.completions.create(model="fusion/research", messages=messages, extra_body={
        "bounty": {"amount": 1000, "currency": "USD"}, "chorus": {"debate_id": debate_id}})


def get(url, path, key):
    return httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_concurrent_paid_runs_on_two_workers_are_each_settled_once_and_team_scoped(two_workers):
    jobs = [(KEYS[i % 2], f"w-{i}") for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda job: ask(two_workers, *job), jobs))
    receipts = {r.model_extra["chorus"]["settlement"]["receipt_id"] for r in results}
    assert len(receipts) == 8
    for (key, debate_id), resp in zip(jobs, results, strict=True):
        other = KEYS[1] if key == KEYS[0] else KEYS[0]
        for _ in range(3):  # several reads: each may land on either worker
            assert get(two_workers, f"/chorus/v1/receipts/{debate_id}", key).status_code == 200
        assert get(two_workers, f"/chorus/v1/receipts/{debate_id}", other).status_code == 404
        assert get(two_workers, f"/chorus/v1/runs/{debate_id}", key).json()["settlement"]["receipt_id"] == \
            resp.model_extra["chorus"]["settlement"]["receipt_id"]


def test_retries_on_any_worker_replay_the_first_run(two_workers):
    first = ask(two_workers, "sk-team-a", "retry-anywhere")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        retries = list(pool.map(lambda _: ask(two_workers, "sk-team-a", "retry-anywhere"), range(4)))
    for again in retries:
        assert again.choices[0].message.content == first.choices[0].message.content
        assert again.model_extra["chorus"]["replayed"] and again.model_extra["chorus"]["settlement"]["duplicate"]
    with pytest.raises(openai.APIStatusError) as err:
        ask(two_workers, "sk-team-a", "retry-anywhere", messages=[{"role": "user", "content": "Another question?"}])
    assert err.value.status_code == 409
    assert ask(two_workers, "sk-team-b", "retry-anywhere").model_extra["chorus"].get("replayed") is None  # per team


def test_a_store_outage_mid_requests_loses_no_receipt(redis_proxy, redis_server, tmp_path):
    assert redis_proxy.env["CHORUS_OUTBOX_FLUSH_INTERVAL_S"] == "0.5"  # two workers on Redis
    url = redis_proxy.url
    before = ask(url, "sk-team-a", "outage-0")
    redis_server.stop()
    try:
        during = [ask(url, "sk-team-a", f"outage-{i}") for i in (1, 2)]
        for resp in during:  # answered and settled: the receipt waits in the outbox
            assert resp.model_extra["chorus"]["settlement"]["status"] == "settled"
        assert get(url, "/chorus/v1/receipts/outage-1", "sk-team-a").status_code == 200  # served from it
    finally:
        redis_server.start()
    deadline = time.monotonic() + 15
    import asyncio

    from chorus_litellm.storage.redis_backend import RedisStore

    direct = RedisStore(redis_server.url, outbox=tmp_path / "direct-outbox.sqlite3")
    while time.monotonic() < deadline:
        found = [asyncio.run(direct.get_receipt("team:team-a", f"outage-{i}")) for i in (1, 2)]
        if all(found):
            break
        time.sleep(0.3)
    assert all(found), "the background flush did not deliver the outboxed receipts"
    ids = [r.model_extra["chorus"]["settlement"]["receipt_id"] for r in during]
    assert [f["payload"]["receipt_id"] for f in found] == ids
    assert before.model_extra["chorus"]["settlement"]["status"] == "settled"
