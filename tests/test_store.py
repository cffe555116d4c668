"""One contract, two stores: SQLite (embedded) and Redis (a real redis-server).

Outages are real: a SQLite db whose parent is a regular file, a Redis URL where nothing
listens, or the redis_server fixture stopped. Time is a virtual clock.
"""

import asyncio
import json
import multiprocessing
import sqlite3
import uuid

import pytest

from chorus_litellm.storage.backends import store_from_env, store_from_settings
from chorus_litellm.storage.store import owner_of
from chorus_litellm.storage.redis_backend import RedisStore
from chorus_litellm.storage.sqlite_backend import MIGRATIONS, SQLiteStore
from chorus_litellm.core.errors import StoreUnavailable
from chorus_litellm.core.ports import PeerLoads, ProfilesServed
from chorus_litellm.settings import load_settings
from chorus_litellm.core.types import Caller
from tests.servers import free_port

FORK = multiprocessing.get_context("fork")


def receipt(n):
    return {"payload": {"receipt_id": f"r{n}"}, "signature": f"s{n}"}


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def a_file(tmp_path):
    """A regular file: nothing can be created under it (even as root)."""
    path = tmp_path / "a-file"
    path.touch()
    return path


def rows(path, sql):
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(params=["sqlite", "redis"])
async def stores(request, tmp_path, clock):
    """`stores(down=False, outbox=<shared>, **options)`: a store on this test's backend;
    `down=True` gives one whose backend cannot be reached. All share the outbox file."""
    if request.param == "sqlite":
        reachable, unreachable = tmp_path / "db.sqlite3", a_file(tmp_path) / "db.sqlite3"
        build = SQLiteStore
    else:
        server = request.getfixturevalue("redis_server")
        reachable, unreachable = server.url, f"redis://127.0.0.1:{free_port()}/0"
        prefix = f"test-{uuid.uuid4().hex[:8]}"  # isolates tests sharing the server

        def build(url, **options):
            return RedisStore(url, prefix=prefix, **options)

    made = []

    def stores(*, down=False, **options):
        options = {"outbox": tmp_path / "outbox.sqlite3", "legacy_outbox": tmp_path / "legacy.jsonl",
                   "clock": clock, **options}
        made.append(build(unreachable if down else reachable, **options))
        return made[-1]

    stores.reader = lambda: stores(outbox=tmp_path / "reader-outbox.sqlite3")  # sees the backend only
    yield stores
    for store in made:
        await store.aclose()


async def test_receipts_are_idempotent_and_team_scoped(stores):
    store = stores()
    assert await store.put_receipt("team:a", "d1", receipt(1)) == receipt(1)
    assert await store.put_receipt("team:a", "d1", receipt(2)) == receipt(1)  # a retry is paid once
    assert await store.get_receipt("team:a", "d1") == receipt(1)
    assert await store.find_receipt("team:a", "d1") == receipt(1)
    assert await store.get_receipt("team:b", "d1") is None  # another team sees nothing
    assert await stores.reader().get_receipt("team:a", "d1") == receipt(1)  # a new process sees it


@pytest.mark.parametrize("down", [False, True], ids=["backend", "outbox"])
async def test_owner_and_debate_id_may_contain_colons(stores, down):
    store = stores(down=down)
    team_a, team_ab = owner_of(Caller(team_id="a")), owner_of(Caller(team_id="a:b"))
    await store.put_receipt(team_ab, "c", receipt(1))
    await store.put_transcript(team_ab, "c", {"secret": 1}, ttl_s=60)
    assert await store.get_receipt(team_a, "b:c") is None  # "team:a" + "b:c" is not "team:a:b" + "c"
    assert await store.get_transcript(team_a, "b:c") is None
    assert await store.put_receipt(team_a, "b:c", receipt(2)) == receipt(2)
    assert await store.get_receipt(team_ab, "c") == receipt(1)


async def test_unauthenticated_callers_own_nothing(stores):
    store = stores()
    assert owner_of(Caller()) is None
    assert owner_of(Caller(team_id="t", key_hash="k")) == "team:t" and owner_of(Caller(key_hash="k")) == "key:k"
    with pytest.raises(ValueError, match="needs an owner"):
        await store.put_receipt(None, "d1", receipt(1))
    await store.put_transcript(None, "d1", {"x": 1}, ttl_s=60)  # nobody could read it: not kept
    assert await store.get_receipt(None, "d1") is None and await store.get_transcript(None, "d1") is None


async def test_transcripts_expire_by_the_clock(stores, clock):
    store = stores()
    await store.put_transcript("team:a", "d1", {"stages": ["panel"]}, ttl_s=1)
    await store.put_transcript("team:a", "d2", {"stages": ["judge"]}, ttl_s=60)
    assert await store.get_transcript("team:a", "d1") == {"stages": ["panel"]}
    assert await store.get_transcript("team:b", "d1") is None
    assert await store.get_receipt("team:a", "d1") is None  # kinds do not mix
    clock.now += 1.5
    assert await store.get_transcript("team:a", "d1") is None
    assert await store.get_transcript("team:a", "d2") == {"stages": ["judge"]}
    await store.put_transcript("team:a", "d1", {"stages": ["again"]}, ttl_s=1)  # expired: the key is free
    assert await store.get_transcript("team:a", "d1") == {"stages": ["again"]}


