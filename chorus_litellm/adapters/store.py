"""Durable, team-scoped storage: one interface, two backends (SQLite, Redis).

Records are owned by the caller's team (or, without a team, their key hash); reads for
another owner find nothing. Receipts are idempotent by (owner, debate id): a second put
returns the receipt already stored, so a retried request is never paid twice.
Transcripts expire after their TTL. If the backend cannot be written, the record goes
to a local outbox file (appended and fsync'd) and is flushed on the next successful
write: nothing promised is lost. Backend calls run in a worker thread, never on the
event loop. `store_from_env()` picks the backend: `CHORUS_STORE=sqlite` (default, file
`CHORUS_DB_PATH`) or `CHORUS_STORE=redis` (`CHORUS_REDIS_URL`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from pathlib import Path

from ..types import Caller

log = logging.getLogger("chorus_litellm")

RECEIPT, TRANSCRIPT = "receipt", "transcript"


def owner_of(caller: Caller) -> str:
    if caller.team_id:
        return f"team:{caller.team_id}"
    if caller.key_hash:
        return f"key:{caller.key_hash}"
    return "anonymous"


class Store:
    """Async, outbox-backed facade; subclasses implement the blocking `_put` and `_get`.

    `_put(kind, owner, debate_id, record, ttl_s)` stores the record unless one exists
    (first write wins) and returns the stored one; `_get` returns None when absent or
    expired.
    """

    def __init__(self, outbox: str | Path) -> None:
        self.outbox = Path(outbox)
        self._outbox_lock = threading.Lock()

    def _put(self, kind: str, owner: str, debate_id: str, record: dict, ttl_s: int | None) -> dict:
        raise NotImplementedError

    def _get(self, kind: str, owner: str, debate_id: str) -> dict | None:
        raise NotImplementedError

    def _add_counters(self, payee: str, deltas: dict[str, float]) -> None:
        raise NotImplementedError

    def _counters(self, payees: list[str] | None) -> dict[str, dict[str, float]]:
        raise NotImplementedError

    def _put_or_outbox(self, kind: str, owner: str, debate_id: str, record: dict, ttl_s: int | None) -> dict:
        try:
            stored = self._put(kind, owner, debate_id, record, ttl_s)
        except Exception as exc:  # noqa: BLE001 - any backend failure: keep the record locally
            log.error("chorus: store unavailable (%s: %s); %s %s kept in the outbox",
                      type(exc).__name__, exc, kind, debate_id)
            line = json.dumps({"kind": kind, "owner": owner, "debate_id": debate_id, "record": record,
                               "ttl_s": ttl_s})
            with self._outbox_lock, open(self.outbox, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            return record
        self._flush_outbox()
        return stored

    def _flush_outbox(self) -> int:
        with self._outbox_lock:
            if not self.outbox.exists():
                return 0
            lines = self.outbox.read_text(encoding="utf-8").splitlines()
            for line in lines:
                item = json.loads(line)
                self._put(item["kind"], item["owner"], item["debate_id"], item["record"], item["ttl_s"])
            self.outbox.unlink()
        return len(lines)

    async def put_receipt(self, owner: str, debate_id: str, receipt: dict) -> dict:
        return await asyncio.to_thread(self._put_or_outbox, RECEIPT, owner, debate_id, receipt, None)

    async def get_receipt(self, owner: str, debate_id: str) -> dict | None:
        return await asyncio.to_thread(self._get, RECEIPT, owner, debate_id)

    async def put_transcript(self, owner: str, debate_id: str, transcript: dict, ttl_s: int) -> dict:
        return await asyncio.to_thread(self._put_or_outbox, TRANSCRIPT, owner, debate_id, transcript, ttl_s)

    async def get_transcript(self, owner: str, debate_id: str) -> dict | None:
        return await asyncio.to_thread(self._get, TRANSCRIPT, owner, debate_id)

    async def add_reputation(self, observations: dict[str, dict[str, float]]) -> None:
        """Add one run's observations per payee (atomic increments; best effort)."""
        def add() -> None:
            for payee, deltas in observations.items():
                self._add_counters(payee, deltas)

        try:
            await asyncio.to_thread(add)
        except Exception as exc:  # noqa: BLE001 - reputation is advisory: never fail a request for it
            log.warning("chorus: reputation not updated (%s: %s)", type(exc).__name__, exc)

    async def reputation(self, payees: list[str] | None = None) -> dict[str, dict[str, float]]:
        return await asyncio.to_thread(self._counters, payees)

    async def flush_outbox(self) -> int:
        return await asyncio.to_thread(self._flush_outbox)


def store_from_env() -> Store:
    kind = os.environ.get("CHORUS_STORE", "sqlite")
    if kind == "redis":
        from .store_redis import RedisStore

        return RedisStore(os.environ.get("CHORUS_REDIS_URL", "redis://127.0.0.1:6379/0"))
    if kind != "sqlite":
        raise ValueError(f"CHORUS_STORE={kind!r}: use 'sqlite' or 'redis'")
    from .store_sqlite import SQLiteStore

    return SQLiteStore(os.environ.get("CHORUS_DB_PATH", "chorus.sqlite3"))
