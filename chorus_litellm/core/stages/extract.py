"""Extract a final answer that can be voted on, and tally the vote.

Two readings, both pure:
- `extract(text)`: an explicitly stated answer ("Answer: 42", "Final answer: B", "The
  answer is yes"): a number, an option letter, or yes/no.
- `answer_key(text, question)`: what a reader takes as the answer to *this* question.
  The explicit form first; else, only when the question has a short-answer form
  (`question_form`) and the answer is short (`SHORT_WORDS`): for arithmetic and counting
  questions the last number ("6 + 7 = 13." -> 13), for yes/no questions a leading yes or
  no, for short factual wh-questions the first proper name the question does not already
  contain ("The capital of Russia is Moscow." -> moscow), for option lists a leading
  letter. Anything else keys to None: open-ended answers are synthesized, not voted.

Prose is not the answer: texts that differ only in their final claim embed almost alike
(docs/design.md), so every protocol decides agreement on these keys where there are any.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

FINAL = re.compile(
    r"(?:final answer|answer)\s*(?:is|:)\s*\**\s*\(?(-?\d+(?:\.\d+)?(?![\d.]*\w)|[^\n.;,)*]+)", re.IGNORECASE
)
NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
OPTION = re.compile(r"^\(?([A-Ea-e])\)?$")
CONFIDENCE = re.compile(r"confidence\s*[:=]?\s*(\d+(?:\.\d+)?)\s*(%)?", re.IGNORECASE)

# Question forms with a short, extractable answer.
ARITHMETIC = re.compile(r"\d\s*[-+*/x×÷^]\s*\d|\b(?:plus|minus|times|divided by|multiplied by)\b", re.IGNORECASE)
COUNTING = re.compile(r"^\s*(?:how (?:many|much|old|far|long)|what (?:number|year|percentage)|in what year|"
                      r"calculate|compute)\b", re.IGNORECASE)
YES_NO = re.compile(r"^\s*(?:is|are|was|were|do|does|did|can|could|will|would|should|has|have|had)\b", re.IGNORECASE)
WH_FACT = re.compile(r"^\s*(?:what|who|which|where|when|name)\b", re.IGNORECASE)
OPEN_ENDED = re.compile(r"\b(?:why|how|explain|describe|compare|discuss|write|list|pros|cons|best way|should i|"
                        r"opinion|think)\b", re.IGNORECASE)
FIRST_QUESTION = re.compile(r"^[^\n?]*\?")
OPTION_LIST = re.compile(r"(?m)^\s*\(?[A-D][).:]\s+\S.*\n\s*\(?[B-E][).:]\s+\S")
LEADING_OPTION = re.compile(r"^[\s*_`>]*\(?([A-E])\)?(?:[.):\]]|\s*$|\s+-)")
NUMBER_IN_TEXT = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?![\d\w])")
CLAUSE = re.compile(r"[.;:,!?\n()]+")
WORD = re.compile(r"[^\W\d_][^\W\d_'’-]*", re.UNICODE)
FACT_QUESTION_WORDS = 16  # longer "what ..." questions are rarely one fact
SHORT_WORDS = 40  # a short answer; a longer one is open-ended unless it states its answer
# Capitalized words that start sentences rather than name things.
STARTERS = frozenset("""the a an it its it's this that these those there here i i'm we you he she they sure yes no
certainly of course well so okay ok hi hello answer final correct indeed actually my our in on at
as for by to from with and or but if then thus therefore hence great good note""".split())

Form = Literal["number", "yesno", "entity", "option"]


def extract(text: str) -> str | None:
    """'42', 'B', 'yes' / 'no' from an explicitly stated answer, or None."""
    match = FINAL.search(text)
    if not match:
        return None
    value = match.group(1).strip().strip("*\"' ").rstrip(".")
    if NUMBER.match(value):
        return _number(value)
    if m := OPTION.match(value):
        return m.group(1).upper()
    lowered = value.lower()
    if lowered in ("yes", "no", "true", "false"):
        return {"true": "yes", "false": "no"}.get(lowered, lowered)
    return None


def question_form(question: str) -> Form | None:
    """The kind of short answer `question` asks for, or None (open-ended). Read from its
    first question (up to the first "?", else its first line), so a format instruction
    after it ("Give the final answer on the last line, as: Answer: <answer>") does not
    make a short question look long."""
    q = question.strip()
    if not q:
        return None
    if OPTION_LIST.search(q):
        return "option"
    asked = FIRST_QUESTION.search(q)
    head = asked.group(0) if asked else q.splitlines()[0]
    if ARITHMETIC.search(head) or COUNTING.search(head):
        return "number"
    if len(head.split()) > FACT_QUESTION_WORDS or OPEN_ENDED.search(head):
        return None
    if YES_NO.match(head):
        return "yesno"
    if WH_FACT.match(head):
        return "entity"
    return None


def answer_key(text: str, question: str = "") -> str | None:
    """What a reader takes as the answer to `question` (module docstring), or None."""
    explicit = extract(text)
    if explicit is not None:
        return explicit
    form = question_form(question)
    if form is None:
        return None
    stated = FINAL.search(text)
    if stated and len(stated.group(1).split()) <= 4 and form == "entity":
        return _entity(stated.group(1), question) or _normalize(stated.group(1)) or None
    if len(text.split()) > SHORT_WORDS:
        return None
    text = _without(text, question)  # a restated question is not an answer to it
    if form == "number":
        numbers = NUMBER_IN_TEXT.findall(text)
        return _number(numbers[-1].replace(",", "")) if numbers else None
    if form == "yesno":
        first = next(iter(WORD.findall(text.lower())), None)
        return first if first in ("yes", "no") else None
    if form == "option":
        m = LEADING_OPTION.match(text)
        return m.group(1) if m else None
    return _entity(text, question)


def _entity(text: str, question: str) -> str | None:
    """The first run of capitalized words that the question does not wholly contain
    ("Mexico City" for the capital of Mexico, not "Russia" for the capital of Russia),
    in reading order; else a one-to-three-word answer in lower case, as it is."""
    asked = {_word(w) for w in WORD.findall(question)}
    for clause in CLAUSE.split(text):
        run: list[str] = []
        for word in [*WORD.findall(clause), ""]:
            lowered = _word(word)
            if word and word[0].isupper() and lowered not in STARTERS:
                run.append(lowered)
                continue
            if any(w not in asked for w in run):
                return " ".join(run)
            run = []
    rest = [w for w in map(_word, WORD.findall(text)) if w not in asked and w not in STARTERS]
    return " ".join(rest) if 1 <= len(rest) <= 3 and len(text.split()) <= 6 else None


def _word(word: str) -> str:
    return word.lower().removesuffix("'s").removesuffix("’s")


def _without(text: str, question: str) -> str:
    q = question.strip()
    return re.sub(re.escape(q), " ", text, flags=re.IGNORECASE) if len(q) > 3 else text


def _number(value: str) -> str:
    return value.rstrip("0").rstrip(".") if "." in value else value


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(WORD.findall(text))


def confidence(text: str) -> float:
    """The agent's stated confidence in [0, 1]; 1.0 if it states none."""
    match = CONFIDENCE.search(text)
    if not match:
        return 1.0
    value = float(match.group(1))
    if match.group(2) or value > 1:
        value /= 100
    return min(1.0, max(0.0, value))


