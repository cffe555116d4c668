"""The consensus protocol through the pipeline with scripted agents."""

from chorus_litellm.core.stages.consensus import parse_vote
from chorus_litellm.testing import FakeCompleter
from chorus_litellm.core.events import AnswerDelta
from tests.factories import profile, request, run_events

ACCEPT = '{"accept": true, "objection": ""}'
REJECT = '{"accept": false, "objection": "misses the cost of partitions"}'


def consensus(**debate):
    return profile(debate={"protocol": "consensus", "max_rounds": 3, **debate},
                   panel={"members": ["a", "b", "c"], "min_quorum": 2})


async def run(prof, fake):
    events = await run_events(request(prof), fake)
    return "".join(e.text for e in events if isinstance(e, AnswerDelta)), events[-1].report


def script(fake, *votes_per_agent):
    for agent, votes in zip("abc", votes_per_agent, strict=True):
        fake.enqueue(agent, f"draft by {agent}", f"critique by {agent}", *votes)


async def test_majority_accepts_the_first_candidate():
    fake = FakeCompleter().enqueue("writer", "the candidate")
    script(fake, [ACCEPT], [ACCEPT], [REJECT])
    text, report = await run(consensus(), fake)
    assert text == "the candidate"
    d = report.deliberation
    assert d["reached"] and d["stop_reason"] == "consensus" and d["rounds"] == 1
    assert d["consensus_confidence"] == round(2 / 3, 4)
    stages = [c.stage for c in report.calls]
    assert stages.count("panel") == 3 and stages.count("critique") == 3 and stages.count("vote") == 3
    assert stages.count("candidate") == 1 and "revise" not in stages
    critique_prompt = fake.calls_to("a")[1].messages[-1]["content"]
    assert "draft by b" in critique_prompt and '"label": "A"' in critique_prompt


async def test_strict_unanimity_revises_until_all_accept():
    fake = FakeCompleter().enqueue("writer", "first candidate", "revised candidate")
    script(fake, [ACCEPT, ACCEPT], [ACCEPT, ACCEPT], [REJECT, ACCEPT])
    text, report = await run(consensus(strict_unanimity=True), fake)
    assert text == "revised candidate"
    d = report.deliberation
    assert d["rounds"] == 2 and d["reached"]
    revise_prompt = fake.calls_to("writer")[1].messages[-1]["content"]
    assert "misses the cost of partitions" in revise_prompt and "first candidate" in revise_prompt


async def test_invalid_votes_reject_and_max_rounds_ends_without_consensus():
    fake = FakeCompleter().enqueue("writer", "c1", "c2")
    script(fake, ["nope", "nope"], [REJECT, REJECT], [ACCEPT, ACCEPT])
    text, report = await run(consensus(max_rounds=2), fake)
    d = report.deliberation
    assert text == "c2" and not d["reached"] and d["stop_reason"] == "max_rounds"
    assert d["votes"][0]["a"] == {"accept": False, "objection": "invalid vote"}


async def test_token_budget_stops_the_loop():
    fake = FakeCompleter().enqueue("writer", "only candidate")
    script(fake, [REJECT], [REJECT], [REJECT])
    text, report = await run(consensus(max_total_tokens=5), fake)
    assert text == "only candidate"
    assert report.deliberation["stop_reason"] == "token_budget_exceeded"
    assert report.deliberation["token_budget_exceeded"]


def test_parse_vote():
    assert parse_vote('```json\n{"accept": true}\n```') == {"accept": True, "objection": ""}
    assert parse_vote('{"accept": "yes"}')["accept"] is False
    assert parse_vote("")["objection"] == "invalid vote"


def scored(accept, confidence=0.9, blocking=()):
    import json

    return json.dumps({"accept": accept, "confidence": confidence, "blocking": list(blocking),
                       "objection": "" if accept else "misses the cost of partitions"})


async def test_the_go_seed_loop_only_dissenters_vote_again_and_unreadable_votes_are_skipped():
    fake = FakeCompleter().enqueue("writer", "first candidate", "revised candidate")
    # a accepts confidently (asked once); b accepts unsure (asked again); c rejects, then accepts
    script(fake, [scored(True)], [scored(True, 0.6), scored(True, 0.9)], [scored(False), scored(True, 0.8)])
    text, report = await run(consensus(revote="dissenters", strict_unanimity=True), fake)
    assert text == "revised candidate"
    d = report.deliberation
    assert d["reached"] and d["rounds"] == 2
    assert [len(fake.calls_to(m)) for m in "abc"] == [3, 4, 4]  # draft, critique, then a's one vote
    assert set(d["votes"][1]) == {"b", "c"}  # only the unconvinced voted on the revision
    assert "CHORUS-VOTE" in fake.calls_to("b")[3].messages[-1]["content"]
    assert '"confidence"' in fake.calls_to("b")[3].messages[-1]["content"]
    revise = fake.calls_to("writer")[1].messages[-1]["content"]
    assert "misses the cost of partitions" in revise


async def test_an_unreadable_vote_is_skipped_not_a_rejection():
    fake = FakeCompleter().enqueue("writer", "the candidate")
    script(fake, ["not a vote"], [scored(True)], [scored(True)])
    text, report = await run(consensus(revote="dissenters"), fake)
    d = report.deliberation
    assert text == "the candidate" and d["reached"] and d["consensus_confidence"] == 1.0  # 2 of 2 counted
    assert set(d["votes"][0]) == {"b", "c"}
    fake = FakeCompleter().enqueue("writer", "the candidate")
    script(fake, ["not a vote"], [scored(True)], [scored(True)])
    text, report = await run(consensus(), fake)  # the default loop: an invalid vote rejects
    assert report.deliberation["votes"][0]["a"] == {"accept": False, "objection": "invalid vote"}


async def test_without_consensus_the_answer_says_why_and_confidence_is_the_best_round():
    fake = FakeCompleter().enqueue("writer", "c1", "c2")
    script(fake, [scored(True), scored(True)], [scored(False, blocking=["no latency numbers"]), scored(False)],
           [scored(False, blocking=["ignores Byzantine faults"]), scored(False, blocking=["ignores Byzantine faults"])])
    text, report = await run(consensus(revote="dissenters", max_rounds=2), fake)
    d = report.deliberation
    assert not d["reached"] and d["stop_reason"] == "max_rounds"
    assert text.startswith("c2\n\n---\nNo consensus after 2 vote(s): best approval 33%")
    assert "ignores Byzantine faults" in text
    assert d["consensus_confidence"] == round(1 / 3, 4)
    assert len(fake.calls_to("a")) == 3  # a accepted confidently in round 1: asked once


async def test_drafts_that_agree_on_the_answer_end_the_loop_before_it_starts():
    fake = FakeCompleter()
    fake.enqueue("a", "6 + 7 = 13.").enqueue("b", "The answer is 13.")
    prof = profile(debate={"protocol": "consensus"}, panel={"members": ["a", "b", "c"], "min_quorum": 2})
    events = await run_events(request(prof, messages=[{"role": "user", "content": "What is 6 + 7?"}]), fake)
    text = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    d = events[-1].report.deliberation
    assert text == "6 + 7 = 13." and d["stop_reason"] == "drafts_agree" and d["answer_from"] == "a"
    assert fake.calls_to("c") == [] and fake.calls_to("writer") == []  # early stop, then no critique or vote
    assert [c.stage for c in events[-1].report.calls] == ["panel", "panel"]
    assert events[-1].report.degraded() == []
