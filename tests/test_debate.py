"""The debate protocol through the pipeline: scripted agents, bag-of-words embeddings."""

import pytest

from chorus_litellm.core.errors import QuorumError, RequestError
from chorus_litellm.testing import FakeCompleter, HashEmbedder
from chorus_litellm.core.events import AnswerDelta, Progress
from tests.factories import profile, request, run_events

Q = "What is six times seven? Give the final answer."


def debating(early_stop="off", **debate):
    """The round mechanics below need a 2-1 split to count as disagreement, so they debate
    until unanimous (`answer_agreement: 1.0`) and ask round 1 all at once; the defaults'
    answer rules have their own tests at the end."""
    return profile(debate={"protocol": "debate", "max_rounds": 3, "answer_agreement": 1.0, **debate},
                   panel={"members": ["a", "b", "c"], "min_quorum": 2, "early_stop": {"mode": early_stop}})


async def run(req, fake):
    events = await run_events(req, fake, embedder=HashEmbedder())
    return events, events[-1].report


def ask(prof, **params):
    return request(prof, messages=[{"role": "user", "content": Q}], **params)


async def test_round_one_agreement_skips_further_rounds():
    fake = FakeCompleter()
    for m, why in zip("abc", ["six sevens", "seven sixes", "multiplication table"], strict=True):
        fake.enqueue(m, f"It is {why}. The answer is 42.")
    events, report = await run(ask(debating()), fake)
    d = report.deliberation
    assert d["stop_reason"] == "agreed_in_round_1" and d["rounds"] == 1
    assert d["vote"] == {"answer": "42", "share": 1.0} and d["consensus_confidence"] == 1.0
    assert len(fake.calls_to("a")) == 1
    assert any(isinstance(e, Progress) and e.text.startswith("Round 1:") for e in events)


async def test_disagreement_then_unanimous_with_flip_and_voices():
    fake = FakeCompleter()
    fake.enqueue("a", "Six times seven: the answer is 42.", "Still six times seven, answer is 42 indeed.")
    fake.enqueue("b", "Seven sixes make it. The answer is 42.", "Rechecked seven sixes. The answer is 42 again.")
    fake.enqueue("c", "I computed six plus seven. The answer is 13.", "I misread: multiply, so the answer is 42.")
    events, report = await run(ask(debating()), fake)
    d = report.deliberation
    assert d["stop_reason"] == "unanimous" and d["rounds"] == 2
    assert d["flips"] == [{"seat": "c", "round": 2, "from": "13", "to": "42", "to_majority": True}]
    assert d["stats"][0]["dissent"] == "c"
    round2 = fake.calls_to("c")[1].messages[-1]["content"]
    assert "round 2" in round2 and "your_previous_answer" in round2
    assert "shared by most panelists" in round2  # the consensus voice, anonymized
    assert "a" not in [m.get("name") for m in fake.calls_to("c")[1].messages]
    round2_a = fake.calls_to("a")[1].messages[-1]["content"]
    assert '"view": "most different"' in round2_a and "six plus seven" in round2_a  # the dissent voice
    assert report.transcript and len(report.transcript) == 2


async def test_without_dissent_only_the_consensus_voice_is_shown():
    fake = FakeCompleter()
    fake.enqueue("a", "Six times seven: the answer is 42.")
    fake.enqueue("b", "Seven sixes make it. The answer is 42.")
    fake.enqueue("c", "I computed six plus seven. The answer is 13.")
    _, report = await run(ask(debating(dissent=False, max_rounds=2)), fake)
    assert report.deliberation["stats"][0]["dissent"] is None
    prompt = fake.calls_to("c")[1].messages[-1]["content"]
    assert '"view": "shared by most panelists"' in prompt and '"view": "most different"' not in prompt


