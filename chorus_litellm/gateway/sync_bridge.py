"""The SDK's sync entry points (`litellm.completion`, streamed or not) over the async ones.

LiteLLM calls a custom provider's `completion`/`streaming` from plain threads. Each
handler keeps one event loop on a daemon thread and runs its async entry points there,
so the run's background work (the ledger's charges, the event writer) lives on one loop
for the whole process. A stream abandoned by the caller is closed on that loop, which
cancels its run's inner calls.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Iterator
from typing import Any


async def _next(agen: AsyncGenerator[Any, None]) -> Any:
    """The generator's next item, as a coroutine (what run_coroutine_threadsafe takes)."""
    return await agen.__anext__()


class SyncBridge:
    """Mixin: `completion` and `streaming` run `acompletion` and `astreaming` on a loop of
    their own."""

    _sync_loop: asyncio.AbstractEventLoop | None = None

    def _loop(self) -> asyncio.AbstractEventLoop:
        if self._sync_loop is None:
            self._sync_loop = asyncio.new_event_loop()
            threading.Thread(target=self._sync_loop.run_forever, daemon=True, name="chorus-sync").start()
        return self._sync_loop

    def completion(self, *args, **kwargs) -> Any:
        return asyncio.run_coroutine_threadsafe(self.acompletion(*args, **kwargs), self._loop()).result()  # type: ignore[attr-defined]

    def streaming(self, *args, **kwargs) -> Iterator[Any]:
        loop = self._loop()
        agen = self.astreaming(*args, **kwargs)  # type: ignore[attr-defined]
        try:
            while True:
                try:
                    yield asyncio.run_coroutine_threadsafe(_next(agen), loop).result()
                except StopAsyncIteration:
                    return
        finally:  # abandoned by the caller: close the run (cancels its inner calls)
            asyncio.run_coroutine_threadsafe(agen.aclose(), loop).result()
