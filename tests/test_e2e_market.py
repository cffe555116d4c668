"""The marketplace end to end: model servers and `chorus peer join` as separate processes,
a two-worker proxy on Redis, the official openai client asking `fusion/*` models whose
seats are drawn from the pool. Peers join, are drawn, answer and are paid (receipts
verified by `chorus peer earnings`); one killed mid-run is a failed member, one that stops
beating is no longer drawn, and comes back when it joins again."""

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from chorus_litellm.market import peers
from chorus_litellm.settlement.signing import read_key_file
from tests.conftest import PEER_SYNC_S, wait_drawable, wait_for
from tests.servers import ROOT, free_port, stop, wait_http

HARD = [{"role": "user", "content": "Compare Raft and Paxos and explain the trade-offs."}]
BOUNTY = {"bounty": {"amount": 1000, "currency": "USD"}}
SYNC_S = PEER_SYNC_S  # each worker's peer sync pass (CHORUS_PEER_SYNC_S; 2 s by default): 0.5 s


@pytest.fixture
def market(redis_proxy):
    """The session's two workers on Redis (tests/conftest.py), admitting peers: open, from
    127.0.0.1/32, away after 3 s without a heartbeat, a sync pass every SYNC_S."""
    assert {k: redis_proxy.env[k] for k in ("CHORUS_STORE", "CHORUS_PEER_ADMISSION", "CHORUS_PEER_URL_ALLOWLIST",
                                            "CHORUS_PEER_AWAY_AFTER_S", "CHORUS_PEER_SYNC_S")} == \
        {"CHORUS_STORE": "redis", "CHORUS_PEER_ADMISSION": "open", "CHORUS_PEER_URL_ALLOWLIST": "127.0.0.1/32",
         "CHORUS_PEER_AWAY_AFTER_S": "3", "CHORUS_PEER_SYNC_S": str(SYNC_S)}
    return redis_proxy


class ModelServer:
    """A peer's own OpenAI-compatible server (the fake upstream), as its own process."""

    def __init__(self, latency: float = 0.0) -> None:
        self.port, self.latency = free_port(), latency
        self.proc = subprocess.Popen([sys.executable, "-m", "chorus_litellm.demo.fake_upstream", "--port", str(self.port),
                                      "--latency", str(latency)])
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(f"{self.url}/health", self.proc)

    def calls(self) -> int:
        return sum(httpx.get(f"{self.url}/stats", timeout=5).json().values())

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


