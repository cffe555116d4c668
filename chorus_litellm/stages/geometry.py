"""Embedding-space statistics of one debate round. Pure numpy over L2-normalized rows.

- `similarity`: the cosine matrix.
- `knn_clusters`: clusters = connected components of the k-nearest-neighbour graph,
  keeping only edges with cosine >= `link` (k = 2: each answer links to its two closest).
- `consensus_voice`: the most central answer (highest mean similarity to its cluster) of
  the largest cluster.
- `dissent_voice`: among eligible answers outside that choice, the one farthest from the
  round's centroid.
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


def knn_clusters(sim: np.ndarray, k: int = 2, link: float = 0.75) -> list[list[int]]:
    """Connected components of the symmetric kNN graph, largest first."""
    n = sim.shape[0]
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        others = [j for j in np.argsort(-sim[i]) if j != i][:k]
        for j in others:
            if sim[i, j] >= link:
                parent[find(i)] = find(int(j))
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
