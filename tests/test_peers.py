"""Peer identity, signatures, admission and health rules (market/peers.py), without a proxy."""

import os

import pytest

from chorus_litellm.market import peers
from chorus_litellm.settlement.signing import key_id

NOW = 1_800_000_000


def signed(seed=None, method="POST", path="/chorus/v1/peers", t=NOW, body=b"{}"):
    seed = seed or os.urandom(32)
    return seed, peers.sign(seed, method, path, t, body)


def test_a_signature_names_the_key_and_binds_method_path_time_and_body():
    seed, headers = signed(body=b'{"a": 1}')
    who = peers.verify(headers, "POST", "/chorus/v1/peers", b'{"a": 1}', now=NOW, window_s=300)
    assert who.peer_id == key_id(who.public_key) and who.timestamp == NOW
    for method, path, body in (("DELETE", "/chorus/v1/peers", b'{"a": 1}'), ("POST", "/chorus/v1/peerz", b'{"a": 1}'),
                               ("POST", "/chorus/v1/peers", b'{"a": 2}')):
        with pytest.raises(peers.PeerError, match="does not match"):
            peers.verify(headers, method, path, body, now=NOW, window_s=300)
    with pytest.raises(peers.PeerError, match="from the proxy's clock"):
        peers.verify(headers, "POST", "/chorus/v1/peers", b'{"a": 1}', now=NOW + 301, window_s=300)
    with pytest.raises(peers.PeerError, match="must be signed"):
        peers.verify({}, "POST", "/chorus/v1/peers", b"", now=NOW, window_s=300)


@pytest.mark.parametrize(("policy", "peer", "pool", "invite", "ok"), [
    (peers.Policy("closed"), "ed25519:aa", "gpu", None, False),
    (peers.Policy("open"), "ed25519:aa", "gpu", None, True),
    (peers.Policy("allowlist", frozenset({"ed25519:aa"})), "ed25519:aa", "gpu", None, True),
    (peers.Policy("allowlist", frozenset({"ed25519:aa"})), "ed25519:bb", "gpu", None, False),
    (peers.Policy("invite", invites=(("gpu", "t" * 16),)), "ed25519:aa", "gpu", "t" * 16, True),
    (peers.Policy("invite", invites=(("gpu", "t" * 16),)), "ed25519:aa", "gpu", "x" * 16, False),
    (peers.Policy("invite", invites=(("gpu", "t" * 16),)), "ed25519:aa", "cpu", "t" * 16, False),
])
def test_admission(policy, peer, pool, invite, ok):
    if ok:
        peers.admit(policy, peer, pool, invite)
    else:
        with pytest.raises(peers.PeerError) as err:
            peers.admit(policy, peer, pool, invite)
        assert err.value.status_code == 403


def test_invites_parse_and_a_bad_one_is_named_without_its_token():
    assert peers.Policy.parse_invites("gpu=0123456789abcdef, cpu=fedcba9876543210") == (
        ("gpu", "0123456789abcdef"), ("cpu", "fedcba9876543210"))
    with pytest.raises(ValueError, match="entry 2") as err:
        peers.Policy.parse_invites("gpu=0123456789abcdef,cpu=short-secret")
    assert "short-secret" not in str(err.value)


def test_a_peer_is_away_after_missed_heartbeats():
    assert peers.state(100.0, 159.0, 60.0) == "live" and peers.state(100.0, 160.0, 60.0) == "away"


