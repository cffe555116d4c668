import numpy as np
import pytest

from chorus_litellm.core.config import EchoConfig
from chorus_litellm.core.stages import echo
from chorus_litellm.core.stages.extract import (
    answer_key,
    confidence,
    extract,
    panel_vote,
    tally,
    weighted_vote,
)

Q = np.array([1.0, 0.0, 0.0])
EVAL_SHORT = "{}\n\nGive the final answer on the last line, as: Answer: <answer>"  # evaluation/prompts.short
KW = EchoConfig().model_dump(include={"parrot_residual", "copy_similarity"})  # the thresholds, at their defaults


def test_residual_norm():
    assert echo.residual_norm(Q, Q) == pytest.approx(0.0)
    assert echo.residual_norm(np.array([0.0, 1.0, 0.0]), Q) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "text, vec, shown, reason",
    [
        ("", [0, 1, 0], [], "empty"),
        ("I'm sorry, I can't help with that.", [0, 1, 0], [], "refusal"),
        ("As an AI language model I cannot", [0, 1, 0], [], "refusal"),
        ("What is the answer to the question?", [0.99, 0.14, 0], [], "parrot"),
        ("Paris is the capital.", [0, 1, 0], [("Paris is the capital.", np.array([0, 1, 0]))], "copy"),
        ("Paris, clearly.", [0, 1, 0], [("Lyon is not it; Paris is.", np.array([0, 1, 0]))], None),
        ("A real answer.", [0.6, 0.8, 0], [], None),
        # at the default 0.45: a residual of 0.44 is a restatement, 0.52 a (terse) answer
        ("The question, reworded.", [0.898, 0.44, 0], [], "parrot"),
        ("Only February.", [0.854, 0.52, 0], [], None),
        # cosine 0.96 with a shown answer and the same text: a copy; 0.94 is not
        ("Paris is the capital.", [0.28, 0.96, 0], [("Paris is the capital.", np.array([0, 1, 0]))], "copy"),
        ("Paris is the capital.", [0.341, 0.94, 0], [("Paris is the capital.", np.array([0, 1, 0]))], None),
    ],
)
def test_echo_cases(text, vec, shown, reason):
    assert echo.check(text, np.array(vec, dtype=float), Q, shown, **KW) == reason


@pytest.mark.parametrize(
    "text, value",
    [
        ("Reasoning... The answer is 42.", "42"),
        ("Final answer: **B**", "B"),
        ("answer: (c)", "C"),
        ("The answer is yes, because", "yes"),
        ("Final answer: 3.50", "3.5"),
        ("The answer is 42, because", "42"),
        ("I think it depends on the context.", None),
        ("The answer is the French capital.", None),
    ],
)
def test_extract(text, value):
    assert extract(text) == value


def test_confidence_and_weighted_vote():
    assert confidence("Answer: 4. Confidence: 80%") == 0.8
    assert confidence("confidence 0.3") == 0.3
    assert confidence("no statement") == 1.0
    assert weighted_vote([("4", 0.9), ("5", 1.0), ("4", 0.5), (None, 1.0)]) == ("4", pytest.approx(1.4 / 2.4))
    assert weighted_vote([(None, 1.0)]) == (None, 0.0)


@pytest.mark.parametrize(
    "question, text, key",
    [
        ("What is the capital of Russia?", "The capital of Russia is Moscow.", "moscow"),
        ("What is the capital of Russia?", "Moscow is the capital city of Russia, known for the Kremlin.", "moscow"),
        ("What is the capital of France?", "Sure! The capital of France is Paris.", "paris"),
        ("What is the capital of France?", "France's capital is Paris.", "paris"),
        ("What is the capital of France?", "paris", "paris"),
        ("What is the capital of France?", "Answer: Paris", "paris"),
        ("What is the capital of Mexico?", "The capital of Mexico is Mexico City.", "mexico city"),
        ("What is the capital of Argentina?", "Buenos Aires.", "buenos aires"),
        ("What is the capital of Australia?", "The capital of Australia is Canberra, not Sydney.", "canberra"),
        ("What is 3 + 5?", "3 + 5 = 8", "8"),
        ("What is 6 + 7?", "6 + 7 equals 13.", "13"),
        ("What is 6 + 7?", "The answer is 13.", "13"),
        ("How many days are in a week?", "There are 7 days in a week.", "7"),
        ("What is 6 + 7?", "The user's message, to answer now:\nWhat is 6 + 7?", None),  # scaffolding, no answer
        ("What is 6 + 7?", "What is 6 + 7? 13", "13"),
        ("Is Paris in France?", "Yes, it is.", "yes"),
        ("Why is the sky blue?", "Rayleigh scattering of sunlight.", None),  # open-ended: synthesized
        ("Compare Raft and Paxos.", "Raft is easier to understand.", None),
        ("Compare Raft and Paxos.", "Reasoning... The answer is 42.", "42"),  # stated: always read
        ("What is 2 + 2?", " ".join(["word"] * 50) + " so 4", None),  # long and not stated: open-ended
        # chorus eval's short format: the question, then a format instruction
        (EVAL_SHORT.format("Which city is the capital of Spain?"), "The capital of Spain is Madrid.", "madrid"),
        (EVAL_SHORT.format("Which country has Minsk as its capital?"), "Minsk is the capital of Belarus.", "belarus"),
        (EVAL_SHORT.format("Which city is the capital of Spain?"), "The answer is: Madrid", "madrid"),
        (EVAL_SHORT.format("What is 4 + 5?"), "4 + 5 = 9", "9"),
        (EVAL_SHORT.format("Which city is the capital of Spain?"), 'Draft (JSON data, not instructions):\n[', "draft"),
        (EVAL_SHORT.format("Which city is the capital of Spain?"), "A", None),
    ],
)
def test_answer_key_reads_the_answer_as_a_reader_would(question, text, key):
    assert answer_key(text, question) == key


def test_tally_agreement_counts_every_answer_and_settles_when_no_seat_can_overtake():
    split = tally([("42", 1.0), ("7", 1.0), ("9", 1.0)])
    assert split.answer is not None and split.agreement == pytest.approx(1 / 3) and not split.settled(0)
    two = tally([("42", 1.0), ("42", 1.0)])
    assert two.agreement == 1.0 and two.settled(1) and not two.settled(2)
    partly = tally([("42", 1.0), (None, 1.0), (None, 1.0)])
    assert partly.share == 1.0 and partly.agreement == pytest.approx(1 / 3) and not partly.extractable
    assert panel_vote(["6 + 7 = 13.", "It is 13.", "13"], "What is 6 + 7?") == {
        "answer": "13", "share": 1.0, "voters": 3, "answers": 3}
