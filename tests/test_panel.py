import asyncio

import pytest

from chorus_litellm.core.config import PanelConfig
from chorus_litellm.core.errors import QuorumError, UpstreamError
from chorus_litellm.core.stages.panel import fan_out, seats
from chorus_litellm.testing import FakeCompleter, Reply

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}]


def three():
    return seats(PanelConfig(members=["a", "b", "c"]))


async def run(fake, panel_seats, quorum=2, grace=0.2, timeout=5.0, params=None, ratio=float("inf")):
    return await fan_out(fake, panel_seats, MSGS, quorum=quorum, timeout_s=timeout, grace_s=grace,
                         params=params or {}, grace_ratio=ratio)


def test_seat_names_and_self_moa_temperatures():
    names = [s.name for s in seats(PanelConfig(members=["a", "a", {"model": "b", "name": "bee"}]))]
    assert names == ["a#1", "a#2", "bee"]
    moa = seats(PanelConfig(self_moa={"model": "m", "samples": 3, "temperature_min": 0.2, "temperature_max": 1.0}))
    assert [s.temperature for s in moa] == [0.2, 0.6, 1.0]
    assert {s.model for s in moa} == {"m"}


async def test_whole_conversation_and_params_reach_every_member():
    fake = FakeCompleter()
    panel = await run(fake, three(), params={"max_tokens": 64})
    assert len(panel.answers) == 3 and panel.failures == ()
    for call in fake.calls:
        assert call.messages == MSGS
        assert call.params == {"max_tokens": 64}


async def test_partial_failure_is_a_value():
    fake = FakeCompleter().enqueue("b", UpstreamError("http_error", "boom", status=500))
    panel = await run(fake, three())
    assert sorted(a.seat.name for a in panel.answers) == ["a", "c"]
    (failure,) = panel.failures
    assert (failure.seat.name, failure.kind, failure.status) == ("b", "http_error", 500)


async def test_empty_answer_is_a_failure():
    fake = FakeCompleter().enqueue("c", "   ")
    panel = await run(fake, three())
    assert [f.kind for f in panel.failures] == ["empty"]


async def test_missed_quorum_names_each_member_and_reason():
    fake = FakeCompleter().enqueue("a", UpstreamError("http_error", "bad gateway", status=502))
    fake.enqueue("b", UpstreamError("content_filter", "blocked"))
    with pytest.raises(QuorumError) as err:
        await run(fake, three())
    text = str(err.value)
    assert "1 of 3 members answered, 2 required" in text
    assert "a (a): http_error 502" in text and "b (b): content_filter" in text
    assert len(err.value.failures) == 2


async def test_straggler_is_cancelled_after_grace():
    fake = FakeCompleter().enqueue("c", Reply("late", delay=30))
    loop = asyncio.get_running_loop()
    started = loop.time()
    panel = await run(fake, three(), grace=0.1)
    assert loop.time() - started < 1.0
    (failure,) = panel.failures
    assert failure.kind == "cancelled" and "after the quorum" in failure.detail
    assert fake.calls_to("c")[0].cancelled


async def test_member_within_grace_is_kept():
    fake = FakeCompleter().enqueue("c", Reply("a bit late", delay=0.05))
    panel = await run(fake, three(), grace=1.0)
    assert len(panel.answers) == 3


async def test_timeout_is_reported_and_hopeless_panels_stop_early():
    fake = FakeCompleter().enqueue("a", Reply("x", delay=30)).enqueue("b", Reply("x", delay=30))
    fake.enqueue("c", UpstreamError("connection", "refused"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(QuorumError) as err:
        await run(fake, three(), quorum=3, timeout=0.2)
    assert loop.time() - started < 1.0  # gave up when c failed: 3 of 3 impossible
    kinds = sorted(f.kind for f in err.value.failures)
    assert kinds == ["cancelled", "cancelled", "connection"]
    fake2 = FakeCompleter().enqueue("a", Reply("x", delay=30))
    panel = await run(fake2, three(), quorum=2, timeout=0.1, grace=5)
    assert [f.kind for f in panel.failures] == ["timeout"]


async def test_caller_cancellation_cancels_members():
    fake = FakeCompleter()
    for m in "abc":
        fake.enqueue(m, Reply("x", delay=30))
    task = asyncio.create_task(run(fake, three()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(c.cancelled for c in fake.calls)


async def test_grace_is_relative_to_the_quorum_time():
    # quorum after 0.2 s; ratio 1.0 gives stragglers 0.2 s more (until ~0.4 s), not the 5 s cap
    fake = FakeCompleter().enqueue("a", Reply("x", delay=0.2)).enqueue("b", Reply("x", delay=0.2))
    fake.enqueue("c", Reply("x", delay=3.0))
    loop = asyncio.get_running_loop()
    started = loop.time()
    panel = await run(fake, three(), grace=5.0, ratio=1.0)
    assert loop.time() - started < 2.0  # cut at the relative grace, far below the 5 s cap
    assert [f.kind for f in panel.failures] == ["cancelled"] and fake.calls_to("c")[0].cancelled
    fake = FakeCompleter().enqueue("a", Reply("x", delay=0.2)).enqueue("b", Reply("x", delay=0.2))
    fake.enqueue("c", Reply("x", delay=0.25))
    panel = await run(fake, three(), grace=5.0, ratio=1.0)
    assert len(panel.answers) == 3  # 25% behind, inside a 100% grace: waited for