class PeerProcess:
    """`chorus peer join` as a peer operator runs it, in its own process."""

    def __init__(self, market, name: str, server: ModelServer, key: Path | None = None) -> None:
        self.market, self.name, self.server = market, name, server
        self.key = key or market.workdir / f"{name}-key.json"
        if not self.key.exists():
            assert cli("peer", "keygen", "--out", str(self.key)).returncode == 0
        self.id = json.loads(self.key.read_text())["key_id"]
        self.log = market.workdir / f"{name}.log"
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chorus_litellm.cli", "peer", "join", "--proxy", self.market.url, "--pool", "gpu",
             "--base-url", f"{self.server.url}/v1", "--model", f"{self.name}-model", "--payee", f"{self.name}-payee",
             "--key", str(self.key), "--heartbeat-s", "1"],
            stdout=self.log.open("a"), stderr=subprocess.STDOUT, cwd=ROOT)

    def output(self) -> str:
        return self.log.read_text()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chorus_litellm.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def pool_view(market) -> dict:
    reply = httpx.get(f"{market.url}/chorus/v1/peers", params={"pool": "gpu"},
                      headers={"Authorization": "Bearer sk-team-a"}, timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def pool(market) -> dict:
    return {p["peer_id"]: p for p in pool_view(market)["peers"]}


def held_by(market, peer) -> int:
    """How many of the proxy's workers hold the peer as a Router deployment (the pool
    view's drawn_by, from each worker's last sync pass)."""
    return pool(market).get(peer.id, {}).get("drawn_by", 0)


def drawable(market, *peers) -> None:
    """Live in the store and probed into both workers' Routers, so a run on either may seat them."""
    wait_drawable(market.url, "sk-team-a", "gpu", [p.id for p in peers], workers=market.workers)


def ask(market, model="fusion/market", **extra):
    client = openai.OpenAI(base_url=f"{market.url}/v1", api_key="sk-team-a", max_retries=0, timeout=60)
    return client.chat.completions.create(model=model, messages=HARD, extra_body={**BOUNTY, **extra})


def paid(resp) -> dict:
    return {p.get("peer_id"): p for p in resp.model_extra["chorus"]["settlement"]["payouts"]}


@contextlib.contextmanager
def peers_on(market, *names, latency: float = 0.0):
    servers = [ModelServer(latency) for _ in names]
    joined = [PeerProcess(market, n, s) for n, s in zip(names, servers, strict=True)]
    try:
        yield joined
    finally:
        for p in joined:
            stop(p.proc)
        for s in servers:
            stop(s.proc)


def test_two_peers_join_answer_get_paid_and_verify_their_earnings(market):
    with peers_on(market, "alice", "bob") as (alice, bob):
        drawable(market, alice, bob)
        listed = pool(market)
        assert listed[alice.id]["model"] == "alice-model" and listed[bob.id]["payee"] == "bob-payee"
        resp = ask(market)
        assert resp.choices[0].message.content
        payouts = paid(resp)
        assert set(payouts) == {alice.id, bob.id}  # three seats, two peers: one seat each
        assert {payouts[alice.id]["payee"], payouts[bob.id]["payee"]} == {"alice-payee", "bob-payee"}
        assert payouts[alice.id]["amount"] > 0 and payouts[bob.id]["amount"] > 0
        assert sum(p["amount"] for p in payouts.values()) == 1000
        assert alice.server.calls() >= 2 and bob.server.calls() >= 2  # the probe, then the panel
        # The peer's own view: its receipts, verified with the proxy's pinned key.
        key = httpx.get(f"{market.url}/chorus/v1/keys", headers={"Authorization": "Bearer sk-team-a"}).json()
        out = cli("peer", "earnings", "--proxy", market.url, "--key", str(alice.key), "--json",
                  "--public-key", key["keys"][0]["public_key"])
        assert out.returncode == 0, out.stdout + out.stderr
        mine = json.loads(out.stdout)
        assert mine["peer_id"] == alice.id and [r["signature"] for r in mine["receipts"]] == ["verified"]
        assert mine["totals"] == [{"currency": "USD", "amount": payouts[alice.id]["amount"], "receipts": 1}]
        # Another key cannot read alice's earnings; the pool view shows what she earned.
        path = f"/chorus/v1/peers/{alice.id}/earnings"
        forged = peers.sign(read_key_file(bob.key), "GET", path, int(time.time()), b"")
        assert httpx.get(market.url + path, headers=forged, timeout=10).status_code == 403
        assert pool(market)[alice.id]["earnings"] == mine["totals"]
        # SIGTERM: the peer leaves the pool at once.
        alice.proc.send_signal(signal.SIGTERM)
        assert alice.proc.wait(15) == 0 and "left the pool" in alice.output()
        assert alice.id not in pool(market)


def test_static_members_and_pool_seats_mix_and_too_few_peers_is_a_503(market):
    with pytest.raises(openai.APIStatusError) as err:
        ask(market, model="fusion/market-big")
    assert err.value.status_code == 503
    assert "pool 'gpu' has 0 live peer(s)" in str(err.value) and "quorum of 5" in str(err.value)
    with peers_on(market, "carol") as (carol,):
        drawable(market, carol)
        resp = ask(market, model="fusion/market-mixed")
        assert {(k, p["payee"]) for k, p in paid(resp).items()} == {(None, "model:model-a"), (carol.id, "carol-payee")}


def test_a_peer_killed_mid_run_is_a_failed_member_not_a_failed_run(market):
    with peers_on(market, "dave", "erin", "frank", latency=2.0) as (dave, erin, frank):
        drawable(market, dave, erin, frank)
        result = {}
        runner = threading.Thread(target=lambda: result.update(resp=ask(market)))
        runner.start()
        wait_for(lambda: dave.server.calls() >= 2, 10, "dave's panel call")  # probe + panel call in flight
        # The pool view's load: calls in flight, published by the worker running them.
        wait_for(lambda: {p: e["load"] for p, e in pool(market).items()} == {dave.id: 1, erin.id: 1, frank.id: 1},
                 1.8, "the three calls in flight in the pool view")
        dave.server.kill()
        runner.join(60)
        payouts = paid(result["resp"])
        assert set(payouts) == {dave.id, erin.id, frank.id}
        assert payouts[dave.id]["amount"] == 0 and payouts[erin.id]["amount"] + payouts[frank.id]["amount"] == 1000
        debate_id = result["resp"].model_extra["chorus"]["settlement"]["debate_id"]
        receipt = httpx.get(f"{market.url}/chorus/v1/receipts/{debate_id}",
                            headers={"Authorization": "Bearer sk-team-a"}, timeout=10).json()
        failed = [c for c in receipt["payload"]["contributions"] if c.get("peer_id") == dave.id]
        assert failed[0]["eligible"] is False and failed[0]["ineligible_reason"] in {"connection", "http_error",
                                                                                    "error"}


def test_a_peer_that_stops_beating_is_not_drawn_and_is_drawn_again_after_rejoining(market):
    with peers_on(market, "gina", "hank") as (gina, hank):
        drawable(market, gina, hank)
        gina.proc.kill()  # gone without a word: no leave, no more heartbeats
        gina.proc.wait()
        wait_for(lambda: pool(market)[gina.id]["state"] == "away", 10, "gina away")
        wait_for(lambda: held_by(market, gina) == 0, 20, "gina's deployment gone from every worker's Router")
        with pytest.raises(openai.APIStatusError) as err:  # hank alone cannot make the quorum of 2
            ask(market)
        assert err.value.status_code == 503 and "has 1 live peer(s)" in str(err.value)
        gina.start()  # the same key joins again
        drawable(market, gina)
        assert set(paid(ask(market))) == {gina.id, hank.id}

