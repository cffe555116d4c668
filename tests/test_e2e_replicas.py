"""Two replicas, as users scale out (issue 23, point 7): two separate proxy processes on
two ports, one Redis (the chorus store, and LiteLLM's own `router_settings` Redis for the
deployments' shared rpm/tpm), behind Debian's haproxy started here (round robin, health
checks, a refused connection redispatched). Through the balancer, or to each replica
directly, with the official `openai` client: runs, a viewer on one replica following a
run on the other, receipts, a debate id sent to both at once, peers, webhooks, a
deployment's rpm and a dead deployment's cooldown behave as on one proxy. Then one replica is killed with SIGKILL while
requests are in flight: the clients retry through the balancer and all get answers,
every receipt promised is readable, and no debate id is charged twice.

The figures `docs/operations.md` ("Scaling out") quotes are printed (`pytest -s`)."""

import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest
import redis

from chorus_litellm.settlement.signing import public_key_from
from chorus_litellm.observe.webhooks import verify
from tests import conftest
from tests.conftest import e2e_config, e2e_entry, line_count, no_retries, proxy_env, whole_lines
from tests.servers import Balancer, balancer, fake_upstream, free_port, model_entry, process_tree, proxy_process
from tests.test_e2e_events import probe, sse
from tests.test_e2e_peers import Peer
from tests.test_webhooks import Receiver

HARD = [{"role": "user", "content": "Compare Raft and Paxos and explain the trade-offs."}]
BOUNTY = {"amount": 1000, "currency": "USD"}
ONE_RUN = {"model-a": 1, "model-b": 1, "model-c": 1, "judge": 1, "writer": 1}  # fusion/research
POOL = "replicas"
RPM = 3  # limited-a's requests per minute, counted in LiteLLM's router Redis by both replicas
DEAD = "flaky-dead"  # the `flaky` group's deployment whose server is gone (its model_info id)
STORE_DB = 1  # the chorus store's Redis database: this module's own (LiteLLM's router uses 0)


def replica_config(upstream: str, redis_port: int) -> dict:
    config = e2e_config(upstream)
    limited = no_retries(model_entry("limited-a", upstream))
    limited["litellm_params"]["rpm"] = RPM
    # `flaky`: two deployments, one on a port nothing listens on (a server that went away);
    # no retries, so a request the Router sends there fails where the client sees it
    dead = no_retries(model_entry("flaky", f"http://127.0.0.1:{free_port()}"))
    dead["litellm_params"]["cooldown_time"] = 120  # longer than this module's remaining tests
    dead["model_info"]["id"] = DEAD
    config["model_list"] += [
        limited, dead, no_retries(model_entry("flaky", upstream)),
        e2e_entry("replica-pool", {"aggregator": {"judge": "judge", "synthesizer": "writer"},
                                   "panel": {"members": ["model-a"], "pool": POOL, "seats": 1, "min_quorum": 2}}),
    ]
    # LiteLLM's own Redis for the Router: deployments' rpm/tpm counters (and cooldowns)
    # shared by every replica; `enforce_model_rate_limits` makes a deployment's rpm a cap.
    config["router_settings"] = {**config["router_settings"], "redis_host": "127.0.0.1", "redis_port": redis_port,
                                 "optional_pre_call_checks": ["enforce_model_rate_limits"]}
    return config


@dataclasses.dataclass
class Replicas:
    a: str  # replica A's own URL
    b: str
    url: str  # the balancer's
    lb: Balancer
    a_proc: subprocess.Popen  # replica A's process (the one the last test kills)
    upstream: str
    spend: Path  # both replicas' spend log
    store: redis.Redis  # the chorus store's database, read directly