async def test_outboxed_records_expire_by_the_clock_too(stores, clock):
    down = stores(down=True)
    await down.put_transcript("team:a", "d1", {"t": 1}, ttl_s=1)
    assert await down.get_transcript("team:a", "d1") == {"t": 1}
    clock.now += 2
    assert await down.get_transcript("team:a", "d1") is None
    assert await stores().flush_outbox() == 0  # dropped, not delivered
    assert await stores.reader().get_transcript("team:a", "d1") is None


async def test_a_down_backend_outboxes_and_a_flush_delivers(stores, tmp_path):
    down = stores(down=True)
    assert await down.put_receipt("team:a", "d1", receipt(1)) == receipt(1)
    await down.put_transcript("team:a", "d1", {"t": 1}, ttl_s=60)
    assert rows(tmp_path / "outbox.sqlite3", "SELECT count(*) FROM outbox") == [(2,)]
    assert await down.flush_outbox() == 0  # still down: nothing delivered, nothing lost
    assert await stores().flush_outbox() == 2  # another worker, backend up, same outbox
    assert rows(tmp_path / "outbox.sqlite3", "SELECT count(*) FROM outbox") == [(0,)]
    reader = stores.reader()
    assert await reader.get_receipt("team:a", "d1") == receipt(1)
    assert await reader.get_transcript("team:a", "d1") == {"t": 1}


async def test_an_outage_never_accepts_a_second_receipt(stores):
    down = stores(down=True)
    assert await down.put_receipt("team:a", "d1", receipt(1)) == receipt(1)
    assert await down.put_receipt("team:a", "d1", receipt(2)) == receipt(1)  # found in the outbox
    assert await down.find_receipt("team:a", "d1") == receipt(1)  # the outage does not raise
    # The backend is back but nothing was flushed yet: the first receipt still wins.
    assert await stores().put_receipt("team:a", "d1", receipt(3)) == receipt(1)
    assert await stores.reader().get_receipt("team:a", "d1") == receipt(1)


async def test_with_no_backend_and_no_outbox_only_receipts_raise(stores, tmp_path):
    store = stores(down=True, outbox=a_file(tmp_path) / "outbox.sqlite3")
    with pytest.raises(StoreUnavailable) as info:
        await store.put_receipt("team:a", "d1", receipt(1))
    assert info.value.status_code == 503
    await store.put_transcript("team:a", "d1", {"t": 1}, ttl_s=60)  # best effort: no raise
    await store.add_reputation({"model:a": {"runs": 1}})
    assert await store.flush_outbox() == 0
    with pytest.raises(StoreUnavailable):
        await store.find_receipt("team:a", "d1")  # neither can be read
    assert await stores(outbox=a_file(tmp_path) / "outbox.sqlite3").find_receipt("team:a", "d1") is None


async def test_background_flush_delivers_with_no_further_write(stores):
    await stores(down=True).put_receipt("team:a", "d1", receipt(1))
    worker = stores(flush_interval_s=0.05)
    await worker.start()
    reader = stores.reader()
    for _ in range(100):
        if await reader.get_receipt("team:a", "d1") is not None:
            break
        await asyncio.sleep(0.02)
    assert await reader.get_receipt("team:a", "d1") == receipt(1)
    await worker.aclose()


async def test_a_torn_legacy_outbox_line_is_quarantined(stores, tmp_path):
    legacy = tmp_path / "legacy.jsonl"
    line = '{{"kind": "receipt", "owner": "team:a", "debate_id": "d{0}", "record": {{"n": {0}}}, "ttl_s": null}}'
    legacy.write_text(f"{line.format(1)}\n{line.format(2)[:30]}\n{line.format(3)}\n")
    store = stores()
    assert await store.put_receipt("team:a", "d4", receipt(4)) == receipt(4)  # the torn line blocks nothing
    assert not legacy.exists() and len(list(tmp_path.glob("legacy.jsonl.imported-*"))) == 1
    reader = stores.reader()
    assert [await reader.get_receipt("team:a", f"d{n}") for n in (1, 2, 3)] == [{"n": 1}, None, {"n": 3}]
    quarantined = rows(tmp_path / "outbox.sqlite3", "SELECT source, raw FROM outbox_quarantine")
    assert quarantined == [(f"{legacy}:2", line.format(2)[:30])]


async def test_an_undecodable_outbox_row_is_quarantined(stores, tmp_path):
    await stores(down=True).put_receipt("team:a", "d1", receipt(1))
    db = sqlite3.connect(tmp_path / "outbox.sqlite3")
    db.execute("INSERT INTO outbox (kind, owner, debate_id, record, created_at) "
               "VALUES ('receipt', 'team:a', 'd0', '{torn', 0)")
    db.commit()
    db.close()
    store = stores()
    assert await store.flush_outbox() == 1
    assert await store.put_receipt("team:a", "d0", receipt(0)) == receipt(0)  # the key is free again
    assert rows(tmp_path / "outbox.sqlite3", "SELECT count(*) FROM outbox") == [(0,)]
    (raw,), = rows(tmp_path / "outbox.sqlite3", "SELECT raw FROM outbox_quarantine")
    assert json.loads(raw)["debate_id"] == "d0" and json.loads(raw)["record"] == "{torn"


