"""Pareto-front maths (reports/frontier.py) against the brute-force definition."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reports.frontier import (dominates, is_missing, pareto_brute_force, pareto_indices, pareto_mask,
                              step_line)

NAN = float("nan")


@pytest.mark.parametrize("higher", [True, False])
@pytest.mark.parametrize("seed", range(40))
def test_matches_brute_force_on_random_points(seed, higher):
    rng = random.Random(seed)
    n = rng.randint(0, 60)
    # a small integer grid forces many ties and equal sizes; some points go missing
    xs = [rng.choice([None, NAN]) if rng.random() < 0.1 else rng.randint(1, 12) for _ in range(n)]
    ys = [rng.choice([None, NAN]) if rng.random() < 0.1 else rng.randint(0, 9) / 9 for _ in range(n)]
    assert pareto_mask(xs, ys, higher) == pareto_brute_force(xs, ys, higher)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.just(NAN), st.floats(min_value=0, max_value=1e12),
                                    st.sampled_from([1.0, 2.0, 3.0])),
                          st.one_of(st.none(), st.just(NAN), st.floats(min_value=-1e6, max_value=1e6),
                                    st.sampled_from([0.25, 0.5, 0.75]))),
                max_size=40),
       st.booleans())
def test_matches_brute_force_property(points, higher):
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    assert pareto_mask(xs, ys, higher) == pareto_brute_force(xs, ys, higher)


def test_front_is_nonempty_and_undominated_when_any_point_is_valid():
    rng = random.Random(7)
    xs = [rng.random() for _ in range(200)]
    ys = [rng.random() for _ in range(200)]
    mask = pareto_mask(xs, ys)
    front = [i for i, m in enumerate(mask) if m]
    assert front
    for i in front:
        assert not any(dominates((xs[j], ys[j]), (xs[i], ys[i])) for j in range(200))
    # the smallest point and the best point are always on it
    assert mask[min(range(200), key=lambda i: (xs[i], -ys[i]))]
    assert mask[max(range(200), key=lambda i: (ys[i], -xs[i]))]


def test_exact_duplicates_both_stay_on_the_front():
    assert pareto_mask([1, 1, 2], [0.5, 0.5, 0.9]) == [True, True, True]
    assert pareto_mask([1, 1, 2], [0.5, 0.5, 0.4]) == [True, True, False]


def test_equal_sizes_keep_only_the_best_quality():
    assert pareto_mask([5, 5, 5], [0.2, 0.7, 0.4]) == [False, True, False]
    # ...and the worse ones do not shadow a larger, better point
    assert pareto_mask([5, 5, 9], [0.2, 0.7, 0.8]) == [False, True, True]


def test_equal_quality_larger_is_dominated():
    assert pareto_mask([1, 2, 3], [0.5, 0.5, 0.5]) == [True, False, False]


def test_lower_is_better_for_perplexity_and_kld():
    sizes = [100, 200, 300, 400]
    ppl = [30.0, 20.0, 25.0, 19.0]
    assert pareto_mask(sizes, ppl, higher_is_better=False) == [True, True, False, True]
    assert pareto_mask(sizes, ppl, higher_is_better=True) == [True, False, False, False]


def test_missing_values_are_skipped_and_never_dominate():
    xs = [1, None, 3, NAN, 5, "n/a"]
    ys = [0.1, 0.99, None, 0.99, 0.5, 0.9]
    assert pareto_mask(xs, ys) == [True, False, False, False, True, False]
    assert pareto_mask([None, NAN], [1, 2]) == [False, False]
    assert pareto_mask([], []) == []


def test_is_missing():
    assert is_missing(None) and is_missing(NAN) and is_missing("x") and is_missing(object())
    assert not is_missing(0) and not is_missing(0.0) and not is_missing("1.5") and not is_missing(math.inf)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        pareto_mask([1, 2], [1])


def test_indices_sorted_by_size():
    xs = [300, 100, 200, 50]
    ys = [0.9, 0.6, 0.8, 0.1]
    assert pareto_indices(xs, ys) == [3, 1, 2, 0]


def test_step_line_goes_across_then_up():
    lx, ly = step_line([1, 2, 4], [0.2, 0.5, 0.4])
    assert (lx, ly) == ([1.0, 2.0, 2.0], [0.2, 0.2, 0.5])
    lx, ly = step_line([1, 2], [30.0, 20.0], higher_is_better=False)
    assert (lx, ly) == ([1.0, 2.0, 2.0], [30.0, 30.0, 20.0])
    assert step_line([], []) == ([], [])
