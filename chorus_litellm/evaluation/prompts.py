"""Every prompt `chorus eval` sends, in one place.

The fake upstream (chorus_litellm/demo/fake_upstream.py) keys its eval behaviours on the
markers below, so tests can predict its answers.
"""

from __future__ import annotations

import re

LETTERS = "ABCDEFGHIJ"

# Ends every multiple-choice prompt: "Answer with the letter (A, B, C or D) only."
MC_ASK = "Answer with the letter ({letters}) only."
MC_ASK_PATTERN = re.compile(r"Answer with the letter \(((?:[A-J], )*[A-J]) or ([A-J])\) only\.")

SHORT_ASK = "Give the final answer on the last line, as: Answer: <answer>"

PAIRWISE_MARKER = "CHORUS-PAIRWISE"
PAIRWISE_SYSTEM = f"""{PAIRWISE_MARKER}
Please act as an impartial judge and evaluate the quality of the responses provided by two
AI assistants to the user question displayed below. Choose the assistant that follows the
user's instructions and answers the user's question better, considering helpfulness,
relevance, accuracy, depth, creativity and level of detail. Begin with a short comparison
and explain your reasoning. Avoid any position bias: the order of the responses must not
influence your decision. Do not let the length of the responses or the assistants' names
influence you. Be as objective as possible. After your explanation, output your final
verdict by strictly following this format: "[[A]]" if assistant A is better, "[[B]]" if
assistant B is better, and "[[C]]" for a tie."""

PAIRWISE_USER = """[User Question]
{question}

[The Start of Assistant A's Answer]
{answer_a}
[The End of Assistant A's Answer]

[The Start of Assistant B's Answer]
{answer_b}
[The End of Assistant B's Answer]"""
PAIRWISE_ANSWERS = re.compile(
    r"\[The Start of Assistant A's Answer\]\n(.*?)\n\[The End of Assistant A's Answer\].*?"
    r"\[The Start of Assistant B's Answer\]\n(.*?)\n\[The End of Assistant B's Answer\]",
    re.DOTALL,
)


def mc(question: str, options: list[str], topic: str | None = None) -> str:
    """The question, its options as `A. ...` lines, and the ask for the letter only."""
    letters = LETTERS[: len(options)]
    head = f"The following is a multiple choice question about {topic}.\n\n" if topic else ""
    lines = "\n".join(f"{letter}. {option}" for letter, option in zip(letters, options, strict=True))
    ask = MC_ASK.format(letters=", ".join(letters[:-1]) + f" or {letters[-1]}")
    return f"{head}{question}\n\n{lines}\n\n{ask}"


def short(question: str) -> str:
    return f"{question}\n\n{SHORT_ASK}"


def pairwise(question: str, answer_a: str, answer_b: str) -> list[dict]:
    user = PAIRWISE_USER.format(question=question, answer_a=answer_a, answer_b=answer_b)
    return [{"role": "system", "content": PAIRWISE_SYSTEM}, {"role": "user", "content": user}]
