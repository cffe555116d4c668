"""The one way a background task of this package is stopped, and a pass run periodically."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("chorus_litellm")


async def stop(task: asyncio.Task | None) -> None:
    """Cancel `task` and wait until it has ended (None: nothing to stop)."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Periodic:
    """`work()` now and then every `interval_s`, in one task of the loop that starts it; a
    pass that raises is logged and the next one runs (the syncs that keep each worker's
    Router in step with the store: market/sync.py, gateway/profiles.py)."""

    def __init__(self, name: str, interval_s: float, work: Callable[[], Awaitable[object]]) -> None:
        self.name, self.interval_s, self.work = name, interval_s, work
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._forever(), name=f"chorus-{self.name}")
            log.info("chorus: %s started (every %.1f s)", self.name, self.interval_s)

    async def _forever(self) -> None:
        while True:
            try:
                await self.work()
            except Exception:
                log.exception("chorus: %s pass failed", self.name)
            await asyncio.sleep(self.interval_s)

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None
