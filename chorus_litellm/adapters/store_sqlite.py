"""The embedded default store: one SQLite file, no setup (see adapters/store.py).

Schema changes are an ordered list of small migrations, applied once and recorded in
`chorus_migrations`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .store import Store


def _m1_records(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE records (kind TEXT NOT NULL, owner TEXT NOT NULL, debate_id TEXT NOT NULL, "
        "record TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL, "
        "PRIMARY KEY (kind, owner, debate_id))"
    )
    db.execute("CREATE INDEX records_expiry ON records (expires_at) WHERE expires_at IS NOT NULL")


def _m2_reputation(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE reputation (payee TEXT NOT NULL, counter TEXT NOT NULL, value REAL NOT NULL, "
               "PRIMARY KEY (payee, counter))")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m1_records, _m2_reputation]


class SQLiteStore(Store):
    def __init__(self, path: str | Path, outbox: str | Path | None = None) -> None:
        super().__init__(outbox or f"{path}.outbox.jsonl")
        self.path = str(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS chorus_migrations (version INTEGER PRIMARY KEY)")
            done = {row[0] for row in db.execute("SELECT version FROM chorus_migrations")}
            for version, migrate in enumerate(MIGRATIONS, start=1):
                if version not in done:
                    db.execute("BEGIN")
                    migrate(db)
                    db.execute("INSERT INTO chorus_migrations VALUES (?)", (version,))
                    db.execute("COMMIT")
            self._db = db
        return self._db

    def _put(self, kind, owner, debate_id, record, ttl_s):
        now = time.time()
        with self._lock:
            db = self._conn()
            db.execute("DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at < ?", (now,))
            db.execute("INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?)",
                       (kind, owner, debate_id, json.dumps(record), now, now + ttl_s if ttl_s else None))
            row = db.execute("SELECT record FROM records WHERE kind = ? AND owner = ? AND debate_id = ?",
                             (kind, owner, debate_id)).fetchone()
        return json.loads(row[0])

    def _get(self, kind, owner, debate_id):
        with self._lock:
            row = self._conn().execute(
                "SELECT record FROM records WHERE kind = ? AND owner = ? AND debate_id = ? "
                "AND (expires_at IS NULL OR expires_at >= ?)", (kind, owner, debate_id, time.time()),
            ).fetchone()
        return json.loads(row[0]) if row else None

    def _add_counters(self, payee, deltas):
        with self._lock:
            db = self._conn()
            db.execute("BEGIN")
            for counter, value in deltas.items():
                db.execute("INSERT INTO reputation VALUES (?, ?, ?) ON CONFLICT (payee, counter) "
                           "DO UPDATE SET value = value + excluded.value", (payee, counter, float(value)))
            db.execute("COMMIT")

    def _counters(self, payees):
        with self._lock:
            rows = self._conn().execute("SELECT payee, counter, value FROM reputation").fetchall()
        out: dict[str, dict[str, float]] = {}
        for payee, counter, value in rows:
            if payees is None or payee in payees:
                out.setdefault(payee, {})[counter] = value
        return out
