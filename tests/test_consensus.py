"""The consensus protocol through the pipeline with scripted agents."""

from chorus_litellm.stages.consensus import parse_vote
from chorus_litellm.testing import FakeCompleter
from chorus_litellm.types import Delta
from tests.factories import profile, request, run_events

ACCEPT = '{"accept": true, "objection": ""}'
REJECT = '{"accept": false, "objection": "misses the cost of partitions"}'


def consensus(**debate):
    return profile(debate={"protocol": "consensus", "max_rounds": 3, **debate},
                   panel={"members": ["a", "b", "c"], "min_quorum": 2})


async def run(prof, fake):
    events = await run_events(request(prof), fake)
    return "".join(e.text for e in events if isinstance(e, Delta)), events[-1].report


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
