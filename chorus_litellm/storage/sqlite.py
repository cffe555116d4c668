"""SQLite plumbing shared by the store and the outbox: connections, transactions, migrations.

Connections are aiosqlite's (one thread each, no shared executor, no global lock), WAL
mode, autocommit: each hot-path statement is atomic on its own. Work of several
statements (migrations, a legacy import, a quarantine) runs in `BEGIN IMMEDIATE`, so
several processes sharing a file never interleave. Schema changes are ordered lists of
small migrations, applied once per file inside `BEGIN IMMEDIATE` (the applied versions
are read inside it) and recorded in `chorus_migrations`. Every SQLite or OS error leaves
through `mapped` as `StoreUnavailable`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from pathlib import Path

import aiosqlite

from ..core.errors import unavailable_on

BUSY_TIMEOUT_S = 10.0  # how long a writer waits for another process's transaction
Migration = Callable[[aiosqlite.Connection], Awaitable[None]]


mapped = unavailable_on(sqlite3.Error, OSError)


async def _open(path: Path) -> aiosqlite.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    # aiosqlite's worker thread is not a daemon: a store never closed would block the
    # interpreter's exit. SQLite's journal keeps the file consistent either way.
    if getattr(db, "_thread", None) is not None:
        db._thread.daemon = True
    return await db


@contextlib.asynccontextmanager
async def immediate(db: aiosqlite.Connection) -> AsyncGenerator[aiosqlite.Connection, None]:
    await db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
            await db.execute("ROLLBACK")
        raise
    await db.execute("COMMIT")


class Database:
    """One SQLite file: a shared connection opened (and migrated) on first use, retried
    after a failed open, plus short-lived connections for multi-statement transactions."""

    def __init__(self, path: Path, migrations: Sequence[Migration],
                 on_open: Callable[[aiosqlite.Connection], Awaitable[None]] | None = None) -> None:
        self.path, self.migrations, self.on_open = path, migrations, on_open
        self._db: aiosqlite.Connection | None = None

    async def conn(self) -> aiosqlite.Connection:
        if self._db is None:
            db = await _open(self.path)
            try:
                await db.execute("PRAGMA journal_mode=WAL")
                async with immediate(db):
                    await self._migrate(db)
                if self.on_open is not None:
                    await self.on_open(db)
            except BaseException:
                await db.close()
                raise
            if self._db is None:  # another task may have opened it meanwhile
                self._db = db
            else:
                await db.close()
        return self._db

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        await db.execute("CREATE TABLE IF NOT EXISTS chorus_migrations (version INTEGER PRIMARY KEY)")
        applied = {row[0] for row in await db.execute_fetchall("SELECT version FROM chorus_migrations")}
        for version, migrate in enumerate(self.migrations, start=1):
            if version not in applied:
                await migrate(db)
                await db.execute("INSERT INTO chorus_migrations VALUES (?)", (version,))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncGenerator[aiosqlite.Connection, None]:
        """A connection of its own, inside BEGIN IMMEDIATE (committed on success)."""
        await self.conn()  # migrated first
        db = await _open(self.path)
        try:
            async with immediate(db):
                yield db
        finally:
            await db.close()

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await db.close()


