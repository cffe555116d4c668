"""Pure scoring: extract an answer, compare it, vote, read a judge's verdict, and
measure a debate's rounds. No I/O.

Every answer is read twice (`grade_both` -> `Grade`):

- **lenient** (the headline `accuracy`, and the key votes count): the final answer as a
  person grading the reply would read it;
- **strict** (`accuracy_strict`): only an answer in the exact format the prompt asked for.

`grade(question, text)` returns the lenient (key, correct) pair: the key that votes count
(a letter, a canonical number or a normalized string, or None) and whether it is right
(None for open-ended questions, which the pairwise judge scores).

The rules
---------

A *stated answer* is the rest of the line after the last "Answer:", "answer is" (also
"answer is:") or "final answer is/:". *Normalized* text ignores case, accents,
punctuation and spacing ("São Paulo!" = "sao paulo").

mc (a letter; only the question's options count, option texts are not matched):
  strict: the stated answer's letter, else a letter that opens the reply (`B`, `B.`,
  `(B)`, `**B**`, `B. Paris`).
  lenient, first that applies:
  1. the last commitment: a stated answer, "correct option is C", "I'd go with C",
     "I choose C", "C is correct", "actually A" ("I think it's C. Actually A." -> A);
  2. none when the reply lays out two or more options as lines ("A. paranoia\\nB.
     depression"): it recites the choices, it does not choose one;
  3. a letter that opens the reply;
  4. the option letter that stands alone in the prose ("I think it's C"), if it names
     only one; several distinct letters are competing candidates: none. ("A" or "I"
     followed by a lowercase word is the English word, not a letter.)

short (gold: a number or a string):
  strict: the stated answer, else the whole last line, equals the gold: numbers
  numerically ("1,000" = 1000.0), strings normalized.
  lenient: read in the stated answer (for a numeric gold: if it holds a number), else
  in the whole reply:
  - numeric gold: the last number, skipping the operands of arithmetic ("3 + 5 = 8" ->
    8; "3 + 2 is a classic problem" -> none) and, when there are others, numbers the
    question itself contains, and numbers in a negated clause ("4, not 5" -> 4);
    "12.5%", "1,000" and "-3" are numbers; number words ("eight") are not read;
  - string gold: the phrase rule below.

evals (ideals):
  strict: OpenAI evals' Match: the reply starts with an ideal (normalized, whole words).
  lenient: any ideal, read as a short answer's gold.

The phrase rule (there is no list of candidates to compare with): right when the gold
appears as whole words, normalized ("New Delhi", "Buenos Aires" as a phrase), in a clause
(split at , ; : ( ) and sentence ends) without a negation ("not", "never", "n't"), in a
sentence that offers no alternative (the word "or"). So "The capital of Russia is
Moscow." and "It's not Lyon, it's Paris." are right; "Paris or Lyon", "Mumbai, not New
Delhi" and "Paris is not the capital" are wrong. Not noticed: another candidate named
without "or" ("Istanbul. Ankara is its second city" counts for Ankara).

Vote keys (lenient): mc the letter; a numeric gold the canonical number; a string gold
(short, evals) the normalized gold (the first ideal) when the reply is right, so "The
capital is Moscow." and "Moscow" vote together, else the answer phrase: the last
sentence's words after its last "is" / "are" / "was" / "equals" up to the clause's end,
without a leading article ("The capital of India is Mumbai." -> "mumbai").
"""

from __future__ import annotations

import math
import re
import statistics
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass
from itertools import dropwhile, takewhile

from .data import Question

# --- letters (mc) -------------------------------------------------------------------------

STATED_MARK = r"(?i:final answer|answer)\s*(?:is\b\s*:?|:)"  # "Answer:", "the answer is", "final answer is:"
LETTER = r"[\s(*_`]*([A-J])\)?(?![\w'’-])"
STATED_LETTER = re.compile(STATED_MARK + LETTER)
COMMITTED_LETTER = re.compile(r"(?:" + STATED_MARK + r"|(?i:correct (?:option|choice) is|go(?:ing)? with|"
                              r"i (?:choose|pick|select)|i'?d (?:choose|pick|say)|actually,?(?: it'?s)?))" + LETTER)
