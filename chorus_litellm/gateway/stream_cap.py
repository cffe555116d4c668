"""The cap on a key's open event streams (CHORUS_EVENT_STREAMS_PER_KEY), across every
worker and replica that shares the store.

Each open stream holds a slot in the store (`take_stream_slot`: atomic, refused when the
key's `limit` live slots are held), renewed every `lease_s / 3` while the stream is open
and dropped when it ends; a worker that dies frees its slots when their leases run out.
When the store cannot be reached, this worker's own count applies alone (a stream is
never refused for the store's sake, and the cap still holds per worker). A slot is also
counted here, so a worker over the cap refuses without asking the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

from ..core.errors import StoreUnavailable
from ..core.ports import StreamSlots

log = logging.getLogger("chorus_litellm")

LEASE_S = 30.0  # a dead worker's slots are free again within this


class StreamCap:
    def __init__(self, store: Callable[[], StreamSlots], limit: int, *, lease_s: float = LEASE_S) -> None:
        self.store, self.limit, self.lease_s = store, limit, lease_s  # store(): the store, opened on first use
        self.local: dict[str, int] = {}  # streams open (or waiting) on this worker, per key
        self._tasks: set[asyncio.Task] = set()  # renewals and drops under way

    async def take(self, key: str) -> Callable[[], None] | None:
        """One of `key`'s slots: its release (idempotent, callable from sync code), or None
        when the key holds `limit` open streams already."""
        if self.local.get(key, 0) >= self.limit:
            return None
        slot, stored = uuid.uuid4().hex, _digest(key)  # the store never holds a key itself
        try:
            shared = await self.store().take_stream_slot(stored, slot, self.limit, self.lease_s)
        except StoreUnavailable as exc:
            log.warning("chorus: event-stream slots: the store is unavailable (%s); this worker's count applies", exc)
            shared = None
        if shared is False or (shared is None and self.local.get(key, 0) >= self.limit):
            return None
        self.local[key] = self.local.get(key, 0) + 1
        renewing = self._spawn(self._renew(stored, slot)) if shared else None
        held = True

        def release() -> None:
            nonlocal held
            if not held:
                return
            held = False
            if self.local[key] > 1:
                self.local[key] -= 1
            else:
                del self.local[key]
            if renewing is not None:
                renewing.cancel()
                self._spawn(self._drop(stored, slot))
        return release

    def _spawn(self, work: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _renew(self, key: str, slot: str) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            with contextlib.suppress(StoreUnavailable):  # a missed renewal: the next one, or the lease ends
                await self.store().renew_stream_slot(key, slot, self.lease_s)

    async def _drop(self, key: str, slot: str) -> None:
        with contextlib.suppress(StoreUnavailable):  # else its lease ends it
            await self.store().drop_stream_slot(key, slot)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]
