"""A lost quorum need not be an error (issue 26): `panel.on_quorum_failure` answers it with
the single model or the best answer that came back, marked degraded in `chorus` and the
events, charged for every call made, never paying a failed seat."""

import dataclasses

import pytest

from chorus_litellm.settlement.signing import Signer
from chorus_litellm.core.config import ConfigError, parse_profile
from chorus_litellm.core.errors import QuorumError, UpstreamError
from chorus_litellm.core.events import AnswerDelta, Progress, QuorumLost, Relay, RunDone
from chorus_litellm.settlement.finish import Settler
from chorus_litellm.testing import TEST_SIGNING_SEED, FakeCompleter, FakeForwarder, HashEmbedder, Reply
from tests.factories import BASE, profile, request, run_events
from tests.test_settle import MemoryStore


def fallback_profile(on_failure: str, **panel):
    return profile(router={"policy": "always_fuse", "single_model": "solo"},
                   panel={"members": ["model-a", "model-b", "model-c"], "min_quorum": 3, "quorum_grace_s": 0.2,
                          "on_quorum_failure": on_failure, **panel})


def two_fail(fake: FakeCompleter) -> FakeCompleter:
    fake.enqueue("model-b", UpstreamError("http_error", "overloaded", status=503))
    fake.enqueue("model-c", UpstreamError("timeout", "no answer within 5 s"))
    return fake


async def test_by_default_a_lost_quorum_is_still_the_error_naming_each_failed_member():
    fake = two_fail(FakeCompleter())
    with pytest.raises(QuorumError, match="model-b .*http_error.*model-c .*timeout") as lost:
        await run_events(request(fallback_profile("error")), fake)
    assert [a.seat.name for a in lost.value.answers] == ["model-a"] and lost.value.required == 3


@pytest.mark.parametrize("stream", [False, True])
async def test_single_model_answers_a_lost_quorum_and_the_run_says_it_is_degraded(stream):
    fake = two_fail(FakeCompleter(json_models={"judge"}))
    fake.enqueue("solo", Reply("The single model's answer."))
    out = await run_events(request(fallback_profile("single_model"), stream=stream), fake, every=True,
                           forwarder=FakeForwarder(fake))
    lost = next(e for e in out if isinstance(e, QuorumLost))
    assert lost.data() == {"fallback": "single_model", "answered": 1, "required": 3, "failed": [
        {"seat": "model-b", "model": "model-b", "kind": "http_error", "status": 503, "detail": "overloaded"},
        {"seat": "model-c", "model": "model-c", "kind": "timeout", "status": None, "detail": "no answer within 5 s"}],
        "answered_by": "solo"}
    progress = [e.text for e in out if isinstance(e, Progress)]
    assert any("quorum lost: 1 answered, 3 required; model-b http_error; model-c timeout" in p
               and "single model (solo) answers instead" in p for p in progress)
    assert "".join(e.item for e in out if isinstance(e, Relay)) == "The single model's answer."
    assert not fake.calls_to("judge") and not fake.calls_to("writer")
    report = out[-1].report
    ext = report.extension()
    assert ext["degraded"][0] == "quorum" and ext["quorum_fallback"]["fallback"] == "single_model"
    assert ext["route"]["decision"] == "fuse"  # the gate fused; the quorum fell back
    # charged for what ran: the panel's calls (the ledger's rules for failed ones) and the single model
    calls = [(c.stage, c.seat) for c in report.calls]
    assert ("panel", "model-a") in calls and calls[-1] == ("forward", "single_model")
    assert report.cost == pytest.approx(sum(c.completion.cost for c in report.calls)) and report.cost > 0.001


async def test_best_answer_stands_when_the_quorum_is_lost_with_no_judge_or_writer():
    fake = two_fail(FakeCompleter(json_models={"judge"}))
    fake.enqueue("model-a", Reply("Raft has one strong leader."))
    out = await run_events(request(fallback_profile("best_answer")), fake, every=True)
    assert "".join(e.text for e in out if isinstance(e, AnswerDelta)) == "Raft has one strong leader."
    assert not fake.calls_to("judge") and not fake.calls_to("writer") and not fake.calls_to("solo")
    ext = out[-1].report.extension()
    assert ext["quorum_fallback"] == {**ext["quorum_fallback"], "fallback": "best_answer", "answered": 1,
                                      "answered_by": "model-a"}
    lost = next(e for e in out if isinstance(e, QuorumLost))
    assert "the best answer that came back (model-a) stands" in lost.text()
    assert ext["synthesis"]["fallback"] is True and ext["synthesis"]["fallback_source"] == "model-a"
    assert ext["degraded"] == ["quorum", "panel", "synthesis"]
    assert ext["panel"]["answered"] == ["model-a"] and len(ext["panel"]["failed"]) == 2


async def test_best_answer_with_no_answer_at_all_is_the_error():
    fake = FakeCompleter()
    for model in ("model-a", "model-b", "model-c"):
        fake.enqueue(model, UpstreamError("http_error", "down", status=500))
    with pytest.raises(QuorumError, match="0 of 3 members answered"):
        await run_events(request(fallback_profile("best_answer")), fake)


async def settle(prof, fake, **ports):
    req = dataclasses.replace(request(prof, bounty={"amount": 1000, "currency": "USD"}), owner="team:team-a")
    store = MemoryStore()
    out = await run_events(req, fake, embedder=HashEmbedder(), every=True,
                           finishers=[Settler(Signer(TEST_SIGNING_SEED), store, HashEmbedder())], **ports)
    assert isinstance(out[-1], RunDone)
    return out[-1].report, store


async def test_a_bounty_never_pays_a_failed_seat_after_a_lost_quorum():
    fake = two_fail(FakeCompleter(json_models={"judge"}))
    fake.enqueue("model-a", Reply("Raft has one strong leader."))
    report, store = await settle(fallback_profile("best_answer"), fake)
    paid = {c["seat"]: c["amount"] for c in report.settlement["payouts"]}
    assert report.settlement["status"] == "settled" and paid == {"model-a": 1000, "model-b": 0, "model-c": 0}
    # the single model's answer is no panel's work: nobody is paid, and it says so
    fake = two_fail(FakeCompleter(json_models={"judge"}))
    fake.enqueue("solo", Reply("The single model's answer."))
    report, store = await settle(fallback_profile("single_model"), fake, forwarder=FakeForwarder(fake))
    assert report.settlement["status"] == "unsettled" and "quorum" in report.settlement["error"]
    assert store.receipts == {} and any("lost its quorum" in n for n in report.notes)


def test_single_model_fallback_needs_a_single_model_named_at_startup():
    raw = {**BASE, "panel": {**BASE["panel"], "on_quorum_failure": "single_model"}}
    with pytest.raises(ConfigError, match="profile 'p': panel.on_quorum_failure: 'single_model' needs "
                                          "router.single_model"):
        parse_profile("p", raw)
    with pytest.raises(ConfigError, match="on_quorum_failure"):
        parse_profile("p", {**BASE, "panel": {**BASE["panel"], "on_quorum_failure": "ask_again"}})
