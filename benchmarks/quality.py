"""The quality table: single model, vote and fusion profiles on short questions, on a real model.

SmolLM2-135M-Instruct (chorus_litellm.demo.local_model) is every seat, judge and writer behind
the real LiteLLM proxy; `chorus eval` asks each contender the same questions. The
questions are generated here, seeded, in `chorus eval`'s `short` format (no third-party
data): tasks where this model has signal (docs/real-model.md):

    capitals  the capital of a well-known country ("What is the capital of France?"),
              or the country of a capital ("Which country has Paris as its capital?")
    sums      single-digit a + b (a, b in 0..9: 100 pairs, then "plus" phrasings)
    facts     short everyday facts ("How many days are in a week?")

Contenders (CONTENDERS below: one entry each; --models picks by key):

    smol            the single model
    vote            vote:smol:3, self-consistency at chorus eval's default temperature 0.7
    vote-card       vote:smol:3 at the card's temperature 0.2 (--vote-temperature): the
                    compute-matched baseline for the fused profiles that sample near it
    self-moa        Self-MoA, 3 samples near the model card's temperature, judge, synthesis
    self-moa-vote   the same samples, aggregator.extractable vote: where the drafts carry an
                    extractable answer the vote's draft is the answer (no judge, no writer)
    moa             3 seats with personas (analyst, skeptic, contrarian), judge, synthesis
    debate          the same seats, up to 2 debate rounds (adaptive stopping, the default)
    consensus       the same seats, consensus protocol, up to 2 rounds
    council         the same seats, council protocol: each ranks the others (both orders),
                    Borda points instead of the judge, then synthesis (compare with moa)
    consult         router.policy consult over self-moa-vote: the single model answers with a
                    private consult_panel tool offered; the panel runs only if it calls it
                    (the table's `fused` column: the share of questions that were fused)
    early-stop-off  5 plain seats, panel.early_stop mode off: all 5 asked
    early-stop-on   the same, mode on: a first wave of 3, the rest only while the vote is open

The other fused profiles keep the shipped defaults (panel.early_stop auto among them). A
profile the installed config rejects (an option that does not exist yet, say) is skipped
and flagged in the table, not fatal. Everything is kept short (members and the writer at
--max-tokens, the minimal judge schema, the card's temperature): the model servers
answer one request at a time. By default two of them, one torch thread each, with the
eval keeping both busy (--measure has the timings behind that choice).

Output (--out, default benchmarks/results/quality/): data/<task>.jsonl (the questions),
runs/<task>/<contender>/ (chorus eval's results.json, results.md, answers.jsonl, plus
calls.jsonl: model calls per fused question from its transcript, and timing.json; rerun
the same command to resume), quality.json, quality.md and accuracy_vs_cost.png: accuracy
(as a reader would score it, and in the strict format) with a 95% Wilson interval per
task and overall, model calls and round-1 seats asked, tokens, cost, p50 latency, time.

Run: python benchmarks/quality.py [--tasks capitals,sums] [--per-task 100] [--models smol,moa] [--out DIR]
     python benchmarks/quality.py --measure      (seconds per question: threads, 1 vs 2 model servers)
     python benchmarks/quality.py --write-data   (only the question files)
     python benchmarks/quality.py --report --out DIR   (the table from what DIR holds, during or after a run)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MASTER = "sk-chorus-bench-quality-7d2e"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "quality"
MAX_TOKENS = 24  # an answer here is a word or a number: members and the writer alike
CARD_TEMPERATURE = 0.2  # SmolLM2's model card (local_model.prepare sets it as the default too)

# --- the questions -------------------------------------------------------------------------

# Countries whose capital a 135M model plausibly knows. Left out on purpose: capitals with
# accents (the grader compares exactly), disputed or split capitals (South Africa, Bolivia,
# Israel, Sri Lanka, Ivory Coast, Tanzania, Kazakhstan), and spellings that vary
# (Washington, D.C.; Kyiv / Kiev; Ulaanbaatar).
CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "United Kingdom": "London", "Ireland": "Dublin", "Russia": "Moscow", "Poland": "Warsaw", "Greece": "Athens",
    "Austria": "Vienna", "Czech Republic": "Prague", "Hungary": "Budapest", "Sweden": "Stockholm",
    "Norway": "Oslo", "Denmark": "Copenhagen", "Finland": "Helsinki", "Belgium": "Brussels",
    "Netherlands": "Amsterdam", "Switzerland": "Bern", "Romania": "Bucharest", "Bulgaria": "Sofia",
    "Serbia": "Belgrade", "Croatia": "Zagreb", "Slovakia": "Bratislava", "Lithuania": "Vilnius", "Latvia": "Riga",
    "Estonia": "Tallinn", "Belarus": "Minsk", "Turkey": "Ankara", "Egypt": "Cairo", "Kenya": "Nairobi",
    "Ethiopia": "Addis Ababa", "Nigeria": "Abuja", "Ghana": "Accra", "Senegal": "Dakar", "Morocco": "Rabat",
    "Tunisia": "Tunis", "Algeria": "Algiers", "Sudan": "Khartoum", "Uganda": "Kampala", "Zimbabwe": "Harare",
    "Argentina": "Buenos Aires", "Chile": "Santiago", "Peru": "Lima", "Venezuela": "Caracas", "Ecuador": "Quito",
    "Uruguay": "Montevideo", "Cuba": "Havana", "Jamaica": "Kingston", "Mexico": "Mexico City", "Canada": "Ottawa",
    "Australia": "Canberra", "New Zealand": "Wellington", "Japan": "Tokyo", "China": "Beijing",
    "South Korea": "Seoul", "North Korea": "Pyongyang", "Vietnam": "Hanoi", "Thailand": "Bangkok",
    "Philippines": "Manila", "Indonesia": "Jakarta", "Malaysia": "Kuala Lumpur", "India": "New Delhi",
    "Pakistan": "Islamabad", "Afghanistan": "Kabul", "Iran": "Tehran", "Iraq": "Baghdad", "Saudi Arabia": "Riyadh",
    "Syria": "Damascus", "Jordan": "Amman", "Lebanon": "Beirut", "Qatar": "Doha", "Bangladesh": "Dhaka",
    "Nepal": "Kathmandu", "Georgia": "Tbilisi", "Armenia": "Yerevan", "Cambodia": "Phnom Penh",
}
# Country names a reader could state another way ("UK", "Korea", "Holland"): asked only forward.
AMBIGUOUS_COUNTRY = {"United Kingdom", "Czech Republic", "South Korea", "North Korea", "Netherlands", "Georgia"}

# Short everyday facts: (question, answer). Answers without articles (the grader compares exactly).
FACTS = [
    ("How many days are in a week?", 7), ("How many months are in a year?", 12),
    ("How many hours are in a day?", 24), ("How many minutes are in an hour?", 60),
    ("How many seconds are in a minute?", 60), ("How many days are in a leap year?", 366),
    ("How many days are in a normal year?", 365), ("How many weeks are in a year?", 52),
    ("How many sides does a triangle have?", 3), ("How many sides does a square have?", 4),
    ("How many sides does a pentagon have?", 5), ("How many sides does a hexagon have?", 6),
    ("How many sides does an octagon have?", 8), ("How many legs does a dog have?", 4),
    ("How many legs does a bird have?", 2), ("How many legs does an insect have?", 6),
    ("How many legs does a spider have?", 8), ("How many colours are in a rainbow?", 7),
    ("How many continents are there?", 7), ("How many planets are in the Solar System?", 8),
    ("How many players are on a soccer team on the field?", 11),
    ("How many letters are in the English alphabet?", 26), ("How many days are in June?", 30),
    ("How many days are in January?", 31), ("How many cents are in a dollar?", 100),
    ("How many centimetres are in a metre?", 100), ("How many grams are in a kilogram?", 1000),
    ("How many years are in a century?", 100), ("How many years are in a decade?", 10),
    ("How many wheels does a bicycle have?", 2), ("How many wheels does a tricycle have?", 3),
    ("How many eyes does a person have?", 2), ("How many fingers are on one hand?", 5),
    ("How many strings does a standard guitar have?", 6), ("How many cards are in a standard deck?", 52),
    ("How many hearts does an octopus have?", 3), ("How many degrees are in a right angle?", 90),
    ("At what temperature in Celsius does water freeze?", 0), ("At what temperature in Celsius does water boil?", 100),
    ("What colour is the sky on a clear day?", "blue"), ("What colour is grass?", "green"),
    ("What colour is snow?", "white"), ("What colour is a banana when it is ripe?", "yellow"),
    ("What do bees make?", "honey"), ("What is frozen water called?", "ice"),
    ("What is the largest planet in the Solar System?", "Jupiter"),
    ("Which planet is known as the Red Planet?", "Mars"), ("What is the largest ocean on Earth?", "Pacific"),
    ("What gas do plants absorb from the air?", "carbon dioxide"), ("What is the chemical symbol for gold?", "Au"),
    ("What is the chemical symbol for water?", "H2O"), ("What is the opposite of hot?", "cold"),
    ("What is the opposite of up?", "down"), ("What animal is known as the king of the jungle?", "lion"),
    ("What is the tallest animal in the world?", "giraffe"), ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("What language is spoken in Brazil?", "Portuguese"), ("What is the currency of Japan?", "yen"),
    ("What is the longest river in Africa?", "Nile"), ("What is the largest desert in Africa?", "Sahara"),
]
FACT_PHRASINGS = ("{q}", "{q} Be brief.")


def _capitals() -> list[tuple[str, str, str]]:
    """(fact, question, gold) for every phrasing: forward two ways, and back for clear names."""
    out = []
    for country, capital in CAPITALS.items():
        fact = f"capital:{country}"
        out += [(fact, f"What is the capital of {country}?", capital),
                (fact, f"Which city is the capital of {country}?", capital)]
        if country not in AMBIGUOUS_COUNTRY:
            out.append((f"country:{capital}", f"Which country has {capital} as its capital?", country))
    return out


def _sums() -> list[tuple[str, str, str | int]]:
    out = []
    for phrasing in ("What is {a} + {b}?", "What is {a} plus {b}?", "How much is {a} + {b}?"):
        out += [(f"sum:{a}+{b}", phrasing.format(a=a, b=b), a + b) for a in range(10) for b in range(10)]
    return out


def _facts() -> list[tuple[str, str, str | int]]:
    return [(f"fact:{q}", p.format(q=q), a) for p in FACT_PHRASINGS for q, a in FACTS]


TASKS = {"capitals": _capitals, "sums": _sums, "facts": _facts}


def questions(task: str, n: int, seed: int = 0) -> list[dict]:
    """`n` distinct questions of `task`, seeded: every fact once (shuffled) before any fact
    is asked again in another phrasing. Rows in `chorus eval`'s `short` format."""
    pool = TASKS[task]()
    if n > len(pool):
        raise ValueError(f"{task}: {n} questions asked, the generator has {len(pool)}")
    rng = random.Random(f"{task}-{seed}")
    by_fact: dict[str, list[tuple[str, str | int]]] = {}
    for fact, text, gold in pool:
        by_fact.setdefault(fact, []).append((text, gold))
    facts = sorted(by_fact)
    rng.shuffle(facts)
    for variants in by_fact.values():
        rng.shuffle(variants)
    picked: list[tuple[str, str, str | int]] = []
    for depth in range(max(len(v) for v in by_fact.values())):
        picked += [(f, *by_fact[f][depth]) for f in facts if depth < len(by_fact[f])]
    return [{"id": f"{task}-{i:03d}", "question": text, "answer": gold, "task": task, "fact": fact}
            for i, (fact, text, gold) in enumerate(picked[:n])]


