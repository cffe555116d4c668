"""Settlement: split a bounty among the contributions, and describe it in a receipt.

Formula `chorus-split/1`, in integer minor units (cents for USD):
- 75% of the bounty (rounded down) is the equal pool, split equally among eligible
  contributions; the rest is the impact pool, split by impact weight.
- Eligible: an answer that was used (not an error, timeout, or an echo the watchdog
  filtered).
- Each pool is split by the largest-remainder method: everyone gets the floor of their
  exact share; leftover units go one each to the largest fractional remainders, ties to
  the lowest seat name. The parts are never negative and always sum to the bounty.
- Degenerate cases: a zero bounty pays nothing; a single eligible contribution gets the
  whole bounty; no eligible contribution pays nothing and the whole bounty is
  `unallocated` (returned to the payer); all impact weights zero splits the impact pool
  equally.
Impact is claim-level: the judge's per-point source labels (consensus points and unique
insights that survive into the answer), cross-checked by embedding similarity between
the answer's sentences and each source. Pure: no clock, keys or I/O here.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

FORMULA_VERSION = "chorus-split/1"
EQUAL_PERCENT = 75
# ISO 4217 codes accepted for bounties, with their minor-unit exponent.
CURRENCIES = {
    "USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "CAD": 2, "AUD": 2, "NZD": 2, "JPY": 0, "CNY": 2,
    "HKD": 2, "SGD": 2, "INR": 2, "KRW": 0, "BRL": 2, "MXN": 2, "ZAR": 2, "SEK": 2, "NOK": 2,
    "DKK": 2, "PLN": 2, "CZK": 2, "HUF": 2, "ILS": 2, "TRY": 2, "AED": 2, "SAR": 2,
}
# A sentence of the answer credits the source it is closest to, if at least this close
# (MiniLM: paraphrases ~0.9+, on-topic but different claims ~0.5).
SENTENCE_MATCH = 0.6


@dataclass(frozen=True)
class Contribution:
    seat: str
    model: str
    payee: str
    text: str
    eligible: bool
    reason: str | None = None  # why not eligible
    impact: float = 0.0
    peer: str | None = None  # the marketplace peer's key id, for a pool seat


@dataclass(frozen=True)
class Payout:
    seat: str
    payee: str
    equal: int
    impact: int

    @property
    def amount(self) -> int:
        return self.equal + self.impact


@dataclass(frozen=True)
class Split:
    payouts: tuple[Payout, ...]
    equal_pool: int
    impact_pool: int
    unallocated: int


def largest_remainder(pool: int, weights: dict[str, Fraction]) -> dict[str, int]:
    """Integer parts of `pool` proportional to `weights`, summing exactly to `pool`."""
    total = sum(weights.values())
    if pool == 0 or not weights:
        return dict.fromkeys(weights, 0)
    if total == 0:
        weights, total = dict.fromkeys(weights, Fraction(1)), Fraction(len(weights))
    exact = {k: pool * w / total for k, w in weights.items()}
    parts = {k: int(v) for k, v in exact.items()}  # floor: all values are >= 0
    leftover = pool - sum(parts.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - parts[k]), k))[:leftover]:
        parts[k] += 1
    return parts


def split(bounty: int, contributions: list[Contribution]) -> Split:
    if bounty < 0:
        raise ValueError("bounty must be >= 0")
    eligible = sorted((c for c in contributions if c.eligible), key=lambda c: c.seat)
    if not eligible:
        zero = tuple(Payout(c.seat, c.payee, 0, 0) for c in sorted(contributions, key=lambda c: c.seat))
        return Split(zero, 0, 0, bounty)
    equal_pool = bounty * EQUAL_PERCENT // 100
    impact_pool = bounty - equal_pool
    equal = largest_remainder(equal_pool, {c.seat: Fraction(1) for c in eligible})
    impact = largest_remainder(
        impact_pool, {c.seat: Fraction(max(0.0, c.impact)).limit_denominator(10**9) for c in eligible}
    )
    payouts = tuple(
        Payout(c.seat, c.payee, equal.get(c.seat, 0), impact.get(c.seat, 0))
        for c in sorted(contributions, key=lambda c: c.seat)
    )
    return Split(payouts, equal_pool, impact_pool, 0)


def judge_shares(points: list[tuple[str, tuple[str, ...]]], seats: list[str]) -> dict[str, float]:
    """Each surviving claim is worth 1, shared by the answers that support it."""
    shares = dict.fromkeys(seats, 0.0)
    for _claim, support in points:
        backers = [s for s in support if s in shares]
        for s in backers:
            shares[s] += 1.0 / len(backers)
    return shares


def sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+|\n+", text)
    return [p.strip() for p in parts if len(p.strip().split()) >= 3]


def chunks(text: str, words: int = 60) -> list[str]:
    """A source answer cut into runs of whole sentences of about `words` words, so its
    later sentences are embedded too (an embedding model reads only its first ~128
    tokens) while a long answer stays a handful of texts."""
    out: list[str] = []
    for sentence in sentences(text) or [text]:
        if out and len(out[-1].split()) + len(sentence.split()) <= words:
            out[-1] += " " + sentence
        else:
            out.append(sentence)
    return out


def sentence_shares(answer_vecs: np.ndarray, source_vecs: dict[str, np.ndarray]) -> dict[str, float]:
    """Each answer sentence credits its closest source (>= SENTENCE_MATCH); ties share.
    A source is one vector or several (its chunks): its closest chunk counts."""
    shares = dict.fromkeys(source_vecs, 0.0)
    if not len(answer_vecs) or not source_vecs:
        return shares
    names = list(source_vecs)
    sims = np.stack([(answer_vecs @ np.atleast_2d(source_vecs[n]).T).max(axis=1) for n in names], axis=1)
    for row in sims:
        best = row.max()
        if best < SENTENCE_MATCH:
            continue
        winners = [names[j] for j in np.flatnonzero(np.isclose(row, best))]
        for w in winners:
            shares[w] += 1.0 / len(winners)
    return shares


def combine(*shares: dict[str, float]) -> dict[str, float]:
    """Average of the normalized share maps that carry any signal."""
    useful = [s for s in shares if sum(s.values()) > 0]
    keys = set().union(*shares) if shares else set()
    if not useful:
        return dict.fromkeys(keys, 0.0)
    return {k: sum(s.get(k, 0.0) / sum(s.values()) for s in useful) / len(useful) for k in keys}


def sha256(value: str | bytes) -> str:
    data = value.encode() if isinstance(value, str) else value
    return "sha256:" + hashlib.sha256(data).hexdigest()


def request_hash(messages: list[dict]) -> str:
    return sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":")))


def idempotency_hash(profile: str, messages: list[dict], bounty: tuple[int, str] | None) -> str:
    """What a `debate_id` promises to answer: the same profile, conversation and bounty."""
    return sha256(json.dumps({"profile": profile, "messages": messages, "bounty": bounty}, sort_keys=True,
                             ensure_ascii=False, separators=(",", ":")))


def receipt_payload(
    *, receipt_id: str, debate_id: str, issued_at: str, profile: str, messages: list[dict], answer: str,
    contributions: list[Contribution], result: Split, bounty: int, currency: str, rounds: int,
    embedding_model: str | None, key_id: str, profile_version: int | None = None,
) -> dict:
    """The signed content of a receipt: everything needed to recompute the split, and
    the version of the profile that ran (`profile_version`, when given: 0 for a config-file
    profile, a stored profile's version otherwise)."""
    paid = {p.seat: p for p in result.payouts}
    version = {} if profile_version is None else {"profile_version": profile_version}
    return {
        "receipt_id": receipt_id,
        "debate_id": debate_id,
        "issued_at": issued_at,
        "profile": profile,
        **version,
        "request_hash": request_hash(messages),
        "answer_hash": sha256(answer),
        "bounty": {"amount": bounty, "currency": currency},
        "formula_version": FORMULA_VERSION,
        "equal_percent": EQUAL_PERCENT,
        "equal_pool": result.equal_pool,
        "impact_pool": result.impact_pool,
        "unallocated": result.unallocated,
        "rounds": rounds,
        "embedding_model": embedding_model,
        "contributions": [
            {"seat": c.seat, "model": c.model, "payee": c.payee, "contribution_hash": sha256(c.text),
             "eligible": c.eligible, "ineligible_reason": c.reason,
             # impact weights as exact fractions ("4/5"): canonical JSON has no float ambiguity
             "impact_weight": format(Fraction(max(0.0, c.impact)).limit_denominator(10**9), ""),
             "equal_amount": paid[c.seat].equal, "impact_amount": paid[c.seat].impact,
             "amount": paid[c.seat].amount,
             # a pool seat names its peer's key id, so the peer can find and verify its pay
             **({"peer_id": c.peer} if c.peer else {})}
            for c in sorted(contributions, key=lambda c: c.seat)
        ],
        "key_id": key_id,
    }
