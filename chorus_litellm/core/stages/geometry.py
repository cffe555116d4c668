"""Embedding-space statistics of one debate round. Pure numpy over L2-normalized rows.

- `similarity`: the cosine matrix.
- `knn_clusters`: clusters = connected components of the k-nearest-neighbour graph,
  keeping only edges with cosine >= `link` (k = 2: each answer links to its two closest).
- `consensus_voice`: the most central answer (highest mean similarity to its cluster) of
  the largest cluster.
- `dissent_voice`: among eligible answers outside that choice, the one farthest from the
  round's centroid.
- `Projection`: a fixed 3-D view of the space for the live view's graph.
"""

from __future__ import annotations

import numpy as np


def similarity(vectors: np.ndarray) -> np.ndarray:
    return np.clip(vectors @ vectors.T, -1.0, 1.0)


def mean_pairwise(sim: np.ndarray) -> float:
    n = sim.shape[0]
    if n < 2:
        return 1.0
    return float((sim.sum() - np.trace(sim)) / (n * (n - 1)))


def centroid(vectors: np.ndarray) -> np.ndarray:
    c = vectors.mean(axis=0)
    norm = np.linalg.norm(c)
    return c / norm if norm > 0 else c


def centroid_shift(previous: np.ndarray, current: np.ndarray) -> float:
    """1 - cosine between two rounds' centroids: 0 when the debate stopped moving."""
    return float(1.0 - np.clip(centroid(previous) @ centroid(current), -1.0, 1.0))


def knn_edges(sim: np.ndarray, k: int = 2, link: float = 0.75) -> list[tuple[int, int]]:
    """Each answer's links to its `k` closest others with cosine >= `link` (i < j, once)."""
    edges = set()
    for i in range(sim.shape[0]):
        for j in [j for j in np.argsort(-sim[i]) if j != i][:k]:
            if sim[i, j] >= link:
                edges.add((min(i, int(j)), max(i, int(j))))
    return sorted(edges)


def centrality(sim: np.ndarray) -> np.ndarray:
    """Each answer's mean cosine to the others, scaled into 0..1 (1.0 for a lone answer)."""
    n = sim.shape[0]
    if n < 2:
        return np.ones(n)
    return np.clip(((sim.sum(axis=1) - np.diag(sim)) / (n - 1) + 1.0) / 2.0, 0.0, 1.0)


def knn_clusters(sim: np.ndarray, k: int = 2, link: float = 0.75) -> list[list[int]]:
    """Connected components of the symmetric kNN graph, largest first."""
    n = sim.shape[0]
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in knn_edges(sim, k, link):
        parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def consensus_voice(sim: np.ndarray, clusters: list[list[int]]) -> int:
    largest = clusters[0]
    if len(largest) == 1:  # no agreement anywhere: the most central answer overall
        largest = list(range(sim.shape[0]))
    scores = [sim[i, largest].sum() - 1.0 for i in largest]
    return largest[int(np.argmax(scores))]


def dissent_voice(vectors: np.ndarray, eligible: list[int], exclude: int) -> int | None:
    candidates = [i for i in eligible if i != exclude]
    if not candidates:
        return None
    c = centroid(vectors[eligible]) if eligible else centroid(vectors)
    return min(candidates, key=lambda i: float(vectors[i] @ c))


def own_voices(vectors: np.ndarray, eligible: list[int], me: int, dissent: bool = True) -> list[int]:
    """An agent's own neighbours among the eligible answers (never itself): the nearest,
    then (with `dissent`) the farthest; ties to the earlier answer."""
    others = [j for j in eligible if j != me]
    if not others:
        return []
    sims = [float(vectors[me] @ vectors[j]) for j in others]
    nearest = others[int(np.argmax(sims))]
    farthest = others[int(np.argmin(sims))]
    return [nearest] + ([farthest] if dissent and farthest != nearest else [])


class Projection:
    """A fixed 3-D view of embedding space: PCA fitted once (on round 1's answers); every
    later round is projected with the same basis, so earlier points keep their place.
    With fewer than 4 answers PCA has fewer than 3 directions; the basis is completed
    with fixed orthonormal ones. Coordinates stay in the embedding's own units (the rows
    are unit length): two answers are at most their chord distance sqrt(2 - 2 cos) apart
    on the map, and exactly that for up to four answers of the fitted round. A fixed
    scale, so answers that agree sit together however little the round spreads."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.mean = vectors.mean(axis=0)
        centered = vectors - self.mean
        _, strength, vt = np.linalg.svd(centered, full_matrices=False)
        basis = [v for v, s in zip(vt, strength, strict=True) if s > 1e-6][:3]
        extra = np.random.default_rng(0).standard_normal((3, vectors.shape[1]))
        for v in extra:
            if len(basis) == 3:
                break
            for b in basis:
                v = v - (v @ b) * b
            basis.append(v / np.linalg.norm(v))
        self.basis = np.stack(basis)

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        return (vectors - self.mean) @ self.basis.T
