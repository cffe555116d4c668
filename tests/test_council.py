"""The council protocol (issue 26): members rank each other's anonymized answers in both
orders, Borda points stand in for the judge, the synthesizer reads them, receipts pay by
them."""

import dataclasses
import json
from dataclasses import dataclass, field

from chorus_litellm.settlement.signing import Signer
from chorus_litellm.core.events import JudgeDone, RoundStarted, RunDone
from chorus_litellm.core.runlog import RunLog
from chorus_litellm.settlement.finish import Settler
from chorus_litellm.core.stages.council import borda
from chorus_litellm.testing import TEST_SIGNING_SEED, FakeCompleter, HashEmbedder, Reply
from tests.factories import profile, request, run_events
from tests.test_settle import MemoryStore

ANSWERS = {"model-a": "Raft elects one strong leader per term.",
           "model-b": "Paxos is older and proven; Raft is easier to teach.",
           "model-c": "Both are about the same, really."}
BEST_FIRST = ["model-a", "model-b", "model-c"]  # what every honest ranker prefers


def shown(messages) -> list[dict]:
    """The labelled answers a rank request shows, in the order shown."""
    text = messages[-1]["content"]
    return json.loads(text.split("not instructions):\n", 1)[1].rsplit("\n\nReply", 1)[0])


@dataclass
class Council(FakeCompleter):
    """Members answer ANSWERS; asked to rank, they rank by BEST_FIRST (or, `biased`, in the
    order shown: the first they read is best), and record what each was shown."""

    biased: bool = False
    unreadable: bool = False
    seen: dict = field(default_factory=dict)

    async def complete(self, model, messages, *, timeout, stage="", seat="", **params):
        if stage == "rank":
            answers = shown(messages)
            self.seen.setdefault(seat, []).append([a["text"] for a in answers])
            order = answers if self.biased else sorted(
                answers, key=lambda a: BEST_FIRST.index(next(m for m, t in ANSWERS.items() if t == a["text"])))
            self.enqueue(model, "I cannot rank these." if self.unreadable
                         else json.dumps({"ranking": [a["label"] for a in order]}))
        elif stage == "panel":
            self.enqueue(model, ANSWERS[model])
        return await super().complete(model, messages, timeout=timeout, stage=stage, seat=seat, **params)


def council_request(**kw):
    return request(profile(debate={"protocol": "council"}), **kw)


async def test_members_rank_the_others_in_both_orders_and_the_writer_reads_the_ranks_instead_of_a_judge():
    fake = Council(json_models={"judge"})
    logged = []
    out = await run_events(council_request(), fake, every=True, log=RunLog(logged.append))
    assert not fake.calls_to("judge")  # the ranks stand in for the judge
    rank_rounds = [(e.event.round, e.event.stage) for e in logged if isinstance(e.event, RoundStarted)]
    assert rank_rounds == [(1, "panel"), (2, "rank"), (3, "rank")]
    for seat, (forward, backward) in fake.seen.items():
        assert ANSWERS[seat] not in forward and forward == backward[::-1] and len(forward) == 2  # never itself
    report = out[-1].report
    ranking = report.deliberation["ranking"]
    assert [r["seat"] for r in ranking] == BEST_FIRST and ranking[0]["points"] == 1.0 and ranking[-1]["points"] == 0.0
    assert report.deliberation["ballots"] == 6 and report.deliberation["unreadable_ballots"] == 0
    writer = fake.calls_to("writer")[0].messages[-1]["content"]
    assert '"ranking"' in writer and "Borda" in writer
    judged = next(e for e in out if isinstance(e, JudgeDone))
    assert judged.verdict.analysis.best == "model-a"
    assert [c.stage for c in report.calls].count("rank") == 6


async def test_a_ranker_that_always_prefers_the_first_answer_it_reads_changes_nothing():
    fake = Council(biased=True)
    report = (await run_events(council_request(), fake))[-1].report
    points = {r["seat"]: r["points"] for r in report.deliberation["ranking"]}
    assert points == {"model-a": 0.5, "model-b": 0.5, "model-c": 0.5}  # position bias cancels out


async def test_with_no_readable_ballot_the_judge_decides():
    fake = Council(unreadable=True, json_models={"judge"})
    report = (await run_events(council_request(), fake))[-1].report
    assert report.deliberation["ballots"] == 0 and report.deliberation["unreadable_ballots"] == 6
    assert fake.calls_to("judge") and report.deliberation["ranking"] == []


def test_borda_is_the_mean_over_the_ballots_that_could_rank_an_answer():
    ballots = [{"a": 0, "b": 1, "c": 2}, {"a": 1, "b": 0}, {"c": 0, "a": None}]
    ranked = borda(ballots, ["a", "b", "c", "d"])
    assert ranked == [{"seat": "b", "points": 1.0, "ballots": 2}, {"seat": "a", "points": 0.6667, "ballots": 3},
                      {"seat": "c", "points": 0.5, "ballots": 2}]  # d was never shown: not ranked
    assert borda([], ["a"]) == []


async def test_a_bounty_pays_impact_by_the_ranks():
    fake = Council(json_models={"judge"})
    fake.enqueue("writer", Reply("Unrelated words only here."))  # no sentence matches a draft: ranks decide
    req = dataclasses.replace(council_request(bounty={"amount": 1000, "currency": "USD"}), owner="team:team-a")
    store = MemoryStore()
    out = await run_events(req, fake, embedder=HashEmbedder(),
                           finishers=[Settler(Signer(TEST_SIGNING_SEED), store, HashEmbedder())])
    assert isinstance(out[-1], RunDone)
    paid = {p["seat"]: p["amount"] for p in out[-1].report.settlement["payouts"]}
    assert paid["model-a"] > paid["model-b"] > paid["model-c"] and sum(paid.values()) == 1000
