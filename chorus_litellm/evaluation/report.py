"""The run's results: numbers per contender (pure), then results.json, results.md and
the plots (accuracy_vs_cost.png; accuracy_by_round.png when a debate profile ran).

Every number is over the same questions; a question that failed counts as wrong
(open-ended: as a loss), and `errors` says how many did. `accuracy` reads each answer as a
person would (the headline), `accuracy_strict` counts only answers in the asked format
(scoring.py, docs/eval.md "Scoring"). A record cached before the strict reading existed
that cannot be graded again (a vote without its samples' texts) counts its one verdict
for both.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import scoring
from .data import Question
from .runner import Contender


def summarize(contenders: list[Contender], questions: list[Question], records: dict, meta: dict) -> dict:
    return {"meta": meta,
            "results": {c.name: _row(c, [records.get((c.name, q.qid)) for q in questions], meta) for c in contenders}}


def _row(contender: Contender, records: list[dict | None], meta: dict) -> dict:
    n = len(records)
    ok = [r for r in records if r is not None and not r.get("error")]
    row: dict = {"n": n, "errors": n - len(ok),
                 "cost_usd": round(sum(r["cost"] for r in records if r), 8),
                 "tokens": sum(r["tokens"] for r in records if r),
                 "latency_p50_s": scoring.p50([r["latency"] for r in ok if r.get("latency") is not None])}
    if meta.get("format") != "open":
        row["accuracy"] = sum(bool(r and r.get("correct")) for r in records) / n
        row["accuracy_strict"] = sum(bool(r and r.get("correct_strict", r.get("correct"))) for r in records) / n
    elif contender.name == meta.get("baseline"):
        row.update(score=0.5, reference=True)  # the baseline against itself
    else:
        verdicts = [(r or {}).get("verdict") or "loss" for r in records]
        rates = {v: verdicts.count(v) / n for v in ("win", "tie", "loss")}
        row.update(score=rates["win"] + 0.5 * rates["tie"], **rates,
                   judge_cost_usd=round(sum((r or {}).get("judge_cost", 0.0) for r in records), 8))
    if any(r and "rounds" in r for r in records):
        rounds = [[[tuple(t) for t in turns] for turns in (r or {}).get("rounds") or []] for r in records]
        row["per_round_accuracy"] = [a.__dict__ for a in scoring.per_round(rounds)]
    return row


def quality(row: dict) -> float:
    return row["accuracy"] if "accuracy" in row else row["score"]


def write(out: Path, summary: dict) -> list[Path]:
    """results.json, results.md and the plots; returns the paths written."""
    paths = [out / "results.json", out / "results.md"]
    out.mkdir(parents=True, exist_ok=True)
    paths[0].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(summary), encoding="utf-8")
    return paths + plots(out, summary["results"])


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(summary: dict) -> str:
    meta, results = summary["meta"], summary["results"]
    is_open = meta.get("format") == "open"
    lines = [f"# chorus eval: {meta['dataset']}", "",
             f"{meta['n_questions']} questions ({meta['format']}), {meta['date']}, endpoint {meta['base_url']}", ""]
    if is_open:
        lines += [f"Pairwise against `{meta['baseline']}`, judged by `{meta['judge']}` in both orders "
                  "(first turn only); score = (wins + 0.5 ties) / n.", ""]
    else:
        lines += ["accuracy: each final answer read as a person would; strict format: only answers in the "
                  "format the prompt asked for count (docs/eval.md, Scoring).", ""]
    head = ["model", *(["score"] if is_open else ["accuracy", "strict format"]), "n", "errors", "cost USD",
            "tokens", "p50 latency s"]
    head += ["win", "tie", "loss"] if is_open else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in results.items():
        cells = [f"`{name}`", _fmt(quality(row)), *([] if is_open else [_fmt(row.get("accuracy_strict"))]),
                 str(row["n"]), str(row["errors"]), _fmt(row["cost_usd"], 6), str(row["tokens"]),
                 _fmt(row["latency_p50_s"], 2)]
        if is_open:
            cells += ["reference"] * 3 if row.get("reference") else [_fmt(row[k]) for k in ("win", "tie", "loss")]
        lines.append("| " + " | ".join(cells) + " |")
    for name, row in results.items():
        if row.get("per_round_accuracy"):
            lines += ["", f"## `{name}` by debate round", "",
                      "| round | majority of seats | best single seat | n |", "|---|---|---|---|"]
            lines += [f"| {r['round']} | {_fmt(r['majority'])} | {_fmt(r['best_seat'])} ({r['best_seat_name']}) "
                      f"| {r['n']} |" for r in row["per_round_accuracy"]]
    return "\n".join(lines) + "\n"


def plots(out: Path, results: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label = "score vs baseline" if any("score" in r for r in results.values()) else "accuracy"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, row in results.items():
        x = row["cost_usd"] / max(1, row["n"])
        ax.scatter([x], [quality(row)], s=40)
        ax.annotate(name, (x, quality(row)), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set(xlabel="cost per question (USD)", ylabel=label, title=f"{label} vs cost")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    paths = [_save(fig, out / "accuracy_vs_cost.png")]

    debates = {name: row for name, row in results.items() if row.get("per_round_accuracy")}
    if debates:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, row in debates.items():
            rounds = [r["round"] for r in row["per_round_accuracy"]]
            # The two often meet (one round of equal accuracy hid the majority): the best seat
            # is a large open square under the majority's dot, so both show at one point.
            line, = ax.plot(rounds, [r["majority"] for r in row["per_round_accuracy"]], marker="o", markersize=6,
                            zorder=3, label=f"{name}: majority of seats")
            ax.plot(rounds, [r["best_seat"] for r in row["per_round_accuracy"]], marker="s", markersize=10,
                    markerfacecolor="none", markeredgewidth=1.5, linestyle="--", color=line.get_color(), zorder=2,
                    label=f"{name}: best single seat")
            ax.axhline(quality(row), linestyle=":", color=line.get_color(), label=f"{name}: final answer")
        ax.set(xlabel="debate round", ylabel="accuracy", title="accuracy by debate round")
        ax.set_xticks(sorted({r["round"] for row in debates.values() for r in row["per_round_accuracy"]}))
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        paths.append(_save(fig, out / "accuracy_by_round.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