async def test_converged_when_answers_stop_moving():
    fake = FakeCompleter()
    words = "consensus protocols trade latency for safety under partitions".split()
    fake.enqueue("a", "alpha view on caching and memory", " ".join(words), " ".join(reversed(words)))
    fake.enqueue("b", "beta thinks about disks and fsync", " ".join(words[::2] + words[1::2]), " ".join(words[1:] + words[:1]))
    fake.enqueue("c", "gamma prefers networks and queues", " ".join(words[2:] + words[:2]), " ".join(words[3:] + words[:3]))
    _, report = await run(ask(debating(max_rounds=4)), fake)
    d = report.deliberation
    assert d["stop_reason"] == "converged" and d["rounds"] == 3
    assert d["stats"][2]["shift"] < 0.02 and d["stats"][2]["agreement"] >= 0.85
    assert d["vote"] is None and d["consensus_confidence"] > 0.85


async def test_max_rounds_and_minority_report_reaches_judge():
    fake = FakeCompleter()
    fake.enqueue("a", "By multiplication the answer is 42.", "Multiplying again, the answer is 42.")
    fake.enqueue("b", "Seven sixes: the answer is 42.", "Seven sixes still: the answer is 42.")
    fake.enqueue("c", "Addition gives the answer is 13.", "I insist on addition: the answer is 13.")
    _, report = await run(ask(debating(max_rounds=2)), fake)
    d = report.deliberation
    assert d["stop_reason"] == "max_rounds" and d["minority"] == ["c"]
    assert d["vote"]["answer"] == "42" and d["consensus_confidence"] == pytest.approx(2 / 3, abs=1e-3)
    judge_prompt = fake.calls_to("judge")[0].messages[-1]["content"]
    assert "Minority report: answers" in judge_prompt


async def test_echoes_are_filtered_and_recorded():
    fake = FakeCompleter()
    fake.enqueue("a", Q)  # parrots the question
    fake.enqueue("b", "I'm sorry, I can't help with that.")
    fake.enqueue("c", "Six times seven is 42. The answer is 42.")
    fake.enqueue("d", "Seven sixes: the answer is 42.")
    prof = profile(debate={"protocol": "debate"}, panel={"members": ["a", "b", "c", "d"], "min_quorum": 2})
    _, report = await run(ask(prof), fake)
    filtered = report.deliberation["stats"][0]["filtered"]
    assert filtered == {"a": "parrot", "b": "refusal"}
    assert sorted(a.seat.name for a in report.panel.answers) == ["c", "d"]  # ineligible left the pool


async def test_copy_of_a_shown_voice_is_an_echo():
    fake = FakeCompleter()
    fake.enqueue("a", "Six times seven: the answer is 42.", "Six times seven: the answer is 42.")
    fake.enqueue("b", "Seven sixes make it. The answer is 42.", "Six times seven: the answer is 42.")
    fake.enqueue("c", "I computed six plus seven. The answer is 13.", "Honestly the answer is 13, addition.")
    _, report = await run(ask(debating(max_rounds=2)), fake)
    consensus = report.deliberation["stats"][0]["consensus"]
    copier = "b" if consensus == "a" else "a"
    assert report.deliberation["stats"][1]["filtered"].get(copier) == "copy"


async def test_all_echoes_in_round_one_is_a_quorum_error():
    fake = FakeCompleter()
    for m in "abc":
        fake.enqueue(m, "I'm sorry, I can't help with that.")
    with pytest.raises(QuorumError, match="echo watchdog: a: echo \\(refusal\\)"):
        await run(ask(debating()), fake)


async def test_token_budget_stops_early_with_the_best_candidate():
    fake = FakeCompleter()
    fake.enqueue("a", "Six times seven: the answer is 42.")
    fake.enqueue("b", "Seven sixes make it. The answer is 42.")
    fake.enqueue("c", "I computed six plus seven. The answer is 13.")
    events, report = await run(ask(debating(max_total_tokens=10)), fake)
    assert report.deliberation["stop_reason"] == "token_budget_exceeded"
    assert report.deliberation["token_budget_exceeded"] is True
    text = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    assert "answer is 42" in text
    assert fake.calls_to("judge") == [] and fake.calls_to("writer") == []
    assert report.synthesis.fallback_source in {"a", "b"}


