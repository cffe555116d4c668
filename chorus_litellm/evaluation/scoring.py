"""Pure scoring: extract an answer, compare it, vote, read a judge's verdict, and
measure a debate's rounds. No I/O.

`grade(question, text)` is the one entry point for an answer: it returns the key that
votes count (a letter, a canonical number or normalized string, or None) and whether it
is right (None for open-ended questions, which the pairwise judge scores).
"""

from __future__ import annotations

import math
import re
import statistics
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass

from ..stages.extract import extract
from .data import Question

LETTER_AT_START = re.compile(r"^[\s*_`>]*\(?([A-J])\)?(?:[.):\]]|\*|\s*$)")
LETTER_IN_PARENS = re.compile(r"\(([A-J])\)")
LETTER_ALONE = re.compile(r"(?<![\w'’-])([A-J])(?![\w'’-])(?!\s+[a-z])")
ANSWER_LINE = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*(.+)", re.IGNORECASE)
VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
NUMBER_CHARS = re.compile(r"[,$€£%\s]")


def extract_letter(text: str, options: str = "ABCDE") -> str | None:
    """'B' from 'Answer: B', '(B)', 'B. Paris' or a lone B; None if there is none."""
    found = extract(text)
    if found is not None and found in options:
        return found
    for pattern in (LETTER_AT_START, LETTER_IN_PARENS, LETTER_ALONE):
        for match in pattern.finditer(text.strip()):
            if match.group(1) in options:
                return match.group(1)
    return None


def normalize(text: str) -> str:
    """Case-, space- and punctuation-insensitive form of a short answer."""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    text = "".join(" " if unicodedata.category(c).startswith("P") or c in string.punctuation else c for c in text)
    return " ".join(text.split())


def as_number(text: str | int | float) -> float | None:
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    cleaned = NUMBER_CHARS.sub("", str(text)).rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def same_short(answer: str | None, expected: str | int | float) -> bool:
    """Numbers compared numerically, strings after `normalize`."""
    if answer is None:
        return False
    a, e = as_number(answer), as_number(expected)
    if a is not None and e is not None:
        return math.isclose(a, e, rel_tol=1e-9, abs_tol=1e-9)
    return normalize(answer) == normalize(str(expected)) != ""


def short_answer(text: str) -> str | None:
    """The text after the last 'Answer:' (or 'answer is'), else the last non-empty line."""
    matches = ANSWER_LINE.findall(text)
    if matches:
        return matches[-1].strip().strip("*_` ").rstrip(".") or None
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip("*_` ").rstrip(".") if lines else None


def _short_key(answer: str | None) -> str | None:
    if answer is None:
        return None
    number = as_number(answer)
    return repr(number) if number is not None else normalize(answer) or None


def first_line(text: str) -> str:
    return next((line.strip() for line in text.strip().splitlines() if line.strip()), "")


def matches_ideal(text: str, ideals: tuple[str, ...]) -> bool:
    """Exact (normalized) match of the answer, or an ideal contained (as whole words) in its first line."""
    whole, line = normalize(text), f" {normalize(first_line(text))} "
    return any((n := normalize(i)) and (n == whole or f" {n} " in line) for i in ideals)


def grade(question: Question, text: str) -> tuple[str | None, bool | None]:
    """(the key votes count, whether it is right) for one answer."""
    if question.kind == "mc":
        letter = extract_letter(text, question.options)
        return letter, letter == question.expected
    if question.kind == "short":
        answer = short_answer(text)
        return _short_key(answer), same_short(answer, question.expected)
    if question.kind == "evals":
        return normalize(first_line(text)) or None, matches_ideal(text, question.expected)
    return None, None


def majority(keys: list[str | None]) -> str | None:
    """The most frequent non-None key; ties go to the one seen first."""
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(k for k in keys if k is not None and counts[k] == top)


def vote(graded: list[tuple[str | None, bool | None]]) -> tuple[str | None, bool]:
    """The majority key of several graded samples, and whether it is right."""
    winner = majority([key for key, _ in graded])
    return winner, winner is not None and any(ok for key, ok in graded if key == winner)


# Pairwise judging: the judge sees (model, baseline) as (A, B), then swapped.

def parse_verdict(text: str) -> str | None:
    """'A', 'B' or 'tie' from the judge's last [[A]] / [[B]] / [[C]]; None if absent."""
    found = VERDICT.findall(text or "")
    return {"A": "A", "B": "B", "C": "tie"}[found[-1]] if found else None


def combine(model_first: str | None, model_second: str | None) -> str:
    """win / loss only when both orders agree (model was A, then B); tie otherwise."""
    if model_first == "A" and model_second == "B":
        return "win"
    if model_first == "B" and model_second == "A":
        return "loss"
    return "tie"


# Debate rounds: every seat's (key, correct) per round, per question.

Turn = tuple[str, str | None, bool]  # seat, key, correct


@dataclass(frozen=True)
class RoundAccuracy:
    round: int
    majority: float
    best_seat: float
    best_seat_name: str | None
    n: int


def per_round(questions: list[list[list[Turn]]]) -> list[RoundAccuracy]:
    """Majority-vote and best-single-seat accuracy per round. A question that stopped
    early carries its last round forward; one with no rounds (an error) counts as wrong."""
    n = len(questions)
    depth = max((len(q) for q in questions), default=0)
    out = []
    for r in range(depth):
        majority_right, seat_right = 0, Counter()
        for rounds in questions:
            turns = rounds[min(r, len(rounds) - 1)] if rounds else []
            winner, ok = vote([(key, correct) for _, key, correct in turns])
            majority_right += ok
            for seat, _, correct in turns:
                seat_right[seat] += bool(correct)
        best = max(sorted(seat_right), key=lambda s: seat_right[s], default=None)
        out.append(RoundAccuracy(r + 1, majority_right / n, seat_right[best] / n if best else 0.0, best, n))
    return out


def p50(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
