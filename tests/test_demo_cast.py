"""The demo's cast (chorus_litellm/demo/cast.py): members that disagree, read each other
and come round, so a demo debate really debates (issue 25, point 1)."""

from __future__ import annotations

import itertools
import json

import pytest

from chorus_litellm.demo import cast as demo_cast
from chorus_litellm.core.stages import extract, prompts

SEATS = [("model-a", "analyst"), ("model-b", "skeptic"), ("model-c", "contrarian")]


def ask(model: str, persona: str | None, question: str, extra: list[dict] = ()) -> str:
    messages = prompts.persona_messages([{"role": "user", "content": question}],
                                        prompts.PERSONAS.get(persona or "", None))
    return demo_cast.reply(model, [*messages, *extra])


def debate(question: str, rounds: int = 3, seats=SEATS, shared: int = 0, different: int = -1) -> list[dict[str, str]]:
    """As a debate shows them (core/stages/debate.py): each seat sees the voice shared by most
    panelists and the most different one, never its own. The debate picks those two by
    embedding; here they are the seats numbered `shared` and `different`."""
    history = [{m: ask(m, p, question) for m, p in seats}]
    voices = [("shared by most panelists", seats[shared][0]), ("most different", seats[different][0])]
    for round_no in range(2, rounds + 1):
        last = history[-1]
        history.append({m: ask(m, p, question, [{"role": "user", "content": prompts.debate_user(
            round_no, last[m], [(view, last[k]) for view, k in voices if k != m])}]) for m, p in seats})
    return history


def positions(answers: dict[str, str]) -> dict[str, str]:
    return {m: demo_cast._key(t) for m, t in answers.items()}


@pytest.mark.parametrize("question", ["Should we rewrite our backend in Rust?",
                                      "What is the best way to store sessions for 10k users?", "What is 17 + 25?"])
def test_a_persona_panel_starts_apart_and_comes_round(question):
    rounds = debate(question)
    first, last = positions(rounds[0]), positions(rounds[-1])
    assert len(set(first.values())) == 3, first  # three positions in round 1
    assert len(set(last.values())) < 3, last  # and fewer by the last round
    assert all(t.rstrip().splitlines()[-1].startswith("Final answer: ") for r in rounds for t in r.values())
    assert len({t for r in rounds for t in r.values()}) == sum(len(r) for r in rounds)  # nobody repeats anybody


@pytest.mark.parametrize("shared, different", [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)])
def test_the_panel_comes_round_to_the_shared_voice_whoever_it_is(shared, different):
    """The shared voice (shown only the most different one) keeps its answer; the others,
    tied, go its way: one position by round 3, the shared voice's, and nobody moves away."""
    question = "Should we rewrite our backend in Rust?"
    assert not demo_cast._Cast(question).stubborn_prompt
    rounds = debate(question, shared=shared, different=different)
    voice = SEATS[shared][0]
    assert len({positions(r)[voice] for r in rounds}) == 1  # the shared voice keeps its answer
    assert set(positions(rounds[-1]).values()) == {positions(rounds[0])[voice]}
    for before, after in itertools.pairwise(rounds):  # a seat moves only to the shared voice's answer
        moved = {m for m in after if positions(after)[m] != positions(before)[m]}
        assert all(positions(after)[m] == positions(before)[voice] for m in moved), (before, after)


def test_a_sum_converges_on_the_right_answer_and_the_vote_reads_it():
    rounds = debate("What is 17 + 25?")
    assert positions(rounds[0]) == {"model-a": "42", "model-b": "43", "model-c": "32"}
    assert set(positions(rounds[-1]).values()) == {"42"}
    assert extract.panel_vote(list(rounds[0].values()), "What is 17 + 25?")["share"] < 0.66


def test_on_some_prompts_the_contrarian_dissents_to_the_end():
    stubborn = next(q for q in (f"Should we adopt tool number {i}?" for i in range(50))
                    if demo_cast._Cast(q).stubborn_prompt)
    last = debate(stubborn, rounds=4)[-1]
    assert last["model-c"].startswith(demo_cast.OPENERS["dissent"])
    assert positions(last)["model-c"] != positions(last)["model-a"]
    easy = next(q for q in (f"Should we adopt tool number {i}?" for i in range(50))
                if not demo_cast._Cast(q).stubborn_prompt)
    assert len(set(positions(debate(easy, rounds=3)[-1]).values())) == 1


def test_the_judge_groups_by_position_and_the_writer_states_the_leader_and_the_dissent():
    question = "Should we rewrite our backend in Rust?"
    drafts = [("A", "Yes.\nFinal answer: yes."), ("B", "Yes indeed.\nFinal answer: yes."),
              ("C", "No.\nFinal answer: no.")]
    convo = [{"role": "user", "content": question}]
    # as the judge stage asks: its instructions (with a JSON example) and the data in one turn
    analysis = json.loads(demo_cast.reply("judge", prompts.with_context(convo, prompts.JUDGE_SYSTEM,
                                                                        prompts.judge_user(drafts))))
    assert analysis["consensus"][0]["support"] == ["A", "B"] and analysis["best"] == "A"
    assert [c["support"] for c in analysis["contradictions"]] == [["C"]]
    written = demo_cast.reply("writer", prompts.writer_request(convo, prompts.SYNTH_SYSTEM,
                                                               prompts.synth_user(drafts, analysis, None, question)))
    assert written.endswith("Final answer: yes.") and "minority view (no)" in written


def test_consensus_prompts_follow_the_positions():
    question = "Should we rewrite our backend in Rust?"
    convo = [{"role": "user", "content": question}]
    drafts = [{"label": "A", "text": "Yes.\nFinal answer: yes."}, {"label": "B", "text": "Yes!\nFinal answer: yes."}]
    data = json.dumps(drafts)
    critique = demo_cast.reply("model-a", [*convo, {"role": "user",
                                                    "content": f"{prompts.CONSENSUS_CRITIQUE}\n\n{data}"}])
    assert "strongest case is for: yes" in critique
    candidate = demo_cast.reply("model-a", [*convo, {"role": "user",
                                                     "content": f"{prompts.CONSENSUS_CANDIDATE}\n\n{data}"}])
    assert candidate.endswith("Final answer: yes.")
    vote = json.loads(demo_cast.reply("model-b", [*convo, {"role": "user",
                                                           "content": f"{prompts.CONSENSUS_VOTE}\n\n{candidate}"}]))
    assert set(vote) >= {"accept", "objection"} and isinstance(vote["accept"], bool)


def test_what_the_cast_does_not_answer_falls_back_to_the_fake():
    assert demo_cast.reply("router", [{"role": "system", "content": prompts.CLASSIFIER_SYSTEM},
                                      {"role": "user", "content": "hi"}]) is None
    assert demo_cast.reply("model-a", [{"role": "system", "content": "no user turn"}]) is None


def test_the_same_prompt_replays_the_same_discussion():
    assert debate("Is a monorepo better for a team of 12?") == debate("Is a monorepo better for a team of 12?")


def test_a_plain_panel_has_its_own_habits_and_often_agrees_at_once():
    plain = [("model-a", None), ("model-b", None), ("model-c", None)]
    questions = [f"Should we adopt tool number {i}?" for i in range(30)]
    first = [debate(q, rounds=1, seats=plain)[0] for q in questions]
    assert all(t.count(".") >= 2 and "('" not in t for r in first for t in r.values())  # a sentence, not a tuple
    split = sum(len(set(positions(r).values())) > 1 for r in first)
    assert 0 < split < len(questions)  # some plain panels disagree, some do not
