"""Settlement from the run's typed outcome: every seat of every round is on the receipt."""


from chorus_litellm.settlement.signing import Signer
from chorus_litellm.core.errors import StoreUnavailable, UpstreamError
from chorus_litellm.settlement.finish import ReputationKeeper, Settler, receipt_id
from chorus_litellm.testing import TEST_SIGNING_SEED, FakeCompleter, HashEmbedder, Reply
from chorus_litellm.core.events import RunDone
from tests.factories import profile, request, run_events


class MemoryStore:
    def __init__(self, down=False):
        self.receipts, self.observations, self.down = {}, [], down

    async def put_receipt(self, owner, debate_id, receipt):
        if self.down:
            raise StoreUnavailable("backend and outbox unavailable")
        return self.receipts.setdefault((owner, debate_id), receipt)

    async def add_reputation(self, observations):
        self.observations.append(observations)


def debate_profile():
    return profile(panel={"members": ["model-a", "model-b", "model-c"], "min_quorum": 2},
                   debate={"protocol": "debate", "max_rounds": 2, "agreement": 1.0, "echo": {"copy_similarity": 1.0}})


async def settled(prof, fake, store, bounty=1000):
    req = request(prof, bounty={"amount": bounty, "currency": "USD"})
    import dataclasses

    req = dataclasses.replace(req, owner="team:team-a")
    finishers = [Settler(Signer(TEST_SIGNING_SEED), store, HashEmbedder()), ReputationKeeper(store)]
    events = await run_events(req, fake, embedder=HashEmbedder(), finishers=finishers)
    assert isinstance(events[-1], RunDone)
    return events[-1].report


async def test_a_seat_that_failed_in_round_one_stays_on_the_receipt_and_in_reputation():
    fake = FakeCompleter().enqueue("model-c", UpstreamError("http_error", "down", status=500))
    fake.enqueue("model-a", Reply("Raft uses a strong leader."), Reply("Raft uses a strong leader, still."))
    fake.enqueue("model-b", Reply("Paxos has no fixed leader."), Reply("Paxos has no fixed leader, still."))
    store = MemoryStore()
    report = await settled(debate_profile(), fake, store)
    assert report.deliberation["rounds"] == 2
    rows = {c["seat"]: c for c in report.receipt["payload"]["contributions"]}
    assert set(rows) == {"model-a", "model-b", "model-c"}
    assert (rows["model-c"]["eligible"], rows["model-c"]["ineligible_reason"], rows["model-c"]["amount"]) == \
        (False, "http_error", 0)
    assert rows["model-a"]["amount"] + rows["model-b"]["amount"] == 1000
    (obs,) = store.observations
    assert obs["model:model-c"]["failures"] == 1 and obs["model:model-a"]["eligible"] == 1


async def test_an_unstorable_receipt_is_not_promised():
    report = await settled(profile(), FakeCompleter(), MemoryStore(down=True))
    assert report.receipt is None
    assert report.settlement["status"] == "unsettled" and "nothing was paid" in report.settlement["error"]
    assert report.extension()["notes"]


def test_receipt_ids_cannot_collide_across_owners():
    assert receipt_id("team:a", "b:c") != receipt_id("team:a:b", "c")