def write_data(folder: Path, tasks: list[str], n: int, seed: int) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for task in tasks:
        path = paths[task] = folder / f"{task}.jsonl"
        rows = questions(task, n, seed)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        if path.exists() and path.read_text(encoding="utf-8") != text:
            # answers.jsonl is keyed by question id: other questions under the same ids
            # would be mixed with the cached answers of the old ones
            raise SystemExit(f"{path} holds other questions (another --seed or --per-task?); "
                             f"use another --out or delete {folder.parent / 'runs'}")
        path.write_text(text, encoding="utf-8")
    return paths


# --- the contenders ------------------------------------------------------------------------

def profile(panel: dict, debate: dict | None = None, **extra) -> dict:
    """A fusion profile on `smol`, kept short for a serial CPU server (docs/real-model.md)."""
    prof = {"router": {"policy": "always_fuse", "single_model": "smol"},
            "panel": {"timeout_s": 600, "quorum_grace_s": 300, "quorum_grace_ratio": 10, "max_tokens": MAX_TOKENS,
                      **panel},
            "aggregator": {"judge": "smol", "synthesizer": "smol", "judge_schema": "minimal", "judge_max_tokens": 64,
                           "judge_timeout_s": 600, "synthesis_timeout_s": 600, "synthesizer_in_panel": "allow"},
            "limits": {"run_timeout_s": 3000}}
    if debate:
        prof["debate"] = debate
    return _merge(prof, extra)


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