@pytest.fixture(scope="module")
def replicas(signing_key, redis_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("replicas")
    spend = workdir / "spend.jsonl"  # both replicas append to it: what LiteLLM charged, everywhere
    spend.touch()
    store_url = f"{redis_server.url.rsplit('/', 1)[0]}/{STORE_DB}"

    def env(name: str) -> dict:
        return {**proxy_env(workdir / name, signing_key, spend), "CHORUS_STORE": "redis",
                "CHORUS_REDIS_URL": store_url, "CHORUS_OUTBOX_FLUSH_INTERVAL_S": "0.5",
                "CHORUS_WEBHOOK_ALLOWLIST": "127.0.0.1/32", "CHORUS_PEER_ADMISSION": "open",
                "CHORUS_PEER_URL_ALLOWLIST": "127.0.0.1/32", "CHORUS_PEER_SYNC_S": "0.5"}

    with fake_upstream(latency=0.25) as upstream, contextlib.ExitStack() as stack:
        config = replica_config(upstream, redis_server.port)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # both start at once (so each may take longer)
            started = [pool.submit(stack.enter_context, proxy_process(config, workdir / name, env(name)))
                       for name in ("a", "b")]
        (a, _, a_proc), (b, _, _) = (f.result() for f in started)
        lb = stack.enter_context(balancer({"a": a, "b": b}, workdir / "haproxy"))
        yield Replicas(a, b, lb.url, lb, a_proc, upstream, spend, redis.Redis.from_url(store_url))


@dataclasses.dataclass
class Answer:
    text: str
    chorus: dict
    served_by: str | None  # the replica haproxy sent it to (None: asked directly)
    retries: int  # the openai client's own retries
    done: float  # time.monotonic() when it came back


def ask(url, debate_id=None, *, model="fusion/research", retries=0, timeout=60, **extra) -> Answer:
    c = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-team-a", max_retries=retries, timeout=timeout)
    body = {"bounty": BOUNTY, **({"chorus": {"debate_id": debate_id}} if debate_id else {}), **extra}
    raw = c.chat.completions.with_raw_response.create(model=model, messages=HARD, extra_body=body)
    resp = raw.parse()
    return Answer(resp.choices[0].message.content, resp.model_extra["chorus"], raw.headers.get("x-served-by"),
                  raw.retries_taken, time.monotonic())


def get(url, path, key="sk-team-a"):
    return httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def stats(replicas) -> dict:
    return httpx.get(f"{replicas.upstream}/stats", timeout=10).json()


def calls_since(before: dict, after: dict) -> dict:
    return {m: n - before.get(m, 0) for m, n in after.items() if n != before.get(m, 0)}


def charges(replicas, offset: int, debate_ids, wait: float = 15.0, settled=(), count: int = 0) -> dict[str, list]:
    """The fused requests' costs in the spend log after line `offset`, per debate id; waits
    until every id in `settled` has a charge logged and `count` requests are (async logging
    may land late)."""
    deadline = time.monotonic() + wait
    while True:
        found: dict[str, list[float]] = {d: [] for d in debate_ids}
        for r in whole_lines(replicas.spend)[offset:]:
            if r.get("model_group") == "fusion/research" and r.get("debate_id") in found:
                found[r["debate_id"]].append(r["response_cost"] or 0.0)
        settled_all = all(any(c > 0 for c in found[d]) for d in settled)
        if (settled_all and sum(map(len, found.values())) >= count) or time.monotonic() > deadline:
            return found


wait_for = functools.partial(conftest.wait_for, every=0.05)  # the figures below are read at this step


# -- one proxy, as far as clients can tell ----------------------------------------------------
def test_runs_through_the_balancer_land_on_both_and_every_receipt_is_served_by_either(replicas):
    ids = [f"rr-{i}" for i in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda d: ask(replicas.url, d), ids))
    assert {a.served_by for a in answers} == {"a", "b"}  # round robin
    for debate_id, answer in zip(ids, answers, strict=True):
        assert answer.text and answer.chorus["settlement"]["status"] == "settled"
        receipt_id = answer.chorus["settlement"]["receipt_id"]
        receipts = [get(url, f"/chorus/v1/receipts/{debate_id}") for url in (replicas.a, replicas.b)]
        assert [r.status_code for r in receipts] == [200, 200] and receipts[0].json() == receipts[1].json()
        assert receipts[0].json()["payload"]["receipt_id"] == receipt_id
        for url in (replicas.a, replicas.b):  # the transcript too, and only for the team
            assert get(url, f"/chorus/v1/runs/{debate_id}").json()["settlement"]["receipt_id"] == receipt_id
            assert get(url, f"/chorus/v1/receipts/{debate_id}", key="sk-team-b").status_code == 404


def follow(url: str, debate_id: str) -> list[tuple[float, dict]]:
    """(wall-clock arrival, event envelope) of each event of the run's stream, to its end."""
    got = []
    with httpx.stream("GET", f"{url}/chorus/v1/runs/{debate_id}/events", params={"wait_s": 30}, timeout=60,
                      headers={"Authorization": "Bearer sk-team-a"}) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: "):
                got.append((time.time(), json.loads(line.removeprefix("data: "))))
    return got