async def test_reputation_counters_add_up(stores):
    store = stores()
    await store.add_reputation({"model:a": {"runs": 1, "eligible": 1, "impact_ratio": 1.5}})
    await store.add_reputation({"model:a": {"runs": 1, "failures": 1}, "model:b": {"runs": 1}})
    got = await store.reputation()
    assert got["model:a"]["runs"] == 2 and got["model:a"]["impact_ratio"] == 1.5
    assert got["model:a"]["failures"] == 1 and set(got) >= {"model:a", "model:b"}
    assert set(await store.reputation(["model:b"])) == {"model:b"}


async def test_reputation_raises_when_the_backend_is_down(stores):
    down = stores(down=True)
    await down.add_reputation({"model:a": {"runs": 1}})  # best effort
    with pytest.raises(StoreUnavailable):
        await down.reputation(["model:a"])


async def test_redis_outage_by_stopping_the_server(redis_server, tmp_path):
    store = RedisStore(redis_server.url, outbox=tmp_path / "outbox.sqlite3", prefix=f"stop-{uuid.uuid4().hex[:8]}",
                       legacy_outbox=tmp_path / "legacy.jsonl")
    await store.put_receipt("team:a", "d0", receipt(0))  # a live connection, about to go stale
    redis_server.stop()
    try:
        assert await store.put_receipt("team:a", "d1", receipt(1)) == receipt(1)
        assert await store.find_receipt("team:a", "d1") == receipt(1)
        with pytest.raises(StoreUnavailable):
            await store.reputation()
    finally:
        redis_server.start()
    assert await store.put_receipt("team:a", "d2", receipt(2)) == receipt(2)  # a good write flushes too
    assert rows(tmp_path / "outbox.sqlite3", "SELECT count(*) FROM outbox") == [(0,)]
    await store.aclose()
    fresh = RedisStore(redis_server.url, outbox=tmp_path / "other.sqlite3", prefix=store.prefix)
    assert await fresh.get_receipt("team:a", "d1") == receipt(1)  # survived the restart, in Redis
    await fresh.aclose()


async def test_a_redis_password_stays_out_of_errors(tmp_path):
    store = RedisStore(f"redis://:sekret@127.0.0.1:{free_port()}/0", outbox=tmp_path / "outbox.sqlite3",
                       legacy_outbox=tmp_path / "legacy.jsonl")
    with pytest.raises(StoreUnavailable) as info:
        await store.reputation()
    assert "sekret" not in str(info.value) and "127.0.0.1" in str(info.value)
    await store.aclose()


