"""Judge: a structured, anonymized, length-normalized analysis of the panel's answers.

Labels are shuffled per call, so the order of completion (which model was fastest) never
shows. Each answer is trimmed to an equal share of `judge_input_chars`. The reply must be
JSON of a fixed schema. The judge gets two calls in all, each one upstream call (they say
`num_retries=0`, so LiteLLM's Router never retries them too): a call that fails with an
error worth retrying (a dropped connection, a 429 or a 5xx; not a timeout, which would
spend the judge's time twice) is made once more, and invalid JSON gets one repair
attempt; then the run continues on a recorded degraded path (the synthesizer weighs the
raw answers itself). `Verdict.attempts` counts the calls made. Never raises for a bad
judge: the verdict says what happened.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Sequence
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..ports import OWN_RETRIES, Completer, worth_retrying
from ..config import AggregatorConfig
from ..errors import UpstreamError
from ..types import Analysis, Completion, Message, PanelAnswer, Point, Verdict
from . import prompts
from .jsonout import json_object


class _Point(BaseModel):
    model_config = ConfigDict(extra="ignore")
    claim: str
    support: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _lenient(cls, value: Any) -> Any:
        """Small models write a bare string for a point, or one label for `support`."""
        if isinstance(value, str):
            return {"claim": value}
        if isinstance(value, dict) and isinstance(value.get("support"), str):
            return {**value, "support": LABEL_LIST.findall(value["support"])}
        return value


class _Output(BaseModel):
    model_config = ConfigDict(extra="ignore")
    consensus: list[_Point] = []
    contradictions: list[_Point] = []
    unique_insights: list[_Point] = Field([], validation_alias=AliasChoices("unique_insights", "insights"))
    blind_spots: list[str] = []
    best: str | None = None

    @field_validator("consensus", "contradictions", "unique_insights", "blind_spots", mode="before")
    @classmethod
    def _one_is_a_list(cls, value: Any) -> Any:
        return [] if value is None else [value] if isinstance(value, str | dict) else value

    @field_validator("best", mode="before")
    @classmethod
    def _label(cls, value: Any) -> Any:
        """'A', 'Answer B', '(C)' -> the label; anything else stays for the label check."""
        if isinstance(value, str) and (match := BEST_LABEL.fullmatch(value.strip())):
            return match.group(1).upper()
        return value


# Judge calls per run: the first, then one retry of a failed call or one JSON repair.
JUDGE_ATTEMPTS = 2
ANALYSIS_FIELDS = {"consensus", "contradictions", "unique_insights", "insights", "blind_spots", "best"}
LABEL_LIST = re.compile(r"\b([A-Z]{1,2})\b")
BEST_LABEL = re.compile(r"(?:answer\s+)?\(?([A-Z]{1,2})\)?\.?", re.IGNORECASE)


# The analysis schema, sent as `response_format` where LiteLLM says the judge supports it.
RESPONSE_SCHEMA = {"type": "json_schema",
                   "json_schema": {"name": "panel_analysis", "schema": _Output.model_json_schema()}}


MINIMAL_SCHEMA = {"type": "json_schema", "json_schema": {"name": "panel_pick", "schema": {
    "type": "object",
    "properties": {"best": {"type": "string"}, "consensus": {"type": "array", "items": {"type": "string"}}},
    "required": ["best"]}}}


def make_labels(n: int) -> list[str]:
    letters = string.ascii_uppercase
    return [letters[i] if i < 26 else letters[i // 26 - 1] + letters[i % 26] for i in range(n)]


def trim(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    cut = text[:budget].rsplit(" ", 1)[0] or text[:budget]
    return cut + " [...]"


def label_answers(
    answers: tuple[PanelAnswer, ...], config: AggregatorConfig, rng: random.Random
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(label -> seat name, [(label, trimmed text)]) with labels shuffled by `rng`."""
    order = list(answers)
    if config.anonymize_sources:
        rng.shuffle(order)
        labels = make_labels(len(order))
    else:
        labels = [a.seat.name for a in order]
    budget = config.judge_input_chars // max(1, len(order))
    mapping = {label: a.seat.name for label, a in zip(labels, order, strict=True)}
    labelled = [(label, trim(a.completion.text, budget) + prompts.sources_note(a.completion.citations))
                for label, a in zip(labels, order, strict=True)]
    return mapping, labelled


