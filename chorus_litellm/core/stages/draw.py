"""Pool seats: which live peers of a marketplace pool sit on this run's panel, as whom.

A profile with `panel.pool` gets `panel.seats` seats per run from the pool's live peers
(market/sync.py knows which are live and answered their probe). Pure: the peers,
their scores and the run's random source come in; seats go out.

Order (`panel.select`):
- `reputation`: a share `reputation.explore` of the seats (at least one) goes first to
  new peers (fewer than `reputation.min_runs` runs: no score yet), so they earn one;
  then judged peers, best score first, those under `reputation.min_score` left out;
  then any remaining new peers. Ties are broken at random.
- `random`: a fresh shuffle per run.
- `cheapest`: lowest `price_per_token` first (free peers count as 0), ties at random.

Seats: one per peer (`panel.seats_per_peer` allows more, never beyond the peer's own
`max_concurrency`), in that order, until `panel.seats` are filled.

Personas (`panel.personas`), from the profile's personas (else the built-ins), only ones
the peer accepts (it lists them at registration; none listed: any):
- `rotate`: seat i gets persona i mod n, or the next one it accepts that no seat has yet;
- `hash`: a peer keeps the persona its id hashes to (or the next one it accepts), in
  every run, so two peers may share one;
- `off`: no persona.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

from ...market import peers
from ..config import PanelConfig
from ..types import Seat


@dataclass(frozen=True)
class Draw:
    """The seats drawn, and what the pool had to offer (for a clear 503)."""

    seats: tuple[Seat, ...]
    live: int  # live peers that answered their probe
    below_floor: int  # of which left out under reputation.min_score


def order(offers: list[dict], config: PanelConfig, scores: dict[str, float | None],
          rng: random.Random) -> tuple[list[dict], int]:
    """The peers in seating order, and how many fell under the reputation floor."""
    shuffled = list(offers)
    rng.shuffle(shuffled)  # ties at random: stable sorts below keep this order
    if config.select == "random":
        return shuffled, 0
    if config.select == "cheapest":
        return sorted(shuffled, key=lambda o: o.get("price_per_token") or 0.0), 0
    rep = config.reputation
    new = [o for o in shuffled if scores.get(o["peer_id"]) is None]
    judged = [o for o in shuffled if scores.get(o["peer_id"]) is not None]
    known = {o["peer_id"]: float(scores[o["peer_id"]] or 0.0) for o in judged}
    kept = [o for o in judged if rep.min_score is None or known[o["peer_id"]] >= rep.min_score]
    kept.sort(key=lambda o: -known[o["peer_id"]])
    explore = min(len(new), max(1, math.ceil(rep.explore * config.seats))) if rep.explore > 0 else 0
    return new[:explore] + kept + new[explore:], len(judged) - len(kept)


def persona_for(record: dict, names: list[str], start: int, taken: set[str]) -> str | None:
    """The first persona from `start` (cyclically) the peer accepts, preferring untaken ones."""
    if not names:
        return None
    accepted = set(record.get("personas") or names)
    cycle = [names[(start + k) % len(names)] for k in range(len(names))]
    ok = [p for p in cycle if p in accepted]
    return next((p for p in ok if p not in taken), ok[0] if ok else None)


def _short(peer_id: str) -> str:
    return peer_id.partition(":")[2][:8] or peer_id[:8]


def draw(offers: list[dict], config: PanelConfig, scores: dict[str, float | None], personas: list[str],
         rng: random.Random, taken_names: set[str] | frozenset[str] = frozenset()) -> Draw:
    """`config.seats` seats from the live peers' registrations (`offers`)."""
    ranked, below = order(offers, config, scores, rng)
    picked: list[dict] = []
    for turn in range(config.seats_per_peer):
        picked += [o for o in ranked if turn < o.get("max_concurrency", 1)]
    picked = picked[:config.seats]
    seats, names, used = [], set(taken_names), set[str]()
    for i, record in enumerate(picked):
        if config.personas == "off":
            persona = None
        else:
            if config.personas == "rotate":
                persona = persona_for(record, personas, i, used)
            else:  # stable per peer, whoever else is seated
                start = int(hashlib.sha256(record["peer_id"].encode()).hexdigest(), 16) % max(1, len(personas))
                persona = persona_for(record, personas, start, set())
        if persona is not None:
            used.add(persona)
        name, n = f"{record['model']}@{_short(record['peer_id'])}", 1
        while name in names:
            n += 1
            name = f"{record['model']}@{_short(record['peer_id'])}#{n}"
        names.add(name)
        seats.append(Seat(name, peers.model_name(record["peer_id"]), None, persona, record["payee"],
                          record["peer_id"]))
    return Draw(tuple(seats), len(offers), below)
