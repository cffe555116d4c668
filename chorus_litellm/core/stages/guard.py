"""The vote guard: where the panel's answers are extractable, the written answer must
state one of them; for any short question, it must not be the prompt's own scaffolding.

A synthesizer can drop the answer (a weak model repeats the prompt's scaffolding) or
state one no member gave. Then the panel's vote stands: a draft that states the leading
answer replaces the synthesis, and the run says so (`chorus.degraded` lists
`synthesis`). Pure: no I/O.
"""

from __future__ import annotations

from ..types import PanelAnswer
from .extract import answer_key, tally_texts
from .prompts import SCAFFOLDING


def stand_in(text: str, question: str, answers: tuple[PanelAnswer, ...],
             voted: bool = True) -> tuple[PanelAnswer, str] | None:
    """None when `text` is an answer: it repeats none of the writer's prompt scaffolding
    and, where the panel `voted`, states an answer some member gave. Else (the draft that
    stands in: one stating the vote's leader, else the first) and why."""
    if any(marker in text for marker in SCAFFOLDING):
        return agreeing_draft(answers, question), "the synthesis repeats the prompt's scaffolding, not an answer"
    if not voted:
        return None
    keys = {answer_key(a.completion.text, question) for a in answers} - {None}
    said = answer_key(text, question)
    if said is not None and said in keys:
        return None
    leader = _leader(answers, question)
    draft = agreeing_draft(answers, question, leader)
    why = (f"the synthesis states {said!r}, an answer no panel member gave" if said is not None
           else "the synthesis states no answer")
    return draft, f"{why}; the panel vote's answer {leader!r} stands"


def agreeing_draft(answers: tuple[PanelAnswer, ...], question: str, leader: str | None = None) -> PanelAnswer:
    """The first answer that states the vote's leading answer (`leader`, when the caller
    already tallied it), else the first answer."""
    leader = leader if leader is not None else _leader(answers, question)
    return next((a for a in answers if leader is not None and answer_key(a.completion.text, question) == leader),
                answers[0])


def _leader(answers: tuple[PanelAnswer, ...], question: str) -> str | None:
    return tally_texts([a.completion.text for a in answers], question).answer