def weighted_vote(answers: list[tuple[str | None, float]]) -> tuple[str | None, float]:
    """(winner, its share of the confidence weight) over extractable answers."""
    weights: dict[str, float] = defaultdict(float)
    for value, weight in answers:
        if value is not None:
            weights[value] += weight
    total = sum(weights.values())
    if not total:
        return None, 0.0
    winner = max(sorted(weights), key=lambda v: weights[v])
    return winner, weights[winner] / total


@dataclass(frozen=True)
class Tally:
    """A confidence-weighted vote over one round's answers (keys None: no answer stated)."""

    answer: str | None
    share: float  # the leader's share of the weight of the answers that state one
    agreement: float  # the leader's share of the weight of all the answers: what "agree" means
    voters: int
    answers: int
    lead: float  # leader's weight minus the runner-up's

    @property
    def extractable(self) -> bool:
        """Answers have a votable form: at least two state one, and a majority of them do."""
        return self.voters >= 2 and self.voters * 2 > self.answers

    def settled(self, remaining: int) -> bool:
        """No `remaining` answers (each weighing at most 1) can overtake or tie the leader."""
        return self.answer is not None and self.lead > remaining

    def as_dict(self) -> dict:
        return {"answer": self.answer, "share": round(self.share, 4), "voters": self.voters, "answers": self.answers}


def tally(keys: list[tuple[str | None, float]]) -> Tally:
    weights: dict[str, float] = defaultdict(float)
    for key, weight in keys:
        if key is not None:
            weights[key] += weight
    ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))
    stated, everyone = sum(weights.values()), sum(w for _, w in keys)
    if not ranked:
        return Tally(None, 0.0, 0.0, 0, len(keys), 0.0)
    (winner, top), runner_up = ranked[0], (ranked[1][1] if len(ranked) > 1 else 0.0)
    return Tally(winner, top / stated, top / everyone if everyone else 0.0,
                 sum(k is not None for k, _ in keys), len(keys), top - runner_up)


def tally_texts(texts: list[str], question: str = "") -> Tally:
    return tally([(answer_key(t, question), confidence(t)) for t in texts])


def panel_vote(texts: list[str], question: str = "") -> dict | None:
    """The decision rule for answers with an extractable form, in every protocol: the
    confidence-weighted vote over the answers that carry one, or None when they are
    open-ended (fewer than two, or not a majority, state one)."""
    result = tally_texts(texts, question)
    return result.as_dict() if result.extractable else None
