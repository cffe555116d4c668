"""The event log's writer and follower (observe/live.py) over a real SQLite store:
batched off the request path, terminal events at once, followers woken, keep-alives."""

import asyncio

import pytest

from chorus_litellm.observe.live import EventLog
from chorus_litellm.storage.sqlite_backend import SQLiteStore
from chorus_litellm.core.events import RoundStarted, SynthesisStarted
from chorus_litellm.core.runlog import RunLog
from tests.factories import finished


class CountingStore(SQLiteStore):
    """A SQLite store that counts its event writes."""

    writes = 0

    async def append_events(self, *args, **kwargs):
        self.writes += 1
        return await super().append_events(*args, **kwargs)


@pytest.fixture
async def store(tmp_path):
    store = CountingStore(tmp_path / "db.sqlite3")
    yield store
    await store.aclose()


async def test_emitting_never_waits_and_events_are_written_in_batches(store):
    log = EventLog(store, batch_s=0.05)
    run = RunLog(log.listener("team:a", "r1", ttl_s=60))
    for i in range(200):
        run.emit(RoundStarted(1, "panel", [f"s{i}"]))  # plain function calls: nothing awaited
    assert store.writes == 0 and await store.read_events("team:a", "r1") == []
    await asyncio.sleep(0.2)
    assert store.writes == 1  # one batch for 200 events
    assert [e["seq"] for e in await store.read_events("team:a", "r1")] == list(range(1, 201))
    await log.aclose()


async def test_the_last_event_is_written_at_once(store):
    log = EventLog(store, batch_s=10.0)  # a batch window no test would wait for
    run = RunLog(log.listener("team:a", "r1", ttl_s=60))
    run.emit(SynthesisStarted("p"))
    run.emit(finished())
    await asyncio.sleep(0.1)
    assert [e["type"] for e in await store.read_events("team:a", "r1")] == ["synthesis_started", "run_done"]
    await log.aclose()


async def test_a_follower_waits_for_the_run_then_follows_it_to_its_end(store):
    log = EventLog(store, batch_s=0.01, poll_s=5.0)  # local runs wake followers; no polling needed
    run = RunLog(log.listener("team:a", "r1", ttl_s=60))

    async def viewer():
        first = await log.first("team:a", "r1", after=0, wait_s=5)
        return [e["type"] async for e in log.follow("team:a", "r1", first) if e is not None]

    watching = asyncio.create_task(viewer())
    await asyncio.sleep(0.1)  # attached before the run's first event
    run.emit(SynthesisStarted("p"))
    await asyncio.sleep(0.05)
    run.emit(RoundStarted(1, "panel", []))
    run.emit(finished())
    seen = await asyncio.wait_for(watching, 2.0)  # well under poll_s: woken by the writes
    assert seen == ["synthesis_started", "round_started", "run_done"]
    await log.aclose()


async def test_a_run_that_never_starts_is_not_found_after_the_wait(store):
    log = EventLog(store)
    assert await log.first("team:a", "nope", after=0, wait_s=0.2) == []


async def test_an_idle_stream_gets_keep_alives(store):
    log = EventLog(store, poll_s=0.02, keepalive_s=0.05)
    run = RunLog(log.listener("team:a", "r1", ttl_s=60))
    run.emit(SynthesisStarted("p"))
    await log.flush()
    items = []
    follower = log.follow("team:a", "r1", await log.first("team:a", "r1", 0, 0))
    async for item in follower:
        items.append(item)
        if items.count(None) == 2:
            break
    await follower.aclose()
    assert items[0]["type"] == "synthesis_started" and items[1:] == [None, None]
