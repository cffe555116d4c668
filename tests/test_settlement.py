import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chorus_litellm.core.stages.bounty import (
    Contribution,
    combine,
    judge_shares,
    largest_remainder,
    sentence_shares,
    sentences,
    split,
)

contribution = st.builds(
    Contribution,
    seat=st.text(alphabet="abcdefgh", min_size=1, max_size=4),
    model=st.just("m"),
    payee=st.just("p"),
    text=st.just("t"),
    eligible=st.booleans(),
    impact=st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
panels = st.lists(contribution, min_size=1, max_size=12, unique_by=lambda c: c.seat)
bounties = st.integers(min_value=0, max_value=10**12)


@given(bounties, panels)
def test_parts_sum_exactly_and_are_never_negative(bounty, contributions):
    result = split(bounty, contributions)
    amounts = [p.amount for p in result.payouts]
    assert sum(amounts) + result.unallocated == bounty
    assert all(p.equal >= 0 and p.impact >= 0 for p in result.payouts)
    assert result.equal_pool + result.impact_pool + result.unallocated == bounty
    ineligible = {c.seat for c in contributions if not c.eligible}
    assert all(p.amount == 0 for p in result.payouts if p.seat in ineligible)


@given(bounties, panels, st.randoms())
def test_deterministic_and_order_invariant(bounty, contributions, rnd):
    shuffled = list(contributions)
    rnd.shuffle(shuffled)
    assert split(bounty, contributions) == split(bounty, shuffled) == split(bounty, list(contributions))


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=1, max_value=10))
def test_equal_pool_is_equal_within_one_unit(bounty, n):
    contributions = [Contribution(f"s{i}", "m", "p", "t", True) for i in range(n)]
    equal = [p.equal for p in split(bounty, contributions).payouts]
    assert max(equal) - min(equal) <= 1
    assert sum(equal) == bounty * 75 // 100


def test_worked_example_and_remainder_rule():
    cs = [Contribution("b", "m", "pb", "x", True, impact=0.2), Contribution("a", "m", "pa", "y", True, impact=0.8),
          Contribution("c", "m", "pc", "z", False, reason="echo: copy")]
    result = split(1001, cs)
    assert (result.equal_pool, result.impact_pool) == (750, 251)
    got = {p.seat: (p.equal, p.impact) for p in result.payouts}
    # 251 x 0.8 = 200.8 -> 200 + the leftover unit (largest remainder .8); b: 50.2 -> 50
    assert got == {"a": (375, 201), "b": (375, 50), "c": (0, 0)}


def test_degenerate_cases():
    one = split(999, [Contribution("solo", "m", "p", "t", True)])
    assert one.payouts[0].amount == 999 and one.unallocated == 0
    zero = split(0, [Contribution("a", "m", "p", "t", True), Contribution("b", "m", "p", "t", True)])
    assert all(p.amount == 0 for p in zero.payouts)
    none = split(500, [Contribution("a", "m", "p", "t", False, reason="timeout")])
    assert none.unallocated == 500 and none.payouts[0].amount == 0
    flat = split(100, [Contribution("a", "m", "p", "t", True), Contribution("b", "m", "p", "t", True)])
    assert [p.impact for p in flat.payouts] == [13, 12]  # zero weights: impact pool equal, tie -> "a"
    with pytest.raises(ValueError):
        split(-1, [])
    assert largest_remainder(10, {}) == {}


def test_impact_from_judge_points_and_sentences():
    shares = judge_shares([("c1", ("a", "b")), ("c2", ("b",)), ("c3", ("zz",))], ["a", "b", "c"])
    assert shares == {"a": 0.5, "b": 1.5, "c": 0.0}
    answer = np.array([[1.0, 0.0], [0.0, 1.0], [0.7071, 0.7071]])
    sources = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0]), "c": np.array([-1.0, 0.0])}
    by_sentence = sentence_shares(answer, sources)
    assert by_sentence == {"a": 1.5, "b": 1.5, "c": 0.0}  # the middle sentence ties: shared
    combined = combine(shares, by_sentence)
    assert combined["b"] > combined["a"] > combined["c"] == 0.0
    assert sum(combined.values()) == pytest.approx(1.0)
    assert combine({"a": 0.0}) == {"a": 0.0}
    assert sentences("One two three. Four five six!\nok\nSeven eight nine?") == [
        "One two three.", "Four five six!", "Seven eight nine?"]