def test_a_viewer_on_b_follows_a_run_on_a_live(replicas):
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        viewer = pool.submit(follow, replicas.b, "follow-1")  # attached first: it waits for the run
        time.sleep(0.5)
        answer = ask(replicas.a, "follow-1")
        answered = time.time()
        got = viewer.result()
    types = [event["type"] for _, event in got]
    assert types[0] == "run_started" and types[-1] == "run_done" and types.count("run_done") == 1
    assert [event["seq"] for _, event in got] == list(range(1, len(got) + 1))
    assert got[-1][1]["data"]["answer"] == answer.text
    assert got[0][0] < answered  # followed live: the first event reached B before A answered
    lag = [arrived - event["time"] for arrived, event in got]
    print(f"\nreplicas: run on A, viewer on B: {len(got)} events, lag mean {sum(lag) / len(lag):.3f} s, "
          f"max {max(lag):.3f} s")
    # A viewer that loses its replica resumes on the other from the last event it saw.
    status, frames = sse(replicas.a, "follow-1", headers={"Last-Event-ID": "5"})
    assert status == 200 and [int(f["id"]) for f in frames if "event" in f] == list(range(6, len(got) + 1))
    assert sse(replicas.b, "follow-1", key="sk-team-b", wait_s=0)[0] == 404  # another team's run is not B's to show


def most_open_streams(replicas) -> int:
    """The most event-stream slots one key holds in the shared store now (a sorted set per
    key, each slot scored by its lease's expiry): the cap's own count over both replicas."""
    now = time.time()
    return max((replicas.store.zcount(k, f"({now}", "+inf") for k in replicas.store.scan_iter(match="*:streams:*")),
               default=0)


def test_a_keys_open_event_streams_are_capped_across_both_replicas(replicas):
    """CHORUS_EVENT_STREAMS_PER_KEY (8) counts a key's streams on every replica (leased slots
    in the shared store): four waiting on A and four on B, the ninth is a 429 on either, and
    the slots come back when those streams end."""
    key = "sk-team-c-ok"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        waiting = [pool.submit(probe, url, f"cap-{i}", key=key, timeout=20, wait_s=10)
                   for i, url in enumerate([replicas.a, replicas.b] * 4)]
        wait_for(lambda: most_open_streams(replicas) == 8, timeout=8, what="the eight waiters' slots")
        for url in (replicas.a, replicas.b):
            status, body, seconds, _ = probe(url, "cap-9", key=key, wait_s=4)
            assert status == 429 and "CHORUS_EVENT_STREAMS_PER_KEY" in body["detail"], (url, status, body)
        assert probe(replicas.b, "cap-other-key", key="sk-team-b")[0] == 404  # another key: its own slots
        assert [w.result()[0] for w in waiting] == [404] * 8
    wait_for(lambda: probe(replicas.a, "cap-9", key=key)[0] == 404, timeout=10, what="the slots freed")


def test_one_debate_id_sent_to_both_replicas_at_once_runs_once_and_is_charged_once(replicas):
    offset, before = line_count(replicas.spend), stats(replicas)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda url: ask(url, "both-1"), (replicas.a, replicas.b)))
    assert calls_since(before, stats(replicas)) == ONE_RUN  # one run's upstream calls
    assert both[0].text == both[1].text and both[0].text
    assert sorted(bool(a.chorus.get("replayed")) for a in both) == [False, True]  # one ran, one replayed it
    assert len({a.chorus["settlement"]["receipt_id"] for a in both}) == 1
    costs = charges(replicas, offset, ["both-1"], settled=["both-1"], count=2)["both-1"]
    assert len(costs) == 2 and sorted(c > 0 for c in costs) == [False, True]  # two requests, one charge


