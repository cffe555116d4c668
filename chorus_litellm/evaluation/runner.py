"""The eval's jobs: one per (contender, question), answered once and cached.

1) `Cache.load()` reads answers.jsonl: pairs already answered are skipped (a pair whose
   last attempt failed is tried again), so an interrupted run resumes where it stopped.
   Each cached answer is graded again from its stored text (`rescore`), so results always
   read every answer with the current scorer, an old cache included.
2) The first pending job runs alone: a refused key (401) or an endpoint that cannot be
   reached stops the run there, before anything else is sent.
3) The rest run `concurrency` questions at a time (open-ended: the baseline's answers
   first, since every other answer is judged against them), each appended to
   answers.jsonl the moment it ends. Any later failure is recorded with the question and
   counted as wrong; only a 401 stops the run.

A contender is a plain model, a fusion profile (`fusion/...`: sent with a deterministic
`chorus.debate_id`; a debate's rounds are read back from its transcript), or
`vote:<model>:<k>` (k samples at temperature 0.7, majority of the extracted answers).

Every answer is graded both ways (scoring.py): `extracted` / `correct` the lenient reading
(votes count its keys), `extracted_strict` / `correct_strict` the strict one. A vote also
keeps its samples' keys (`samples`) and texts (`sample_answers`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import prompts, scoring
from .client import AuthError, CallError, Endpoint, Reply, Unreachable
from .data import Question

VOTE_TEMPERATURE = 0.7  # the usual self-consistency sampling temperature


@dataclass(frozen=True)
class Contender:
    name: str  # as given on the command line; the key in answers.jsonl and results.json
    model: str
    samples: int = 1  # vote:<model>:<k>

    @property
    def fusion(self) -> bool:
        return is_fusion(self.model)


# How clients name fusion profiles: the README's `fusion/<profile>` aliases, or the
# recommended provider name asked directly (`chorus/<profile>`).
FUSION_PREFIXES = ("fusion/", "chorus/")


def is_fusion(model: str) -> bool:
    return model.startswith(FUSION_PREFIXES)


def parse_models(spec: str) -> list[Contender]:
    """`a,fusion/x,vote:model-a:5` -> contenders (ValueError names the bad item)."""
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item.startswith("vote:"):
            model, _, k = item[len("vote:"):].rpartition(":")
            if not model or not k.isdigit() or int(k) < 2:
                raise ValueError(f"{item!r}: write vote:<model>:<k> with k >= 2, e.g. vote:model-a:5")
            if is_fusion(model):
                raise ValueError(f"{item!r}: vote samples a plain model, not a fusion profile")
            out.append(Contender(item, model, int(k)))
        else:
            out.append(Contender(item, item))
    if not out:
        raise ValueError("--models names no model")
    if len({c.name for c in out}) != len(out):
        raise ValueError(f"--models names a model twice: {spec}")
    return out


@dataclass(frozen=True)
class Settings:
    run_tag: str  # makes each run's fusion debate ids its own
    max_tokens: int | None = None
    judge: str | None = None  # open-ended: the pairwise judge and the baseline it compares with
    baseline: str | None = None
    concurrency: int = 4
    vote_temperature: float = VOTE_TEMPERATURE  # vote:<model>:<k> samples at this temperature


class Cache:
    """answers.jsonl: one line per answered (model, question), appended as each ends."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[tuple[str, str], dict]:
        done: dict[tuple[str, str], dict] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    done[(record["model"], record["qid"])] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut off by an interrupt: that question runs again
        return done

    def add(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)  # with the first answer: a run that fails leaves none
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def debate_id(settings: Settings, contender: Contender, question: Question) -> str:
    """Deterministic per run, model and question (and its text): a retry replays the run."""
    digest = hashlib.sha256(json.dumps([contender.model, question.qid, question.messages]).encode()).hexdigest()
    return f"eval-{settings.run_tag}-{digest[:20]}"


def _record(contender: Contender, question: Question, **fields) -> dict:
    base = {"model": contender.name, "qid": question.qid, "answer": None, "extracted": None, "correct": None,
            "extracted_strict": None, "correct_strict": None, "cost": 0.0, "tokens": 0, "latency": None,
            "error": None}
    return {**base, **fields}


def _graded(grade: scoring.Grade) -> dict:
    return {"extracted": grade.key, "correct": grade.correct, "extracted_strict": grade.strict_key,
            "correct_strict": grade.strict}


def _voted(question: Question, texts: list[str]) -> dict:
    """The fields of a vote over sample texts: the majority both ways, and a sample that says it."""
    grades = [scoring.grade_both(question, text) for text in texts]
    result = scoring.vote_both(grades)
    answer = next((t for t, g in zip(texts, grades, strict=True) if g.key == result.key), texts[0])
    return {"answer": answer, **_graded(result), "samples": [g.key for g in grades], "sample_answers": list(texts)}


def rescore(question: Question, record: dict) -> dict:
    """A cached answer graded again from its stored text. Kept as stored: failed and
    open-ended answers, debate rounds (stored as grades, not texts), and a vote cached
    before votes kept their samples' texts (its one stored verdict then stands for both
    readings, see core/report.py)."""
    if record.get("error") or question.kind == "open":
        return record
    if record.get("sample_answers"):
        return {**record, **_voted(question, record["sample_answers"])}
    if "samples" in record or not isinstance(record.get("answer"), str):
        return record
    return {**record, **_graded(scoring.grade_both(question, record["answer"]))}


