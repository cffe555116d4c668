"""Simulated debates: does debate beat a plain vote, and what do dissent and adaptive
stopping buy? The real debate engine (`stages/debate.py`) runs against simulated agents.

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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import write  # noqa: E402

from chorus_litellm.stages import debate  # noqa: E402
from chorus_litellm.stages.panel import seats  # noqa: E402
from chorus_litellm.testing import HashEmbedder  # noqa: E402
from chorus_litellm.types import Completion, Usage  # noqa: E402
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


async def one_debate(strategy: dict, truth: str, args, rng: random.Random, agents: int) -> tuple[bool, int, int, int]:
    sim = SimAgents(truth, args.accuracy, args.conformity, args.recognize, rng)
    prof = profile(panel={"members": [f"agent{i}" for i in range(agents)], "min_quorum": agents // 2 + 1,
                          "quorum_grace_s": 0},
                   debate={"protocol": "debate", **strategy})
    ctx = context(request(prof, messages=[{"role": "user", "content": "Which option is right?"}]), sim,
                  embedder=HashEmbedder())
    ctx.seats = seats(ctx.panel)
    out = None
    async for item in debate.deliberate(ctx):
        out = item
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--accuracies", type=float, nargs="+", default=[0.4, 0.6])
    parser.add_argument("--conformities", type=float, nargs="+", default=[0.2, 0.6])
    parser.add_argument("--recognize", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "simulate_debate"))
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    write(args.out, result, table(result))


if __name__ == "__main__":
    main()
