"""Marketplace peers through the real proxy: signed registration, replay and admission
refusals, the SSRF rule on base URLs, heartbeats, going away, leaving, the pool view."""

import json
import os
import time

import httpx
import pytest

from chorus_litellm.market import peers
from chorus_litellm.settlement.signing import key_id
from tests.conftest import e2e_config, proxy_env
from tests.servers import litellm_proxy

INVITE = "gpu-pool-invite-0123456789"


class Peer:
    """A peer's key, signing its own requests as `chorus peer` will."""

    def __init__(self, url: str) -> None:
        from nacl.signing import SigningKey

        self.url, self.seed = url, os.urandom(32)
        self.id = key_id(bytes(SigningKey(self.seed).verify_key))
        self.clock = int(time.time()) - 5

    def call(self, method: str, path: str, body: dict | None = None, *, headers: dict | None = None,
             timestamp: int | None = None) -> httpx.Response:
        raw = json.dumps(body).encode() if body is not None else b""
        if timestamp is None:
            self.clock += 1
            timestamp = self.clock
        signed = peers.sign(self.seed, method, path, timestamp, raw)
        return httpx.request(method, f"{self.url}{path}", content=raw, timeout=10,
                             headers={"Content-Type": "application/json", **signed, **(headers or {})})

    def register(self, upstream: str, **overrides) -> httpx.Response:
        offer = {"pool": "gpu", "base_url": f"{upstream}/v1", "model": "model-a", "payee": f"payee-{self.id[-4:]}",
                 "personas": ["skeptic"], "max_concurrency": 2, **overrides}
        return self.call("POST", "/chorus/v1/peers", offer, headers={peers.INVITE: INVITE})