async def _plain(endpoint: Endpoint, contender: Contender, question: Question, settings: Settings) -> dict:
    chorus = {"debate_id": debate_id(settings, contender, question)} if contender.fusion else None
    reply = await endpoint.chat(contender.model, list(question.messages), max_tokens=settings.max_tokens,
                                chorus=chorus)
    record = _record(contender, question, answer=reply.text, **_graded(scoring.grade_both(question, reply.text)),
                     cost=reply.cost, tokens=reply.tokens, latency=round(reply.latency_s, 4))
    if chorus and _is_debate(reply):
        run = await endpoint.transcript(chorus["debate_id"])
        rounds = (run.get("transcript") or {}).get("rounds") or []
        record["rounds"] = [[[t["seat"], *scoring.grade(question, t.get("text") or "")] for t in turns]
                            for turns in rounds]
    return record


def _is_debate(reply: Reply) -> bool:
    d = (reply.chorus or {}).get("deliberation") or {}
    return d.get("protocol") == "debate" or (d.get("rounds") or 1) > 1


async def _vote(endpoint: Endpoint, contender: Contender, question: Question, settings: Settings) -> dict:
    start = time.monotonic()
    replies = await asyncio.gather(*(
        endpoint.chat(contender.model, list(question.messages), max_tokens=settings.max_tokens,
                      temperature=settings.vote_temperature)
        for _ in range(contender.samples)))
    return _record(contender, question, **_voted(question, [r.text for r in replies]),
                   temperature=settings.vote_temperature,
                   cost=sum(r.cost for r in replies), tokens=sum(r.tokens for r in replies),
                   latency=round(time.monotonic() - start, 4))


async def _judged(endpoint: Endpoint, record: dict, question: Question, baseline: dict | None,
                  settings: Settings) -> dict:
    """Open-ended: the judge compares the answer with the baseline's, in both orders."""
    if baseline is None or baseline.get("error") or settings.judge is None:
        raise CallError(f"the baseline {settings.baseline} has no answer to compare with")
    pairs = [(record["answer"], baseline["answer"]), (baseline["answer"], record["answer"])]
    replies = await asyncio.gather(*(endpoint.chat(settings.judge, prompts.pairwise(question.text, a, b))
                                     for a, b in pairs))
    verdicts = [scoring.parse_verdict(r.text) for r in replies]
    return {**record, "verdict": scoring.combine(*verdicts), "verdicts": verdicts,
            "judge_cost": sum(r.cost for r in replies)}


async def answer(endpoint: Endpoint, contender: Contender, question: Question, settings: Settings,
                 baseline: dict | None = None, fatal: tuple[type[Exception], ...] = (AuthError,)) -> dict:
    """One contender's graded answer to one question; a failure becomes the record's error."""
    try:
        if contender.samples > 1:
            record = await _vote(endpoint, contender, question, settings)
        else:
            record = await _plain(endpoint, contender, question, settings)
        if question.kind == "open" and contender.name != settings.baseline:
            record = await _judged(endpoint, record, question, baseline, settings)
        return record
    except fatal:
        raise
    except CallError as exc:
        wrong = False if question.kind != "open" else None
        return _record(contender, question, error=str(exc), correct=wrong, correct_strict=wrong,
                       **({"verdict": "loss"} if question.kind == "open" else {}))


def _same_sampling(record: dict, settings: Settings) -> bool:
    """A cached vote counts only if it sampled at this run's temperature (0.7 before it was kept)."""
    return "samples" not in record or record.get("temperature", VOTE_TEMPERATURE) == settings.vote_temperature


def answered(cache: Cache, questions: list[Question], settings: Settings) -> dict[tuple[str, str], dict]:
    """The cached answers a run reuses (no error, sampled as this run samples), graded again."""
    by_qid = {q.qid: q for q in questions}
    return {k: rescore(by_qid[k[1]], v) if k[1] in by_qid else v
            for k, v in cache.load().items() if not v.get("error") and _same_sampling(v, settings)}


async def run(endpoint: Endpoint, contenders: list[Contender], questions: list[Question], settings: Settings,
              cache: Cache, on_done: Callable[[dict], None] = lambda r: None) -> dict[tuple[str, str], dict]:
    """Every (contender, question) answered, from the cache or now; returns them all."""
    done = answered(cache, questions, settings)
    first = [c for c in contenders if c.name == settings.baseline]
    phases = [first, [c for c in contenders if c not in first]]
    pending = [[(c, q) for c in phase for q in questions if (c.name, q.qid) not in done] for phase in phases]

    async def one(contender: Contender, question: Question, fatal=(AuthError,)) -> None:
        base = done.get((settings.baseline, question.qid)) if settings.baseline is not None else None
        record = await answer(endpoint, contender, question, settings, base, fatal)
        cache.add(record)
        done[(contender.name, question.qid)] = record
        on_done(record)

    probe = next((job for phase in pending for job in phase), None)
    if probe is not None:  # a bad key or address stops here, before anything else is sent
        await one(*probe, fatal=(AuthError, Unreachable))
    for phase in pending:
        await _pool([job for job in phase if job != probe], one, settings.concurrency)
    return done


async def _pool(jobs: list, work: Callable, concurrency: int) -> None:
    """Run `work(*job)` for every job, `concurrency` at a time; the first exception cancels the rest."""
    it = iter(jobs)

    async def worker() -> None:
        for job in it:
            await work(*job)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, concurrency)):
                group.create_task(worker())
    except* Exception as failed:  # noqa: BLE001 - re-raised: the group unwrapped to its first error
        raise failed.exceptions[0] from None
