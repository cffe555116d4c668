"""How often a small real model writes a judge analysis the pipeline can use.

SmolLM2-135M (chorus_litellm.demo.local_model) answers N short questions three times each
(the panel), then judges its own three answers with the production judge
(`stages/judge.analyze`: the prompt, the response format, one repair). For each judge
call we record whether its reply parses:

- strict:   the parser before this change (outermost {...}, json.loads, exact schema);
- lenient:  today's parser (first decodable object, bare-string points, label forms);
- and whether the run ended with a valid analysis (first try or after the repair), or
  degraded, with the response format the judge was sent.

Run: python benchmarks/judge_json.py [--questions 20] [--response-format auto|json_object|off]
Writes benchmarks/results/judge_json.{json,md} and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import write  # noqa: E402

from chorus_litellm.demo import local_model  # noqa: E402
from chorus_litellm.gateway.llm import RouterCompleter  # noqa: E402
from chorus_litellm.core.config import AggregatorConfig  # noqa: E402
from chorus_litellm.settings import data_dir  # noqa: E402
from chorus_litellm.core.stages import judge  # noqa: E402
from chorus_litellm.core.types import PanelAnswer, Seat  # noqa: E402
from tests.servers import free_port  # noqa: E402

QUESTIONS = [
    "What is the capital of France?", "Why is the sky blue?", "What is 12 times 12?",
    "Name a mammal that can fly.", "What does a thermometer measure?", "Who wrote Romeo and Juliet?",
    "What gas do plants take in?", "How many days are in a leap year?", "What is the boiling point of water?",
    "What is the largest planet in the solar system?", "What is photosynthesis?", "What is a prime number?",
    "Why do we have seasons?", "What is the speed of light?", "What language is spoken in Brazil?",
    "What is an atom?", "How many continents are there?", "What is the chemical symbol for gold?",
    "What causes rain?", "What is the square root of 81?", "What is gravity?", "Who painted the Mona Lisa?",
    "What is the freezing point of water in Fahrenheit?", "What organ pumps blood?", "What is a noun?",
]


class _StrictPoint(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    claim: str
    support: list[str] = []


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    consensus: list[_StrictPoint] = []
    contradictions: list[_StrictPoint] = []
    unique_insights: list[_StrictPoint] = []
    blind_spots: list[str] = []
    best: str | None = None


def strict_ok(text: str) -> bool:
    """The parser before this change: outermost braces, json.loads, the exact schema."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        return False
    try:
        _Strict.model_validate(json.loads(body[start : end + 1]))
    except (ValueError, ValidationError):
        return False
    return True


def lenient_ok(text: str, labels: dict[str, str], minimal: bool) -> bool:
    try:
        judge.parse_analysis(text, labels, bare_label=minimal)
    except ValueError:
        return False
    return True


async def run(args) -> dict:
    import litellm

    folder = local_model.prepare(data_dir() / "models" / "smollm2-135m-instruct")
    rows = []
    with local_model.serve(folder, free_port()) as base:
        router = litellm.Router(model_list=[{"model_name": "smol", "litellm_params": {
            "model": f"openai/{folder}", "api_base": base, "api_key": "none", "num_retries": 0}}])
        completer = RouterCompleter(lambda: router)
        config = AggregatorConfig(judge="smol", synthesizer="smol", judge_max_tokens=args.max_tokens,
                                  judge_response_format=args.response_format, judge_timeout_s=300,
                                  judge_schema=args.schema)
        for question in tqdm(QUESTIONS[: args.questions], desc="judge calls", unit="q"):
            messages = [{"role": "user", "content": question}]
            answers = []
            for i in range(3):
                c = await completer.complete("smol", messages, timeout=300, stage="panel", seat=f"s{i}",
                                             max_tokens=48, temperature=0.2 + 0.5 * i)
                answers.append(PanelAnswer(Seat(f"s{i}", "smol"), c))
            started = time.perf_counter()
            verdict = await judge.analyze(completer, config, messages, tuple(answers), random.Random(0))
            first = verdict.completions[0].text if verdict.completions else ""
            rows.append({"question": question, "first_reply": first[:400],
                         "strict_first": strict_ok(first), "lenient_first": lenient_ok(first, verdict.labels, args.schema == "minimal"),
                         "valid_after_repair": not verdict.degraded, "calls": len(verdict.completions),
                         "error": verdict.error, "seconds": round(time.perf_counter() - started, 2)})
    n = len(rows)
    rate = lambda key: round(sum(r[key] for r in rows) / n, 3)  # noqa: E731
    return {"benchmark": "judge_json", "model": "SmolLM2-135M-Instruct (Q4_1 GGUF -> bf16, CPU)",
            "questions": n, "response_format": args.response_format, "judge_max_tokens": args.max_tokens,
            "judge_schema": args.schema,
            "strict_first_try": rate("strict_first"), "lenient_first_try": rate("lenient_first"),
            "valid_after_repair": rate("valid_after_repair"), "rows": rows}


def table(result: dict) -> str:
    return "\n".join([
        f"{result['model']}, {result['questions']} judge runs, judge_schema {result['judge_schema']}, "
        f"response_format {result['response_format']}, judge_max_tokens {result['judge_max_tokens']}.",
        "",
        "| parser | valid analysis on the first reply | valid after the one repair |",
        "|---|---|---|",
        f"| strict (before) | {result['strict_first_try']:.0%} | - |",
        f"| lenient (now) | {result['lenient_first_try']:.0%} | {result['valid_after_repair']:.0%} |",
    ]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=300)
    parser.add_argument("--response-format", default="auto", choices=["auto", "json_object", "off"])
    parser.add_argument("--schema", default="full", choices=["full", "minimal"], help="aggregator.judge_schema")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "judge_json"))
    args = parser.parse_args()
    result = asyncio.run(run(args))
    write(args.out, result, table(result))


if __name__ == "__main__":
    main()