def test_a_peer_registered_on_a_is_listed_beats_and_is_drawn_on_b(replicas):
    peer = Peer(replicas.a)
    offer = {"pool": POOL, "base_url": f"{replicas.upstream}/v1", "model": "peer-model", "payee": "peer-payee"}
    started = time.monotonic()
    joined = peer.call("POST", "/chorus/v1/peers", offer)
    assert joined.status_code == 201, joined.text

    def listed_on_b():
        reply = get(replicas.b, f"/chorus/v1/peers?pool={POOL}").json()
        return {p["peer_id"]: p for p in reply["peers"]}.get(peer.id)

    assert wait_for(listed_on_b, what="the peer listed on B")["state"] == "live"
    listed = time.monotonic() - started
    peer.url = replicas.b  # the same signed registration again, on the other replica: a replay
    assert peer.call("POST", "/chorus/v1/peers", offer, timestamp=peer.clock).status_code == 401
    beat = peer.call("POST", f"/chorus/v1/peers/{peer.id}/heartbeat")
    assert beat.status_code == 200 and beat.json()["state"] == "live"

    def drawn(url):
        try:
            answer = ask(url, model="fusion/replica-pool")
        except openai.APIStatusError as exc:
            assert exc.status_code == 503 and POOL in exc.message  # not drawable there yet
            return None
        return {p.get("peer_id") for p in answer.chorus["settlement"]["payouts"]} >= {peer.id}

    wait_for(lambda: drawn(replicas.b), what="the peer drawn on B", every=0.1)
    on_b = time.monotonic() - started
    wait_for(lambda: drawn(replicas.a), what="the peer drawn on A", every=0.1)
    print(f"\nreplicas: peer joined on A: listed on B after {listed:.2f} s, drawn on B after {on_b:.2f} s")
    assert peer.call("DELETE", f"/chorus/v1/peers/{peer.id}").status_code == 204
    wait_for(lambda: listed_on_b() is None, what="the peer gone from B")


def keys(url):
    served = get(url, "/chorus/v1/keys").json()
    return [public_key_from(k["public_key"]) for k in served["keys"]]


def test_webhooks_of_runs_on_either_replica_are_delivered_once(replicas):
    receiver = Receiver()
    try:
        ids = [f"hook-{i}" for i in range(4)]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda d: ask(replicas.url, d, callback_url=f"{receiver.url}/hook"), ids))
        assert {a.served_by for a in answers} == {"a", "b"}
        wait_for(lambda: len(receiver.seen) >= len(ids), what="the deliveries")
        # Delivered jobs leave the shared queue; a job is claimed by one replica at a time.
        wait_for(lambda: replicas.store.zcard("chorus:webhooks") == 0, what="the webhook queue drained")
        assert len(receiver.seen) == len(ids)
        webhook_ids = {headers["X-Chorus-Webhook-Id"] for headers, _ in receiver.seen}
        assert len(webhook_ids) == len(ids)
        summaries = {}
        for headers, body in receiver.seen:
            assert verify(body, headers, keys(replicas.b))  # either replica's keys verify either's deliveries
            summaries[json.loads(body)["debate_id"]] = json.loads(body)
        for debate_id, answer in zip(ids, answers, strict=True):
            assert summaries[debate_id]["answer"] == answer.text
            assert summaries[debate_id]["receipt"]["payload"]["receipt_id"] == \
                answer.chorus["settlement"]["receipt_id"]
    finally:
        receiver.close()


def test_a_deployments_rpm_is_counted_across_replicas_in_litellms_router_redis(replicas):
    if time.time() % 60 > 50:  # LiteLLM counts per wall-clock minute: start in a fresh one
        time.sleep(60.5 - time.time() % 60)

    def plain(url):
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-team-a", max_retries=0, timeout=30)
        try:
            c.chat.completions.create(model="limited-a", messages=[{"role": "user", "content": "Hi"}])
            return 200
        except openai.APIStatusError as exc:
            return exc.status_code

    # A and B in turn: RPM calls pass, then each replica refuses, though neither made RPM itself.
    assert [plain(url) for url in (replicas.a, replicas.b, replicas.a, replicas.b, replicas.a)] == \
        [200] * RPM + [429] * 2