async def test_request_overrides_within_limits_and_retries():
    prof = debating(max_retries=2)
    with pytest.raises(RequestError, match="chorus.max_rounds: 5 is more than this profile's limit of 3"):
        ask(prof, chorus={"max_rounds": 5})
    req = ask(prof, chorus={"max_rounds": 1, "output_mode": "audit"})
    assert req.debate.max_rounds == 1 and req.debate.output_mode == "audit"
    fake = FakeCompleter()
    _, report = await run(req, fake)
    assert report.deliberation["rounds"] == 1
    assert all(c.params.get("num_retries") == (0 if c.stage in ("judge", "synthesis") else 2) for c in fake.calls)
    capped = debating(max_total_tokens=100)
    with pytest.raises(RequestError, match="max_total_tokens"):
        ask(capped, chorus={"max_total_tokens": 1000})


async def test_personas_reach_their_seats():
    prof = profile(panel={"members": [{"model": "a", "persona": "skeptic"}, {"model": "b", "persona": "mine"}, "c"]},
                   personas={"mine": "You speak only in haiku."})
    fake = FakeCompleter()
    await run(ask(prof), fake)
    assert "skeptic" in fake.calls_to("a")[0].messages[0]["content"]
    assert fake.calls_to("b")[0].messages[0]["content"] == "You speak only in haiku."
    assert fake.calls_to("c")[0].messages[0]["role"] == "user"


def test_unknown_persona_is_a_config_error():
    from chorus_litellm.core.errors import ConfigError

    with pytest.raises(ConfigError, match="profile 'test': panel.members\\[0\\].persona: 'poet' is not one of: analyst"):
        profile(panel={"members": [{"model": "a", "persona": "poet"}, "b"]})


async def test_debug_and_audit_output_modes():
    fake = FakeCompleter()
    events, report = await run(ask(debating(output_mode="debug")), fake)
    text = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    assert "\n---\nchorus test (debate)" in text and "round 1: agreement" in text
    fake = FakeCompleter()
    _, report = await run(ask(debating(), chorus={"output_mode": "audit"}), fake)
    ext = report.extension(audit=True)
    assert ext["transcript"]["rounds"][0][0]["round"] == 1
    assert ext["deliberation"]["protocol"] == "debate"


async def test_adaptive_stop_off_runs_every_round():
    fake = FakeCompleter()
    for m in "abc":
        fake.enqueue(m, f"{m} says the answer is 42.", f"{m} again: the answer is 42, surely.",
                     f"{m} finally: 42 it is, the answer is 42.")
    _, report = await run(ask(debating(adaptive_stop=False)), fake)
    assert report.deliberation["rounds"] == 3 and report.deliberation["stop_reason"] == "max_rounds"


