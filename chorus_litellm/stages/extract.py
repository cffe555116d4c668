"""Extract a final answer that can be voted on: a number, an option letter, or yes/no.

Open-ended answers extract to None and are synthesized, not voted (evidence: voting
explains most of debate's gain on answers with an extractable form).
"""

from __future__ import annotations

import re
from collections import defaultdict

FINAL = re.compile(
    r"(?:final answer|answer)\s*(?:is|:)\s*\**\s*\(?(-?\d+(?:\.\d+)?(?![\d.]*\w)|[^\n.;,)*]+)", re.IGNORECASE
)
NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
OPTION = re.compile(r"^\(?([A-Ea-e])\)?$")
CONFIDENCE = re.compile(r"confidence\s*[:=]?\s*(\d+(?:\.\d+)?)\s*(%)?", re.IGNORECASE)


def extract(text: str) -> str | None:
    """'42', 'B', 'yes' / 'no', or None."""
    match = FINAL.search(text)
    if not match:
        return None
    value = match.group(1).strip().strip("*\"' ").rstrip(".")
    if NUMBER.match(value):
        return value.rstrip("0").rstrip(".") if "." in value else value
    if m := OPTION.match(value):
        return m.group(1).upper()
    lowered = value.lower()
    if lowered in ("yes", "no", "true", "false"):
        return {"true": "yes", "false": "no"}.get(lowered, lowered)
    return None


def confidence(text: str) -> float:
    """The agent's stated confidence in [0, 1]; 1.0 if it states none."""
    match = CONFIDENCE.search(text)
    if not match:
        return 1.0
    value = float(match.group(1))
    if match.group(2) or value > 1:
        value /= 100
    return min(1.0, max(0.0, value))


def weighted_vote(answers: list[tuple[str | None, float]]) -> tuple[str | None, float]:
    """(winner, its share of the confidence weight) over extractable answers."""
    weights: dict[str, float] = defaultdict(float)
    for value, weight in answers:
        if value is not None:
            weights[value] += weight
    total = sum(weights.values())
    if not total:
        return None, 0.0
    winner = max(sorted(weights), key=lambda v: weights[v])
    return winner, weights[winner] / total


def panel_vote(texts: list[str]) -> dict | None:
    """The decision rule for answers with an extractable form (a number, an option, yes
    or no), in every protocol: the confidence-weighted vote over the answers that carry
    one, or None when fewer than two do (open-ended answers are synthesized, not voted)."""
    cast = [(extract(t), confidence(t)) for t in texts]
    voters = [c for c in cast if c[0] is not None]
    if len(voters) < 2:
        return None
    winner, share = weighted_vote(voters)
    return {"answer": winner, "share": round(share, 4), "voters": len(voters), "answers": len(texts)}