PERSONAS = [{"model": "smol", "persona": p} for p in ("analyst", "skeptic", "contrarian")]
FIVE = [{"model": "smol"}] * 5
SELF_MOA = {"model": "smol", "samples": 3, "temperature_min": CARD_TEMPERATURE, "temperature_max": 0.4}


@dataclass(frozen=True)
class Contender:
    key: str  # what --models names
    model: str  # what chorus eval is asked: a model, vote:<model>:<k>, or fusion/<profile>
    what: str
    chorus: dict | None = None  # the fusion profile (model_info.chorus)
    calls: str = ""  # model calls per question, as configured
    eval_args: tuple[str, ...] = ()  # more chorus eval options for this contender


CONTENDERS = [
    Contender("smol", "smol", "the single model", calls="1"),
    Contender("vote", "vote:smol:3", "self-consistency, 3 samples at 0.7 (chorus eval's vote)", calls="3"),
    Contender("vote-card", "vote:smol:3", f"self-consistency, 3 samples at the card's {CARD_TEMPERATURE}", calls="3",
              eval_args=("--vote-temperature", str(CARD_TEMPERATURE))),
    Contender("self-moa", "fusion/smol-self-moa", "Self-MoA: 3 samples at 0.2-0.4, minimal judge, synthesis",
              profile({"self_moa": SELF_MOA}), calls="3 + 2"),
    Contender("self-moa-vote", "fusion/smol-self-moa-vote",
              "Self-MoA's samples, aggregator.extractable vote (the vote's draft; no judge, no writer)",
              profile({"self_moa": SELF_MOA}, aggregator={"extractable": "vote"}), calls="2-3"),
    Contender("moa", "fusion/smol-moa", "MoA: 3 seats with personas, minimal judge, synthesis",
              profile({"members": PERSONAS}), calls="3 + 2"),
    Contender("debate", "fusion/smol-debate", "the 3 persona seats, debate, up to 2 rounds (adaptive stop)",
              profile({"members": PERSONAS}, {"protocol": "debate", "max_rounds": 2}), calls="3-6 + 2"),
    Contender("consensus", "fusion/smol-consensus", "the 3 persona seats, consensus protocol, up to 2 rounds",
              profile({"members": PERSONAS}, {"protocol": "consensus", "max_rounds": 2}), calls="3 + 3/round + 1"),
    Contender("council", "fusion/smol-council", "the 3 persona seats, council: ranks (both orders) replace the judge",
              profile({"members": PERSONAS}, {"protocol": "council"}), calls="3 + 6 + 1"),
    Contender("early-stop-off", "fusion/smol-5-all", "5 plain seats, panel.early_stop off (all asked)",
              profile({"members": FIVE, "early_stop": {"mode": "off"}}), calls="5 + 2"),
    Contender("consult", "fusion/smol-consult",
              "router.policy consult: the model answers, offered a private consult_panel tool; if it calls it, "
              "self-moa-vote answers", profile({"self_moa": SELF_MOA}, router={"policy": "consult"},
                                               aggregator={"extractable": "vote"}), calls="1, or 1 + 2-3"),
    Contender("early-stop-on", "fusion/smol-5-early", "5 plain seats, panel.early_stop on (first wave, rest if open)",
              profile({"members": FIVE, "early_stop": {"mode": "on"}}), calls="3-5 + 2"),
]