def parse_analysis(text: str, labels: dict[str, str], *, bare_label: bool = False) -> tuple[Analysis, dict]:
    """Validate the judge's JSON; drop labels it invented. With `bare_label` (the minimal
    schema), a reply that is only a label ("B", "Answer B.") means {"best": "B"}. Raises
    ValueError."""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    if bare_label and "{" not in first and (match := BEST_LABEL.fullmatch(first)) and match.group(1).upper() in labels:
        data: dict = {"best": match.group(1).upper()}
    else:
        data = json_object(text)
    if not set(data) & ANALYSIS_FIELDS:
        raise ValueError(f"the JSON has none of the analysis fields ({', '.join(sorted(ANALYSIS_FIELDS))})")
    try:
        out = _Output.model_validate(data)
    except ValidationError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None

    def points(items: list[_Point]) -> list[_Point]:
        return [_Point(claim=p.claim, support=[s for s in p.support if s in labels]) for p in items]

    clean = _Output(
        consensus=points(out.consensus),
        contradictions=points(out.contradictions),
        unique_insights=points(out.unique_insights),
        blind_spots=out.blind_spots,
        best=out.best if out.best in labels else None,
    )

    def named(items: list[_Point]) -> tuple[Point, ...]:
        return tuple(Point(p.claim, tuple(labels[s] for s in p.support)) for p in items)

    analysis = Analysis(
        consensus=named(clean.consensus),
        contradictions=named(clean.contradictions),
        unique_insights=named(clean.unique_insights),
        blind_spots=tuple(clean.blind_spots),
        best=labels[clean.best] if clean.best else None,
    )
    return analysis, clean.model_dump()


async def analyze(
    completer: Completer,
    config: AggregatorConfig,
    messages: list[Message],
    answers: tuple[PanelAnswer, ...],
    rng: random.Random,
    minority: Sequence[str] = (),
) -> Verdict:
    """`minority` names seats whose answers disagree with the majority (debate's minority
    report): the judge is told to weigh them on the merits, so a correct one is not lost."""
    labels, labelled = label_answers(answers, config, rng)
    by_seat = {seat: label for label, seat in labels.items()}
    minority_labels = sorted(by_seat[s] for s in minority if s in by_seat)
    system = prompts.JUDGE_SYSTEM if config.judge_schema == "full" else prompts.JUDGE_SYSTEM_MINIMAL
    request = prompts.with_context(messages, system, prompts.judge_user(labelled, minority_labels))
    params: dict = {"max_tokens": config.judge_max_tokens, "temperature": 0}
    mode = config.judge_response_format
    if mode == "auto" and completer.supports_response_schema(config.judge):
        params["response_format"] = RESPONSE_SCHEMA if config.judge_schema == "full" else MINIMAL_SCHEMA
    elif mode == "json_object" or (mode == "auto" and completer.supports_json_mode(config.judge)):
        params["response_format"] = {"type": "json_object"}
    calls: list[Completion] = []
    error = "no attempt"
    attempts = 0
    while attempts < JUDGE_ATTEMPTS:  # the first try, then one retry or one repair
        attempts += 1
        try:
            completion = await completer.complete(
                config.judge, request, timeout=config.judge_timeout_s, stage="judge", seat="judge",
                **params, **OWN_RETRIES,
            )
        except UpstreamError as exc:
            error = f"judge call failed after {attempts} attempt(s): {exc.describe()}"
            if worth_retrying(exc) and exc.kind != "timeout":
                continue
            break
        calls.append(completion)
        attempts += completion.attempts - 1  # a Router that ignored num_retries=0 retried anyway
        try:
            analysis, raw = parse_analysis(completion.text, labels, bare_label=config.judge_schema == "minimal")
        except ValueError as exc:
            error = f"invalid judge JSON after {attempts} attempt(s): {exc}"
            request = [
                *request,
                {"role": "assistant", "content": completion.text},
                {"role": "user", "content": prompts.JUDGE_REPAIR.format(error=exc)},
            ]
            continue
        return Verdict(analysis, tuple(calls), labels=labels, labelled=tuple(labelled), raw=raw, attempts=attempts)
    return Verdict(None, tuple(calls), degraded=True, error=error, labels=labels, labelled=tuple(labelled),
                   attempts=attempts)


def best_answer(verdict: Verdict, answers: tuple[PanelAnswer, ...]) -> PanelAnswer:
    """The judge's best-supported answer (for the synthesis fallback)."""
    by_name = {a.seat.name: a for a in answers}
    analysis = verdict.analysis
    if analysis and analysis.best in by_name:
        return by_name[analysis.best]
    if analysis:
        support: dict[str, int] = {}
        for point in analysis.consensus + analysis.unique_insights:
            for name in point.support:
                support[name] = support.get(name, 0) + 1
        if support:
            return by_name[max(support, key=lambda n: (support[n], -list(by_name).index(n)))]
    return answers[0]
