"""SQLite receipt store: idempotency, team scoping, migrations, and the outbox."""

import sqlite3

from chorus_litellm.adapters.store_sqlite import SQLiteStore, owner_of
from chorus_litellm.types import Caller


def receipt(n):
    return {"payload": {"receipt_id": f"r{n}"}, "signature": f"s{n}"}


async def test_idempotent_by_owner_and_debate_id(tmp_path):
    store = SQLiteStore(tmp_path / "db.sqlite3")
    assert await store.put_receipt("team:a", "d1", receipt(1)) == receipt(1)
    assert await store.put_receipt("team:a", "d1", receipt(2)) == receipt(1)  # a retry is paid once
    assert await store.get_receipt("team:a", "d1") == receipt(1)
    assert await store.get_receipt("team:b", "d1") is None  # another team sees nothing
    reopened = SQLiteStore(tmp_path / "db.sqlite3")
    assert await reopened.get_receipt("team:a", "d1") == receipt(1)  # durable
    versions = sqlite3.connect(tmp_path / "db.sqlite3").execute("SELECT version FROM chorus_migrations").fetchall()
    assert versions == [(1,)]


async def test_unreachable_store_keeps_receipts_in_the_outbox(tmp_path):
    store = SQLiteStore(tmp_path / "missing-dir" / "db.sqlite3", outbox=tmp_path / "outbox.jsonl")
    assert await store.put_receipt("team:a", "d1", receipt(1)) == receipt(1)
    assert (tmp_path / "outbox.jsonl").read_text().count("\n") == 1
    (tmp_path / "missing-dir").mkdir()
    await store.put_receipt("team:a", "d2", receipt(2))  # the next good write flushes the outbox
    assert not (tmp_path / "outbox.jsonl").exists()
    assert await store.get_receipt("team:a", "d1") == receipt(1)


def test_owner_is_team_then_key():
    assert owner_of(Caller(team_id="t", key_hash="k")) == "team:t"
    assert owner_of(Caller(key_hash="k")) == "key:k"
    assert owner_of(Caller()) == "anonymous"
