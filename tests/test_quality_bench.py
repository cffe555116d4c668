"""benchmarks/quality.py's question generator: seeded, distinct, enough questions, right gold."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
_writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no benchmarks/__pycache__ in the tree
import quality  # noqa: E402

sys.dont_write_bytecode = _writes

from chorus_litellm.evaluation import data  # noqa: E402


@pytest.mark.parametrize("task", sorted(quality.TASKS))
def test_at_least_100_distinct_questions_per_task_and_seeded(task):
    rows = quality.questions(task, 100, seed=0)
    assert len(rows) == 100
    assert len({r["question"] for r in rows}) == 100
    assert len({r["id"] for r in rows}) == 100
    assert rows == quality.questions(task, 100, seed=0)
    assert rows != quality.questions(task, 100, seed=1)
    # every fact is asked once before any is asked again in another phrasing
    facts = [r["fact"] for r in rows]
    distinct = len(set(facts))
    assert len(set(facts[:distinct])) == distinct


def test_the_sums_gold_is_the_sum():
    rows = quality.questions("sums", 300, seed=3)
    assert len({r["question"] for r in rows}) == 300
    for r in rows:
        a, b = map(int, re.findall(r"\d+", r["question"]))
        assert 0 <= a <= 9 and 0 <= b <= 9 and r["answer"] == a + b
    # the first 100 are the 100 pairs, each once
    assert len({r["fact"] for r in rows[:100]}) == 100


def test_the_capitals_questions_ask_what_the_gold_answers():
    for r in quality.questions("capitals", 200, seed=0):
        country = r["fact"].split(":", 1)[1]
        if r["fact"].startswith("capital:"):
            assert country in r["question"] and r["answer"] == quality.CAPITALS[country]
        else:
            assert quality.CAPITALS[r["answer"]] == country and country in r["question"]


def test_asking_for_more_than_the_generator_has_is_an_error():
    with pytest.raises(ValueError, match="the generator has"):
        quality.questions("facts", 10_000)


def test_chorus_eval_reads_the_files_as_short_answers(tmp_path):
    paths = quality.write_data(tmp_path / "data", ["capitals", "sums", "facts"], 100, seed=0)
    for task, path in paths.items():
        loaded = data.load(path)
        assert len(loaded) == 100 and {q.kind for q in loaded} == {"short"}
        assert loaded[0].qid == f"{task}-000"
    # the same files again are fine; other questions under the same ids are refused
    quality.write_data(tmp_path / "data", ["sums"], 100, seed=0)
    with pytest.raises(SystemExit, match="holds other questions"):
        quality.write_data(tmp_path / "data", ["sums"], 100, seed=1)


def test_wilson_interval():
    lo, hi = quality.wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert quality.wilson(0, 10)[0] == 0.0 and quality.wilson(10, 10)[1] == 1.0
    assert quality.wilson(0, 0) == (None, None)