def test_a_deployment_cooled_down_on_a_is_skipped_by_b_from_litellms_router_redis(replicas, redis_server):
    """LiteLLM's cooldowns live in the same Router Redis: once A has seen the dead
    deployment fail often enough (more than half its calls this minute, five at least) and
    cooled it down, B (which never called it) routes around it too, after LiteLLM's
    Redis read interval (1 s). Without the shared cooldown, B would send about half its
    first requests to the dead server until its own count cooled it down."""
    if time.time() % 60 > 45:  # LiteLLM counts fails per wall-clock minute: start in a fresh one
        time.sleep(60.5 - time.time() % 60)
    router_redis = redis.Redis(port=redis_server.port)  # LiteLLM's database (0)
    key = f"deployment:{DEAD}:cooldown"

    def flaky(url):
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-team-a", max_retries=0, timeout=30)
        try:
            c.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "Hi"}])
            return True
        except openai.APIError:
            return False

    a_calls = []
    while not router_redis.exists(key):  # A alone, until it cools the dead deployment down
        assert len(a_calls) < 60, f"A never cooled {DEAD} down: {a_calls}"
        a_calls.append(flaky(replicas.a))
    cooled = time.monotonic()
    assert all(flaky(replicas.a) for _ in range(5))  # A routes around it now
    time.sleep(max(0.0, cooled + 1.5 - time.monotonic()))  # LiteLLM re-reads cooldowns from Redis every 1 s
    b_calls = [flaky(replicas.b) for _ in range(20)]
    print(f"\ncooldown across replicas: A failed {a_calls.count(False)} of {len(a_calls)} calls before it cooled "
          f"{DEAD} down; B then failed {b_calls.count(False)} of {len(b_calls)}")
    assert b_calls == [True] * 20


# -- one replica killed mid-load ----------------------------------------------------------------
def test_a_replica_killed_mid_load_loses_no_answer_no_receipt_and_charges_nothing_twice(replicas):
    offset, before = line_count(replicas.spend), stats(replicas)
    first = [f"kill-{i}" for i in range(8)]
    second = [f"after-{i}" for i in range(4)]
    with concurrent.futures.ThreadPoolExecutor(len(first) + len(second)) as pool:
        # Clients that retry: the openai client's own retries (502 from the balancer, a
        # dropped connection), each retry with the same debate id.
        flying = {d: pool.submit(ask, replicas.url, d, retries=5, timeout=120) for d in first}
        # Kill A once the runs' panels have reached the upstream (A's runs are mid-flight).
        wait_for(lambda: stats(replicas).get("model-a", 0) - before.get("model-a", 0) >= 6, what="panels started")
        killed = time.monotonic()
        for pid in reversed(process_tree(replicas.a_proc.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        replicas.a_proc.wait()
        # More requests right after, before the health checks have marked A down.
        flying |= {d: pool.submit(ask, replicas.url, d, retries=5, timeout=120) for d in second}
        wait_for(lambda: replicas.lb.servers()["a"]["status"].startswith("DOWN"), what="A marked down")
        marked_down = time.monotonic() - killed
        answers = {d: f.result() for d, f in flying.items()}
    # Every client got an answer, settled, with a receipt both the survivor and the balancer serve.
    for debate_id, answer in answers.items():
        assert answer.text and answer.chorus["settlement"]["status"] == "settled", debate_id
        receipt = get(replicas.url, f"/chorus/v1/receipts/{debate_id}")
        assert receipt.status_code == 200 and \
            receipt.json()["payload"]["receipt_id"] == answer.chorus["settlement"]["receipt_id"]
    retried = [d for d, a in answers.items() if a.retries]
    assert retried and all(answers[d].served_by == "b" for d in retried)  # A's runs in flight, answered by B
    # No debate id charged twice; every run that ran on B to its end charged once (A may have
    # died before logging its last charges: LiteLLM writes spend after the answer).
    ran_on_b = [d for d, a in answers.items() if a.served_by == "b" and not a.chorus.get("replayed")]
    costs = charges(replicas, offset, answers, settled=ran_on_b)
    for debate_id, cost in costs.items():
        assert sum(c > 0 for c in cost) <= 1, (debate_id, cost)
    assert all(sum(c > 0 for c in costs[d]) == 1 for d in ran_on_b)
    calls = calls_since(before, stats(replicas))
    servers = replicas.lb.servers()

    def span(ids):  # seconds from the kill to their answers
        times = sorted(answers[d].done - killed for d in ids)
        return f"{times[0]:.2f}-{times[-1]:.2f} s" if times else "-"

    others = [d for d in first if d not in retried]
    print(f"\nreplicas: SIGKILL A with {len(first)} runs in flight, {len(second)} sent after: "
          f"A marked down after {marked_down:.2f} s; haproxy on A: {servers['a']['wredis']} redispatched, "
          f"{servers['a']['eresp']} cut; {len(retried)} clients retried {[answers[d].retries for d in retried]}, "
          f"answered {span(retried)} after the kill; the other runs in flight {span(others)}; sent after: "
          f"{span(second)}; writer calls {calls['writer']} for {len(answers)} ids; "
          f"{sum(bool(a.chorus.get('replayed')) for a in answers.values())} replayed")
