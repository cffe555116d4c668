"""The run's event log as the pipeline writes it: order, completeness, payloads."""

import numpy as np
import pytest

from chorus_litellm.core import pipeline
from chorus_litellm.core.errors import QuorumError, UpstreamError
from chorus_litellm.core.events import AnswerDelta, SynthesisStarted
from chorus_litellm.core.runlog import RunEvent, RunLog, summarize
from chorus_litellm.core.stages.geometry import Projection
from chorus_litellm.testing import FakeCompleter, HashEmbedder, Reply
from tests.factories import context, finished, profile, request

Q = [{"role": "user", "content": "What is six times seven? Give the final answer."}]


async def logged(req, fake, **ports):
    """The run's events (as envelopes) and what pipeline.run yielded (or the error)."""
    seen: list[RunEvent] = []
    ctx = context(req, fake, log=RunLog(seen.append), **ports)
    out, error = [], None
    try:
        async for event in pipeline.run(ctx):
            out.append(event)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        error = exc
    return seen, out, error


def types(events):
    return [e.type for e in events]


def collapse(kinds):
    """Runs of one type as one entry: ['answer', 'answer'] -> ['answer']."""
    return [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]


async def test_a_moa_run_logs_every_stage_in_order_with_a_map_of_its_round():
    fake = FakeCompleter(json_models={"judge"}).enqueue("writer", Reply("The answer is 42."))
    events, out, error = await logged(request(stream=True), fake, embedder=HashEmbedder())
    assert error is None
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert collapse(types(events)) == ["run_started", "route", "round_started", "answer", "round_done", "judge_done",
                                       "synthesis_started", "answer_delta", "synthesis_done", "run_done"]
    started = events[0].data
    assert started["protocol"] == "moa" and started["model"] == "fusion/test"
    assert [s["seat"] for s in started["seats"]] == ["model-a", "model-b", "model-c"]
    answers = [e.data for e in events if e.type == "answer"]
    assert {a["seat"] for a in answers} == {"model-a", "model-b", "model-c"}
    assert all(a["status"] == "ok" and a["round"] == 1 and a["text"] and a["tokens"]["completion"] == 5
               for a in answers)
    done = next(e.data for e in events if e.type == "round_done")
    assert len(done["points"]) == 3 and done["consensus"] in {"model-a", "model-b", "model-c"}
    assert all(-1.5 <= p[axis] <= 1.5 for p in done["points"] for axis in "xyz")
    assert "".join(e.data["text"] for e in events if e.type == "answer_delta") == "The answer is 42."
    end = events[-1].data
    assert end["answer"] == "The answer is 42." and end["cost"] == pytest.approx(out[-1].report.cost)
    assert end["stages"]["panel"]["calls"] == 3 and set(end["seats"]) >= {"model-a", "judge", "synthesizer"}
    assert set(end["timings"]) >= {"gate", "panel", "judge", "synthesis", "total"}


async def test_moa_layers_share_one_map_projected_with_the_first_layers_basis():
    fake = FakeCompleter(json_models={"judge"})
    fake.enqueue("model-a", "Raft elects a leader.", "Layer two: Raft has a leader per term.")
    fake.enqueue("model-b", "Paxos needs two phases.", "Layer two: Paxos prepares, then accepts.")
    fake.enqueue("model-c", "Both tolerate f of 2f+1.", "Layer two: both survive a minority failing.")
    prof = profile(aggregator={"judge": "judge", "synthesizer": "writer", "layers": 2})
    embedder = HashEmbedder()
    events, _out, error = await logged(request(prof), fake, embedder=embedder)
    assert error is None
    assert events[0].data["max_rounds"] == 2  # a layer is a round
    rounds = [e.data for e in events if e.type == "round_done"]
    assert [r["round"] for r in rounds] == [1, 2]
    # layer 2 carries layer 1's points unmoved, and its own in layer 1's projection
    assert [len(r["points"]) for r in rounds] == [3, 6]
    assert rounds[1]["points"][:3] == rounds[0]["points"]
    answers = {(e.data["seat"], e.data["round"]): e.data["text"] for e in events if e.type == "answer"}
    order = [p["seat"] for p in rounds[0]["points"]]
    basis = Projection(await embedder.encode([answers[(s, 1)] for s in order]))
    second = [p for p in rounds[1]["points"] if p["round"] == 2]
    expected = basis(await embedder.encode([answers[(p["seat"], 2)] for p in second]))
    assert np.allclose([[p[a] for a in "xyz"] for p in second], expected, atol=1e-3)