LETTER_IS_CORRECT = re.compile(r"(?<![\w'’-])\(?([A-J])\)?\s+(?i:is (?:the |my )?(?:correct|right|best|answer))")
LETTER_AT_START = re.compile(r"^[\s*_`>]*\(?([A-J])\)?(?:[.):\]]|\*|\s*$)")
OPTION_LINE = re.compile(r"^[\s*_`>]*\(?([A-J])[.):]", re.MULTILINE)
LETTER_ALONE = re.compile(r"(?<![\w'’-])([A-J])(?![\w'’-])(?!(?<=[AI])\s+[a-z])")

# --- short answers ------------------------------------------------------------------------

STATED = re.compile(STATED_MARK + r"[ \t]*(.+)")
NUMBER_CHARS = re.compile(r"[,$€£%\s]")
NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?")
OPERATOR = r"(?:[+\-−*×/÷^]|x(?=\s*-?\d))"
OPERAND_BEFORE = re.compile(r"\d%?\s*" + OPERATOR + r"\s*$")  # searched in the 16 characters before
OPERAND_AFTER = re.compile(r"\s*" + OPERATOR + r"\s*-?\d")
CLAUSE_BREAK = re.compile(r"[;:()!?\n]|(?<!\d)[,.]|[,.](?!\d)")  # not inside "1,000" or "2.5"
TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W_]+|[.!?\n]|[,;:()]")
SENTENCE_END = frozenset(".!?\n")
CLAUSE_END = SENTENCE_END | frozenset(",;:()")
NEGATIONS = frozenset({"not", "never"})
COPULAS = frozenset({"is", "are", "was", "were", "equals"})
ARTICLES = frozenset({"the", "a", "an"})

VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")


def fold(text: str) -> str:
    """Lowercase, accents off ("São" -> "sao"), compatibility forms unified."""
    decomposed = unicodedata.normalize("NFKD", str(text))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def normalize(text: str) -> str:
    """Case-, accent-, space- and punctuation-insensitive form of a short answer."""
    text = fold(text)
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


