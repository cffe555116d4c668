"""gateway/stream_cap.py: a key's open event streams, capped in the store across workers;
this worker's own count when the store is down; a held slot renewed, a released one dropped."""

import asyncio

from chorus_litellm.core.errors import StoreUnavailable
from chorus_litellm.gateway.stream_cap import StreamCap


class Slots:
    """The store's slot calls, recorded; `down` raises StoreUnavailable like a lost backend."""

    def __init__(self, free: int = 100) -> None:
        self.free, self.down, self.calls = free, False, []

    async def take_stream_slot(self, key, slot, limit, lease_s):
        self.calls.append(("take", key))
        if self.down:
            raise StoreUnavailable("down")
        if self.free == 0:
            return False
        self.free -= 1
        return True

    async def renew_stream_slot(self, key, slot, lease_s):
        self.calls.append(("renew", key))
        return True

    async def drop_stream_slot(self, key, slot):
        self.calls.append(("drop", key))
        self.free += 1


async def test_the_store_decides_and_a_released_slot_is_dropped_once():
    store = Slots(free=2)  # other workers hold the rest of the key's slots
    cap = StreamCap(lambda: store, limit=8)
    first, second = await cap.take("k"), await cap.take("k")
    assert first and second and await cap.take("k") is None  # the store's count, not this worker's
    first()
    first()  # a second release gives nothing back twice
    await asyncio.sleep(0)
    assert [c for c, _ in store.calls].count("drop") == 1 and cap.local == {"k": 1}
    assert "k" not in {key for _, key in store.calls}  # the store holds a digest of the key, never the key
    assert await cap.take("k")


async def test_a_held_slot_is_renewed_until_released():
    store = Slots()
    cap = StreamCap(lambda: store, limit=8, lease_s=0.06)  # renewed every 0.02 s
    release = await cap.take("k")
    await asyncio.sleep(0.1)
    renewals = [c for c, _ in store.calls].count("renew")
    assert renewals >= 2
    release()
    await asyncio.sleep(0.1)
    assert [c for c, _ in store.calls].count("renew") == renewals and "drop" in [c for c, _ in store.calls]


async def test_with_the_store_down_this_workers_count_applies():
    store = Slots()
    store.down = True
    cap = StreamCap(lambda: store, limit=2)
    held = [await cap.take("k"), await cap.take("k")]
    assert all(held) and await cap.take("k") is None and await cap.take("other")
    held[0]()
    assert await cap.take("k")  # its slot came back; nothing was asked of the store to drop
    assert "drop" not in [c for c, _ in store.calls]
