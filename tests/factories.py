"""Small builders shared by the unit tests."""

from chorus_litellm.core.config import parse_profile
from chorus_litellm.core.request import build_request
from chorus_litellm.core.types import Caller

BASE = {
    "panel": {"members": ["model-a", "model-b", "model-c"], "min_quorum": 2, "quorum_grace_s": 0.2},
    "aggregator": {"judge": "judge", "synthesizer": "writer"},
}


def profile(**overrides):
    raw = {**BASE, **overrides}
    return parse_profile("test", raw)


def request(prof=None, messages=None, stream=False, **params):
    return build_request(
        "test",
        prof or profile(),
        [{"role": "user", "content": "Compare Raft and Paxos. Explain the trade-offs."}] if messages is None else messages,
        params,
        Caller(key_hash="h", team_id="team-a"),
        stream=stream,
        request_id="run-1",
    )


def context(req, completer, *, embedder=None, seed=0, **ports):
    """A run context as the provider builds one, with test ports."""
    import random

    from chorus_litellm.core.context import RunContext

    return RunContext.create(req, completer, embedder=embedder, rng=random.Random(seed), **ports)


async def run_events(req, completer, *, every: bool = False, **kwargs):
    """The events `pipeline.run` yields for `req` that its client reads (the provider's
    kinds, events.CLIENT_KINDS), or `every` one."""
    from chorus_litellm.core import pipeline
    from chorus_litellm.core.events import CLIENT_KINDS

    return [e async for e in pipeline.run(context(req, completer, **kwargs)) if every or e.kind in CLIENT_KINDS]


def refusing_debate():
    """A two-round debate whose seat c refuses in round 2 (the echo watchdog filters it):
    its completer and request."""
    from chorus_litellm.testing import FakeCompleter

    fake = FakeCompleter(json_models={"judge"})
    fake.enqueue("a", "Six times seven: the answer is 42.", "Still six times seven, answer is 42 indeed.")
    fake.enqueue("b", "Seven sixes make it. The answer is 42.", "Rechecked seven sixes. The answer is 42 again.")
    fake.enqueue("c", "I computed six plus seven. The answer is 13.", "I'm sorry, I can't help with that.")
    prof = profile(debate={"protocol": "debate", "max_rounds": 2, "adaptive_stop": False},
                   panel={"members": ["a", "b", "c"], "min_quorum": 2})
    question = [{"role": "user", "content": "What is six times seven? Give the final answer."}]
    return fake, request(prof, messages=question)


def finished(run_id: str = "r1"):
    """A run's terminal event (`run_done`) for a bare report: for tests of the event log."""
    from chorus_litellm.core.events import RunDone
    from chorus_litellm.core.report import RunReport
    from chorus_litellm.core.types import Caller

    return RunDone(RunReport(run_id, "p", Caller()))
