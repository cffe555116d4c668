"""Pool seats: order by reputation (floor, exploration), random, cheapest; one seat per
peer unless allowed; personas rotated or hashed within what each peer accepts; and the
pipeline seating them beside static members, with a 503 naming the pool when too few."""

import dataclasses
import random
from collections import Counter

import pytest

from chorus_litellm.market import peers
from chorus_litellm.settlement.signing import Signer, verify
from chorus_litellm.core.errors import PoolError, UpstreamError
from chorus_litellm.settlement.finish import ReputationKeeper, Settler
from chorus_litellm.core.stages import draw
from chorus_litellm.testing import TEST_SIGNING_SEED, FakeCompleter, HashEmbedder
from chorus_litellm.core.events import RunDone
from tests.factories import profile, request, run_events
from tests.test_settle import MemoryStore

PERSONAS = ["skeptic", "optimist", "analyst", "contrarian"]


def offer(n, **extra):
    return {"peer_id": f"ed25519:{n:016x}", "pool": "gpu", "model": f"m{n}", "payee": f"payee-{n}",
            "personas": [], "max_concurrency": 2, "price_per_token": None, **extra}


def panel(**kw):
    return profile(panel={"pool": "gpu", "seats": 3, "min_quorum": 2, **kw}).panel


def ids(result):
    return [s.peer for s in result.seats]


def test_reputation_puts_high_scorers_first_drops_the_floor_and_explores_new_peers():
    offers = [offer(i) for i in range(6)]
    scores = {offers[0]["peer_id"]: 0.9, offers[1]["peer_id"]: 0.5, offers[2]["peer_id"]: 0.1,
              offers[3]["peer_id"]: 0.7}  # 4 and 5 are new (no score yet)
    config = panel(seats=4, reputation={"min_score": 0.2, "explore": 0.25})
    result = draw.draw(offers, config, scores, PERSONAS, random.Random(1))
    drawn = ids(result)
    assert len(drawn) == 4 and offers[2]["peer_id"] not in drawn  # under the floor
    assert drawn[0] in {offers[4]["peer_id"], offers[5]["peer_id"]}  # one exploration seat (25% of 4)
    assert drawn[1:] == [offers[0]["peer_id"], offers[3]["peer_id"], offers[1]["peer_id"]]  # best first
    assert (result.live, result.below_floor) == (6, 1)
    # Over many runs, both new peers get their turn.
    seen = Counter(ids(draw.draw(offers, config, scores, PERSONAS, random.Random(s)))[0] for s in range(40))
    assert set(seen) == {offers[4]["peer_id"], offers[5]["peer_id"]}
    # No exploration: new peers only fill what judged peers cannot.
    few = draw.draw(offers[:2] + offers[4:5], panel(seats=3, reputation={"explore": 0}), scores, PERSONAS,
                    random.Random(0))
    assert ids(few) == [offers[0]["peer_id"], offers[1]["peer_id"], offers[4]["peer_id"]]


def test_random_varies_and_cheapest_orders_by_price():
    offers = [offer(i, price_per_token=p) for i, p in enumerate([3e-6, None, 1e-6, 2e-6])]
    firsts = {ids(draw.draw(offers, panel(select="random"), {}, PERSONAS, random.Random(s)))[0] for s in range(30)}
    assert len(firsts) == 4
    cheap = draw.draw(offers, panel(select="cheapest"), {}, PERSONAS, random.Random(0))
    assert ids(cheap) == [offers[1]["peer_id"], offers[2]["peer_id"], offers[3]["peer_id"]]  # free first


def test_one_seat_per_peer_unless_allowed_and_never_beyond_its_concurrency():
    offers = [offer(0, max_concurrency=1), offer(1, max_concurrency=3)]
    assert len(draw.draw(offers, panel(seats=4), {}, PERSONAS, random.Random(0)).seats) == 2
    result = draw.draw(offers, panel(seats=4, seats_per_peer=3), {}, PERSONAS, random.Random(0))
    assert Counter(ids(result)) == {offers[0]["peer_id"]: 1, offers[1]["peer_id"]: 3}
    names = [s.name for s in result.seats]
    assert len(set(names)) == 4 and "m1@00000000#2" in names
    seat = result.seats[0]
    assert seat.model == peers.model_name(seat.peer) and seat.payee.startswith("payee-")


