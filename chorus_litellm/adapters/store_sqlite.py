"""Durable, team-scoped storage on SQLite (the embedded default: no setup).

Records are owned by the caller's team (or, without a team, their key hash): reads for
another owner find nothing. Receipts are idempotent by (owner, debate id): a second put
returns the receipt already stored, so a retried request is never paid twice. If the
database cannot be written, the record goes to a local outbox file (appended and
fsync'd) and is flushed on the next successful write: nothing promised is lost.
Schema changes are an ordered list of small migrations (applied once, recorded in
`chorus_migrations`). SQLite calls run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..types import Caller

log = logging.getLogger("chorus_litellm")


def owner_of(caller: Caller) -> str:
    if caller.team_id:
        return f"team:{caller.team_id}"
    if caller.key_hash:
        return f"key:{caller.key_hash}"
    return "anonymous"


def _m1_receipts(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE receipts (owner TEXT NOT NULL, debate_id TEXT NOT NULL, receipt TEXT NOT NULL, "
        "created_at REAL NOT NULL, PRIMARY KEY (owner, debate_id))"
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_m1_receipts]


class SQLiteStore:
    def __init__(self, path: str | Path, outbox: str | Path | None = None) -> None:
        self.path = str(path)
        self.outbox = Path(outbox) if outbox else Path(f"{self.path}.outbox.jsonl")
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    @classmethod
    def from_env(cls) -> SQLiteStore:
        return cls(os.environ.get("CHORUS_DB_PATH", "chorus.sqlite3"))

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS chorus_migrations (version INTEGER PRIMARY KEY)")
            done = {row[0] for row in db.execute("SELECT version FROM chorus_migrations")}
            for version, migrate in enumerate(MIGRATIONS, start=1):
                if version not in done:
                    with db:
                        db.execute("BEGIN")
                        migrate(db)
                        db.execute("INSERT INTO chorus_migrations VALUES (?)", (version,))
            self._db = db
        return self._db

    # -- receipts ---------------------------------------------------------------------
    def _put(self, owner: str, debate_id: str, receipt: dict) -> dict:
        with self._lock:
            db = self._conn()
            db.execute("INSERT OR IGNORE INTO receipts VALUES (?, ?, ?, ?)",
                       (owner, debate_id, json.dumps(receipt), time.time()))
            row = db.execute("SELECT receipt FROM receipts WHERE owner = ? AND debate_id = ?",
                             (owner, debate_id)).fetchone()
            return json.loads(row[0])

    def _get(self, owner: str, debate_id: str) -> dict | None:
        with self._lock:
            row = self._conn().execute("SELECT receipt FROM receipts WHERE owner = ? AND debate_id = ?",
                                       (owner, debate_id)).fetchone()
        return json.loads(row[0]) if row else None

    def _put_or_outbox(self, owner: str, debate_id: str, receipt: dict) -> dict:
        try:
            stored = self._put(owner, debate_id, receipt)
        except (sqlite3.Error, OSError) as exc:
            log.error("chorus: receipt store unavailable (%s); receipt %s kept in the outbox", exc, debate_id)
            with self._lock, open(self.outbox, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"owner": owner, "debate_id": debate_id, "receipt": receipt}) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            return receipt
        self._flush_outbox()
        return stored

    def _flush_outbox(self) -> int:
        if not self.outbox.exists():
            return 0
        with self._lock:
            lines = self.outbox.read_text(encoding="utf-8").splitlines()
        flushed = 0
        for line in lines:
            record = json.loads(line)
            self._put(record["owner"], record["debate_id"], record["receipt"])
            flushed += 1
        with self._lock:
            current = self.outbox.read_text(encoding="utf-8").splitlines()
            rest = current[len(lines):]  # appended while we flushed
            if rest:
                self.outbox.write_text("\n".join(rest) + "\n", encoding="utf-8")
            else:
                self.outbox.unlink()
        return flushed

    async def put_receipt(self, owner: str, debate_id: str, receipt: dict) -> dict:
        return await asyncio.to_thread(self._put_or_outbox, owner, debate_id, receipt)

    async def get_receipt(self, owner: str, debate_id: str) -> dict | None:
        return await asyncio.to_thread(self._get, owner, debate_id)

    async def flush_outbox(self) -> int:
        return await asyncio.to_thread(self._flush_outbox)