async def test_a_debate_logs_rounds_echoes_and_a_map_whose_earlier_points_never_move():
    fake = FakeCompleter()
    fake.enqueue("a", "Six times seven: the answer is 42.", "Still six times seven, answer is 42 indeed.",
                 "Six sevens, final: 42.")
    fake.enqueue("b", "Seven sixes make it. The answer is 42.", "Rechecked seven sixes. The answer is 42 again.",
                 "Seven sixes again: 42.")
    fake.enqueue("c", "I computed six plus seven. The answer is 13.", "I'm sorry, I can't help with that.",
                 "Plus, so 13.")
    prof = profile(debate={"protocol": "debate", "max_rounds": 3, "adaptive_stop": False, "link": 0.3},
                   panel={"members": ["a", "b", "c"], "min_quorum": 2})
    events, _out, error = await logged(request(prof, messages=Q), fake, embedder=HashEmbedder())
    assert error is None
    rounds = [e.data for e in events if e.type == "round_done"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert [len(r["points"]) for r in rounds] == [3, 6, 9]  # every answer of every round so far
    for before, after in zip(rounds, rounds[1:], strict=False):
        assert after["points"][: len(before["points"])] == before["points"]  # stable projection
    assert rounds[0]["dissent"] == "c"
    links = rounds[0]["links"]
    assert links and all(a in "abc" and b in "abc" and a != b and 0.3 <= sim <= 1 for a, b, sim in links)
    # c refuses in round 2: filtered by the watchdog, and its answer event updated
    echoes = [e.data for e in events if e.type == "answer" and e.data["status"] == "echo"]
    assert [(a["seat"], a["round"], a["reason"]) for a in echoes] == [("c", 2, "refusal")]
    assert rounds[1]["filtered"] == {"c": echoes[0]["reason"]}
    assert [p["echo"] for p in rounds[1]["points"] if p["round"] == 2 and p["seat"] == "c"] == [True]
    started = [e.data["round"] for e in events if e.type == "round_started"]
    assert started == [1, 2, 3]
    # each round's events sit between its round_started and round_done
    kinds = collapse(types(events))
    assert kinds[:3] == ["run_started", "route", "round_started"]
    assert events[-1].type == "run_done" and events[-1].data["rounds"] == 3


async def test_consensus_logs_drafts_critiques_and_votes_as_rounds():
    fake = FakeCompleter()
    fake.enqueue("writer", "Candidate: 42.")
    for m in ("model-a", "model-b", "model-c"):  # open-ended drafts: no extractable answer ends it early
        fake.enqueue(m, f"Draft by {m}: Raft elects a leader.", "Critique: fine.", '{"accept": true}')
    prof = profile(debate={"protocol": "consensus", "max_rounds": 2})
    events, _out, error = await logged(request(prof), fake, embedder=HashEmbedder())
    assert error is None
    assert [(e.data["round"], e.data["stage"]) for e in events if e.type == "round_started"] == \
        [(1, "panel"), (2, "critique"), (3, "vote")]
    done = {e.data["round"]: e.data for e in events if e.type == "round_done"}
    assert len(done[1]["points"]) == 3 and done[3]["vote"] == {"answer": "accept", "share": 1.0}
    assert done[2]["points"] == []  # no map: a viewer keeps the drafts' points
    assert "".join(e.data["text"] for e in events if e.type == "answer_delta") == "Candidate: 42."
    assert events[-1].type == "run_done" and events[-1].data["stop_reason"] == "consensus"


async def test_a_missed_quorum_ends_the_log_with_the_error_the_client_gets():
    fake = FakeCompleter()
    for m in ("model-a", "model-b"):
        fake.enqueue(m, UpstreamError("timeout", "deadline exceeded"))
    events, _out, error = await logged(request(), fake)
    assert isinstance(error, QuorumError)
    assert collapse(types(events)) == ["run_started", "route", "round_started", "answer", "run_failed"]
    failed = [e.data for e in events if e.type == "answer" and e.data["status"] == "failed"]
    assert {(a["seat"], a["kind"]) for a in failed} == {("model-a", "timeout"), ("model-b", "timeout")}
    end = events[-1].data
    assert end["status"] == 502 and end["error"]["type"] == "QuorumError" and "quorum not met" in end["error"]["message"]
    assert end["cost"] > 0  # model-c answered and is charged


async def test_a_client_that_leaves_ends_the_log_as_cancelled():
    fake = FakeCompleter(json_models={"judge"}).enqueue("writer", Reply("word " * 50, word_delay=0.01))
    seen: list[RunEvent] = []
    run = pipeline.run(context(request(stream=True), fake, log=RunLog(seen.append)))
    async for event in run:
        if event.kind == "answer_delta":
            break
    await run.aclose()
    assert seen[-1].type == "run_failed" and seen[-1].data["status"] == 499


async def test_answer_pieces_are_coalesced_per_window():
    now = [0.0]
    seen: list[RunEvent] = []
    log = RunLog(seen.append, clock=lambda: now[0])
    for i in range(10):
        log.emit(AnswerDelta(f"{i} "))
        now[0] += 0.03
    log.emit(finished())
    deltas = [e.data["text"] for e in seen if e.type == "answer_delta"]
    assert "".join(deltas) == "".join(f"{i} " for i in range(10)) and 2 <= len(deltas) <= 4
    assert seen[-1].type == "run_done" and [e.seq for e in seen] == list(range(1, len(seen) + 1))


def test_a_run_without_listeners_emits_nothing():
    log = RunLog()
    log.emit(SynthesisStarted("x"))
    assert log.seq == 0 and not log.watched


def test_every_listener_sees_every_event_and_a_failing_one_is_dropped(caplog):
    first: list[RunEvent] = []
    last: list[RunEvent] = []

    def broken(event: RunEvent) -> None:
        raise RuntimeError("observer bug")

    log = RunLog(first.append, broken, last.append, watched=False)
    log.emit(SynthesisStarted("x"))
    log.emit(finished())
    assert [e.type for e in first] == [e.type for e in last] == ["synthesis_started", "run_done"]
    assert log.listeners == [first.append, last.append] and not log.watched
    assert "observer bug" in caplog.text


def test_the_projection_is_fitted_once_and_keeps_the_embeddings_scale():
    rng = np.random.default_rng(1)
    first = rng.standard_normal((5, 16))
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    view = Projection(first)
    # a fixed scale: never farther apart than in embedding space, and as far for four answers
    apart = np.linalg.norm(first[:, None] - first[None], axis=-1)
    assert (np.linalg.norm(view(first)[:, None] - view(first)[None], axis=-1) <= apart + 1e-9).all()
    four = Projection(first[:4])
    assert np.allclose(np.linalg.norm(four(first[:4])[:, None] - four(first[:4])[None], axis=-1), apart[:4, :4])
    close = first[:2] + 0.01 * rng.standard_normal((2, 16))  # two answers that nearly agree stay close
    close /= np.linalg.norm(close, axis=1, keepdims=True)
    assert np.linalg.norm(np.subtract(*Projection(close)(close))) == pytest.approx(np.linalg.norm(close[0] - close[1]))
    later = rng.standard_normal((5, 16))
    assert np.allclose(view(first), Projection(first)(first))  # deterministic
    assert view(later).shape == (5, 3)
    two = Projection(first[:2])  # fewer answers than dimensions: completed, still 3-D
    assert two.basis.shape == (3, 16) and np.allclose(two.basis @ two.basis.T, np.eye(3), atol=1e-9)


def test_the_runs_index_follows_the_events():
    events = [{"seq": 1, "type": "run_started", "time": 10.0,
               "data": {"profile": "p", "profile_version": 3, "protocol": "debate", "model": "fusion/p",
                        "prompt": "q"}},
              {"seq": 2, "type": "round_done", "time": 11.0, "data": {"round": 1}}]
    run = summarize(events)
    assert run == {"started": 10.0, "updated": 11.0, "state": "running", "profile": "p", "profile_version": 3,
                   "protocol": "debate", "model": "fusion/p", "prompt": "q", "rounds": 1}
    done = summarize([{"seq": 3, "type": "run_done", "time": 12.0, "data": {"cost": 0.5, "rounds": 2}}], run)
    assert done["state"] == "done" and done["cost"] == 0.5 and done["rounds"] == 2 and done["started"] == 10.0


async def test_consensus_logs_its_candidates_readable_votes_and_maps_candidates_on_the_drafts_space():
    """Drafts on the map (round 1), each candidate voted on in its vote round's points,
    projected with the drafts' basis; votes as ballots, not raw JSON; the synthesizer's
    calls timed by candidate events; the runs index counts every round."""
    fake = FakeCompleter()
    fake.enqueue("writer", "Candidate: Raft elects a leader.", "Revised: Paxos is more general.")
    fake.enqueue("model-a", "Draft: Raft elects a leader.", "Critique: fine.", '{"accept": true}', '{"accept": true}')
    fake.enqueue("model-b", "Draft: Paxos is more general.", "Critique: fine.", '{"accept": true}',
                 '{"accept": true}')
    fake.enqueue("model-c", "Draft: both need a majority.", "Critique: vague.",
                 '{"accept": false, "objection": "it is 13"}', '{"accept": true, "objection": ""}')
    prof = profile(debate={"protocol": "consensus", "max_rounds": 2, "strict_unanimity": True})
    events, _out, error = await logged(request(prof), fake, embedder=HashEmbedder())
    assert error is None
    done = {e.data["round"]: e.data for e in events if e.type == "round_done"}
    assert sorted(done) == [1, 2, 3, 4]
    # the synthesizer's two calls, timed: candidate (v1) then revise (v2)
    calls = [(e.type, e.data["version"], e.data["stage"]) for e in events if e.type.startswith("candidate")]
    assert calls == [("candidate_started", 1, "candidate"), ("candidate_done", 1, "candidate"),
                     ("candidate_started", 2, "revise"), ("candidate_done", 2, "revise")]
    written = [e.data for e in events if e.type == "candidate_done"]
    assert [c["text"] for c in written] == ["Candidate: Raft elects a leader.", "Revised: Paxos is more general."]
    assert all(c["status"] == "ok" and c["latency_s"] >= 0 and c["model"] == "writer" for c in written)
    # votes as ballots: who accepted, with what objection (the raw JSON stays in the answer events)
    assert done[3]["votes"] == {
        "model-a": {"accept": True, "confidence": None, "objection": "", "blocking": [], "cast": True},
        "model-b": {"accept": True, "confidence": None, "objection": "", "blocking": [], "cast": True},
        "model-c": {"accept": False, "confidence": None, "objection": "it is 13", "blocking": [], "cast": True}}
    assert done[3]["candidate"] == 1 and done[4]["candidate"] == 2
    assert done[3]["vote"] == {"answer": "accept", "share": pytest.approx(2 / 3, abs=1e-4)}
    assert done[2]["votes"] is None and done[2]["points"] == []  # critiques: no map, a viewer keeps the drafts
    # the map: the drafts (round 1), then each candidate in the round that voted on it,
    # among the drafts it resembles (their positions weighted by a softmax of its cosines)
    drafts = done[1]["points"]
    assert [p["round"] for p in drafts] == [1, 1, 1]
    texts = {a.data["seat"]: a.data["text"] for a in events if a.type == "answer" and a.data["round"] == 1}
    names = [p["seat"] for p in drafts]
    embed = HashEmbedder()
    vectors = await embed.encode([texts[n] for n in names])
    assert np.allclose(Projection(vectors)(vectors), [[p["x"], p["y"], p["z"]] for p in drafts], atol=1e-3)
    for r, text in ((3, "Candidate: Raft elects a leader."), (4, "Revised: Paxos is more general.")):
        (point,) = done[r]["points"]
        assert point["seat"] == "synthesizer" and point["round"] == r and point["kind"] == "candidate"
        assert point["version"] == r - 2
        sims = vectors @ (await embed.encode([text]))[0]
        assert point["similarity"] == pytest.approx(dict(zip(names, sims.tolist())), abs=1e-3)
        weights = np.exp((sims - sims.max()) / 0.05)
        expected = weights @ Projection(vectors)(vectors) / weights.sum()
        assert [point["x"], point["y"], point["z"]] == pytest.approx(expected.tolist(), abs=1e-3)
    # the candidate that copies a draft sits next to it
    (v2,) = done[4]["points"]
    nearest = min(drafts, key=lambda p: (p["x"] - v2["x"]) ** 2 + (p["y"] - v2["y"]) ** 2 + (p["z"] - v2["z"]) ** 2)
    assert nearest["seat"] == "model-b"
    assert events[-1].type == "run_done" and events[-1].data["stop_reason"] == "consensus"
    # the runs index: four rounds (drafts, critiques, two votes), not the two votes
    assert summarize([e.envelope() for e in events])["rounds"] == 4


def test_the_runs_index_counts_a_consensus_runs_rounds_not_its_votes():
    events = [{"seq": 1, "type": "run_started", "time": 10.0, "data": {"profile": "c", "protocol": "consensus"}},
              *({"seq": 1 + r, "type": "round_done", "time": 10.0 + r, "data": {"round": r}} for r in (1, 2, 3)),
              {"seq": 5, "type": "run_done", "time": 14.0, "data": {"cost": 0.1, "rounds": 1}}]
    assert summarize(events)["rounds"] == 3
    # batches may come in any order: the count never goes down
    run = summarize(events[4:], summarize(events[:4]))
    assert run["rounds"] == 3 and run["state"] == "done"
    run = summarize(events[:4], summarize(events[4:]))
    assert run["rounds"] == 3