async def test_a_seat_flagged_two_rounds_in_a_row_is_pruned_unpaid_and_named():
    import dataclasses

    from chorus_litellm.settlement.signing import Signer
    from chorus_litellm.settlement.finish import Settler
    from chorus_litellm.testing import TEST_SIGNING_SEED
    from tests.test_settle import MemoryStore

    fake = FakeCompleter()
    fake.enqueue("a", "Six times seven: the answer is 42.", "Still six times seven, answer is 42 indeed.",
                 "Third look: six times seven is 42.")
    fake.enqueue("b", "I computed six plus seven. The answer is 13.", "Rechecked seven sixes. The answer is 42.",
                 "Yes, seven sixes: 42.")
    fake.enqueue("c", "I'm sorry, I can't help with that.", "I'm sorry, I can't help with that either.",
                 "never asked")
    fake.enqueue("d", "Seven sixes make it. The answer is 41.", "Seven sixes make it. The answer is 42.",
                 "Seven sixes: the answer is 42.")
    prof = profile(debate={"protocol": "debate", "max_rounds": 3, "adaptive_stop": False,
                           "echo": {"copy_similarity": 1.0}},
                   panel={"members": ["a", "b", "c", "d"], "min_quorum": 2})
    req = dataclasses.replace(ask(prof, bounty={"amount": 1000, "currency": "USD"}), owner="team:a")
    store = MemoryStore()
    events = await run_events(req, fake, embedder=HashEmbedder(),
                              finishers=[Settler(Signer(TEST_SIGNING_SEED), store, HashEmbedder())])
    report = events[-1].report
    assert len(fake.calls_to("c")) == 2  # pruned after round 2: not asked in round 3
    assert len(fake.calls_to("a")) == 3
    pruned = report.deliberation["pruned"]
    assert pruned == {"c": {"round": 2, "reason": "flagged by the echo watchdog 2 rounds in a row (refusal)"}}
    assert any(isinstance(e, Progress) and e.text.startswith("c pruned:") for e in events)
    rows = {c["seat"]: c for c in report.receipt["payload"]["contributions"]}
    assert rows["c"]["amount"] == 0 and rows["c"]["ineligible_reason"].startswith("pruned: flagged")
    assert sum(r["amount"] for r in rows.values()) == 1000


async def test_one_flag_is_not_a_streak_and_zero_never_prunes():
    fake = FakeCompleter()
    fake.enqueue("a", "Six times seven: the answer is 42.", "Still 42.", "42 again.")
    fake.enqueue("b", "Seven sixes make it. The answer is 42.", "Seven sixes, 42.", "It is 42.")
    fake.enqueue("c", "I'm sorry, I can't help with that.", "Six times seven is 42, I agree now.",
                 "I'm sorry, I can't help with that.")
    prof = profile(debate={"protocol": "debate", "max_rounds": 3, "adaptive_stop": False,
                           "echo": {"copy_similarity": 1.0}}, panel={"members": ["a", "b", "c"], "min_quorum": 2})
    _events, report = await run(ask(prof), fake)
    assert report.deliberation["pruned"] == {} and len(fake.calls_to("c")) == 3  # flags in rounds 1 and 3
    fake = FakeCompleter()
    fake.enqueue("a", "Six times seven: the answer is 42.", "Still 42.", "42 again.")
    fake.enqueue("b", "Seven sixes make it. The answer is 42.", "Seven sixes, 42.", "It is 42.")
    fake.enqueue("c", *["I'm sorry, I can't help with that."] * 3)
    never = profile(debate={"protocol": "debate", "max_rounds": 3, "adaptive_stop": False,
                            "echo": {"copy_similarity": 1.0, "prune_after": 0}},
                    panel={"members": ["a", "b", "c"], "min_quorum": 2})
    _events, report = await run(ask(never), fake)
    assert report.deliberation["pruned"] == {} and len(fake.calls_to("c")) == 3


async def test_per_agent_voices_show_each_agent_its_own_nearest_and_farthest_answer():
    import json

    import numpy as np

    texts = {"a": "Raft elects a strong leader for log replication. The answer is 42.",
             "b": "Raft elects a leader and replicates the log. The answer is 42.",
             "c": "Paxos has proposers and acceptors and two phases. The answer is 13.",
             "d": "Viewstamped replication orders requests with views. The answer is 7."}
    fake = FakeCompleter()
    for m, t in texts.items():
        fake.enqueue(m, t, t.replace("The answer", "Still, the answer"))
    prof = profile(debate={"protocol": "debate", "max_rounds": 2, "adaptive_stop": False, "voices": "per_agent",
                           "echo": {"copy_similarity": 1.0}},
                   panel={"members": list(texts), "min_quorum": 2})
    await run(ask(prof), fake)
    vecs = await HashEmbedder().encode(list(texts.values()))
    names = list(texts)
    shown = {}
    for i, m in enumerate(names):
        prompt = fake.calls_to(m)[1].messages[-1]["content"]
        data = json.loads(prompt[prompt.index("{"):])
        views = {p["view"]: p["text"] for p in data["panelists"]}
        sims = {n: float(np.dot(vecs[i], vecs[j])) for j, n in enumerate(names) if n != m}
        assert views["closest to yours"] == texts[max(sims, key=sims.get)]
        assert views["farthest from yours"] == texts[min(sims, key=sims.get)]
        assert "shared by most panelists" not in views and data["your_previous_answer"] == texts[m]
        shown[m] = views["closest to yours"]
    assert shown["a"] == texts["b"] and shown["b"] == texts["a"]  # each its own neighbour, not one shared voice


