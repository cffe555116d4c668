"""Where the answers sit: one round's layout in embedding space, and the live view's map
of every answer of every round so far. Pure numpy over L2-normalized rows.

- `layout(vectors, eligible)`: the round's similarity, kNN clusters, consensus and
  dissent voices and agreement (what the debate decides with, and the graph shows);
- `Atlas`: accumulates rounds and returns the `round_done` event's `links` and `points`,
  projected with one `geometry.Projection` fitted on the first round, so earlier
  points never move when a later round arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import geometry


@dataclass(frozen=True)
class Layout:
    eligible: list[int]  # positions of the answers that count (not filtered as echoes)
    sim: np.ndarray  # cosine matrix among the eligible answers
    clusters: list[list[int]]  # positions into `eligible`, largest first
    consensus: int  # position into the round's answers
    dissent: int | None
    agreement: float


def layout(vectors: np.ndarray, eligible: list[int], *, link: float, dissent: bool = True) -> Layout:
    sim = geometry.similarity(vectors[eligible])
    clusters = geometry.knn_clusters(sim, link=link)
    consensus = eligible[geometry.consensus_voice(sim, clusters)]
    voice = geometry.dissent_voice(vectors, eligible, consensus) if dissent else None
    return Layout(eligible, sim, clusters, consensus, voice, geometry.mean_pairwise(sim))


@dataclass
class Atlas:
    link: float = 0.75
    projection: geometry.Projection | None = None
    points: list[dict] = field(default_factory=list)

    def add(self, round_no: int, names: list[str], vectors: np.ndarray, lay: Layout) -> dict:
        """This round's `links` ([seat, seat, cosine]) and every round's `points`."""
        if self.projection is None:
            self.projection = geometry.Projection(vectors)
        xyz = self.projection(vectors)
        cluster_of = {lay.eligible[p]: c for c, members in enumerate(lay.clusters) for p in members}
        central = dict(zip(lay.eligible, geometry.centrality(lay.sim), strict=True))
        voices = {lay.consensus: "consensus", **({lay.dissent: "dissent"} if lay.dissent is not None else {})}
        for i, name in enumerate(names):
            x, y, z = (round(float(v), 4) for v in xyz[i])
            self.points.append({"seat": name, "round": round_no, "x": x, "y": y, "z": z,
                                "cluster": cluster_of.get(i, -1), "centrality": round(float(central.get(i, 0.0)), 4),
                                "voice": voices.get(i), "echo": i not in central})
        links = [[names[lay.eligible[a]], names[lay.eligible[b]], round(float(lay.sim[a, b]), 4)]
                 for a, b in geometry.knn_edges(lay.sim, link=self.link)]
        return {"links": links, "points": list(self.points)}
