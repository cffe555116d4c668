from chorus_litellm.core.stages.reputation import observations, select, summary
from chorus_litellm.core.stages.bounty import Contribution
from chorus_litellm.core.types import Seat


def test_observations_and_score():
    cs = [Contribution("a", "m", "pa", "t", True), Contribution("b", "m", "pb", "t", True),
          Contribution("c", "m", "pc", "", False, reason="timeout"),
          Contribution("d", "m", "pd", "t", False, reason="echo: parrot")]
    obs = observations(cs, {"a": 3.0, "b": 1.0}, {"a": 1.0, "c": 5.0})
    assert obs["pa"] == {"runs": 1, "eligible": 1, "echoes": 0, "failures": 0, "impact_ratio": 1.5, "latency_s": 1.0}
    assert obs["pc"]["failures"] == 1 and obs["pd"]["echoes"] == 1
    assert obs["pb"]["impact_ratio"] == 0.5
    strong = summary({k: v * 10 for k, v in obs["pa"].items()})
    weak = summary({k: v * 10 for k, v in obs["pd"].items()})
    assert strong["score"] == 0.75 and weak["score"] == 0.0 and weak["echo_rate"] == 1.0
    assert summary(obs["pa"])["score"] is None  # fewer than min_runs: not judged yet
    assert observations([Contribution("a", "m", "pa", "t", True)], {}, {})["pa"]["impact_ratio"] == 1.0


def test_select_orders_filters_and_keeps_the_quorum():
    seats = [Seat("a", "ma", payee="pa"), Seat("b", "mb", payee="pb"), Seat("c", "mc", payee="pc")]
    scores = {"pa": 0.2, "pb": 0.9, "pc": None}
    assert [s.name for s in select(seats, scores, order=True, min_score=None, quorum=2)] == ["c", "b", "a"]
    assert [s.name for s in select(seats, scores, order=False, min_score=0.5, quorum=2)] == ["b", "c"]
    assert [s.name for s in select(seats, {"pa": 0.1, "pb": 0.2, "pc": 0.3}, order=False, min_score=0.9,
                                   quorum=2)] == ["b", "c"]  # never below the quorum