@pytest.fixture(scope="module")
def market(upstream, signing_key, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("market")
    (workdir / "spend.jsonl").touch()
    env = {**proxy_env(workdir, signing_key, workdir / "spend.jsonl"), "CHORUS_PEER_ADMISSION": "invite",
           "CHORUS_PEER_INVITES": f"gpu={INVITE}", "CHORUS_PEER_URL_ALLOWLIST": "127.0.0.1/32",
           "CHORUS_PEER_AWAY_AFTER_S": "2"}
    with litellm_proxy(e2e_config(upstream), workdir, env=env) as (url, _log):
        yield url


def pool(url, key="sk-team-a"):
    return httpx.get(f"{url}/chorus/v1/peers", params={"pool": "gpu"}, headers={"Authorization": f"Bearer {key}"},
                     timeout=10).json()


def test_a_peer_joins_beats_goes_away_comes_back_and_leaves(market, upstream):
    peer = Peer(market)
    joined = peer.register(upstream)
    assert joined.status_code == 201, joined.text
    assert joined.json() == {"peer_id": peer.id, "pool": "gpu", "state": "live", "heartbeat_s": 20.0,
                             "away_after_s": 2.0}
    listed = {p["peer_id"]: p for p in pool(market)["peers"]}
    assert listed[peer.id]["state"] == "live" and listed[peer.id]["model"] == "model-a"
    assert "base_url" not in listed[peer.id] and "api_key" not in listed[peer.id]  # not for a team key
    time.sleep(2.2)  # no heartbeat for longer than away_after_s
    assert {p["peer_id"]: p["state"] for p in pool(market)["peers"]}[peer.id] == "away"
    beat = peer.call("POST", f"/chorus/v1/peers/{peer.id}/heartbeat")
    assert beat.status_code == 200 and beat.json()["state"] == "live"
    assert {p["peer_id"]: p["state"] for p in pool(market)["peers"]}[peer.id] == "live"
    assert peer.call("DELETE", f"/chorus/v1/peers/{peer.id}").status_code == 204
    assert peer.id not in {p["peer_id"] for p in pool(market)["peers"]}
    assert peer.call("POST", f"/chorus/v1/peers/{peer.id}/heartbeat").status_code == 404


def test_unsigned_badly_signed_replayed_and_stale_requests_are_refused(market, upstream):
    peer = Peer(market)
    offer = {"pool": "gpu", "base_url": f"{upstream}/v1", "model": "model-a", "payee": "p"}
    unsigned = httpx.post(f"{market}/chorus/v1/peers", json=offer, headers={peers.INVITE: INVITE}, timeout=10)
    assert unsigned.status_code == 401 and "must be signed" in unsigned.json()["detail"]
    raw = json.dumps(offer).encode()
    forged = peers.sign(peer.seed, "POST", "/chorus/v1/peers", int(time.time()), raw)
    tampered = httpx.post(f"{market}/chorus/v1/peers", content=raw.replace(b'"p"', b'"thief"'), timeout=10,
                          headers={**forged, peers.INVITE: INVITE, "Content-Type": "application/json"})
    assert tampered.status_code == 401 and "does not match" in tampered.json()["detail"]
    stale = peer.call("POST", "/chorus/v1/peers", offer, headers={peers.INVITE: INVITE},
                      timestamp=int(time.time()) - 3600)
    assert stale.status_code == 401 and "from the proxy's clock" in stale.json()["detail"]
    assert peer.register(upstream).status_code == 201
    replay = peer.call("POST", f"/chorus/v1/peers/{peer.id}/heartbeat", timestamp=peer.clock)  # same t again
    assert replay.status_code == 401 and "replay" in replay.json()["detail"]
    other = Peer(market)
    hijack = other.call("DELETE", f"/chorus/v1/peers/{peer.id}")  # another key cannot remove it
    assert hijack.status_code == 403
    assert peer.id in {p["peer_id"] for p in pool(market)["peers"]}


@pytest.mark.parametrize(("overrides", "headers", "status", "words"), [
    ({}, {peers.INVITE: "wrong-token-0123456789"}, 403, "invite"),
    ({"pool": "cpu"}, {}, 403, "invite"),  # no invite exists for this pool
    ({"base_url": "http://10.0.0.9:11434/v1"}, {}, 400, "private"),
    ({"base_url": "http://169.254.169.254/v1"}, {}, 400, "metadata"),
    ({"personas": ["pirate"]}, {}, 400, "unknown personas"),
    ({"max_concurrency": 0}, {}, 400, "max_concurrency"),
    ({"pool": "Bad Pool"}, {}, 400, "pool"),
])
def test_admission_and_the_offer_are_checked(market, upstream, overrides, headers, status, words):
    peer = Peer(market)
    offer = {"pool": "gpu", "base_url": f"{upstream}/v1", "model": "model-a", "payee": "p", **overrides}
    resp = peer.call("POST", "/chorus/v1/peers", offer, headers={peers.INVITE: INVITE, **headers})
    assert resp.status_code == status and words in resp.json()["detail"], resp.text


def ask_peer(url, peer_id):
    import openai

    client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-team-a", max_retries=0, timeout=20)
    return client.chat.completions.create(model=f"peer/{peer_id}", messages=[{"role": "user", "content": "hi"}])


def until(check, seconds=15.0):
    deadline = time.monotonic() + seconds
    while True:
        try:
            return check()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_live_peer_is_a_router_deployment_until_it_goes_away_and_a_failed_probe_keeps_one_out(market, upstream):
    import openai

    peer = Peer(market)
    assert peer.register(upstream, price_per_token=0.000001).status_code == 201
    def beat_and_ask():
        peer.call("POST", f"/chorus/v1/peers/{peer.id}/heartbeat")
        return ask_peer(market, peer.id)

    answer = until(beat_and_ask)  # probed, then added by the sync on this worker
    assert answer.choices[0].message.content and answer.usage.total_tokens > 0
    assert answer.model_extra.get("chorus") is None  # a plain model call, served by the peer's server
    for _ in range(3):  # the peer keeps beating: it stays
        time.sleep(0.7)
        assert peer.call("POST", f"/chorus/v1/peers/{peer.id}/heartbeat").status_code == 200
    assert ask_peer(market, peer.id).choices[0].message.content
    # then silent for longer than away_after_s: away, and out of the Router (polled)

    def gone():
        try:
            ask_peer(market, peer.id)
        except openai.APIStatusError as exc:
            return exc
        raise AssertionError("still a deployment")

    assert until(gone).status_code in (400, 404)

    dead = Peer(market)  # its server does not answer: the probe fails, it is never drawn
    assert dead.register(upstream, base_url="http://127.0.0.1:9/v1", payee="dead-payee").status_code == 201
    until(lambda: pool(market)["peers"] and next(p for p in pool(market)["peers"]
                                                  if p["peer_id"] == dead.id)["reputation"]["failure_rate"] == 1.0)
    with pytest.raises(openai.APIStatusError):
        ask_peer(market, dead.id)
