import pytest

from chorus_litellm.core.config import RouterConfig
from chorus_litellm.core.errors import UpstreamError
from chorus_litellm.core.stages.router import decide, difficulty
from chorus_litellm.testing import FakeCompleter, Reply

HARD = "Compare the trade-offs of Raft and Paxos for a geo-distributed database and design a migration plan."
MID = "What is 17*23+4?"


def msgs(text):
    return [{"role": "user", "content": text}]


def test_difficulty_orders_prompts():
    scores = [difficulty(t)[0] for t in ("hi", "What is the capital of France?", HARD)]
    assert scores == sorted(scores)
    assert scores[0] < 0.1 and scores[2] > 0.9


async def test_policies_without_model_calls():
    fake = FakeCompleter()
    fuse = await decide(RouterConfig(), None, msgs("hi"), "hi", fake)
    single = await decide(RouterConfig(policy="never_fuse", single_model="m"), None, msgs(HARD), HARD, fake)
    forced = await decide(RouterConfig(policy="never_fuse", single_model="m"), "always_fuse", msgs("hi"), "hi", fake)
    assert (fuse.decision, single.decision, forced.decision) == ("fuse", "single", "fuse")
    assert fake.calls == []


async def test_auto_uses_features_outside_the_band():
    cfg = RouterConfig(policy="auto", single_model="m", classifier={"model": "small", "band": 0.1})
    fake = FakeCompleter()
    easy = await decide(cfg, None, msgs("hi"), "hi", fake)
    hard = await decide(cfg, None, msgs(HARD), HARD, fake)
    assert (easy.decision, hard.decision) == ("single", "fuse")
    assert easy.reason == "features" and easy.score < 0.1
    assert fake.calls == []


@pytest.mark.parametrize(
    "reply, decision, reason",
    [
        ('{"difficulty": 0.9}', "fuse", "classifier"),
        ('{"difficulty": 0.1}', "single", "classifier"),
        ("definitely hard", "fuse", "invalid JSON"),
        ('{"difficulty": 7}', "fuse", "invalid JSON"),
        (UpstreamError("timeout", "slow"), "fuse", "classifier failed (timeout)"),
    ],
)
async def test_classifier_in_the_band_fails_open(reply, decision, reason):
    cfg = RouterConfig(policy="auto", single_model="m", classifier={"model": "small", "band": 0.5})
    fake = FakeCompleter().enqueue("small", reply if isinstance(reply, UpstreamError) else Reply(reply))
    route = await decide(cfg, None, msgs(MID), MID, fake)
    assert route.decision == decision
    assert reason in route.reason
    assert len(fake.calls_to("small")) == 1  # asked once, never retried: the gate fails open instead
    assert fake.calls_to("small")[0].params["max_tokens"] == 20
    assert fake.calls_to("small")[0].params["num_retries"] == 0  # nor retried by LiteLLM's Router
