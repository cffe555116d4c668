"""The outbox every store keeps on local disk: records a backend could not take.

A SQLite file shared by every worker (see storage/sqlite.py); the rules for when a
record goes here and what may raise are in storage/store.py.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from .sqlite import Database, Migration, immediate, mapped

log = logging.getLogger("chorus_litellm")

RECEIPT, TRANSCRIPT, EVENTS, WEBHOOK, CLAIM = "receipt", "transcript", "events", "webhook", "claim"


@dataclass(frozen=True)
class Pending:
    """One record on its way to a backend; `row` is its outbox row id, if it has one."""

    kind: str
    owner: str
    debate_id: str
    record: dict
    expires_at: float | None = None
    row: int | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


async def _o1_outbox(db: aiosqlite.Connection) -> None:
    await db.execute(
        "CREATE TABLE outbox (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, owner TEXT NOT NULL, "
        "debate_id TEXT NOT NULL, record TEXT NOT NULL, expires_at REAL, created_at REAL NOT NULL, "
        "claimed_until REAL, UNIQUE (kind, owner, debate_id))"
    )


async def _o2_quarantine(db: aiosqlite.Connection) -> None:
    await db.execute("CREATE TABLE outbox_quarantine (id INTEGER PRIMARY KEY, source TEXT NOT NULL, "
                     "raw TEXT NOT NULL, reason TEXT NOT NULL, quarantined_at REAL NOT NULL)")


OUTBOX_MIGRATIONS: list[Migration] = [_o1_outbox, _o2_quarantine]
CLAIM_S = 30.0  # a worker that dies mid-flush leaves its claimed rows to others after this
_ROW = "id, kind, owner, debate_id, record, expires_at"
_INSERT = ("INSERT OR IGNORE INTO outbox (kind, owner, debate_id, record, expires_at, created_at) "
           "VALUES (?, ?, ?, ?, ?, ?)")


def _decode(row: Sequence[Any]) -> Pending:
    """An outbox row as a Pending record; ValueError when its record is not a JSON object."""
    row_id, kind, owner, debate_id, text, expires_at = row
    record = json.loads(text)
    if kind not in (RECEIPT, TRANSCRIPT, EVENTS, WEBHOOK) or not isinstance(record, dict):
        raise ValueError(f"not a {kind!r} record")
    return Pending(kind, owner, debate_id, record, expires_at, row_id)


class Outbox:
    """Records a backend could not take, in a local SQLite file shared by every worker.

    First write wins per (kind, owner, debate id). A row that cannot be decoded, or a
    line of the legacy JSONL outbox that cannot be parsed, is moved to
    `outbox_quarantine` and logged; it never blocks other rows."""

    def __init__(self, path: Path, *, legacy: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path, self.legacy, self.clock = path, legacy, clock
        self.name = f"outbox {path}"
        self.db = Database(path, OUTBOX_MIGRATIONS, on_open=self._import_legacy)

    @mapped
    async def add(self, item: Pending) -> Pending:
        """Keep `item` unless a live row has its key; return the kept one."""
        db = await self.db.conn()
        key = (item.kind, item.owner, item.debate_id)
        await db.execute("DELETE FROM outbox WHERE kind = ? AND owner = ? AND debate_id = ? AND expires_at <= ?",
                         (*key, self.clock()))
        for _ in range(2):  # twice only when an undecodable row was in the way (now quarantined)
            await db.execute(_INSERT, (*key, json.dumps(item.record), item.expires_at, self.clock()))
            if (kept := await self.find(*key)) is not None:
                return kept
        return item  # already expired: nothing to keep

    @mapped
    async def find(self, kind: str, owner: str, debate_id: str) -> Pending | None:
        db = await self.db.conn()
        rows = await db.execute_fetchall(f"SELECT {_ROW} FROM outbox WHERE kind = ? AND owner = ? AND debate_id = ?",
                                         (kind, owner, debate_id))
        found = await self._decoded(rows)
        return found[0] if found and not found[0].expired(self.clock()) else None

    @mapped
    async def claim(self, limit: int) -> list[Pending]:
        """Up to `limit` rows no other worker holds, held for CLAIM_S (one atomic statement)."""
        now, db = self.clock(), await self.db.conn()
        rows = await db.execute_fetchall(
            f"UPDATE outbox SET claimed_until = ? WHERE id IN (SELECT id FROM outbox WHERE claimed_until IS NULL "
            f"OR claimed_until <= ? ORDER BY id LIMIT ?) RETURNING {_ROW}", (now + CLAIM_S, now, limit))
        return sorted(await self._decoded(rows), key=lambda p: p.row or 0)

    @mapped
    async def release(self, items: Sequence[Pending]) -> None:
        await self._by_id("UPDATE outbox SET claimed_until = NULL", items)

    @mapped
    async def remove(self, items: Sequence[Pending]) -> None:
        await self._by_id("DELETE FROM outbox", items)

    async def _by_id(self, statement: str, items: Sequence[Pending]) -> None:
        ids = [p.row for p in items if p.row is not None]
        if ids:
            db = await self.db.conn()
            await db.execute(f"{statement} WHERE id IN ({', '.join('?' * len(ids))})", ids)

    async def _decoded(self, rows: Iterable[Sequence[Any]]) -> list[Pending]:
        out = []
        for row in rows:
            try:
                out.append(_decode(row))
            except (ValueError, TypeError) as exc:
                async with self.db.transaction() as db:
                    raw = json.dumps(dict(zip(_ROW.split(", "), row, strict=True)))
                    await self._quarantine(db, f"outbox row {row[0]}", raw, exc)
                    await db.execute("DELETE FROM outbox WHERE id = ?", (row[0],))
        return out

    async def _quarantine(self, db: aiosqlite.Connection, source: str, raw: str, exc: Exception) -> None:
        log.warning("chorus: %s quarantined in %s (%s: %s)", source, self.path, type(exc).__name__, exc)
        await db.execute("INSERT INTO outbox_quarantine (source, raw, reason, quarantined_at) VALUES (?, ?, ?, ?)",
                         (source, raw, f"{type(exc).__name__}: {exc}", self.clock()))

    async def _import_legacy(self, db: aiosqlite.Connection) -> None:
        """Import the legacy JSONL outbox once (then rename it); bad lines are quarantined."""
        legacy = self.legacy
        if legacy is None or not legacy.exists():
            return
        try:
            async with immediate(db):
                if not legacy.exists():
                    return  # another worker imported it while this one waited
                lines = legacy.read_text(encoding="utf-8", errors="replace").splitlines()
                for n, line in enumerate(lines, start=1):
                    if line.strip():
                        await self._import_line(db, line, f"{legacy}:{n}")
                legacy.rename(legacy.with_name(f"{legacy.name}.imported-{int(self.clock())}"))
        except OSError as exc:
            log.warning("chorus: legacy outbox %s not imported yet (%s)", legacy, exc)

    async def _import_line(self, db: aiosqlite.Connection, line: str, source: str) -> None:
        try:
            item = json.loads(line)
            ttl_s = item.get("ttl_s")
            expires_at = self.clock() + ttl_s if ttl_s else None
            pending = _decode((None, item["kind"], item["owner"], item["debate_id"], json.dumps(item["record"]),
                               expires_at))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            await self._quarantine(db, source, line, exc)
            return
        await db.execute(_INSERT, (pending.kind, pending.owner, pending.debate_id, json.dumps(pending.record),
                                   expires_at, self.clock()))

    async def aclose(self) -> None:
        await self.db.close()


