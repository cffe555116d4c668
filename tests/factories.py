"""Small builders shared by the unit tests."""

from chorus_litellm.config import parse_profile
from chorus_litellm.request import build_request
from chorus_litellm.types import Caller

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

    from chorus_litellm.context import RunContext

    return RunContext.create(req, completer, embedder=embedder, rng=random.Random(seed), **ports)


async def run_events(req, completer, **kwargs):
    """Every event `pipeline.run` yields for `req`."""
    from chorus_litellm import pipeline

    return [e async for e in pipeline.run(context(req, completer, **kwargs))]