def config(bases: list[str], folder: Path, chosen: list[Contender]) -> dict:
    deployments = [{"model_name": "smol",
                    "litellm_params": {"model": f"openai/{folder}", "api_base": base, "api_key": "none", "timeout": 900},
                    "model_info": {"input_cost_per_token": 1e-7, "output_cost_per_token": 2e-7}} for base in bases]
    fusion = [{"model_name": c.model, "litellm_params": {"model": "fusion/" + c.model.split("/", 1)[1]},
               "model_info": {"input_cost_per_token": 0, "output_cost_per_token": 0, "chorus": c.chorus}}
              for c in chosen if c.chorus is not None]
    return {"model_list": deployments + fusion,
            "litellm_settings": {
                "custom_provider_map": [{"provider": "fusion", "custom_handler": "chorus_litellm.proxy_handler"}]},
            "general_settings": {"master_key": MASTER}}


def rejected(chosen: list[Contender]) -> dict[str, str]:
    """Contenders whose profile the installed chorus config refuses, with the reason."""
    from chorus_litellm.core.config import ConfigError, parse_profile

    fusion_models = frozenset(c.model for c in chosen if c.chorus is not None)
    out = {}
    for c in chosen:
        if c.chorus is None:
            continue
        try:
            parse_profile(c.model.split("/", 1)[1], c.chorus, known_models={"smol"}, fusion_models=fusion_models)
        except ConfigError as exc:
            out[c.key] = str(exc).splitlines()[0][:300]
    return out


# --- the numbers ---------------------------------------------------------------------------

