"""The process's side of every run's event log: written off the request path, followed live.

- `listener(owner, run_id, ttl_s)` is a run's `RunLog` listener; each emitted event is
  appended to an in-memory batch (no I/O, no await) and one background task per event
  loop writes the batches to the store every `batch_s` (terminal events at once), so a
  run never waits for the store. A store outage sends the batch to the outbox
  (storage/store.py): it never fails a run.
- `open(owner, run_id, after, wait_s)` decides whether there is anything to follow: the
  owner's stored events after `after` (or [] for a run of the owner's with none yet), or
  None when the owner has no run with that id, at once, or after waiting up to `wait_s`
  for one that has not started yet (the only way a stream outlives an unknown id). A run
  of another owner looks exactly like a missing one.
- `follow(owner, run_id, events, after)` replays those events, then follows the run until
  `run_done` / `run_failed`: runs on this process wake their followers as soon as a batch
  is written; runs on another worker or replica are polled every `poll_s`. `None` items
  are keep-alive ticks for an idle stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from ..core.ports import RunLog
from ..core.runlog import TERMINAL, Listener, RunEvent
from ..core.background import stop

log = logging.getLogger("chorus_litellm")

STALE_S = 900.0  # a followed run with no event for this long is given up (its worker died)


class EventLog:
    def __init__(self, store: RunLog, *, batch_s: float = 0.05, poll_s: float = 0.25, keepalive_s: float = 15.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.batch_s, self.poll_s, self.keepalive_s, self.clock = store, batch_s, poll_s, keepalive_s, clock
        self._pending: dict[tuple[str, str], tuple[int | None, list[RunEvent]]] = {}
        self._followers: dict[tuple[str, str], set[asyncio.Event]] = {}
        self._writing: list[dict[tuple[str, str], Any]] = []  # batches being written now
        self._urgent = False
        self._writer: asyncio.Task | None = None

    # -- writing ------------------------------------------------------------------
    def listener(self, owner: str, run_id: str, ttl_s: int | None) -> Listener:
        """The run's store writer (only for a run with an owner: nobody else may read it)."""
        return lambda event: self._add(owner, run_id, ttl_s, event)

    def _add(self, owner: str, run_id: str, ttl_s: int | None, event: RunEvent) -> None:
        self._pending.setdefault((owner, run_id), (ttl_s, []))[1].append(event)
        self._urgent |= event.type in TERMINAL
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write(), name="chorus-events")

    async def _write(self) -> None:
        """Write batches while events keep coming; ends when none are pending (the next
        event starts it again), so no task outlives the work."""
        while self._pending:
            if not self._urgent:
                await asyncio.sleep(self.batch_s)  # gather a batch
            self._urgent = False
            try:
                await self.flush()
            except Exception:
                log.exception("chorus: run events not written")

    async def flush(self) -> None:
        """Write every pending batch now (the background task does this every batch_s)."""
        pending, self._pending = self._pending, {}
        self._writing.append(pending)
        try:
            for (owner, run_id), (ttl_s, events) in pending.items():
                await self.store.append_events(owner, run_id, [e.envelope() for e in events], ttl_s)
                for changed in self._followers.get((owner, run_id), ()):
                    changed.set()
        finally:
            self._writing = [batch for batch in self._writing if batch is not pending]

    async def aclose(self) -> None:
        """Write what is pending and stop the writer."""
        await stop(self._writer)
        self._writer = None
        await self.flush()

    # -- following ----------------------------------------------------------------
    @contextlib.contextmanager
    def watch(self, owner: str, run_id: str):
        """An event set whenever this process writes events of the run."""
        changed = asyncio.Event()
        self._followers.setdefault((owner, run_id), set()).add(changed)
        try:
            yield changed
        finally:
            watchers = self._followers[(owner, run_id)]
            watchers.discard(changed)
            if not watchers:
                del self._followers[(owner, run_id)]

    def _unwritten(self, owner: str, run_id: str) -> bool:
        """Whether this process holds events of the run not in the store yet."""
        key = (owner, run_id)
        return key in self._pending or any(key in batch for batch in self._writing)

    async def open(self, owner: str, run_id: str, after: int = 0, wait_s: float = 0.0,
                   gone: Callable[[], Awaitable[bool]] | None = None) -> list[dict] | None:
        """The owner's stored events of the run after `after` ([] for a run of the owner's
        with none there yet); None when the owner has no run with that id: at once, or after
        waiting up to `wait_s` for it to start (a viewer may attach before its run), or as
        soon as `gone()` says the viewer left. Raises StoreUnavailable when the store
        cannot be read."""
        deadline = self.clock() + wait_s
        with self.watch(owner, run_id) as changed:
            while True:
                events = await self.store.read_events(owner, run_id, after)
                if events:
                    return events
                if self._unwritten(owner, run_id) or (after > 0 and await self.store.read_events(owner, run_id, 0, 1)):
                    return []  # the owner's run, nothing after `after` yet
                if self.clock() >= deadline or (gone is not None and await gone()):
                    return None
                await _until(changed, min(self.poll_s, max(0.0, deadline - self.clock())))

    async def first(self, owner: str, run_id: str, after: int, wait_s: float) -> list[dict]:
        """`open`, with [] for a run that is not there."""
        return await self.open(owner, run_id, after, wait_s) or []

    async def follow(self, owner: str, run_id: str, events: list[dict],
                     after: int = 0) -> AsyncGenerator[dict | None, None]:
        """`events` (from `open`, all after `after`), then every later one until the run
        ends; None while idle."""
        after = events[-1]["seq"] if events else after
        quiet_since = last_sent = self.clock()
        with self.watch(owner, run_id) as changed:
            while True:
                for event in events:
                    yield event
                    after, quiet_since = event["seq"], self.clock()
                    if event["type"] in TERMINAL:
                        return
                if self.clock() - quiet_since > STALE_S:
                    return
                if events:
                    last_sent = self.clock()
                elif self.clock() - last_sent >= self.keepalive_s:
                    last_sent = self.clock()
                    yield None
                await _until(changed, self.poll_s)  # another worker's run: the poll interval
                events = await self.store.read_events(owner, run_id, after)


async def _until(changed: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(changed.wait(), timeout)
    changed.clear()