def test_personas_rotate_hash_and_respect_what_a_peer_accepts():
    offers = [offer(i) for i in range(4)]
    rotated = draw.draw(offers, panel(seats=4, select="random"), {}, PERSONAS, random.Random(0))
    assert [s.persona for s in rotated.seats] == PERSONAS  # distinct, in order
    picky = [offer(0, personas=["analyst"]), offer(1), offer(2, personas=["skeptic", "contrarian"])]
    result = draw.draw(picky, panel(seats=3, select="cheapest"), {}, PERSONAS, random.Random(0))
    got = {s.peer: s.persona for s in result.seats}
    assert got[picky[0]["peer_id"]] == "analyst"
    assert got[picky[2]["peer_id"]] in {"skeptic", "contrarian"} and len(set(got.values())) == 3
    hashed = [{s.peer: s.persona for s in draw.draw(offers, panel(seats=4, personas="hash", select="random"), {},
                                                        PERSONAS, random.Random(seed)).seats} for seed in range(5)]
    assert all(h == hashed[0] for h in hashed)  # a peer keeps its persona whatever the order
    off = draw.draw(offers, panel(personas="off"), {}, PERSONAS, random.Random(0))
    assert {s.persona for s in off.seats} == {None}


def pool_request(offers, bounty=None, **panel_kw):
    prof = profile(panel={"members": ["model-a"], "pool": "gpu", "seats": 2, "min_quorum": 2, **panel_kw})
    req = request(prof, **({"bounty": bounty} if bounty else {}))
    req = dataclasses.replace(req, owner="team:team-a")

    async def pool(name):
        assert name == "gpu"
        return offers

    return req, pool


async def test_pool_seats_sit_beside_static_members_and_are_paid_to_their_payees():
    offers = [offer(1), offer(2)]
    fake, store = FakeCompleter(), MemoryStore()
    req, pool = pool_request(offers, bounty={"amount": 900, "currency": "USD"})
    signer = Signer(TEST_SIGNING_SEED)
    events = await run_events(req, fake, pool=pool, embedder=HashEmbedder(),
                              finishers=[Settler(signer, store, HashEmbedder()), ReputationKeeper(store)])
    report = events[-1].report
    assert isinstance(events[-1], RunDone)
    asked = {c.model for c in fake.calls if c.stage == "panel"}
    assert asked == {"model-a", *(peers.model_name(o["peer_id"]) for o in offers)}
    rows = {c["seat"]: c for c in report.receipt["payload"]["contributions"]}
    assert {r.get("peer_id") for r in rows.values()} == {None, *(o["peer_id"] for o in offers)}
    for o in offers:
        row = next(r for r in rows.values() if r.get("peer_id") == o["peer_id"])
        assert row["payee"] == o["payee"] and row["amount"] > 0
    assert sum(r["amount"] for r in rows.values()) == 900
    verify(report.receipt, [signer.public_key])  # the peer's id is inside the signed payload
    (obs,) = store.observations  # a peer's reputation is its own, not its payee's
    assert set(obs) == {"model:model-a", *(o["peer_id"] for o in offers)}
    paid = {p.get("peer_id"): p["payee"] for p in report.settlement["payouts"]}
    assert paid == {None: "model:model-a", **{o["peer_id"]: o["payee"] for o in offers}}


async def test_too_few_live_peers_is_a_503_naming_the_pool_and_a_failed_peer_is_only_a_failed_member():
    req, pool = pool_request([offer(1)], min_quorum=3)
    with pytest.raises(PoolError) as err:
        await run_events(req, FakeCompleter(), pool=pool)
    assert err.value.status_code == 503
    assert str(err.value) == "pool 'gpu' has 1 live peer(s): 1 seated, 2 needed for this profile's quorum of 3"
    offers = [offer(1), offer(2)]
    fake = FakeCompleter().enqueue(peers.model_name(offers[0]["peer_id"]), UpstreamError("connection", "refused"))
    req, pool = pool_request(offers)
    events = await run_events(req, fake, pool=pool)
    report = events[-1].report
    assert [f.seat.peer for f in report.panel.failures] == [offers[0]["peer_id"]]
    assert len(report.panel.answers) == 2


async def test_the_seated_event_lists_the_drawn_peers():
    seen = []
    from chorus_litellm.core.runlog import RunLog

    req, pool = pool_request([offer(1), offer(2)])
    await run_events(req, FakeCompleter(), pool=pool, log=RunLog(seen.append))
    (seated,) = [e for e in seen if e.type == "seated"]
    assert seated.data["pool"] == "gpu" and seated.data["live"] == 2
    assert {s["peer"] for s in seated.data["seats"]} == {offer(1)["peer_id"], offer(2)["peer_id"]}
    assert [e.type for e in seen][:3] == ["run_started", "route", "seated"]