def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float] | tuple[None, None]:
    """The 95% Wilson score interval of k successes in n."""
    if n <= 0:
        return None, None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def p50(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


@dataclass
class Cell:
    """One contender on one task (or overall): what chorus eval reported, summed."""

    n: int = 0
    correct: float = 0.0
    correct_strict: float | None = 0.0
    errors: int = 0
    cost_usd: float = 0.0
    tokens: int = 0
    latencies: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    answered: int = 0  # questions answered by the timed runs (not counting a resumed cache)
    extra: dict = field(default_factory=dict)  # other numbers eval reports, weighted by n
    calls: list[dict] = field(default_factory=list)  # per question: model calls (calls.jsonl; 1 or k for plain ones)

    def add(self, row: dict, records: list[dict], timing: dict, calls: list[dict]) -> None:
        self.calls += calls
        n = row["n"]
        self.n += n
        self.correct += row["accuracy"] * n
        strict = _strict(row)
        self.correct_strict = None if strict is None or self.correct_strict is None else self.correct_strict + strict * n
        self.errors += row.get("errors", 0)
        self.cost_usd += row.get("cost_usd", 0.0)
        self.tokens += row.get("tokens", 0)
        self.latencies += [r["latency"] for r in records if r.get("latency") is not None and not r.get("error")]
        self.wall_s += timing.get("wall_s", 0.0)
        self.answered += timing.get("answered", 0)
        for key, value in row.items():
            if key not in KNOWN_ROW_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.extra[key] = self.extra.get(key, 0.0) + value * n

    def as_dict(self) -> dict:
        lo, hi = wilson(self.correct, self.n)
        out = {"n": self.n, "accuracy": _r(self.correct / self.n if self.n else None), "ci95": [_r(lo), _r(hi)],
               "errors": self.errors, "cost_usd": round(self.cost_usd, 8), "tokens": self.tokens,
               "tokens_per_question": round(self.tokens / self.n, 1) if self.n else None,
               "latency_p50_s": _r(p50(self.latencies), 2), "wall_s": round(self.wall_s, 1),
               "s_per_question": round(self.wall_s / self.answered, 2) if self.answered else None}
        if self.correct_strict is not None and self.n:
            lo, hi = wilson(self.correct_strict, self.n)
            out.update(accuracy_strict=_r(self.correct_strict / self.n), ci95_strict=[_r(lo), _r(hi)])
        out.update({k: _r(v / self.n) for k, v in self.extra.items()} if self.n else {})
        known = [c for c in self.calls if "calls" in c]
        if known:
            out["calls_per_question"] = round(sum(c["calls"] for c in known) / len(known), 2)
            out["seat_calls_per_question"] = round(sum(c["seat_calls"] for c in known) / len(known), 2)
            asked = [c["round1_asked"] for c in known if c.get("round1_asked") is not None]
            out["round1_seats_asked"] = round(sum(asked) / len(asked), 2) if asked else None
            fused = [c.get("fused", True) for c in known]  # rows from before the column: always_fuse profiles
            out["fused_share"] = (round(sum(fused) / len(fused), 3)
                                  if all(f is not None for f in fused) else None)
            out["judge_degraded_share"] = round(sum("judge" in (c.get("degraded") or []) for c in known)
                                                / len(known), 3)
        return out


KNOWN_ROW_KEYS = {"n", "errors", "cost_usd", "tokens", "latency_p50_s", "accuracy", "accuracy_strict", "score",
                  "win", "tie", "loss", "judge_cost_usd", "reference", "per_round_accuracy"}


def _strict(row: dict) -> float | None:
    for key in ("accuracy_strict", "strict_accuracy"):
        if isinstance(row.get(key), (int, float)):
            return row[key]
    return None


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def summarize(out: Path, tasks: list[str], chosen: list[Contender], skipped: dict[str, str], meta: dict) -> dict:
    table: dict[str, dict] = {}
    for c in chosen:
        if c.key in skipped:
            table[c.key] = {"model": c.model, "what": c.what, "skipped": skipped[c.key]}
            continue
        overall, per_task = Cell(), {}
        for task in tasks:
            run = out / "runs" / task / c.key
            results = run / "results.json"
            if not results.exists():
                continue
            row = json.loads(results.read_text())["results"][c.model]
            records = _records(run / "answers.jsonl", c.model)
            timing = _timing(run)
            calls = _calls(run, c, records)
            cell = Cell()
            cell.add(row, records, timing, calls)
            overall.add(row, records, timing, calls)
            per_task[task] = cell.as_dict()
        table[c.key] = {"model": c.model, "what": c.what, "calls": c.calls, "tasks": per_task,
                        "overall": overall.as_dict() if overall.n else None}
    return {"benchmark": "quality", **meta, "contenders": table}


def _records(path: Path, model: str) -> list[dict]:
    latest: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
                r = json.loads(line)
                if r["model"] == model:
                    latest[r["qid"]] = r
    return list(latest.values())


def _calls(run: Path, c: Contender, records: list[dict]) -> list[dict]:
    if c.chorus is None:  # a plain model: one call; a vote: k
        k = int(c.model.rsplit(":", 1)[1]) if c.model.startswith("vote:") else 1
        return [{"qid": r["qid"], "calls": k, "seat_calls": k, "fused": None} for r in records if not r.get("error")]
    path = run / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _timing(run: Path) -> dict:
    path = run / "timing.json"
    if not path.exists():
        return {}
    runs = json.loads(path.read_text())
    return {"wall_s": sum(r["wall_s"] for r in runs), "answered": sum(r["answered"] for r in runs)}


def _fmt(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _acc(cell: dict, strict: bool = False) -> str:
    key, ci = ("accuracy_strict", "ci95_strict") if strict else ("accuracy", "ci95")
    if cell.get(key) is None:
        return "-"
    return f"{cell[key]:.2f} [{cell[ci][0]:.2f}, {cell[ci][1]:.2f}]"


def markdown(summary: dict) -> str:
    tasks, rows = summary["tasks"], summary["contenders"]
    strict = any((r.get("overall") or {}).get("accuracy_strict") is not None for r in rows.values())
    extra_keys = sorted({k for r in rows.values() for k in (r.get("overall") or {})
                         if k not in SUMMARY_KEYS})
    lines = [f"{summary['label']}SmolLM2-135M-Instruct (Q4_1 GGUF -> bf16, served in float32 on the CPU) as every "
             f"seat, judge and writer, through the real LiteLLM proxy; `chorus eval`, short answers. "
             f"{summary['per_task']} questions per task ({', '.join(tasks)}), seed {summary['seed']}, "
             f"max_tokens {summary['max_tokens']} for members and the writer, minimal judge schema, "
             f"{summary['servers']} model server(s) with {summary.get('threads', 'default')} torch thread(s) each, eval "
             f"concurrency {summary['concurrency']} (latency includes waiting for a busy server). "
             "Accuracy with its 95% Wilson interval; cost at $0.1 / $0.2 per million tokens in / out.", ""]
    head = ["contender", *[f"{t}" for t in tasks], "overall"]
    head += ["overall strict"] if strict else []
    head += ["n", "errors", "model calls / q", "fused", "round-1 seats asked", "judge degraded", "tokens / q", "cost / q USD",
             "p50 latency s", "s / question", *extra_keys]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, r in rows.items():
        if "skipped" in r:
            lines.append(f"| `{key}` | skipped: {r['skipped']} |" + " |" * (len(head) - 2))
            continue
        if not r.get("overall"):
            lines.append(f"| `{key}` | not run yet |" + " |" * (len(head) - 2))
            continue
        o = r["overall"]
        cells = [f"`{key}`", *[_acc(r["tasks"].get(t, {})) for t in tasks], _acc(o)]
        cells += [_acc(o, strict=True)] if strict else []
        cells += [str(o.get("n", "-")), str(o.get("errors", "-")), _fmt(o.get("calls_per_question"), 2),
                  _fmt(o.get("fused_share"), 2), _fmt(o.get("round1_seats_asked"), 2), _fmt(o.get("judge_degraded_share"), 2),
                  _fmt(o.get("tokens_per_question"), 0),
                  _fmt(o["cost_usd"] / o["n"] if o.get("n") else None, 7), _fmt(o.get("latency_p50_s"), 2),
                  _fmt(o.get("s_per_question"), 1), *[_fmt(o.get(k), 2) for k in extra_keys]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| contender | model | what | calls per question |", "|---|---|---|---|"]
    lines += [f"| `{k}` | `{r['model']}` | {r['what']} | {r.get('calls', '-')} |" for k, r in rows.items()]
    return "\n".join(lines) + "\n"


SUMMARY_KEYS = {"n", "accuracy", "ci95", "errors", "cost_usd", "tokens", "tokens_per_question", "latency_p50_s",
                "wall_s", "s_per_question", "accuracy_strict", "ci95_strict", "calls_per_question",
                "seat_calls_per_question", "round1_seats_asked", "judge_degraded_share", "fused_share"}


def _label(ax, points: list) -> None:
    """Each point's name beside it, in the first of a few places that overlaps no name
    already placed (contenders at similar cost and accuracy would print over each other)."""
    fig = ax.figure
    fig.canvas.draw()
    placed: list = []
    places = [(6, 4, "left"), (6, -12, "left"), (-6, 4, "right"), (-6, -12, "right"), (6, 14, "left"),
              (6, -22, "left"), (-6, 14, "right"), (-6, -22, "right")]
    for key, x, y, _, color in sorted(points, key=lambda p: -p[2]):
        for dx, dy, ha in places:
            text = ax.annotate(key, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=8, ha=ha,
                               color=color)
            box = text.get_window_extent(fig.canvas.get_renderer()).expanded(1.05, 1.15)
            if not any(box.overlaps(other) for other in placed):
                break
            text.remove()
        else:  # nowhere free: the first place, overlapping
            text = ax.annotate(key, (x, y), textcoords="offset points", xytext=places[0][:2], fontsize=8, color=color)
            box = text.get_window_extent(fig.canvas.get_renderer())
        placed.append(box)


def plot(path: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    short = summary["label"].split("(")[0].strip(" :")  # "SMOKE RUN (...): " -> "SMOKE RUN"
    short = f"{short}: " if short else ""
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    points = []
    for key, r in summary["contenders"].items():
        o = r.get("overall")
        if not o or not o.get("n"):
            continue
        x, y = o["cost_usd"] / o["n"], o["accuracy"]
        bar = ax.errorbar([x], [y], yerr=[[y - o["ci95"][0]], [o["ci95"][1] - y]], fmt="o", capsize=3)
        points.append((key, x, y, o["ci95"], bar.lines[0].get_color()))
    ax.set_xscale("log")
    ax.set(xlabel="cost per question (USD, log scale)", ylabel="accuracy (95% Wilson interval)",
           title=f"{short}accuracy vs cost, {', '.join(summary['tasks'])}")
    if points:  # the intervals fill the height: the differences are what a reader compares
        low, high = min(p[3][0] for p in points), max(p[3][1] for p in points)
        ax.set_ylim(max(0.0, low - 0.05), min(1.0, high + 0.05))
        ax.set_xlim(min(p[1] for p in points) / 1.3, max(p[1] for p in points) * 1.6)  # room for the names
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _label(ax, points)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- serving -------------------------------------------------------------------------------

@contextlib.contextmanager
def model_servers(folder: Path, count: int, threads: int | None, log_dir: Path):
    """`count` model servers (local_model.serve), each with `threads` torch threads."""
    from chorus_litellm.demo import local_model
    from tests.servers import free_port

    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads:  # read by torch when the server starts
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    try:
        with contextlib.ExitStack() as stack:
            bases = [stack.enter_context(local_model.serve(folder, free_port(), log=log_dir / f"model{i}.log"))
                     for i in range(count)]
            yield bases
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def stack(args, chosen: list[Contender]):
    """The model server(s) and the LiteLLM proxy; yields the proxy URL."""
    from chorus_litellm.demo import local_model
    from chorus_litellm.settings import data_dir
    from tests.servers import litellm_proxy

    folder = local_model.prepare(data_dir() / "models" / "smollm2-135m-instruct")
    # The proxy's own store (transcripts; a fused run re-asked after an interruption is
    # replayed from it): kept between invocations for resume, apart from other users' runs.
    db = data_dir() / "bench-quality" / "chorus.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, model_servers(folder, args.servers, args.threads, Path(tmp)) as bases, \
            litellm_proxy(config(bases, folder, chosen), Path(tmp), env={"CHORUS_DB_PATH": str(db)}) as (url, _):
        yield url


def eval_once(url: str, data: Path, contender: Contender, run: Path, args, limit: int | None = None) -> int:
    """`chorus eval` for one contender on one task, timed into run/timing.json."""
    from chorus_litellm.cli import main as chorus

    run.mkdir(parents=True, exist_ok=True)
    before = _answered(run / "answers.jsonl")
    start = time.monotonic()
    argv = ["eval", "--base-url", url, "--api-key", MASTER, "--data", str(data), "--format", "short",
            "--models", contender.model, "--max-tokens", str(args.max_tokens), "--concurrency", str(args.concurrency),
            "--timeout", "3000", "--out", str(run), *contender.eval_args]
    if limit:
        argv += ["--limit", str(limit)]
    with contextlib.redirect_stdout(sys.stderr if args.quiet_eval else sys.stdout):
        code = chorus(argv)
    wall = time.monotonic() - start
    answered = _answered(run / "answers.jsonl") - before
    timing = json.loads((run / "timing.json").read_text()) if (run / "timing.json").exists() else []
    timing.append({"wall_s": round(wall, 2), "answered": answered, "servers": args.servers,
                   "concurrency": args.concurrency, "date": time.strftime("%Y-%m-%dT%H:%M:%S")})
    (run / "timing.json").write_text(json.dumps(timing, indent=1) + "\n")
    for png in run.glob("*.png"):  # one contender's plot says nothing; the summary plots them all
        png.unlink()
    return code


def collect_calls(url: str, data: Path, contender: Contender, run: Path) -> None:
    """Model calls per fused question, from each run's transcript (GET /chorus/v1/runs/{id}):
    calls per stage, round 1's seats asked and saved (panel.early_stop), degraded stages.
    Written to run/calls.jsonl; chorus eval itself does not keep them."""
    import hashlib

    import httpx

    from chorus_litellm.evaluation import data as eval_data
    from chorus_litellm.evaluation import runner

    if contender.chorus is None:
        return
    # the debate ids chorus eval sent (evaluation/command.py: the run tag is the --out folder's hash)
    settings = runner.Settings(run_tag=hashlib.sha256(str(run.resolve()).encode()).hexdigest()[:10])
    who = runner.Contender(contender.model, contender.model)
    answered = {r["qid"] for r in _records(run / "answers.jsonl", contender.model) if not r.get("error")}
    # what an earlier invocation collected: its transcripts may sit in another proxy's store
    # (a fresh one per invocation), so a 404 now never overwrites a row read then
    kept = {r["qid"]: r for r in _calls(run, contender, []) if "error" not in r}
    rows = []
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {MASTER}"}) as client:
        for q in eval_data.load(data, "short"):
            if q.qid not in answered:
                continue
            resp = client.get(f"{url}/chorus/v1/runs/{runner.debate_id(settings, who, q)}")
            if resp.status_code != 200:
                rows.append(kept.get(q.qid) or {"qid": q.qid, "error": resp.status_code})
                continue
            t = resp.json()
            stages = (t.get("usage") or {}).get("stages") or {}
            d = t.get("deliberation") or {}
            early = d.get("early_stop") or {}
            calls = {k: v.get("calls", 0) for k, v in stages.items()}
            rows.append({"qid": q.qid, "calls": sum(calls.values()),
                         "seat_calls": sum(v for k, v in calls.items() if k not in ("judge", "synthesis")),
                         "round1_asked": early.get("asked"), "round1_saved": early.get("saved"),
                         "rounds": d.get("rounds"), "degraded": t.get("degraded"),
                         "fused": (t.get("route") or {}).get("decision") != "single"})
    (run / "calls.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if rows and all("error" in r for r in rows):
        print(f"note: no transcript found for {contender.key} (debate ids changed?)", file=sys.stderr)


def _answered(path: Path) -> int:
    """Questions with a successful answer in answers.jsonl (the last record per question)."""
    latest: dict[tuple, bool] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
                r = json.loads(line)
                latest[(r["model"], r["qid"])] = not r.get("error")
    return sum(latest.values())


# --- the commands --------------------------------------------------------------------------

def pick(spec: str | None) -> list[Contender]:
    if not spec:
        return list(CONTENDERS)
    by_key = {c.key: c for c in CONTENDERS} | {c.model: c for c in CONTENDERS}
    unknown = [k for k in spec.split(",") if k.strip() and k.strip() not in by_key]
    if unknown:
        raise SystemExit(f"unknown contender(s) {unknown}; known: {', '.join(c.key for c in CONTENDERS)}")
    return [by_key[k.strip()] for k in spec.split(",") if k.strip()]


def run(args) -> None:
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if unknown := [t for t in tasks if t not in TASKS]:
        raise SystemExit(f"unknown task(s) {unknown}; known: {', '.join(TASKS)}")
    out = Path(args.out)
    paths = write_data(out / "data", tasks, args.per_task, args.seed)
    chosen = pick(args.models)
    skipped = rejected(chosen)
    for key, why in skipped.items():
        print(f"SKIPPED {key}: the config rejects its profile: {why}", file=sys.stderr)
    runnable = [c for c in chosen if c.key not in skipped]
    meta = {"label": args.label, "tasks": tasks, "per_task": args.per_task, "seed": args.seed,
            "max_tokens": args.max_tokens, "servers": args.servers, "threads": args.threads or "default",
            "concurrency": args.concurrency,
            "model": "SmolLM2-135M-Instruct", "date": time.strftime("%Y-%m-%d")}
    jobs = [(task, c) for c in runnable for task in tasks]  # contender-major: a stopped run has whole rows
    if args.report:  # only the table, from what --out already holds
        jobs = []
    started = time.monotonic()
    if jobs:
        with stack(args, runnable) as url:
            for i, (task, c) in enumerate(jobs, 1):
                run_dir = out / "runs" / task / c.key
                print(f"\n[{i}/{len(jobs)}] {task} x {c.key} ({c.model}), {time.monotonic() - started:.0f} s so far",
                      file=sys.stderr, flush=True)
                t0 = time.monotonic()
                code = eval_once(url, paths[task], c, run_dir, args, limit=args.limit)
                with contextlib.suppress(Exception):  # a number for the table, never a reason to stop
                    collect_calls(url, paths[task], c, run_dir)
                took = time.monotonic() - t0
                print(f"[{i}/{len(jobs)}] {task} x {c.key}: exit {code}, {took:.0f} s "
                      f"({took / args.per_task:.1f} s per question incl. cached)", file=sys.stderr, flush=True)
                if code == 1:
                    raise SystemExit("chorus eval could not reach the proxy; stopping")
                if code == 130:
                    raise SystemExit(f"interrupted; rerun the same command to resume ({out})")
    summary = summarize(out, tasks, chosen, skipped, meta)
    (out / "quality.json").write_text(json.dumps(summary, indent=2) + "\n")
    md = markdown(summary)
    (out / "quality.md").write_text(md)
    plot(out / "accuracy_vs_cost.png", summary)
    print(md)
    print("\nTime per contender (this and earlier runs into the same --out):")
    for key, r in summary["contenders"].items():
        o = r.get("overall")
        if o:
            print(f"  {key:16s} {o['wall_s']:8.0f} s  {_fmt(o['s_per_question'], 1):>6s} s/question")
    print(f"\nwall time of this invocation: {time.monotonic() - started:.0f} s; written to {out}")


def measure(args) -> None:
    """Seconds per question, single vs fused, and 1 vs 2 model servers on this machine."""
    # a fresh folder each time: a fused question asked again under the same folder would be
    # replayed from the proxy's store, not timed
    out = Path(args.out) / "measure" / time.strftime("%Y%m%d-%H%M%S")
    data = write_data(out / "data", ["capitals", "sums"], 100, args.seed)
    n = args.measure_n
    # (contender, eval concurrency, questions per task)
    plan = [("smol", 1, 2 * n), ("moa", 1, n), ("debate", 1, n), ("moa", 2, 2 * n)]
    rows = []
    configs = [tuple(int(x) for x in c.split("x")) for c in args.measure_configs.split(",")]
    for servers, threads in configs:
        threads = threads or None
        args.servers, args.threads = servers, threads
        chosen = list({key: pick(key)[0] for key, _, _ in plan}.values())
        with stack(args, chosen) as url:
            for key, conc, count in plan:
                c, args.concurrency = pick(key)[0], conc
                for task in ("capitals", "sums"):
                    run_dir = out / f"s{servers}" / f"{c.key}-c{conc}" / task
                    shutil.rmtree(run_dir, ignore_errors=True)
                    load, t0 = os.getloadavg()[0], time.monotonic()
                    if eval_once(url, data[task], c, run_dir, args, limit=count) == 130:
                        raise SystemExit(130)
                    wall = time.monotonic() - t0
                    records = _records(run_dir / "answers.jsonl", c.model)
                    rows.append({"servers": servers, "threads_per_server": threads or "default",
                                 "contender": c.key, "concurrency": conc, "task": task, "questions": count,
                                 "wall_s": round(wall, 1), "s_per_question": round(wall / count, 2),
                                 "latency_p50_s": _r(p50([r["latency"] for r in records if r.get("latency")]), 2),
                                 "tokens_per_question": round(sum(r["tokens"] for r in records) / count),
                                 "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)})
                    print(rows[-1], file=sys.stderr, flush=True)
    path = Path(args.out) / "measure.json"
    earlier = json.loads(path.read_text())["rows"] if path.exists() else []
    done = {(r["servers"], r["threads_per_server"]) for r in rows}
    rows = [r for r in earlier if (r["servers"], r["threads_per_server"]) not in done] + rows
    path.write_text(json.dumps({"benchmark": "quality-measure", "max_tokens": args.max_tokens, "rows": rows}, indent=2)
                    + "\n")
    md = measure_table(rows, args.max_tokens)
    (Path(args.out) / "measure.md").write_text(md)
    print(md)


def measure_table(rows: list[dict], max_tokens: int) -> str:
    lines = ["Seconds per question on this machine (2 cores, shared with other work), SmolLM2-135M, max_tokens "
             f"{max_tokens}: chorus eval's wall time / questions, proxy warm. Load: the 1-minute load average "
             "before and after the cell.", "",
             "| model servers | torch threads each | contender | eval concurrency | task | questions | s / question "
             "| p50 latency s | tokens / question | load before / after |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['servers']} | {r['threads_per_server']} | `{r['contender']}` | {r['concurrency']} | {r['task']} "
              f"| {r['questions']} | {r['s_per_question']} | {r['latency_p50_s']} | {r['tokens_per_question']} "
              f"| {r['load_before']} / {r['load_after']} |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="contenders: " + ", ".join(c.key for c in CONTENDERS))
    parser.add_argument("--tasks", default="capitals,sums", help=f"comma-separated, of {', '.join(TASKS)}")
    parser.add_argument("--per-task", type=int, default=100, help="questions per task (default 100)")
    parser.add_argument("--models", help="comma-separated contender keys (default: all)")
    parser.add_argument("--limit", type=int,
                        help="ask only the first N questions of each task (a partial row: the table's n says so); "
                             "rerun without it to complete the row")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder; rerun with the same one to resume")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help=f"the final answer's max_tokens (default {MAX_TOKENS}; the profiles' members: MAX_TOKENS)")
    # Measured (benchmarks/results/quality/measure.md): on 2 shared cores, one torch thread per
    # server is 4-8x faster than torch's default of one per core (threads that wait on each
    # other under load); a second server adds 0-30%; the eval keeps both busy at concurrency 2.
    parser.add_argument("--concurrency", type=int, default=2, help="chorus eval --concurrency (default 2)")
    parser.add_argument("--servers", type=int, default=2, help="model server processes behind `smol` (default 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per model server (default 1; 0: torch's default, one per core)")
    parser.add_argument("--label", default="", help="a prefix for the table's caption, e.g. 'SMOKE RUN: '")
    parser.add_argument("--quiet-eval", action="store_true", help="chorus eval's own tables to stderr")
    parser.add_argument("--write-data", action="store_true", help="only write the question files and stop")
    parser.add_argument("--report", action="store_true",
                        help="only the table and plot, from the answers --out already holds (no model, no proxy; "
                             "works while a run is going)")
    parser.add_argument("--measure", action="store_true", help="time single vs fused, 1 vs 2 model servers")
    parser.add_argument("--measure-n", type=int, default=2, help="fused questions per task for --measure")
    parser.add_argument("--measure-configs", default="1x0,2x1,1x1",
                        help="--measure: model servers x torch threads each (0: torch's default), comma-separated")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C: the model server(s) and the proxy are stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.write_data:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        for task, path in write_data(Path(args.out) / "data", tasks, args.per_task, args.seed).items():
            print(f"{task}: {args.per_task} questions -> {path}")
    elif args.measure:
        measure(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
