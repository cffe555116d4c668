"""Reputation: a running score per payee from what its seats contributed.

A marketplace peer's seats count toward the peer itself (its key id), not its payee:
one payee may run a good machine and a bad one. Counters per payee (or peer), summed
over runs: runs, eligible (answer used), echoes (filtered by the watchdog), failures
(error, timeout, cancelled), impact_ratio (the seat's share of the judge's surviving
claims times the number of eligible seats: 1.0 is a fair share),
latency_s. The score in [0, 1]:

    score = (eligible / runs) x min(1, mean impact_ratio / 2)

so a payee that always answers, never echoes and carries twice its fair share of the
surviving claims scores 1; one that fails or parrots half the time scores at most 0.5.
Payees with fewer than `min_runs` observations are not judged (score None).
"""

from __future__ import annotations


def observations(contributions: list, impact: dict[str, float], latencies: dict[str, float]) -> dict[str, dict]:
    """One run's counter deltas per payee (or peer). `contributions`: settlement.Contribution list."""
    eligible = [c for c in contributions if c.eligible]
    total = sum(impact.get(c.seat, 0.0) for c in eligible)
    out: dict[str, dict[str, float]] = {}
    for c in contributions:
        d = out.setdefault(c.peer or c.payee, {"runs": 0.0, "eligible": 0.0, "echoes": 0.0, "failures": 0.0,
                                     "impact_ratio": 0.0, "latency_s": 0.0})
        d["runs"] += 1
        d["latency_s"] += latencies.get(c.seat, 0.0)
        if c.eligible:
            d["eligible"] += 1
            share = impact.get(c.seat, 0.0) / total if total else 1.0 / len(eligible)
            d["impact_ratio"] += share * len(eligible)
        elif (c.reason or "").startswith("echo"):
            d["echoes"] += 1
        else:
            d["failures"] += 1
    return out


def summary(counters: dict[str, float], min_runs: int = 5) -> dict:
    runs = counters.get("runs", 0.0)
    eligible = counters.get("eligible", 0.0)
    stats = {
        "runs": int(runs),
        "echo_rate": round(counters.get("echoes", 0.0) / runs, 4) if runs else None,
        "failure_rate": round(counters.get("failures", 0.0) / runs, 4) if runs else None,
        "impact_ratio": round(counters.get("impact_ratio", 0.0) / eligible, 4) if eligible else None,
        "latency_s": round(counters.get("latency_s", 0.0) / runs, 4) if runs else None,
    }
    stats["score"] = (
        round((eligible / runs) * min(1.0, (stats["impact_ratio"] or 0.0) / 2), 4) if runs >= min_runs else None
    )
    return stats


def select(seats: list, scores: dict[str, float | None], *, order: bool, min_score: float | None,
           quorum: int) -> list:
    """Seats ordered and/or filtered by their payee's score. Unjudged payees stay; never
    fewer seats than the quorum (the best-scoring ones are kept)."""
    def score(seat) -> float:
        value = scores.get(seat.scored_as)
        return 1.0 if value is None else value  # benefit of the doubt until judged

    ranked = sorted(seats, key=lambda s: -score(s)) if order else list(seats)
    if min_score is None:
        return ranked
    kept = [s for s in ranked if scores.get(s.scored_as) is None or score(s) >= min_score]
    if len(kept) < quorum:
        best = sorted(seats, key=lambda s: -score(s))[:quorum]
        kept = [s for s in ranked if s in best]
    return kept