def _run_workers(target, *args, count):
    barrier = FORK.Barrier(count)
    procs = [FORK.Process(target=target, args=(n, barrier, *args)) for n in range(count)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    assert [proc.exitcode for proc in procs] == [0] * count


def _first_open(n, barrier, tmp_path):
    async def work():
        store = SQLiteStore(tmp_path / "db.sqlite3", legacy_outbox=tmp_path / "legacy.jsonl")
        await store.put_receipt(f"team:{n}", "d", receipt(n))
        await store.aclose()

    barrier.wait()
    asyncio.run(work())


def test_concurrent_migrations_from_several_processes(tmp_path):
    _run_workers(_first_open, tmp_path, count=6)
    assert rows(tmp_path / "db.sqlite3", "SELECT version FROM chorus_migrations ORDER BY version") == [
        (v,) for v in range(1, len(MIGRATIONS) + 1)]
    assert rows(tmp_path / "db.outbox.sqlite3", "SELECT version FROM chorus_migrations") == [(1,), (2,)]
    assert rows(tmp_path / "db.sqlite3", "SELECT count(*) FROM records") == [(6,)]
    assert rows(tmp_path / "db.sqlite3", "PRAGMA journal_mode") == [("wal",)]


def _outbox_worker(n, barrier, tmp_path, per_worker):
    async def work():
        options = {"outbox": tmp_path / "outbox.sqlite3", "legacy_outbox": tmp_path / "legacy.jsonl"}
        down = SQLiteStore(tmp_path / "a-file" / "db.sqlite3", **options)
        up = SQLiteStore(tmp_path / "db.sqlite3", **options)
        for i in range(per_worker):
            assert await down.put_receipt(f"team:{n}", f"d{i}", receipt(i)) == receipt(i)
            if i % 4 == 3:
                await up.flush_outbox()
        await up.flush_outbox()
        await down.aclose()
        await up.aclose()

    barrier.wait()
    asyncio.run(work())


def test_two_processes_append_and_flush_one_outbox_and_lose_nothing(tmp_path):
    a_file(tmp_path)
    _run_workers(_outbox_worker, tmp_path, 40, count=2)
    assert rows(tmp_path / "outbox.sqlite3", "SELECT count(*) FROM outbox") == [(0,)]
    assert rows(tmp_path / "outbox.sqlite3", "SELECT count(*) FROM outbox_quarantine") == [(0,)]
    stored = rows(tmp_path / "db.sqlite3", "SELECT owner, debate_id, record FROM records")
    assert len(stored) == 80 and len({(o, d) for o, d, _ in stored}) == 80


def test_backend_selection(monkeypatch, tmp_path):
    settings = load_settings({"CHORUS_DB_PATH": str(tmp_path / "x.sqlite3")})
    store = store_from_settings(settings)
    assert isinstance(store, SQLiteStore) and store.outbox.path == tmp_path / "x.outbox.sqlite3"
    redis_store = store_from_settings(load_settings({"CHORUS_STORE": "redis", "XDG_DATA_HOME": str(tmp_path),
                                                     "CHORUS_OUTBOX_FLUSH_INTERVAL_S": "0.5"}))
    assert isinstance(redis_store, RedisStore) and redis_store.flush_interval_s == 0.5
    assert redis_store.outbox.path == tmp_path / "chorus-litellm" / "chorus-redis.outbox.sqlite3"
    monkeypatch.setenv("CHORUS_STORE", "redis")
    assert isinstance(store_from_env(), RedisStore)


# -- run events (the live view's log) ------------------------------------------------------
def ev(seq, kind="answer", t=None, **data):
    return {"seq": seq, "type": kind, "time": float(t if t is not None else seq), "data": data}


async def test_events_are_kept_by_sequence_once_in_any_order_and_team_scoped(stores):
    store = stores()
    started = ev(1, "run_started", profile="p", profile_version=2, protocol="moa", model="fusion/p", prompt="q")
    await store.append_events("team:a", "r1", [ev(3), ev(4, "run_done", cost=0.5)], ttl_s=60)
    await store.append_events("team:a", "r1", [started, ev(2)], ttl_s=60)
    await store.append_events("team:a", "r1", [ev(2), ev(3)], ttl_s=60)  # a retried batch: no duplicates
    assert [e["seq"] for e in await store.read_events("team:a", "r1")] == [1, 2, 3, 4]
    assert await store.read_events("team:a", "r1", after=2) == [ev(3), ev(4, "run_done", cost=0.5)]
    assert await store.read_events("team:b", "r1") == [] and await store.read_events(None, "r1") == []
    [run] = await store.list_runs("team:a")
    assert run == {"id": "r1", "started": 1.0, "updated": 4.0, "state": "done", "cost": 0.5, "profile": "p",
                   "profile_version": 2, "protocol": "moa", "model": "fusion/p", "prompt": "q", "rounds": None}
    assert await store.list_runs("team:b") == []
    assert [e["seq"] for e in await stores.reader().read_events("team:a", "r1")] == [1, 2, 3, 4]


async def test_events_wait_in_the_outbox_during_an_outage(stores):
    down = stores(down=True)
    await down.append_events("team:a", "r1", [ev(1, "run_started", profile="p"), ev(2)], ttl_s=60)  # no raise
    await down.append_events("team:a", "r1", [ev(3, "run_done", cost=0.1)], ttl_s=60)
    with pytest.raises(StoreUnavailable):
        await down.read_events("team:a", "r1")
    assert await stores().flush_outbox() == 2
    reader = stores.reader()
    assert [e["seq"] for e in await reader.read_events("team:a", "r1")] == [1, 2, 3]
    assert [(r["id"], r["state"]) for r in await reader.list_runs("team:a")] == [("r1", "done")]


async def test_the_runs_index_lists_live_runs_first_then_newest(stores):
    store = stores()
    for run_id, start, end in [("old", 10, "run_done"), ("live", 5, None), ("new", 20, "run_failed")]:
        batch = [ev(1, "run_started", t=start, profile="p")] + ([ev(2, end, t=start + 1)] if end else [])
        await store.append_events("team:a", run_id, batch, ttl_s=60)
    runs = await store.list_runs("team:a")
    assert [(r["id"], r["state"]) for r in runs] == [("live", "running"), ("new", "failed"), ("old", "done")]
    assert [r["id"] for r in await store.list_runs("team:a", limit=2)] == ["live", "new"]


async def test_events_expire_with_their_run(stores, clock, request):
    store = stores()
    await store.append_events("team:a", "r1", [ev(1, "run_started", profile="p")], ttl_s=60)
    if request.node.callspec.params["stores"] == "redis":  # Redis expires by its own clock: check the TTLs
        client = store._client()
        for key in ("events", "run"):
            ttl_ms = await client.pttl(f"{store.prefix}:{key}:{len('team:a')}:team:a:r1")
            assert 0 < ttl_ms <= 60_000
        return
    clock.now += 61
    assert await store.read_events("team:a", "r1") == [] and await store.list_runs("team:a") == []


async def test_the_webhook_queue_claims_each_due_job_once_leases_retries_and_parks_dead_ones(stores, clock):
    store = stores()
    assert await store.enqueue_webhook("j1", {"url": "https://a.example/hook", "n": 1})
    assert await store.enqueue_webhook("j1", {"url": "https://a.example/hook", "n": 2})  # first enqueue wins
    assert await store.enqueue_webhook("j2", {"n": 3})
    claimed = await store.claim_webhooks(10, lease_s=30)
    assert sorted((j.id, j.job.get("n"), j.attempts) for j in claimed) == [("j1", 1, 0), ("j2", 3, 0)]
    assert await stores.reader().claim_webhooks(10, lease_s=30) == []  # leased: no other worker takes them
    await store.finish_webhook("j1")  # delivered
    await store.finish_webhook("j2", due=clock.now + 5, attempts=1, error="HTTP 500")
    assert await store.webhook_state("j1") is None
    assert (await store.webhook_state("j2"))["attempts"] == 1
    clock.now += 4
    assert await store.claim_webhooks(10, lease_s=30) == []  # not due yet
    clock.now += 2
    (again,) = await stores.reader().claim_webhooks(10, lease_s=30)  # any worker, any process
    assert (again.id, again.attempts) == ("j2", 1)
    clock.now += 31  # that worker died mid-delivery: the lease runs out, the job is due again
    (retaken,) = await store.claim_webhooks(10, lease_s=30)
    assert retaken.id == "j2"
    await store.finish_webhook("j2", attempts=8, error="HTTP 500 eight times")
    state = await store.webhook_state("j2")
    assert state["state"] == "dead" and state["error"] == "HTTP 500 eight times"
    clock.now += 1000
    assert await store.claim_webhooks(10, lease_s=30) == []
    assert not await store.enqueue_webhook("j2", {"n": 4}) or (await store.webhook_state("j2"))["state"] == "dead"


async def test_a_webhook_enqueued_during_an_outage_waits_in_the_outbox_then_reaches_the_queue(stores):
    down = stores(down=True)
    assert await down.enqueue_webhook("j-out", {"n": 1})
    store = stores()
    assert await store.flush_outbox() >= 1
    (job,) = await store.claim_webhooks(10, lease_s=30)
    assert (job.id, job.job) == ("j-out", {"n": 1})


async def test_peers_live_in_one_pool_and_a_heartbeat_counts_only_if_it_is_later(stores):
    store = stores()
    await store.put_peer("ed25519:aa", "gpu", {"model": "m1"}, last_seen=100.0, last_ts=100)
    await store.put_peer("ed25519:bb", "gpu", {"model": "m2"}, last_seen=100.0, last_ts=100)
    assert [p["record"]["model"] for p in await store.pool_peers("gpu")] == ["m1", "m2"]
    assert await store.touch_peer("ed25519:aa", 130.0, 130)
    assert not await store.touch_peer("ed25519:aa", 131.0, 130)  # the same signed request again: a replay
    assert not await store.touch_peer("ed25519:zz", 131.0, 131)  # never registered
    peer = await stores.reader().get_peer("ed25519:aa")  # any worker sees it
    assert (peer["pool"], peer["last_seen"], peer["last_ts"]) == ("gpu", 130.0, 130)
    await store.put_peer("ed25519:aa", "cpu", {"model": "m1"}, last_seen=140.0, last_ts=140)  # moved pools
    assert [p["record"]["model"] for p in await store.pool_peers("gpu")] == ["m2"]
    assert [p["record"]["model"] for p in await store.pool_peers("cpu")] == ["m1"]
    assert [p["record"]["model"] for p in await store.all_peers()] == ["m1", "m2"]
    await store.delete_peer("ed25519:bb")
    assert await store.pool_peers("gpu") == [] and await store.get_peer("ed25519:bb") is None
    assert [p["pool"] for p in await store.all_peers()] == ["cpu"]
    with pytest.raises(StoreUnavailable):
        await stores(down=True).pool_peers("gpu")


def paid_receipt(n, issued_at, *paid):
    """A receipt paying (peer or None, amount) pairs in USD."""
    contributions = [{"seat": f"s{i}", "amount": amount, **({"peer_id": peer} if peer else {})}
                     for i, (peer, amount) in enumerate(paid)]
    return {"payload": {"receipt_id": f"r{n}", "issued_at": issued_at, "bounty": {"currency": "USD"},
                        "contributions": contributions}, "signature": f"s{n}"}


async def test_receipts_are_indexed_per_peer_across_teams_once_and_through_the_outbox(stores):
    store = stores()
    first = paid_receipt(1, "2026-11-30T10:00:00.000000Z", ("ed25519:p1", 300), ("ed25519:p2", 200), (None, 100))
    second = paid_receipt(2, "2026-11-30T11:00:00.000000Z", ("ed25519:p1", 50), ("ed25519:p1", 25))
    await store.put_receipt("team:a", "d1", first)
    await store.put_receipt("team:a", "d1", paid_receipt(9, "2026-11-30T12:00:00.000000Z", ("ed25519:p1", 999)))
    await stores(down=True).put_receipt("team:b", "d1", second)  # another team, during an outage
    assert (await store.peer_earnings("ed25519:p1"))["receipts"] == [first]  # the retry paid nothing new
    assert await store.flush_outbox() == 1
    p1 = await stores.reader().peer_earnings("ed25519:p1")
    assert p1["receipts"] == [second, first]  # newest first; two seats in one run: one receipt
    assert p1["totals"] == [{"currency": "USD", "amount": 375, "receipts": 2}]
    assert (await store.peer_earnings("ed25519:p1", limit=1))["receipts"] == [second]
    assert (await store.peer_earnings("ed25519:p1", limit=0))["receipts"] == []
    assert (await store.peer_earnings("ed25519:p2"))["totals"] == [{"currency": "USD", "amount": 200, "receipts": 1}]
    assert await store.peer_earnings("ed25519:nobody") == {"peer_id": "ed25519:nobody", "totals": [], "receipts": []}
    assert await store.earnings_totals(["ed25519:p1", "ed25519:p2", "ed25519:nobody"]) == {
        "ed25519:p1": [{"currency": "USD", "amount": 375, "receipts": 2}],
        "ed25519:p2": [{"currency": "USD", "amount": 200, "receipts": 1}], "ed25519:nobody": []}


async def test_peer_load_sums_the_fresh_workers_and_forgets_a_dead_one(stores, clock):
    store = stores()
    assert await store.peer_loads() == PeerLoads(0, {}, {})
    await store.put_peer_load("w1", {"ed25519:p1": 2, "ed25519:p2": 1}, ttl_s=6, deployed=["ed25519:p1"])
    await store.put_peer_load("w2", {"ed25519:p1": 1, "ed25519:p3": 0}, ttl_s=6,
                              deployed=["ed25519:p1", "ed25519:p3"])
    assert await stores.reader().peer_loads() == PeerLoads(
        2, {"ed25519:p1": 3, "ed25519:p2": 1}, {"ed25519:p1": 2, "ed25519:p3": 1})
    await store.put_peer_load("w1", {"ed25519:p2": 1}, ttl_s=6)  # w1's calls to p1 ended; its Router dropped p1
    assert await store.peer_loads() == PeerLoads(2, {"ed25519:p1": 1, "ed25519:p2": 1},
                                                 {"ed25519:p1": 1, "ed25519:p3": 1})
    await store.put_peer_load("w3", {}, ttl_s=6)  # a worker with no peer yet still counts as one
    assert (await store.peer_loads()).workers == 3
    clock.now += 5
    await store.put_peer_load("w1", {"ed25519:p2": 4}, ttl_s=6, deployed=["ed25519:p2"])
    clock.now += 2  # w2 and w3 stopped publishing 7 s ago: they died
    assert await store.peer_loads() == PeerLoads(1, {"ed25519:p2": 4}, {"ed25519:p2": 1})
    await stores(down=True).put_peer_load("w4", {"ed25519:p1": 1}, ttl_s=6)  # an outage is only logged


async def test_profiles_served_count_each_version_over_the_fresh_workers(stores, clock):
    """A rollout's progress: every worker's profile sync publishes the version of each
    profile it serves; a worker that stops publishing stops counting."""
    store = stores()
    assert await store.profiles_served() == ProfilesServed(0, {})
    await store.put_profiles_served("w1", {"research": 0, "quick": 1}, ttl_s=6)
    await store.put_profiles_served("w2", {"research": 0, "quick": 2}, ttl_s=6)
    await store.put_profiles_served("w3", {}, ttl_s=6)  # serves nothing yet: still a worker
    assert await stores.reader().profiles_served() == ProfilesServed(3, {"research": {0: 2}, "quick": {1: 1, 2: 1}})
    await store.put_profiles_served("w1", {"research": 0, "quick": 2}, ttl_s=6)  # w1 caught up: replaced, not added
    assert await store.profiles_served() == ProfilesServed(3, {"research": {0: 2}, "quick": {2: 2}})
    clock.now += 5
    await store.put_profiles_served("w1", {"research": 0}, ttl_s=6)  # quick deleted, w1 took it down
    clock.now += 2  # w2 and w3 stopped publishing 7 s ago: they died
    assert await store.profiles_served() == ProfilesServed(1, {"research": {0: 1}})
    await stores(down=True).put_profiles_served("w4", {"research": 0}, ttl_s=6)  # an outage is only logged
    with pytest.raises(StoreUnavailable):
        await stores(down=True).profiles_served()


async def test_a_peer_that_left_keeps_its_last_accepted_t_for_the_replay_window(stores, clock, tmp_path):
    """Issue 23: after a peer's DELETE, its captured registration (same body, same t) must
    not make it live again: the last accepted t stays as a tombstone for the window."""
    store, t = stores(), int(clock.now)
    assert await store.put_peer("ed25519:aa", "gpu", {"model": "m1"}, last_seen=clock.now, last_ts=t) is True
    assert await store.put_peer("ed25519:aa", "gpu", {"model": "m1"}, last_seen=clock.now, last_ts=t) is False
    assert await store.touch_peer("ed25519:aa", clock.now, t + 10)
    await store.delete_peer("ed25519:aa", last_ts=t + 20, ttl_s=300)  # the DELETE's own t
    assert await store.get_peer("ed25519:aa") is None and await store.all_peers() == []
    if isinstance(store, SQLiteStore):  # kept the window past the later of now and that t
        assert rows(tmp_path / "db.sqlite3", "SELECT debate_id, record, expires_at FROM records WHERE kind = "
                    "'peer_left'") == [("ed25519:aa", json.dumps({"last_ts": t + 20}), t + 320.0)]
    else:  # and collected by the server after it (plus the GC margin)
        import redis

        from chorus_litellm.storage.redis_backend import GC_MARGIN_S

        left = redis.Redis.from_url(store.url).pttl(f"{store.prefix}:peer-left:ed25519:aa")
        assert 300_000 < left <= (320 + GC_MARGIN_S) * 1000
    other = stores.reader()  # another worker: the tombstone is in the backend
    for replayed in (t, t + 10, t + 20):  # the registration, a heartbeat's t, the leave's t
        assert await other.put_peer("ed25519:aa", "gpu", {"model": "m1"}, last_seen=clock.now,
                                    last_ts=replayed) is False
    assert await store.get_peer("ed25519:aa") is None and await store.pool_peers("gpu") == []
    assert await store.put_peer("ed25519:aa", "cpu", {"model": "m1"}, last_seen=clock.now, last_ts=t + 21) is True
    assert [p["pool"] for p in await other.all_peers()] == ["cpu"]  # the peer itself, later, is back
    await store.delete_peer("ed25519:aa", last_ts=t + 30, ttl_s=300)
    await store.delete_peer("ed25519:zz", last_ts=t + 30, ttl_s=300)  # never registered: a tombstone all the same
    assert await store.put_peer("ed25519:zz", "gpu", {"model": "m9"}, last_seen=clock.now, last_ts=t + 30) is False
    clock.now = t + 30 + 300 + 1  # past the window after the last t: no such t passes the signature check
    assert await store.put_peer("ed25519:aa", "gpu", {"model": "m1"}, last_seen=clock.now, last_ts=t + 25) is True
    assert await store.put_peer("ed25519:zz", "gpu", {"model": "m9"}, last_seen=clock.now, last_ts=t + 30) is True
    assert [p["pool"] for p in await store.all_peers()] == ["gpu", "gpu"]
    with pytest.raises(StoreUnavailable):
        await stores(down=True).delete_peer("ed25519:aa", last_ts=t + 40, ttl_s=300)


# -- single-flight claims (issue 23, point 2) --------------------------------------------------
async def test_a_claim_is_exclusive_across_stores_and_reports_the_holders_request(stores):
    first, other = stores(), stores.reader()  # two processes sharing the backend
    mine = await first.claim("team:a", "d1", "hash-1", lease_s=30)
    assert mine.mine and mine.request_hash == "hash-1"
    seen = await asyncio.gather(*(other.claim("team:a", "d1", "hash-1", lease_s=30) for _ in range(5)))
    assert not any(c.mine for c in seen) and {c.token for c in seen} == {mine.token}
    differs = await other.claim("team:a", "d1", "hash-2", lease_s=30)
    assert not differs.mine and differs.request_hash == "hash-1"  # the caller answers 409
    assert (await other.claim("team:b", "d1", "hash-1", lease_s=30)).mine  # per owner
    assert (await other.claim("team:a", "d2", "hash-1", lease_s=30)).mine  # per debate id


async def test_concurrent_claims_have_one_winner(stores):
    many = [stores() for _ in range(4)]
    for store in many:  # opened (and migrated) one by one: the race is the claims'
        await store.get_receipt("team:a", "warm-up")
    claims = await asyncio.gather(*(s.claim("team:a", "race", "h", lease_s=30) for s in many for _ in range(5)))
    assert sum(c.mine for c in claims) == 1 and len({c.token for c in claims}) == 1


async def test_a_claim_expires_unless_its_holder_renews_it(stores, clock):
    store, other = stores(), stores.reader()
    held = await store.claim("team:a", "d1", "h", lease_s=30)
    clock.now += 20
    assert await store.renew(held, lease_s=30)  # now live until +50
    clock.now += 20
    assert not (await other.claim("team:a", "d1", "h", lease_s=30)).mine  # renewed: still held
    clock.now += 31  # the holder crashed: no renewal
    taken = await other.claim("team:a", "d1", "h", lease_s=30)
    assert taken.mine and taken.token != held.token
    assert not await store.renew(held, lease_s=30)  # the old holder lost it and cannot take it back
    await store.release(held)  # nor free it
    assert not (await store.claim("team:a", "d1", "h", lease_s=30)).mine


async def test_a_released_claim_frees_the_id(stores):
    store, other = stores(), stores.reader()
    held = await store.claim("team:a", "d1", "h", lease_s=30)
    await store.release(held)
    again = await other.claim("team:a", "d1", "h", lease_s=30)
    assert again.mine
    await store.release(held)  # a stale release leaves the new holder alone
    assert not (await store.claim("team:a", "d1", "h", lease_s=30)).mine


async def test_claims_need_the_backend(stores):
    store = stores(down=True)
    with pytest.raises(StoreUnavailable):
        await store.claim("team:a", "d1", "h", lease_s=30)


# -- event-stream slots: a key's cap across workers and replicas ------------------------------
async def test_a_keys_stream_slots_are_capped_across_stores_and_free_when_dropped(stores):
    first, other = stores(), stores.reader()  # two workers (or replicas) sharing the backend
    assert [await first.take_stream_slot("k1", f"a{i}", 3, lease_s=30) for i in range(2)] == [True, True]
    assert await other.take_stream_slot("k1", "b0", 3, lease_s=30) is True
    assert await other.take_stream_slot("k1", "b1", 3, lease_s=30) is False  # three held, wherever
    assert await first.take_stream_slot("k1", "a9", 3, lease_s=30) is False
    assert await other.take_stream_slot("k2", "b1", 3, lease_s=30) is True  # another key: its own
    await first.drop_stream_slot("k1", "a0")
    assert await other.take_stream_slot("k1", "b1", 3, lease_s=30) is True
    await first.drop_stream_slot("k1", "a0")  # twice: nothing more freed
    assert await other.take_stream_slot("k1", "b2", 3, lease_s=30) is False


async def test_concurrent_takes_never_exceed_the_cap(stores):
    many = [stores() for _ in range(4)]
    for store in many:
        await store.get_receipt("team:a", "warm-up")
    taken = await asyncio.gather(*(s.take_stream_slot("k", f"{i}-{j}", 5, lease_s=30)
                                   for i, s in enumerate(many) for j in range(5)))
    assert sum(taken) == 5


async def test_a_stream_slot_expires_unless_renewed(stores, clock):
    store, other = stores(), stores.reader()
    assert await store.take_stream_slot("k", "s1", 1, lease_s=30)
    clock.now += 20
    assert await store.renew_stream_slot("k", "s1", lease_s=30)  # live until +50
    clock.now += 20
    assert not await other.take_stream_slot("k", "s2", 1, lease_s=30)
    clock.now += 31  # its worker died: no renewal
    assert not await store.renew_stream_slot("k", "s1", lease_s=30)  # an expired slot is not brought back
    assert await other.take_stream_slot("k", "s2", 1, lease_s=30)
    with pytest.raises(StoreUnavailable):
        await stores(down=True).take_stream_slot("k", "s3", 1, lease_s=30)


# -- profiles created at run time (issue 26, point 5) ----------------------------------------
QUICK = {"panel": {"members": ["model-a", "model-b"]}, "aggregator": {"judge": "judge", "synthesizer": "writer"}}


def versions(records):
    return [(r["name"], r["version"], r["deleted"]) for r in records]


async def test_a_profile_changes_only_from_the_version_read_and_a_delete_keeps_its_tombstone(stores, clock):
    store, other = stores(), stores.reader()  # two workers sharing the backend
    assert await store.list_profiles() == [] and await store.get_profile("quick") is None
    created = await store.put_profile("quick", QUICK, 0)
    assert created == {"name": "quick", "version": 1, "profile": QUICK, "deleted": False, "updated_at": clock.now}
    assert await other.put_profile("quick", {**QUICK, "personas": {}}, 0) is None  # a second create: taken
    clock.now += 5
    changed = await other.put_profile("quick", {**QUICK, "personas": {"x": "y"}}, 1)
    assert changed is not None and changed["version"] == 2 and changed["updated_at"] == clock.now
    assert await store.put_profile("quick", QUICK, 1) is None  # stale: it read version 1
    assert await store.get_profile("quick") == changed  # what the other worker stored
    assert await store.delete_profile("quick", 1) is None  # a stale delete changes nothing
    gone = await store.delete_profile("quick", 2)
    assert gone == {"name": "quick", "version": 3, "profile": None, "deleted": True, "updated_at": clock.now}
    assert await other.get_profile("quick") == gone  # the tombstone, for every worker
    assert await store.delete_profile("quick", 3) is None  # nothing live to delete
    for stale in (0, 1, 2):  # no write that did not see the tombstone brings it back
        assert await other.put_profile("quick", QUICK, stale) is None
    again = await other.put_profile("quick", QUICK, 3)  # created again: one past the tombstone
    assert again is not None and again["version"] == 4 and not again["deleted"]
    assert await store.delete_profile("never", 0) is None and await store.get_profile("never") is None
    await store.put_profile("alpha", QUICK, 0)
    assert versions(await other.list_profiles()) == [("alpha", 1, False), ("quick", 4, False)]
    down = stores(down=True)
    for call in (down.list_profiles(), down.get_profile("quick"), down.put_profile("quick", QUICK, 4),
                 down.delete_profile("quick", 4)):
        with pytest.raises(StoreUnavailable):  # never the outbox: a profile change needs the backend
            await call


async def test_concurrent_changes_of_one_version_have_one_winner(stores):
    many = [stores() for _ in range(4)]
    for store in many:  # opened (and migrated) one by one: the race is the writes'
        await store.list_profiles()
    created = await asyncio.gather(*(s.put_profile("race", {"n": i}, 0) for i, s in enumerate(many)))
    assert sum(r is not None for r in created) == 1
    changed = await asyncio.gather(*(s.put_profile("race", {"n": i}, 1) for i, s in enumerate(many)),
                                   *(s.delete_profile("race", 1) for s in many))
    winners = [r for r in changed if r is not None]
    assert len(winners) == 1 and winners[0]["version"] == 2
    assert await many[0].get_profile("race") == winners[0]
