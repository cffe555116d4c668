"""The embedded default store: records and reputation in one SQLite file.

Boundary: the records' SQL; the rules (when to outbox, what may raise) are in
storage/store.py, connections and migrations in storage/sqlite.py, the outbox in
storage/outbox.py. Every SQLite or OS error leaves this module as `StoreUnavailable`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from ..core.ports import Job, PeerLoads, ProfilesServed
from ..settings import outbox_beside
from .outbox import CLAIM, RECEIPT, Outbox, Pending
from .sqlite import Database, Migration, mapped
from .store import DEAD_TTL_S, Store, Summarize, earnings


async def _m1_records(db: aiosqlite.Connection) -> None:
    await db.execute(
        "CREATE TABLE records (kind TEXT NOT NULL, owner TEXT NOT NULL, debate_id TEXT NOT NULL, "
        "record TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL, "
        "PRIMARY KEY (kind, owner, debate_id))"
    )
    await db.execute("CREATE INDEX records_expiry ON records (expires_at) WHERE expires_at IS NOT NULL")


async def _m2_reputation(db: aiosqlite.Connection) -> None:
    await db.execute("CREATE TABLE reputation (payee TEXT NOT NULL, counter TEXT NOT NULL, "
                     "value REAL NOT NULL, PRIMARY KEY (payee, counter))")


async def _m3_events(db: aiosqlite.Connection) -> None:
    await db.execute("CREATE TABLE events (owner TEXT NOT NULL, run_id TEXT NOT NULL, seq INTEGER NOT NULL, "
                     "event TEXT NOT NULL, expires_at REAL, PRIMARY KEY (owner, run_id, seq))")
    await db.execute("CREATE TABLE runs (owner TEXT NOT NULL, run_id TEXT NOT NULL, summary TEXT NOT NULL, "
                     "started REAL, expires_at REAL, PRIMARY KEY (owner, run_id))")
    await db.execute("CREATE INDEX runs_recent ON runs (owner, started)")
    await db.execute("CREATE INDEX events_expiry ON events (expires_at) WHERE expires_at IS NOT NULL")


async def _m4_webhooks(db: aiosqlite.Connection) -> None:
    await db.execute("CREATE TABLE webhooks (id TEXT PRIMARY KEY, job TEXT NOT NULL, due REAL, attempts INTEGER "
                     "NOT NULL DEFAULT 0, state TEXT NOT NULL, error TEXT, expires_at REAL)")
    await db.execute("CREATE INDEX webhooks_due ON webhooks (due) WHERE state = 'pending'")


async def _m5_peers(db: aiosqlite.Connection) -> None:
    await db.execute("CREATE TABLE peers (peer_id TEXT PRIMARY KEY, pool TEXT NOT NULL, record TEXT NOT NULL, "
                     "last_seen REAL NOT NULL, last_ts INTEGER NOT NULL)")
    await db.execute("CREATE INDEX peers_pool ON peers (pool)")


async def _m6_earnings(db: aiosqlite.Connection) -> None:
    await db.execute("CREATE TABLE earnings (peer_id TEXT NOT NULL, owner TEXT NOT NULL, debate_id TEXT NOT NULL, "
                     "issued_at TEXT NOT NULL, currency TEXT NOT NULL, amount INTEGER NOT NULL, "
                     "PRIMARY KEY (peer_id, owner, debate_id))")
    await db.execute("CREATE INDEX earnings_recent ON earnings (peer_id, issued_at)")
    await db.execute("CREATE TABLE peer_load (worker TEXT NOT NULL, peer_id TEXT NOT NULL, calls INTEGER NOT NULL, "
                     "expires_at REAL NOT NULL, PRIMARY KEY (worker, peer_id))")


async def _m7_profiles(db: aiosqlite.Connection) -> None:
    await db.execute("CREATE TABLE profiles (name TEXT PRIMARY KEY, version INTEGER NOT NULL, profile TEXT, "
                     "updated_at REAL NOT NULL)")  # profile NULL: deleted (a tombstone)


async def _m8_stream_slots(db: aiosqlite.Connection) -> None:
    await db.execute("CREATE TABLE stream_slots (key TEXT NOT NULL, slot TEXT NOT NULL, expires_at REAL NOT NULL, "
                     "PRIMARY KEY (key, slot))")


async def _m9_peer_deployed(db: aiosqlite.Connection) -> None:
    # 1: the worker's Router holds the peer. A row with peer_id '' says the worker publishes.
    await db.execute("ALTER TABLE peer_load ADD COLUMN deployed INTEGER NOT NULL DEFAULT 0")


async def _m10_profiles_served(db: aiosqlite.Connection) -> None:
    # A row with name '' says the worker publishes (it may serve no profile).
    await db.execute("CREATE TABLE profiles_served (worker TEXT NOT NULL, name TEXT NOT NULL, "
                     "version INTEGER NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (worker, name))")


MIGRATIONS: list[Migration] = [_m1_records, _m2_reputation, _m3_events, _m4_webhooks, _m5_peers, _m6_earnings,
                               _m7_profiles, _m8_stream_slots, _m9_peer_deployed, _m10_profiles_served]
# One statement each, so every compare-and-set is atomic across processes: a new name, a
# change (or re-creation over a tombstone), a delete (of a live one).
_CREATE = "INSERT INTO profiles VALUES (?, 1, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING version"
_CHANGE = "UPDATE profiles SET version = version + 1, profile = ?, updated_at = ? WHERE name = ? AND version = ? " \
          "RETURNING version"
_DELETE = "UPDATE profiles SET version = version + 1, profile = NULL, updated_at = ? WHERE name = ? AND version = ? " \
          "AND profile IS NOT NULL RETURNING version"
_PEER = ("record", "pool", "last_seen", "last_ts")
# A peer that left: a record {"last_ts"} keyed (kind, "", peer id), expiring when no request
# as old can pass the signature window (the empty owner is no caller's: owner_of never gives it).
_PEER_LEFT = "peer_left"

_LIVE = "kind = ? AND owner = ? AND debate_id = ? AND (expires_at IS NULL OR expires_at > ?)"


class SQLiteStore(Store):
    """Records and reputation in one SQLite file; owner and debate id are separate columns.

    `outbox` defaults to `<db stem>.outbox.sqlite3` beside the db; `legacy_outbox` (a
    JSONL outbox of older versions, default `<db>.outbox.jsonl`) is imported once."""

    def __init__(self, path: str | Path, outbox: str | Path | None = None, *,
                 clock: Callable[[], float] = time.time, flush_interval_s: float = 5.0,
                 legacy_outbox: str | Path | None = None) -> None:
        self.path = Path(path)
        self.name = f"SQLite store {self.path}"
        legacy = Path(legacy_outbox) if legacy_outbox else Path(f"{self.path}.outbox.jsonl")
        box = Outbox(Path(outbox) if outbox else outbox_beside(self.path), legacy=legacy, clock=clock)
        super().__init__(box, clock=clock, flush_interval_s=flush_interval_s)
        self.db = Database(self.path, MIGRATIONS)

    @mapped
    async def _put(self, item: Pending) -> dict:
        if item.kind == RECEIPT and earnings(item.record):
            async with self.db.transaction() as db:  # the receipt and its peers' earnings rows together
                return await self._insert(db, item)
        return await self._insert(await self.db.conn(), item)

    async def _insert(self, db: aiosqlite.Connection, item: Pending) -> dict:
        now = self.clock()
        await db.execute("DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        await db.execute("INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?)",
                         (item.kind, item.owner, item.debate_id, json.dumps(item.record), now, item.expires_at))
        rows = list(await db.execute_fetchall(f"SELECT record FROM records WHERE {_LIVE}",
                                         (item.kind, item.owner, item.debate_id, now)))
        stored = json.loads(rows[0][0]) if rows else item.record
        if item.kind == RECEIPT and (paid := earnings(stored)):
            await db.executemany("INSERT OR IGNORE INTO earnings VALUES (?, ?, ?, ?, ?, ?)",
                                 [(peer, item.owner, item.debate_id, *row) for peer, row in paid.items()])
        return stored

    @mapped
    async def _get(self, kind: str, owner: str, debate_id: str) -> dict | None:
        db = await self.db.conn()
        rows = list(await db.execute_fetchall(f"SELECT record FROM records WHERE {_LIVE}",
                                         (kind, owner, debate_id, self.clock())))
        return json.loads(rows[0][0]) if rows else None

    @mapped
    async def _take_claim(self, owner: str, debate_id: str, held: dict, now: float) -> dict | None:
        # A claim is a records row (kind "claim", the record {"token", "request_hash"}).
        # The live one is read first (waiters poll: no write lock while a run holds it);
        # else one upsert takes the key if it is free or expired, atomic across processes.
        db = await self.db.conn()
        live = await self._live_claim(db, owner, debate_id, now)
        if live is not None:
            return live
        record = json.dumps({"token": held["token"], "request_hash": held["request_hash"]})
        taken = await db.execute_fetchall(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kind, owner, debate_id) DO UPDATE SET "
            "record = excluded.record, created_at = excluded.created_at, expires_at = excluded.expires_at "
            "WHERE records.expires_at <= ? RETURNING debate_id",
            (CLAIM, owner, debate_id, record, now, held["expires_at"], now))
        return held if taken else await self._live_claim(db, owner, debate_id, now)

    async def _live_claim(self, db: aiosqlite.Connection, owner: str, debate_id: str, now: float) -> dict | None:
        rows = list(await db.execute_fetchall(f"SELECT record, expires_at FROM records WHERE {_LIVE}",
                                         (CLAIM, owner, debate_id, now)))
        return {**json.loads(rows[0][0]), "expires_at": rows[0][1]} if rows else None

    @mapped
    async def _renew_claim(self, owner: str, debate_id: str, token: str, expires_at: float) -> bool:
        db = await self.db.conn()
        cursor = await db.execute(
            "UPDATE records SET expires_at = ? WHERE kind = ? AND owner = ? AND debate_id = ? "
            "AND json_extract(record, '$.token') = ?", (expires_at, CLAIM, owner, debate_id, token))
        return cursor.rowcount == 1

    @mapped
    async def _drop_claim(self, owner: str, debate_id: str, token: str) -> None:
        db = await self.db.conn()
        await db.execute("DELETE FROM records WHERE kind = ? AND owner = ? AND debate_id = ? "
                         "AND json_extract(record, '$.token') = ?", (CLAIM, owner, debate_id, token))

    @mapped
    async def _take_slot(self, key: str, slot: str, limit: int, now: float, expires_at: float) -> bool:
        async with self.db.transaction() as db:  # count and take under one write lock
            await db.execute("DELETE FROM stream_slots WHERE key = ? AND expires_at <= ?", (key, now))
            rows = list(await db.execute_fetchall("SELECT COUNT(*) FROM stream_slots WHERE key = ?", (key,)))
            if rows[0][0] >= limit:
                return False
            await db.execute("INSERT OR REPLACE INTO stream_slots VALUES (?, ?, ?)", (key, slot, expires_at))
            return True

    @mapped
    async def _renew_slot(self, key: str, slot: str, expires_at: float) -> bool:
        db = await self.db.conn()
        cursor = await db.execute("UPDATE stream_slots SET expires_at = ? WHERE key = ? AND slot = ? "
                                  "AND expires_at > ?", (expires_at, key, slot, self.clock()))
        return cursor.rowcount == 1

    @mapped
    async def _drop_slot(self, key: str, slot: str) -> None:
        db = await self.db.conn()
        await db.execute("DELETE FROM stream_slots WHERE key = ? AND slot = ?", (key, slot))

    @mapped
    async def _add_counters(self, observations: dict[str, dict[str, float]]) -> None:
        rows = [(payee, counter, float(value)) for payee, deltas in observations.items()
                for counter, value in deltas.items()]
        if rows:  # one statement: all of a run's increments land together or not at all
            db = await self.db.conn()
            await db.execute("INSERT INTO reputation VALUES " + ", ".join(["(?, ?, ?)"] * len(rows))
                             + " ON CONFLICT (payee, counter) DO UPDATE SET value = value + excluded.value",
                             [v for row in rows for v in row])

    @mapped
    async def _counters(self, payees: list[str] | None) -> dict[str, dict[str, float]]:
        db = await self.db.conn()
        rows = list(await db.execute_fetchall("SELECT payee, counter, value FROM reputation"))
        wanted = None if payees is None else set(payees)
        out: dict[str, dict[str, float]] = {}
        for payee, counter, value in rows:
            if wanted is None or payee in wanted:
                out.setdefault(payee, {})[counter] = value
        return out

    @mapped
    async def _append(self, owner: str, run_id: str, events: list[dict], expires_at: float | None,
                      summarize: Summarize) -> None:
        db = await self.db.conn()
        now = self.clock()
        if any(e["type"] == "run_started" for e in events):  # one cleanup per run, not per batch
            await db.execute("DELETE FROM events WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
            await db.execute("DELETE FROM runs WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        await db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)",
                             [(owner, run_id, e["seq"], json.dumps(e), expires_at) for e in events])
        rows = list(await db.execute_fetchall("SELECT summary FROM runs WHERE owner = ? AND run_id = ?",
                                              (owner, run_id)))
        summary = summarize(json.loads(rows[0][0]) if rows else None)
        await db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?) ON CONFLICT (owner, run_id) DO UPDATE SET "
                         "summary = excluded.summary, started = excluded.started, expires_at = excluded.expires_at",
                         (owner, run_id, json.dumps(summary), summary.get("started"), expires_at))

    @mapped
    async def _events(self, owner: str, run_id: str, after: int, limit: int) -> list[dict]:
        db = await self.db.conn()
        rows = list(await db.execute_fetchall(
            "SELECT event FROM events WHERE owner = ? AND run_id = ? AND seq > ? "
            "AND (expires_at IS NULL OR expires_at > ?) ORDER BY seq LIMIT ?",
            (owner, run_id, after, self.clock(), limit)))
        return [json.loads(row[0]) for row in rows]

    @mapped
    async def _runs(self, owner: str, limit: int) -> list[dict]:
        db = await self.db.conn()
        rows = list(await db.execute_fetchall(
            "SELECT run_id, summary FROM runs WHERE owner = ? AND (expires_at IS NULL OR expires_at > ?) "
            "ORDER BY started DESC LIMIT ?", (owner, self.clock(), limit * 2)))
        return [{"id": run_id, **json.loads(summary)} for run_id, summary in rows]

    @mapped
    async def _enqueue(self, job_id: str, job: dict, due: float) -> None:
        db = await self.db.conn()
        await db.execute("DELETE FROM webhooks WHERE state = 'dead' AND expires_at <= ?", (self.clock(),))
        await db.execute("INSERT OR IGNORE INTO webhooks (id, job, due, state) VALUES (?, ?, ?, 'pending')",
                         (job_id, json.dumps(job), due))

    @mapped
    async def _claim(self, now: float, limit: int, lease_until: float) -> list[Job]:
        db = await self.db.conn()  # one statement: two workers never claim the same job
        rows = list(await db.execute_fetchall(
            "UPDATE webhooks SET due = ? WHERE id IN (SELECT id FROM webhooks WHERE state = 'pending' AND due <= ? "
            "ORDER BY due LIMIT ?) RETURNING id, job, attempts", (lease_until, now, limit)))
        return [Job(job_id, json.loads(job), attempts) for job_id, job, attempts in rows]

    @mapped
    async def _finish(self, job_id: str, *, due: float | None, attempts: int, error: str | None) -> None:
        db = await self.db.conn()
        if due is None and error is None:
            await db.execute("DELETE FROM webhooks WHERE id = ?", (job_id,))
        elif due is not None:
            await db.execute("UPDATE webhooks SET due = ?, attempts = ?, error = ? WHERE id = ?",
                             (due, attempts, error, job_id))
        else:
            await db.execute("UPDATE webhooks SET state = 'dead', due = NULL, attempts = ?, error = ?, "
                             "expires_at = ? WHERE id = ?", (attempts, error, self.clock() + DEAD_TTL_S, job_id))

    @mapped
    async def _webhook(self, job_id: str) -> dict | None:
        db = await self.db.conn()
        rows = list(await db.execute_fetchall("SELECT state, attempts, due, error FROM webhooks WHERE id = ?",
                                              (job_id,)))
        return dict(zip(("state", "attempts", "due", "error"), rows[0], strict=True)) if rows else None

    async def _last_ts(self, db: aiosqlite.Connection, peer_id: str, now: float) -> list[int]:
        """The peer's last accepted timestamps: its record's and its unexpired tombstone's."""
        rows = list(await db.execute_fetchall("SELECT last_ts FROM peers WHERE peer_id = ?", (peer_id,)))
        left = await db.execute_fetchall(f"SELECT record FROM records WHERE {_LIVE}", (_PEER_LEFT, "", peer_id, now))
        return [int(row[0]) for row in rows] + [int(json.loads(row[0])["last_ts"]) for row in left]

    async def _forget_left(self, db: aiosqlite.Connection, peer_id: str, now: float) -> None:
        """Drop the peer's tombstone, and every expired one."""
        await db.execute("DELETE FROM records WHERE kind = ? AND (debate_id = ? AND owner = '' OR expires_at <= ?)",
                         (_PEER_LEFT, peer_id, now))

    @mapped
    async def _put_peer(self, peer_id: str, pool: str, record: dict, last_seen: float, last_ts: int) -> bool:
        async with self.db.transaction() as db:  # the compare and the set, one writer at a time
            now = self.clock()
            if any(last >= last_ts for last in await self._last_ts(db, peer_id, now)):
                return False
            await db.execute("INSERT INTO peers VALUES (?, ?, ?, ?, ?) ON CONFLICT (peer_id) DO UPDATE SET "
                             "pool = excluded.pool, record = excluded.record, last_seen = excluded.last_seen, "
                             "last_ts = excluded.last_ts", (peer_id, pool, json.dumps(record), last_seen, last_ts))
            await self._forget_left(db, peer_id, now)
        return True

    def _peer(self, row: Sequence[Any]) -> dict:
        return {**dict(zip(_PEER, row, strict=True)), "record": json.loads(row[0])}

    @mapped
    async def _get_peer(self, peer_id: str) -> dict | None:
        db = await self.db.conn()
        rows = list(await db.execute_fetchall("SELECT record, pool, last_seen, last_ts FROM peers WHERE peer_id = ?",
                                         (peer_id,)))
        return self._peer(rows[0]) if rows else None

    @mapped
    async def _pool_peers(self, pool: str | None) -> list[dict]:
        db = await self.db.conn()
        rows = list(await db.execute_fetchall("SELECT record, pool, last_seen, last_ts FROM peers WHERE ? IS NULL OR "
                                         "pool = ? ORDER BY peer_id", (pool, pool)))
        return [self._peer(row) for row in rows]

    @mapped
    async def _touch_peer(self, peer_id: str, last_seen: float, last_ts: int) -> bool:
        db = await self.db.conn()
        cursor = await db.execute("UPDATE peers SET last_seen = ?, last_ts = ? WHERE peer_id = ? AND last_ts < ?",
                                  (last_seen, last_ts, peer_id, last_ts))
        return cursor.rowcount == 1

    @mapped
    async def _delete_peer(self, peer_id: str, last_ts: int | None, ttl_s: float) -> None:
        async with self.db.transaction() as db:
            now = self.clock()
            known = [*await self._last_ts(db, peer_id, now), *([] if last_ts is None else [last_ts])]
            await db.execute("DELETE FROM peers WHERE peer_id = ?", (peer_id,))
            await self._forget_left(db, peer_id, now)
            if known:
                kept = max(known)
                await db.execute("INSERT INTO records VALUES (?, '', ?, ?, ?, ?)",
                                 (_PEER_LEFT, peer_id, json.dumps({"last_ts": kept}), now, max(now, kept) + ttl_s))

    @mapped
    async def _put_profile(self, name: str, profile: dict | None, version: int, now: float) -> dict | None:
        db = await self.db.conn()
        text = None if profile is None else json.dumps(profile)
        if profile is None:
            rows = await db.execute_fetchall(_DELETE, (now, name, version))
        elif version == 0:
            rows = await db.execute_fetchall(_CREATE, (name, text, now))
        else:
            rows = await db.execute_fetchall(_CHANGE, (text, now, name, version))
        found = list(rows)
        return _profile((name, found[0][0], text, now)) if found else None

    @mapped
    async def _profiles(self, name: str | None) -> list[dict]:
        db = await self.db.conn()
        rows = await db.execute_fetchall("SELECT name, version, profile, updated_at FROM profiles WHERE ? IS NULL "
                                         "OR name = ? ORDER BY name", (name, name))
        return [_profile(row) for row in rows]

    @mapped
    async def _put_served(self, worker: str, versions: Mapping[str, int], expires_at: float) -> None:
        db = await self.db.conn()
        await db.execute("DELETE FROM profiles_served WHERE worker = ? OR expires_at <= ?", (worker, self.clock()))
        await db.executemany("INSERT INTO profiles_served VALUES (?, ?, ?, ?)",
                             [(worker, "", 0, expires_at)] +
                             [(worker, name, int(v), expires_at) for name, v in sorted(versions.items())])

    @mapped
    async def _served(self, now: float) -> ProfilesServed:
        db = await self.db.conn()
        rows = list(await db.execute_fetchall("SELECT name, version, COUNT(*) FROM profiles_served "
                                              "WHERE expires_at > ? GROUP BY name, version", (now,)))
        versions: dict[str, dict[int, int]] = {}
        for name, version, n in rows:
            if name:
                versions.setdefault(name, {})[int(version)] = int(n)
        return ProfilesServed(sum(int(n) for name, _, n in rows if name == ""), versions)

    @mapped
    async def _put_load(self, worker: str, calls: dict[str, int], deployed: Sequence[str],
                        expires_at: float) -> None:
        db = await self.db.conn()
        await db.execute("DELETE FROM peer_load WHERE worker = ? OR expires_at <= ?", (worker, self.clock()))
        held = set(deployed)
        await db.executemany("INSERT INTO peer_load VALUES (?, ?, ?, ?, ?)",
                             [(worker, "", 0, expires_at, 0)] +
                             [(worker, peer, calls.get(peer, 0), expires_at, peer in held)
                              for peer in sorted(set(calls) | held)])

    @mapped
    async def _loads(self, now: float) -> PeerLoads:
        db = await self.db.conn()
        rows = list(await db.execute_fetchall("SELECT peer_id, COUNT(*), SUM(calls), SUM(deployed) FROM peer_load "
                                              "WHERE expires_at > ? GROUP BY peer_id", (now,)))
        workers = sum(int(n) for peer, n, _, _ in rows if peer == "")
        return PeerLoads(workers, {peer: int(c) for peer, _, c, _ in rows if peer and c},
                         {peer: int(d) for peer, _, _, d in rows if peer and d})

    @mapped
    async def _earnings(self, peer_id: str, limit: int) -> list[dict]:
        db = await self.db.conn()
        rows = list(await db.execute_fetchall(
            "SELECT r.record FROM earnings e JOIN records r ON r.kind = ? AND r.owner = e.owner AND "
            "r.debate_id = e.debate_id WHERE e.peer_id = ? ORDER BY e.issued_at DESC LIMIT ?",
            (RECEIPT, peer_id, limit)))
        return [json.loads(row[0]) for row in rows]

    @mapped
    async def _totals(self, peer_ids: list[str]) -> dict[str, dict[str, dict[str, int]]]:
        db = await self.db.conn()
        marks = ", ".join("?" * len(peer_ids))
        rows = list(await db.execute_fetchall(f"SELECT peer_id, currency, SUM(amount), COUNT(*) FROM earnings WHERE "
                                         f"peer_id IN ({marks}) GROUP BY peer_id, currency", peer_ids))
        out: dict[str, dict[str, dict[str, int]]] = {}
        for peer, currency, amount, n in rows:
            out.setdefault(peer, {})[currency] = {"amount": int(amount), "receipts": n}
        return out

    async def _close(self) -> None:
        await self.db.close()


def _profile(row: Sequence[Any]) -> dict:
    name, version, text, updated_at = row
    return {"name": name, "version": int(version), "profile": None if text is None else json.loads(text),
            "deleted": text is None, "updated_at": updated_at}