def same_number(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def same_short(answer: str | None, expected: str | int | float) -> bool:
    """Numbers compared numerically, strings after `normalize`."""
    if answer is None:
        return False
    a, e = as_number(answer), as_number(expected)
    if a is not None and e is not None:
        return same_number(a, e)
    return normalize(answer) == normalize(str(expected)) != ""


def _clean(span: str) -> str:
    return span.strip().strip("*_` ").rstrip(".").strip()


def stated_answer(text: str) -> str | None:
    """The rest of the line after the last 'Answer:' / 'answer is' / 'final answer is'."""
    matches = STATED.findall(text)
    return (_clean(matches[-1]) or None) if matches else None


def short_answer(text: str) -> str | None:
    """Strict: the stated answer, else the last non-empty line."""
    stated = stated_answer(text)
    if stated is not None:
        return stated
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (_clean(lines[-1]) or None) if lines else None


def _number_key(value: float | None) -> str | None:
    return repr(value) if value is not None else None


def _short_key(answer: str | None) -> str | None:
    if answer is None:
        return None
    number = as_number(answer)
    return _number_key(number) if number is not None else normalize(answer) or None


# Numbers: the last one that is not an operand, preferring one the question lacks.

def numbers(text: str) -> list[tuple[float, bool]]:
    """Every number in the text, with whether it is out of the running: an operand of
    arithmetic ('3 + 5') or in a negated clause ('4, not 5')."""
    breaks = [(m.start(), m.end()) for m in CLAUSE_BREAK.finditer(text)]
    out = []
    for match in NUMBER.finditer(text):
        value = as_number(match.group())
        if value is None:
            continue
        start, end = match.span()
        operand = OPERAND_BEFORE.search(text[max(0, start - 16):start]) or OPERAND_AFTER.match(text, end)
        clause_start = max((e for s, e in breaks if e <= start), default=0)
        clause_end = min((s for s, e in breaks if s >= end), default=len(text))
        out.append((value, bool(operand) or negated(tokens(text[clause_start:clause_end]))))
    return out


def final_number(text: str, question: str = "") -> float | None:
    """The last number still in the running (`numbers`); numbers the question contains
    count only when there is no other ('What is 3 + 4? 3 + 4 = 7' -> 7; '5 + 0 = 5' -> 5)."""
    asked = {value for value, _ in numbers(question)}
    candidates = [value for value, out in numbers(text) if not out]
    fresh = [value for value in candidates if value not in asked]
    return (fresh or candidates)[-1] if candidates else None


# Phrases: whole words, in a clause without negation, in a sentence without "or".

def tokens(text: str) -> list[str]:
    """Words (folded, "n't" read as "not") and the punctuation that ends clauses and sentences."""
    return TOKEN.findall(re.sub(r"n['’]t\b", " not", fold(text)))


def negated(clause: list[str]) -> bool:
    return bool(NEGATIONS & set(clause))


def _span(toks: list[str], i: int, j: int, ends: frozenset[str]) -> list[str]:
    """The tokens around toks[i:j] up to the nearest boundary in `ends` on either side."""
    start, stop = i, j
    while start > 0 and toks[start - 1] not in ends:
        start -= 1
    while stop < len(toks) and toks[stop] not in ends:
        stop += 1
    return toks[start:stop]


def _occurrences(toks: list[str], words: list[str]) -> list[tuple[int, int]]:
    """(start, end) of each run of tokens that spells `words` (punctuation between them allowed)."""
    found = []
    for i, tok in enumerate(toks):
        if not words or tok != words[0]:
            continue
        k, j = 1, i + 1
        while k < len(words) and j < len(toks):
            if toks[j] == words[k]:
                k += 1
            elif toks[j] not in CLAUSE_END:
                break
            j += 1
        if k == len(words):
            found.append((i, j))
    return found


def phrase_right(text: str, phrase: str) -> bool:
    """The phrase rule (module docstring): said, not negated, not one of alternatives."""
    toks, words = tokens(text), normalize(phrase).split()
    return any(not negated(_span(toks, i, j, CLAUSE_END)) and "or" not in _span(toks, i, j, SENTENCE_END)
               for i, j in _occurrences(toks, words))


def _sentences(toks: list[str]) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for tok in toks:
        if tok in SENTENCE_END:
            out.append([])
        else:
            out[-1].append(tok)
    return [s for s in out if s]


def answer_phrase(text: str) -> str | None:
    """The last sentence's words after its last 'is' (or 'are', 'was', 'equals') to the end
    of that clause, without a leading article: a wrong answer's vote key."""
    last = (_sentences(tokens(text)) or [[]])[-1]
    after = last[max((i for i, t in enumerate(last) if t in COPULAS), default=-1) + 1:]
    words = list(takewhile(lambda t: t not in CLAUSE_END, dropwhile(lambda t: t in CLAUSE_END, after)))
    words = list(dropwhile(lambda t: t in ARTICLES, words))
    return " ".join(words) or None


def lenient_short(text: str, gold: str | int | float, question: str = "") -> tuple[str | None, bool]:
    """(vote key, right) for a short answer read as a person would (module docstring)."""
    stated = stated_answer(text)
    expected = as_number(gold)
    if expected is not None:
        region = stated if stated is not None and numbers(stated) else text
        value = final_number(region, question)
        return _number_key(value), same_number(value, expected)
    region = stated if stated is not None else text
    if phrase_right(region, str(gold)):
        return normalize(str(gold)), True
    return answer_phrase(region), False


# Letters.

def _last_option(text: str, options: str, *patterns: re.Pattern) -> str | None:
    """The option letter of the last match of any of the patterns."""
    found = sorted((m.start(), m.group(1)) for p in patterns for m in p.finditer(text) if m.group(1) in options)
    return found[-1][1] if found else None


def _leading_letter(text: str, options: str) -> str | None:
    match = LETTER_AT_START.match(text.strip())
    return match.group(1) if match and match.group(1) in options else None


def strict_letter(text: str, options: str = "ABCDE") -> str | None:
    """Strict: the stated answer's letter, else a letter that opens the reply."""
    return _last_option(text, options, STATED_LETTER) or _leading_letter(text, options)


def extract_letter(text: str, options: str = "ABCDE") -> str | None:
    """Lenient: the letter a reader takes as the answer (module docstring, mc 1-4); None if none."""
    committed = _last_option(text, options, COMMITTED_LETTER, LETTER_IS_CORRECT)
    if committed:
        return committed
    if len({m.group(1) for m in OPTION_LINE.finditer(text) if m.group(1) in options}) > 1:
        return None
    alone = {m.group(1) for m in LETTER_ALONE.finditer(text) if m.group(1) in options}
    return _leading_letter(text, options) or (alone.pop() if len(alone) == 1 else None)


# Ideals (evals).

def starts_with_ideal(text: str, ideals: tuple[str, ...]) -> bool:
    """Strict (OpenAI evals' Match): the normalized reply starts with an ideal, as whole words."""
    reply = normalize(text) + " "
    return any((n := normalize(i)) and reply.startswith(n + " ") for i in ideals)


def matches_ideal(text: str, ideals: tuple[str, ...], question: str = "") -> bool:
    """Lenient: any ideal read as a short answer's gold."""
    return any(lenient_short(text, ideal, question)[1] for ideal in ideals)


# Grading.

@dataclass(frozen=True)
class Grade:
    key: str | None  # lenient: what votes count
    correct: bool | None  # lenient (None: open-ended, judged pairwise)
    strict_key: str | None
    strict: bool | None


def grade_both(question: Question, text: str) -> Grade:
    """One answer read leniently and strictly (module docstring)."""
    if question.kind == "mc":
        lenient, strict = extract_letter(text, question.options), strict_letter(text, question.options)
        return Grade(lenient, lenient == question.expected, strict, strict == question.expected)
    if question.kind == "short":
        key, correct = lenient_short(text, question.expected, question.text)
        answer = short_answer(text)
        return Grade(key, correct, _short_key(answer), same_short(answer, question.expected))
    if question.kind == "evals":
        ideals = question.expected
        correct = matches_ideal(text, ideals, question.text)
        key = normalize(ideals[0]) if correct else lenient_short(text, ideals[0], question.text)[0]
        first = next((line.strip() for line in text.strip().splitlines() if line.strip()), "")
        return Grade(key, correct, normalize(first) or None, starts_with_ideal(text, ideals))
    return Grade(None, None, None, None)


def grade(question: Question, text: str) -> tuple[str | None, bool | None]:
    """(the key votes count, whether it is right) for one answer, read leniently."""
    g = grade_both(question, text)
    return g.key, g.correct


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


def vote_both(grades: list[Grade]) -> Grade:
    """Self-consistency read both ways: the lenient majority, and the strict one."""
    key, correct = vote([(g.key, g.correct) for g in grades])
    strict_key, strict = vote([(g.strict_key, g.strict) for g in grades])
    return Grade(key, correct, strict_key, strict)


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
        majority_right, seat_right = 0, Counter[str]()
        for rounds in questions:
            turns = rounds[min(r, len(rounds) - 1)] if rounds else []
            _, ok = vote([(key, correct) for _, key, correct in turns])
            majority_right += ok
            for seat, _, correct in turns:
                seat_right[seat] += bool(correct)
        best = max(sorted(seat_right), key=lambda s: seat_right[s], default=None)
        out.append(RoundAccuracy(r + 1, majority_right / n, seat_right[best] / n if best else 0.0, best, n))
    return out


def p50(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
