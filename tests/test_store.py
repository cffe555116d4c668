"""One contract, two stores: SQLite (embedded) and Redis (a real redis-server)."""

import sqlite3
import time
import uuid

import pytest
import redis

from chorus_litellm.adapters.store import owner_of, store_from_env
from chorus_litellm.adapters.store_redis import RedisStore
from chorus_litellm.adapters.store_sqlite import SQLiteStore
from chorus_litellm.types import Caller


def receipt(n):
    return {"payload": {"receipt_id": f"r{n}"}, "signature": f"s{n}"}


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path):
    if request.param == "sqlite":
        return lambda: SQLiteStore(tmp_path / "db.sqlite3", outbox=tmp_path / "outbox.jsonl")
    server = request.getfixturevalue("redis_server")
    prefix = f"test-{uuid.uuid4().hex[:8]}"  # isolates tests sharing the server
    return lambda: RedisStore(server.url, outbox=tmp_path / "outbox.jsonl", prefix=prefix)


async def test_receipts_are_idempotent_and_team_scoped(make_store):
    store = make_store()
    assert await store.put_receipt("team:a", "d1", receipt(1)) == receipt(1)
    assert await store.put_receipt("team:a", "d1", receipt(2)) == receipt(1)  # a retry is paid once
    assert await store.get_receipt("team:a", "d1") == receipt(1)
    assert await store.get_receipt("team:b", "d1") is None  # another team sees nothing
    assert await make_store().get_receipt("team:a", "d1") == receipt(1)  # a new process sees it


async def test_transcripts_expire(make_store):
    store = make_store()
    await store.put_transcript("team:a", "d1", {"stages": ["panel"]}, ttl_s=1)
    await store.put_transcript("team:a", "d2", {"stages": ["judge"]}, ttl_s=60)
    assert await store.get_transcript("team:a", "d1") == {"stages": ["panel"]}
    assert await store.get_transcript("team:b", "d1") is None
    assert await store.get_receipt("team:a", "d1") is None  # kinds do not mix
    time.sleep(1.1)
    assert await store.get_transcript("team:a", "d1") is None
    assert await store.get_transcript("team:a", "d2") == {"stages": ["judge"]}


async def test_unreachable_store_keeps_records_in_the_outbox(make_store, tmp_path, redis_server):
    store = make_store()
    if isinstance(store, SQLiteStore):
        store.path = str(tmp_path / "missing-dir" / "db.sqlite3")
    else:
        live, store.client = store.client, redis.Redis(port=1, socket_connect_timeout=0.2)
    assert await store.put_receipt("team:a", "d1", receipt(1)) == receipt(1)
    assert (tmp_path / "outbox.jsonl").read_text().count("\n") == 1
    if isinstance(store, SQLiteStore):
        (tmp_path / "missing-dir").mkdir()
    else:
        store.client = live
    await store.put_receipt("team:a", "d2", receipt(2))  # the next good write flushes the outbox
    assert not (tmp_path / "outbox.jsonl").exists()
    assert await store.get_receipt("team:a", "d1") == receipt(1)


async def test_redis_records_survive_a_server_restart(redis_server, tmp_path):
    store = RedisStore(redis_server.url, outbox=tmp_path / "outbox.jsonl", prefix="restart")
    await store.put_receipt("team:a", "d1", receipt(1))
    redis_server.stop()
    redis_server.start()
    assert await RedisStore(redis_server.url, prefix="restart").get_receipt("team:a", "d1") == receipt(1)


def test_sqlite_migrations_are_recorded(tmp_path):
    SQLiteStore(tmp_path / "db.sqlite3")._conn()
    versions = sqlite3.connect(tmp_path / "db.sqlite3").execute("SELECT version FROM chorus_migrations").fetchall()
    assert versions == [(1,), (2,)]


def test_owner_and_backend_selection(monkeypatch, tmp_path):
    assert owner_of(Caller(team_id="t", key_hash="k")) == "team:t"
    assert owner_of(Caller(key_hash="k")) == "key:k"
    assert owner_of(Caller()) == "anonymous"
    monkeypatch.setenv("CHORUS_DB_PATH", str(tmp_path / "x.sqlite3"))
    assert isinstance(store_from_env(), SQLiteStore)
    monkeypatch.setenv("CHORUS_STORE", "redis")
    assert isinstance(store_from_env(), RedisStore)
    monkeypatch.setenv("CHORUS_STORE", "mongo")
    with pytest.raises(ValueError, match="use 'sqlite' or 'redis'"):
        store_from_env()


async def test_reputation_counters_add_up(make_store):
    store = make_store()
    await store.add_reputation({"model:a": {"runs": 1, "eligible": 1, "impact_ratio": 1.5}})
    await store.add_reputation({"model:a": {"runs": 1, "failures": 1}, "model:b": {"runs": 1}})
    got = await store.reputation()
    assert got["model:a"]["runs"] == 2 and got["model:a"]["impact_ratio"] == 1.5
    assert got["model:a"]["failures"] == 1 and set(got) >= {"model:a", "model:b"}
    assert set(await store.reputation(["model:b"])) == {"model:b"}