# The answer rules at their defaults (answer_agreement 0.66, panel.early_stop auto).

def split_panel(fake, finals):
    """Three agents whose prose is alike and whose final answers are `finals`, per round."""
    for agent, answers in zip("abc", finals, strict=True):
        fake.enqueue(agent, *(f"Round {r}, agent {agent}: working through six times seven step by step, "
                              f"the final answer is {n}." for r, n in enumerate(answers, 1)))


async def test_a_split_panel_debates_until_its_answers_agree_whatever_the_prose_embeds_to():
    fake = FakeCompleter()
    split_panel(fake, [["42", "42"], ["7", "42"], ["9", "42"]])
    prof = profile(debate={"protocol": "debate", "max_rounds": 3},
                   panel={"members": ["a", "b", "c"], "min_quorum": 2})
    _, report = await run(ask(prof), fake)
    d = report.deliberation
    first = d["stats"][0]
    assert first["agreement"] >= 0.85  # the embedding alone would call round 1 agreed
    assert first["answer_agreement"] == pytest.approx(1 / 3, abs=1e-3) and first["agreed"] is False
    assert d["stop_reason"] == "unanimous" and d["rounds"] == 2
    assert d["stats"][1]["answer_agreement"] == 1.0 and d["stats"][1]["agreed"] is True
    assert d["vote"] == {"answer": "42", "share": 1.0}


async def test_a_split_panel_runs_out_of_rounds_when_it_never_agrees():
    fake = FakeCompleter()
    split_panel(fake, [["42"] * 3, ["7"] * 3, ["9"] * 3])
    prof = profile(debate={"protocol": "debate", "max_rounds": 3}, panel={"members": ["a", "b", "c"]})
    _, report = await run(ask(prof), fake)
    assert report.deliberation["stop_reason"] == "max_rounds" and report.deliberation["rounds"] == 3


async def test_a_two_to_one_majority_agrees_at_the_default_threshold():
    fake = FakeCompleter()
    split_panel(fake, [["42"], ["42"], ["13"]])
    prof = profile(debate={"protocol": "debate"}, panel={"members": ["a", "b", "c"], "early_stop": {"mode": "off"}})
    _, report = await run(ask(prof), fake)
    d = report.deliberation
    assert d["stop_reason"] == "agreed_in_round_1" and d["stats"][0]["answer_agreement"] == pytest.approx(2 / 3, abs=1e-3)


async def test_a_settled_first_wave_is_round_one_agreement_and_the_rest_are_never_asked():
    fake = FakeCompleter()
    split_panel(fake, [["42"], ["42"], ["42"]])
    prof = profile(debate={"protocol": "debate"}, panel={"members": ["a", "b", "c"]})
    events, report = await run(ask(prof), fake)
    d = report.deliberation
    assert d["stop_reason"] == "agreed_in_round_1"
    assert fake.calls_to("c") == [] and d["early_stop"]["asked"] == 2 and d["early_stop"]["saved"] == 1
    assert d["early_stop"]["saved_seats"] == ["c"] and d["early_stop"]["cost_saved_usd"] > 0
