import numpy as np

from chorus_litellm.core.stages import geometry


def unit(*rows):
    v = np.array(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_clusters_consensus_and_dissent():
    v = unit([1, 0, 0], [0.95, 0.1, 0], [0.9, 0.2, 0], [0, 0, 1])
    sim = geometry.similarity(v)
    clusters = geometry.knn_clusters(sim, k=2, link=0.75)
    assert clusters == [[0, 1, 2], [3]]
    assert geometry.consensus_voice(sim, clusters) == 1  # the middle of the big cluster
    assert geometry.dissent_voice(v, [0, 1, 2, 3], exclude=1) == 3


def test_agreement_and_shift():
    same = unit([1, 0], [1, 0.01])
    apart = unit([1, 0], [0, 1])
    assert geometry.mean_pairwise(geometry.similarity(same)) > 0.99
    assert abs(geometry.mean_pairwise(geometry.similarity(apart))) < 1e-6
    assert geometry.centroid_shift(same, same) < 1e-6
    assert geometry.centroid_shift(unit([1, 0]), unit([0, 1])) > 0.99
    assert geometry.mean_pairwise(geometry.similarity(unit([1, 0]))) == 1.0


def test_no_cluster_falls_back_to_most_central():
    v = unit([1, 0, 0], [0, 1, 0], [0.6, 0.6, 0])
    sim = geometry.similarity(v)
    clusters = geometry.knn_clusters(sim, link=0.99)
    assert all(len(c) == 1 for c in clusters)
    assert geometry.consensus_voice(sim, clusters) == 2
