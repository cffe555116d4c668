"""The call ledger: every inner call recorded and charged the moment it ends, however it ends."""

import asyncio

import pytest

from chorus_litellm.core.errors import UpstreamError
from chorus_litellm.core.ledger import Ledger
from chorus_litellm.core.report import RunReport
from chorus_litellm.testing import ESTIMATE_PRICE, FakeCompleter, Reply
from chorus_litellm.core.types import Caller, Usage

MSGS = [{"role": "user", "content": "four words of prompt"}]


def ledger(fake, deadline=None):
    charges = []
    report = RunReport("run-1", "test", Caller())
    return Ledger(fake, report, deadline=deadline, on_charge=lambda r: charges.append(r.cost)), charges


async def test_whole_calls_are_recorded_and_charged_at_once():
    fake = FakeCompleter().enqueue("m", Reply("ok", usage=Usage(3, 1), cost=0.5))
    led, charges = ledger(fake)
    await led.complete("m", MSGS, timeout=5, stage="panel", seat="m#1")
    (call,) = led.report.calls
    assert (call.stage, call.seat, call.status, call.estimated) == ("panel", "m#1", "ok", False)
    assert charges == [0.5]
    assert (fake.calls[0].stage, fake.calls[0].seat) == ("panel", "m#1")


async def test_a_refused_call_costs_nothing_but_a_timeout_costs_the_prompt():
    fake = FakeCompleter().enqueue("m", UpstreamError("http_error", "no", status=500),
                                   UpstreamError("timeout", "slow"))
    led, charges = ledger(fake)
    for _ in range(2):
        with pytest.raises(UpstreamError):
            await led.complete("m", MSGS, timeout=5, stage="panel", seat="m")
    (call,) = led.report.calls
    assert call.status == "timeout" and call.estimated
    assert call.completion.usage == Usage(4, 0) and charges == [pytest.approx(4 * ESTIMATE_PRICE)]


async def test_a_stream_cut_off_mid_answer_is_charged_for_what_it_sent():
    fake = FakeCompleter().enqueue("w", Reply("one two three four", error=UpstreamError("connection", "reset"),
                                              fail_after=2))
    led, charges = ledger(fake)
    sent = []
    with pytest.raises(UpstreamError):
        async for piece in led.stream("w", MSGS, timeout=5, stage="synthesis", seat="synthesizer"):
            sent.append(piece)
    (call,) = led.report.calls
    assert "".join(sent) == "one two" and call.status == "partial"
    assert call.completion.usage == Usage(4, 2) and charges[-1] == pytest.approx(6 * ESTIMATE_PRICE)


async def test_a_stream_closed_by_its_consumer_is_charged_and_its_call_cancelled():
    fake = FakeCompleter().enqueue("w", Reply("a b c d e f", word_delay=0.01))
    led, charges = ledger(fake)
    stream = led.stream("w", MSGS, timeout=5, stage="synthesis", seat="synthesizer")
    assert await anext(stream) == "a"
    await stream.aclose()  # the client went away
    (call,) = led.report.calls
    assert call.status == "cancelled" and call.completion.usage == Usage(4, 1)
    assert charges == [pytest.approx(5 * ESTIMATE_PRICE)]


async def test_a_cancelled_call_is_charged_for_its_prompt():
    fake = FakeCompleter().enqueue("m", Reply("late", delay=30))
    led, _ = ledger(fake)
    task = asyncio.create_task(led.complete("m", MSGS, timeout=60, stage="panel", seat="m"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [c.status for c in led.report.calls] == ["cancelled"] and fake.calls[0].cancelled


async def test_the_run_deadline_caps_every_call():
    loop = asyncio.get_running_loop()
    fake = FakeCompleter().enqueue("m", Reply("slow", delay=30))
    led, _ = ledger(fake, deadline=loop.time() + 0.05)
    with pytest.raises(UpstreamError, match="deadline"):
        await led.complete("m", MSGS, timeout=60, stage="judge", seat="judge")
    assert led.expired()
    with pytest.raises(UpstreamError, match="run's deadline passed"):
        await led.complete("m", MSGS, timeout=60, stage="synthesis", seat="synthesizer")
    assert len(fake.calls) == 1  # the second call was never made
