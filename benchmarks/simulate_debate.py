"""Simulated debates: does debate beat a plain vote, and what do dissent and adaptive
stopping buy? The real debate engine (`core/stages/debate.py`) runs against simulated agents.

Each agent answers a 5-option question. In round 1 it is right with probability
`accuracy`. In later rounds it sees the consensus voice (and, with dissent injection,
the dissent voice) chosen by the engine in embedding space; it then
- conforms to the consensus voice's answer (per-agent voices: the nearest one's) with
  probability `conformity`, else
- if it is wrong and a shown voice is right, adopts it with probability `recognize`
  (a correct argument is persuasive only sometimes), else keeps its answer.
Answers are voted (confidence-weighted) in the last round. Tokens are counted as words.

Strategies (all with the same agents):
- vote: round 1 only, majority vote (the compute floor);
- debate, fixed 3 rounds, consensus voice only (no dissent);
- debate, fixed 3 rounds, with dissent;
- debate with dissent and adaptive stopping (the default engine);
- the same with per-agent voices: each agent sees the answer nearest its own and the
  farthest (`debate.voices: per_agent`); its conformity follows the nearest one.

Run: python benchmarks/simulate_debate.py [--trials 300]
Writes benchmarks/results/simulate_debate.{json,md}.

`--suite calibrated` (benchmarks/results/simulate_debate_calibrated.{json,md}) asks a
different question with agents calibrated to published effects (../shared/design/evidence.md):
which decision policy, at what compute? Per question there is a difficulty (each agent's
chance to be right is drawn from a Beta around `accuracy`) and a shared lure (a wrong
agent picks the same attractive wrong option with probability `lure`), so agents' errors
are correlated, as samples of one model's errors are. In a debate round an agent sees
the other agents' previous answers (as in Du et al.): it adopts the plurality answer,
when it differs from its own, with probability `conformity` (up to 0.85 for 7-8B agents,
2605.00914: a correct minority is discarded), else, if it is wrong and someone stated the
right answer, switches to it with probability `recognize` (debate fixes a wrong answer in
only 5-19% of cases, 2511.11306); a right agent that kept its answer switches to a wrong
answer someone stated with probability `mislead` (agents flip correct answers to wrong
ones, 2509.05396). Policies, all on the same round-1 answers:
- single: one call;
- vote@k: k independent samples, plurality (self-consistency; ties at random);
- early-stop vote (`panel.early_stop`): a first wave of k // 2 + 1 seats, the rest only
  if the leader could still be overtaken or tied (lossless: same answer as vote@k);
- ESC (early-stopping self-consistency, 2401.10480): windows of 3 samples until one
  window is unanimous, at most 15 samples;
- debate, 5 agents, at most 3 rounds, the final round voted: fixed rounds; stopped on
  answers (leader's share >= 2/3, or unanimity); stopped on embeddings (mean pairwise
  cosine >= 0.85, `debate.agreement`, measured by the engine's own geometry on
  bag-of-words vectors of simulated texts) for texts that share their reasoning and
  differ in the final claim, and for texts that argue differently;
- the engine itself (`core/stages/debate.py`, as checked out) with the same calibrated agents.
Calls count agent calls only (a fused run adds a judge and a writer call to any of them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import write  # noqa: E402

from chorus_litellm.core.stages import debate, geometry  # noqa: E402
from chorus_litellm.core.stages.panel import seats  # noqa: E402
from chorus_litellm.testing import HashEmbedder  # noqa: E402
from chorus_litellm.core.types import Completion, Usage  # noqa: E402
from tests.factories import context, profile, request  # noqa: E402

OPTIONS = "ABCDE"
ANSWER = re.compile(r"The answer is ([A-E])\.")


def phrase(agent: str, option: str, rng: random.Random) -> str:
    """An answer whose words cluster by option; agent-specific filler keeps it no copy."""
    reasons = " ".join(f"{option.lower()}reason{k}" for k in range(6))
    filler = " ".join(f"{agent}w{rng.randrange(1000)}" for _ in range(8))
    return f"Considering the evidence, {reasons} {filler}. The answer is {option}."


class SimAgents:
    """A Completer whose seats are simulated agents (model name = agent name)."""

    def __init__(self, truth: str, accuracy: float, conformity: float, recognize: float, rng: random.Random):
        self.truth, self.accuracy, self.conformity, self.recognize, self.rng = truth, accuracy, conformity, recognize, rng

    def _first(self) -> str:
        if self.rng.random() < self.accuracy:
            return self.truth
        return self.rng.choice([o for o in OPTIONS if o != self.truth])

    def _next(self, prompt: str) -> str:
        data = json.loads(prompt[prompt.index("{"):])
        own = ANSWER.search(data["your_previous_answer"]).group(1)
        voices = {p["view"]: ANSWER.search(p["text"]).group(1) for p in data["panelists"]}
        # Conformity follows the voice presented as the group's: the consensus voice, or
        # (per-agent voices) the answer closest to one's own.
        consensus = voices.get("shared by most panelists") or voices.get("closest to yours")
        if consensus and self.rng.random() < self.conformity:
            return consensus
        if own != self.truth and self.truth in voices.values() and self.rng.random() < self.recognize:
            return self.truth
        return own

    async def complete(self, model, messages, *, timeout, **params) -> Completion:
        last = messages[-1]["content"]
        option = self._next(last) if "your_previous_answer" in last else self._first()
        text = phrase(model, option, self.rng)
        return Completion(text, model, Usage(len(last.split()), len(text.split())))

    def supports_json_mode(self, model):
        return False


STRATEGIES = {
    "vote (round 1 only)": dict(max_rounds=1),
    "debate x3, no dissent": dict(max_rounds=3, dissent=False, adaptive_stop=False),
    "debate x3, dissent": dict(max_rounds=3, dissent=True, adaptive_stop=False),
    "debate, dissent, adaptive stop": dict(max_rounds=3, dissent=True, adaptive_stop=True),
    "debate, per-agent voices, adaptive stop": dict(max_rounds=3, dissent=True, adaptive_stop=True,
                                                    voices="per_agent"),
}


async def deliberate(sim, agents: int, strategy: dict):
    """One debate of the real engine (core/stages/debate.py) with simulated agents: (context, Outcome)."""
    prof = profile(panel={"members": [f"agent{i}" for i in range(agents)], "min_quorum": agents // 2 + 1,
                          "quorum_grace_s": 0},
                   debate={"protocol": "debate", **strategy})
    ctx = context(request(prof, messages=[{"role": "user", "content": "Which option is right?"}]), sim,
                  embedder=HashEmbedder())
    ctx.seats = seats(ctx.panel)
    out = None
    async for item in debate.deliberate(ctx):
        out = item
    return ctx, out


async def one_debate(strategy: dict, truth: str, args, rng: random.Random, agents: int) -> tuple[bool, int, int, int]:
    sim = SimAgents(truth, args.accuracy, args.conformity, args.recognize, rng)
    ctx, out = await deliberate(sim, agents, strategy)
    summary = out.summary
    flips_to_wrong = sum(1 for f in summary["flips"] if f["from"] == truth and f["to"] != truth)
    winner = (summary["vote"] or {}).get("answer")
    return winner == truth, ctx.tokens_used(), summary["rounds"], flips_to_wrong


async def main_async(args) -> dict:
    rows = []
    for accuracy in args.accuracies:
        for conformity in args.conformities:
            args.accuracy, args.conformity = accuracy, conformity
            for name, strategy in STRATEGIES.items():
                results = []
                for trial in range(args.trials):
                    # one seed per question: every strategy sees the same questions and the
                    # same round-1 answers, so differences come from the strategy alone
                    rng = random.Random(f"{args.seed}-{accuracy}-{trial}")
                    results.append(await one_debate(strategy, rng.choice(OPTIONS), args, rng, args.agents))
                rows.append({
                    "accuracy": accuracy, "conformity": conformity, "strategy": name,
                    "correct": round(sum(r[0] for r in results) / len(results), 3),
                    "tokens": round(sum(r[1] for r in results) / len(results), 1),
                    "rounds": round(sum(r[2] for r in results) / len(results), 2),
                    "correct_to_wrong_flips": round(sum(r[3] for r in results) / len(results), 3),
                })
                print(f"p={accuracy} c={conformity} {name:32s} correct={rows[-1]['correct']:.3f} "
                      f"tokens={rows[-1]['tokens']:.0f} rounds={rows[-1]['rounds']:.2f}", flush=True)
    return {"benchmark": "simulate_debate", "agents": args.agents, "trials": args.trials,
            "recognize": args.recognize, "seed": args.seed, "rows": rows}


def table(result: dict) -> str:
    lines = [
        f"{result['agents']} agents, {result['trials']} questions per cell, recognize={result['recognize']}, "
        f"seed {result['seed']}.",
        "",
        "| agent accuracy | conformity | strategy | correct | tokens / question | rounds | correct-to-wrong flips |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['accuracy']} | {r['conformity']} | {r['strategy']} | {r['correct']} | {r['tokens']} | "
                     f"{r['rounds']} | {r['correct_to_wrong_flips']} |")
    return "\n".join(lines) + "\n"


# --- calibrated agents: which decision policy, at what compute (--suite calibrated) ---------

@dataclass(frozen=True)
class Scenario:
    name: str
    accuracy: float  # mean chance that one call is right
    kappa: float | None  # Beta concentration of per-question difficulty; None: every question alike
    lure: float  # chance a wrong answer is the question's shared lure (else uniform over wrong options)
    conformity: float  # chance to adopt the plurality of the answers seen, when it differs from one's own
    recognize: float  # chance a wrong agent switches to the right answer when someone stated it
    mislead: float  # chance a right agent switches to a wrong answer someone stated (flips, 2509.05396)


SCENARIOS = [
    Scenario("weak, correlated errors", 0.45, 3.0, 0.5, 0.85, 0.10, 0.10),
    Scenario("strong, correlated errors", 0.70, 3.0, 0.5, 0.50, 0.20, 0.05),
    Scenario("weak, independent errors", 0.45, None, 0.0, 0.85, 0.10, 0.10),
    Scenario("strong, independent errors", 0.70, None, 0.0, 0.50, 0.20, 0.05),
]
AGENTS, MAX_ROUNDS, POOL = 5, 3, 15
# Simulated texts for the embedding rule: (shared reasoning words, claim words, own words).
# "share reasoning": texts that differ only in the final claim (the evidence: 0.98 apart
# under a static embedder); "argue differently": paraphrases of one claim agree, different
# claims do not (the repository's labelled corpus: mixed pools <= 0.70-0.82).
TEXTS = {"share reasoning": (30, 2, 2), "argue differently": (6, 14, 3)}
EMBED_AGREEMENT = 0.85  # debate.agreement's default


@dataclass
class Question:
    truth: str
    lure: str
    p: float  # this question's chance that one call is right
    rng: random.Random
    order: str  # ties in a vote go to the option first in this (random) order: every policy alike

    def sample(self, scenario: Scenario) -> str:
        if self.rng.random() < self.p:
            return self.truth
        if self.rng.random() < scenario.lure:
            return self.lure
        return self.rng.choice([o for o in OPTIONS if o != self.truth])


def make_question(scenario: Scenario, seed: str) -> tuple[Question, list[str]]:
    rng = random.Random(seed)
    truth = rng.choice(OPTIONS)
    lure = rng.choice([o for o in OPTIONS if o != truth])
    if scenario.kappa is None:
        p = scenario.accuracy
    else:
        p = rng.betavariate(scenario.accuracy * scenario.kappa, (1 - scenario.accuracy) * scenario.kappa)
    q = Question(truth, lure, p, rng, "".join(rng.sample(OPTIONS, len(OPTIONS))))
    return q, [q.sample(scenario) for _ in range(POOL)]  # the round-1 answers every policy shares


def plurality(answers: list[str], order: str) -> str:
    """The most frequent answer; a tie goes to the answer first in `order` (the question's)."""
    counts = Counter(answers)
    top = max(counts.values())
    return min((a for a, c in counts.items() if c == top), key=order.index)


def settled(answers: list[str], left: int) -> bool:
    """No `left` more answers can overtake or tie the leader (panel.early_stop's rule)."""
    ranked = Counter(answers).most_common(2) + [(None, 0)]
    return ranked[0][1] - ranked[1][1] > left


def early_stop_vote(pool: list[str], k: int, order: str) -> tuple[str, int]:
    wave = k // 2 + 1
    if settled(pool[:wave], k - wave):
        return plurality(pool[:wave], order), wave
    return plurality(pool[:k], order), k


def esc(pool: list[str], window: int, order: str) -> tuple[str, int]:
    for end in range(window, len(pool) + 1, window):
        if len(set(pool[end - window:end])) == 1:
            return plurality(pool[:end], order), end
    return plurality(pool, order), len(pool)


class Texts:
    """Bag-of-words texts per (question, option, call), embedded as the engine would measure them."""

    def __init__(self, shape: tuple[int, int, int], qid: str):
        self.shared, self.claim, self.own = shape
        self.qid, self.calls, self.embedder = qid, 0, HashEmbedder(dim=4096)

    def text(self, option: str) -> str:
        self.calls += 1
        return " ".join([*(f"{self.qid}r{j}" for j in range(self.shared)),
                         *(f"{self.qid}o{option}c{j}" for j in range(self.claim)),
                         *(f"{self.qid}n{self.calls}w{j}" for j in range(self.own))])

    async def agreement(self, answers: list[str]) -> float:
        vectors = await self.embedder.encode([self.text(a) for a in answers])
        return geometry.mean_pairwise(geometry.similarity(vectors))


def debate_round(previous: list[str], q: Question, scenario: Scenario) -> tuple[list[str], dict]:
    """Every agent answers again after seeing the others' previous answers."""
    out, seen = [], {"conform_chances": 0, "conformed": 0, "minority_right_lost": 0, "misled": 0}
    for i, own in enumerate(previous):
        others = previous[:i] + previous[i + 1:]
        major = plurality(previous, q.order)
        if major != own:
            seen["conform_chances"] += 1
            if q.rng.random() < scenario.conformity:
                seen["conformed"] += 1
                seen["minority_right_lost"] += own == q.truth
                out.append(major)
                continue
        wrong = [a for a in others if a != q.truth]
        if own != q.truth and q.truth in others and q.rng.random() < scenario.recognize:
            out.append(q.truth)
        elif own == q.truth and wrong and q.rng.random() < scenario.mislead:
            seen["misled"] += 1
            out.append(plurality(wrong, q.order))
        else:
            out.append(own)
    return out, seen


async def debate_policy(q: Question, first: list[str], scenario: Scenario, stop: str,
                        texts: Texts | None = None) -> tuple[str, int, dict]:
    """A debate of len(first) agents, at most MAX_ROUNDS rounds; `stop`: fixed | share:<x> | embedding."""
    answers, calls, stats = list(first), len(first), Counter()
    for round_no in range(1, MAX_ROUNDS + 1):
        if round_no > 1:
            answers, seen = debate_round(answers, q, scenario)
            calls += len(answers)
            stats.update(seen)
        if round_no == MAX_ROUNDS:
            break
        if stop.startswith("share:"):
            if Counter(answers).most_common(1)[0][1] / len(answers) >= float(stop[6:]):
                break
        elif stop == "embedding":
            if await texts.agreement(answers) >= EMBED_AGREEMENT:
                break
    stats["rounds"] = round_no
    return plurality(answers, q.order), calls, dict(stats)


class CalibratedSimAgents(SimAgents):
    """SimAgents (the engine's voices, conformity to the consensus voice) whose round-1
    answers come from the calibrated question: difficulty and a shared lure."""

    def __init__(self, question: Question, first: list[str], scenario: Scenario):
        super().__init__(question.truth, question.p, scenario.conformity, scenario.recognize, question.rng)
        self.mislead = scenario.mislead
        self.first = iter(first)

    def _first(self) -> str:
        return next(self.first)

    def _next(self, prompt: str) -> str:
        answer = super()._next(prompt)
        if answer != self.truth or self.rng.random() >= self.mislead:
            return answer
        data = json.loads(prompt[prompt.index("{"):])
        wrong = [ANSWER.search(p["text"]).group(1) for p in data["panelists"]]
        wrong = [w for w in wrong if w != self.truth]
        return wrong[0] if wrong else answer


async def engine_debate(q: Question, first: list[str], scenario: Scenario) -> tuple[str, int, dict]:
    sim = CalibratedSimAgents(q, first, scenario)
    _, out = await deliberate(sim, len(first), {"max_rounds": MAX_ROUNDS})
    summary = out.summary
    winner = (summary["vote"] or {}).get("answer")
    calls = sum(len(r) for r in out.transcript) if out.transcript else len(first)
    return winner, calls, {"rounds": summary["rounds"]}


POLICIES = ["single", "vote@3", "vote@5", "early-stop vote, 5 seats", "vote@15", "early-stop vote, 15 seats",
            "ESC, windows of 3, up to 15", "debate, fixed 3 rounds", "debate, stop on answers (share >= 2/3)",
            "debate, stop on answers (unanimous)", "debate, stop on embeddings, texts share reasoning",
            "debate, stop on embeddings, texts argue differently", "debate, the engine (as checked out)",
            "vote@k at the answer-stopped debate's calls"]


async def calibrated_cell(scenario: Scenario, trials: int, seed: int) -> list[dict]:
    results: dict[str, list[tuple[bool, int]]] = {p: [] for p in POLICIES}
    flows = Counter()
    for trial in range(trials):
        q, pool = make_question(scenario, f"{seed}-{scenario.name}-{trial}")
        first = pool[:AGENTS]

        def put(name: str, answer: str, calls: int) -> None:
            results[name].append((answer == q.truth, calls))

        put("single", pool[0], 1)
        for k in (3, 5, 15):
            put(f"vote@{k}", plurality(pool[:k], q.order), k)
        put("early-stop vote, 5 seats", *early_stop_vote(pool, 5, q.order))
        put("early-stop vote, 15 seats", *early_stop_vote(pool, 15, q.order))
        put("ESC, windows of 3, up to 15", *esc(pool, 3, q.order))
        # each debate from the same round-1 answers; its own later rounds
        for name, stop, shape in (("debate, fixed 3 rounds", "fixed", None),
                                  ("debate, stop on answers (share >= 2/3)", "share:0.66", None),
                                  ("debate, stop on answers (unanimous)", "share:1.0", None),
                                  ("debate, stop on embeddings, texts share reasoning", "embedding",
                                   TEXTS["share reasoning"]),
                                  ("debate, stop on embeddings, texts argue differently", "embedding",
                                   TEXTS["argue differently"])):
            q.rng = random.Random(f"{seed}-{scenario.name}-{trial}-{name}")
            answer, calls, stats = await debate_policy(q, first, scenario, stop,
                                                       Texts(shape, f"q{trial}") if shape else None)
            put(name, answer, calls)
            if stop == "fixed":
                flows.update(stats)
                round1 = plurality(first, q.order)
                flows["round1_wrong"] += round1 != q.truth
                flows["fixed"] += (round1 != q.truth) and answer == q.truth
                flows["broke"] += (round1 == q.truth) and answer != q.truth
        q.rng = random.Random(f"{seed}-{scenario.name}-{trial}-engine")
        put("debate, the engine (as checked out)", *(await engine_debate(q, first, scenario))[:2])
    # the compute-matched vote: as many samples as the answer-stopped debate's mean calls
    k = max(1, round(mean(c for _, c in results["debate, stop on answers (share >= 2/3)"])))
    name = "vote@k at the answer-stopped debate's calls"
    for trial in range(trials):
        q, pool = make_question(scenario, f"{seed}-{scenario.name}-{trial}")
        extra = [q.sample(scenario) for _ in range(max(0, k - POOL))]
        results[name].append((plurality((pool + extra)[:k], q.order) == q.truth, k))
    rows = []
    for policy in POLICIES:
        got = results[policy]
        rows.append({"scenario": scenario.name, "policy": policy + (f" (k = {k})" if policy == name else ""),
                     "correct": round(mean(c for c, _ in got), 3), "calls": round(mean(n for _, n in got), 2)})
    calibration = {"scenario": scenario.name, "conformed_when_in_minority": round(
        flows["conformed"] / flows["conform_chances"], 3) if flows["conform_chances"] else None,
        "correct_answers_given_up_to_the_majority_per_question": round(flows["minority_right_lost"] / trials, 3),
        "wrong_round1_votes_fixed": _share(flows["fixed"], flows["round1_wrong"]),
        "right_round1_votes_broken": _share(flows["broke"], trials - flows["round1_wrong"])}
    return rows, calibration


def _commit() -> str:
    """The checkout the engine row ran on (`+ local changes` when the tree differs)."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "chorus_litellm"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + local changes" if dirty else "")


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


async def text_cosines() -> dict:
    """What the simulated texts' embeddings look like: same-claim and different-claim pairs."""
    out = {}
    for name, shape in TEXTS.items():
        t = Texts(shape, "qx")
        v = await t.embedder.encode([t.text("A"), t.text("A"), t.text("B")])
        sim = geometry.similarity(v)
        out[name] = {"same_claim": round(float(sim[0, 1]), 3), "different_claim": round(float(sim[0, 2]), 3)}
    return out


async def calibrated(args) -> dict:
    rows, calibration = [], []
    for scenario in SCENARIOS:
        cell, cal = await calibrated_cell(scenario, args.trials, args.seed)
        rows += cell
        calibration.append(cal)
        print(f"{scenario.name}: done", flush=True)
    return {"benchmark": "simulate_debate_calibrated", "commit": _commit(), "trials": args.trials, "seed": args.seed,
            "agents": AGENTS,
            "max_rounds": MAX_ROUNDS, "scenarios": [s.__dict__ for s in SCENARIOS], "texts": await text_cosines(),
            "embedding_agreement_threshold": EMBED_AGREEMENT, "rows": rows, "calibration": calibration}


def calibrated_table(result: dict) -> str:
    scen = [s["name"] for s in result["scenarios"]]
    by = {(r["scenario"], r["policy"].split(" (k = ")[0]): r for r in result["rows"]}
    ks = {r["scenario"]: r["policy"] for r in result["rows"] if r["policy"].startswith("vote@k at")}
    half = 1.96 * (0.25 / result["trials"]) ** 0.5
    lines = [f"{result['trials']} questions per scenario (5 options), seed {result['seed']}, commit {result['commit']}; "
             f"a correct share is within +-{half:.3f} (95%) at worst; debates: "
             f"{result['agents']} agents, at most {result['max_rounds']} rounds, the last round voted. "
             "Correct share, and agent calls per question (a fused run adds a judge and a writer call).", "",
             "| policy | " + " | ".join(f"{s}: correct | calls" for s in scen) + " |",
             "|---|" + "---|---|" * len(scen)]
    for policy in POLICIES:
        cells = []
        for s in scen:
            r = by[(s, policy)]
            cells += [f"{r['correct']:.3f}", f"{r['calls']:.2f}"]
        label = policy if not policy.startswith("vote@k at") else policy + " (k = " + ", ".join(
            ks[s].split("(k = ")[1].rstrip(")") for s in scen) + ")"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| scenario | accuracy | difficulty spread (Beta kappa) | lure | conformity | recognize | mislead |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {s['name']} | {s['accuracy']} | {s['kappa'] or 'none'} | {s['lure']} | {s['conformity']} | "
              f"{s['recognize']} | {s['mislead']} |" for s in result["scenarios"]]
    lines += ["", "What the fixed 3-round debate did (calibration check; right answers given up: per question):", "",
              "| scenario | adopted the plurality when in the minority | right answers given up to the majority "
              "| wrong round-1 votes the debate fixed | right round-1 votes the debate broke |",
              "|---|---|---|---|---|"]
    lines += [f"| {c['scenario']} | {c['conformed_when_in_minority']} | "
              f"{c['correct_answers_given_up_to_the_majority_per_question']} | {c['wrong_round1_votes_fixed']} "
              f"| {c['right_round1_votes_broken']} |" for c in result["calibration"]]
    t = result["texts"]
    lines += ["", "Simulated texts' cosine (bag-of-words): " + "; ".join(
        f"{name}: same claim {v['same_claim']}, different claim {v['different_claim']}" for name, v in t.items())
        + f"; the embedding rule stops at mean pairwise cosine >= {result['embedding_agreement_threshold']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=("engine", "calibrated"), default="engine",
                        help="engine: the debate engine's options (the default); calibrated: policies at equal "
                             "compute with agents calibrated to published effects")
    parser.add_argument("--trials", type=int, help="questions per cell (default 300; calibrated: 2000)")
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--accuracies", type=float, nargs="+", default=[0.4, 0.6])
    parser.add_argument("--conformities", type=float, nargs="+", default=[0.2, 0.6])
    parser.add_argument("--recognize", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", help="output path without extension (default benchmarks/results/simulate_debate"
                                      "[_calibrated])")
    args = parser.parse_args()
    base = str(ROOT / "benchmarks" / "results" / "simulate_debate")
    if args.suite == "calibrated":
        args.trials = args.trials or 2000
        result = asyncio.run(calibrated(args))
        write(args.out or base + "_calibrated", result, calibrated_table(result))
        return
    args.trials = args.trials or 300
    result = asyncio.run(main_async(args))
    write(args.out or base, result, table(result))


if __name__ == "__main__":
    main()