def test_a_peer_is_a_router_deployment_of_its_own_model_limits_and_prices():
    from chorus_litellm.market.sync import deployment

    record = {"peer_id": "ed25519:0123456789abcdef", "model": "llama3.1:8b", "base_url": "http://10.0.0.7:11434/v1",
              "api_key": None, "max_concurrency": 3, "price_per_token": 2e-7, "payee": "alice", "registered_at": 5.0}
    dep = deployment(record)
    assert dep["model_name"] == "peer/ed25519:0123456789abcdef"
    assert dep["litellm_params"] == {"model": "openai/llama3.1:8b", "api_base": "http://10.0.0.7:11434/v1",
                                     "api_key": "none", "max_parallel_requests": 3,
                                     "input_cost_per_token": 2e-7, "output_cost_per_token": 2e-7}
    assert dep["model_info"]["chorus_peer"] == record["peer_id"] and dep["model_info"]["chorus_payee"] == "alice"
    again = deployment({**record, "registered_at": 6.0})  # a new registration: a new deployment, probed anew
    assert again["model_info"]["id"] != dep["model_info"]["id"]
    assert "input_cost_per_token" not in deployment({**record, "price_per_token": None})["litellm_params"]


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
async def routes(request, tmp_path, monkeypatch):
    """The marketplace routes in-process (an ASGI client), on a store whose clock the test moves."""
    import uuid
    from types import SimpleNamespace

    import httpx
    from fastapi import FastAPI

    from chorus_litellm.market.routes import build_peer_router
    from chorus_litellm.storage.redis_backend import RedisStore
    from chorus_litellm.storage.sqlite_backend import SQLiteStore

    monkeypatch.setenv("CHORUS_PEER_ADMISSION", "open")
    monkeypatch.setenv("CHORUS_PEER_URL_ALLOWLIST", "127.0.0.1/32")
    clock = _Clock(float(NOW))
    options = {"outbox": tmp_path / "outbox.sqlite3", "legacy_outbox": tmp_path / "legacy.jsonl", "clock": clock}
    if request.param == "sqlite":
        store = SQLiteStore(tmp_path / "db.sqlite3", **options)
    else:
        store = RedisStore(request.getfixturevalue("redis_server").url, prefix=f"test-{uuid.uuid4().hex[:8]}",
                           **options)
    app = FastAPI()
    app.include_router(build_peer_router(SimpleNamespace(store=store, profiles={})))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as client:
        yield SimpleNamespace(client=client, store=store, clock=clock)
    await store.aclose()


async def test_a_registration_captured_before_the_peer_left_cannot_bring_it_back(routes):
    """Issue 23: same body, same signature, after the peer's DELETE: refused (it was a 201)."""
    seed = os.urandom(32)
    body = b'{"pool": "gpu", "base_url": "http://127.0.0.1:9/v1", "model": "m", "payee": "alice"}'
    captured = peers.sign(seed, "POST", "/chorus/v1/peers", NOW, body)
    joined = await routes.client.post("/chorus/v1/peers", content=body, headers=captured)
    assert joined.status_code == 201, joined.text
    peer_id = joined.json()["peer_id"]
    path = f"/chorus/v1/peers/{peer_id}"
    routes.clock.now += 10
    left = await routes.client.delete(path, headers=peers.sign(seed, "DELETE", path, NOW + 10, b""))
    assert left.status_code == 204
    routes.clock.now += 60  # well inside the 300 s window
    replay = await routes.client.post("/chorus/v1/peers", content=body, headers=captured)
    assert replay.status_code == 401 and "replay" in replay.json()["detail"]
    assert await routes.store.get_peer(peer_id) is None and await routes.store.all_peers() == []
    back = await routes.client.post("/chorus/v1/peers", content=body,
                                    headers=peers.sign(seed, "POST", "/chorus/v1/peers", NOW + 70, body))
    assert back.status_code == 201  # the peer itself, signing anew, joins again
    assert (await routes.store.get_peer(peer_id))["last_ts"] == NOW + 70
    routes.clock.now += 400  # past the window: the captured t is stale whatever the store keeps
    stale = await routes.client.post("/chorus/v1/peers", content=body, headers=captured)
    assert stale.status_code == 401 and "from the proxy's clock" in stale.json()["detail"]


@pytest.mark.parametrize("price", ["1e309", "Infinity", "NaN"])
def test_a_non_finite_price_is_a_bad_offer(price):
    from pydantic import ValidationError

    offer = '{"pool": "gpu", "base_url": "http://127.0.0.1:9/v1", "model": "m", "payee": "a", "price_per_token": '
    with pytest.raises(ValidationError, match="price_per_token"):
        peers.Registration.model_validate_json(offer + price + "}")
    assert peers.Registration.model_validate_json(offer + "2e-7}").price_per_token == 2e-7
