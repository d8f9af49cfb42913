"""Golden values for the statistics in evalsuite.metrics, worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evalsuite.metrics import (
    SparseDist,
    bootstrap_ci,
    flip_rate,
    kl_divergence_full,
    kl_divergence_sparse,
    majority_vote,
    mcnemar_exact,
    perplexity,
    same_top1,
    summarize_kld,
)


def lp(*probs: float) -> np.ndarray:
    return np.log(np.asarray(probs, dtype=np.float64))[None, :].astype(np.float32)


# -- bootstrap ------------------------------------------------------------------------------
def test_bootstrap_degenerate_cases():
    assert bootstrap_ci([1, 1, 1]) == (1.0, 1.0)
    assert bootstrap_ci([0.0]) == (0.0, 0.0)
    assert all(math.isnan(x) for x in bootstrap_ci([]))


def test_bootstrap_half_correct_matches_normal_approximation():
    # p = 0.5, n = 100: the 95% interval is p +- 1.96 * sqrt(p(1-p)/n) = [0.402, 0.598]
    lo, hi = bootstrap_ci([1, 0] * 50)
    assert lo == pytest.approx(0.402, abs=0.015) and hi == pytest.approx(0.598, abs=0.015)
    assert (lo, hi) == (0.4, 0.6)          # golden for seed 0, 2000 resamples


def test_bootstrap_is_deterministic_and_narrows_with_n():
    x = [1, 1, 0, 1, 0, 1, 1, 1, 0, 1]
    assert bootstrap_ci(x) == bootstrap_ci(x)
    w_small = np.subtract(*bootstrap_ci(x)[::-1])
    w_big = np.subtract(*bootstrap_ci(x * 16)[::-1])
    assert w_big < w_small / 3            # width ~ 1/sqrt(n): 16x the items, ~1/4 the width
    lo, hi = bootstrap_ci([1, 1, 1, 0])
    assert (lo, hi) == (0.25, 1.0)        # the resampled means are multiples of 1/4


# -- McNemar ----------------------------------------------------------------------------------
@pytest.mark.parametrize("b01,b10,p", [
    (1, 5, 2 * (1 + 6) / 64),                   # 0.21875
    (0, 6, 2 * 1 / 64),                          # 0.03125
    (3, 3, 1.0),                                 # 2 * 42/64 > 1, capped
    (0, 0, 1.0),                                 # no discordant pairs
    (2, 10, 2 * (1 + 12 + 66) / 4096),           # 0.0385742...
])
def test_mcnemar_exact_golden(b01, b10, p):
    # a wrong & b right b01 times, a right & b wrong b10 times, plus concordant pairs that must not count
    a = [0] * b01 + [1] * b10 + [1, 1, 0]
    b = [1] * b01 + [0] * b10 + [1, 1, 0]
    r = mcnemar_exact(a, b)
    assert (r["b01"], r["b10"]) == (b01, b10)
    assert r["p_value"] == pytest.approx(p, rel=1e-12)


def test_mcnemar_matches_scipy_binomtest_when_available():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for _ in range(20):
        a, b = rng.integers(0, 2, 40), rng.integers(0, 2, 40)
        r = mcnemar_exact(a, b)
        n = r["b01"] + r["b10"]
        if n:
            assert r["p_value"] == pytest.approx(stats.binomtest(r["b01"], n, 0.5).pvalue, rel=1e-9)


def test_mcnemar_and_flip_rate_reject_unpaired():
    with pytest.raises(ValueError):
        mcnemar_exact([1, 0], [1])
    with pytest.raises(ValueError):
        flip_rate(["A"], ["A", "B"])


def test_flip_rate_counts_changed_answers_right_or_wrong():
    assert flip_rate(["A", "B", "C", "D"], ["A", "C", "C", "A"]) == 0.5
    assert flip_rate([None, "B"], [None, "B"]) == 0.0
    assert math.isnan(flip_rate([], []))


# -- voting -----------------------------------------------------------------------------------
def test_majority_vote_ties_go_to_first_seen_and_none_does_not_vote():
    assert majority_vote(["B", "A", "A", "B"]) == "B"          # 2-2 tie: B was seen first
    assert majority_vote([None, None, "C", "D", "D"]) == "D"   # two Nones do not outvote D
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None
    assert majority_vote(["7", "7.0", "7"]) == "7"             # answers compare as given


# -- perplexity and KLD -------------------------------------------------------------------------
def test_perplexity_golden():
    assert perplexity([math.log(2)] * 5) == pytest.approx(2.0)
    assert perplexity([0.0, 2 * math.log(3)]) == pytest.approx(3.0)
    assert math.isnan(perplexity([]))


def test_kld_full_hand_made():
    # KL([.5,.5] || [.25,.75]) = .5 ln 2 + .5 ln(2/3) = 0.1438410362
    assert kl_divergence_full(lp(0.5, 0.5), lp(0.25, 0.75))[0] == pytest.approx(0.1438410362, abs=1e-6)
    assert kl_divergence_full(lp(0.2, 0.3, 0.5), lp(0.2, 0.3, 0.5))[0] == pytest.approx(0.0, abs=1e-7)


def test_sparse_nucleus_keeps_tokens_up_to_mass_in_descending_order():
    d = SparseDist.from_logprobs(np.concatenate([lp(0.1, 0.7, 0.2), lp(0.3, 0.3, 0.4)]), mass=0.85)
    # row 0: 0.7 (< .85) then 0.2 (reaches .9): 2 tokens; row 1: .4, .3 (=.7 < .85), .3: 3 tokens
    assert d.offsets.tolist() == [0, 2, 5]
    assert d.ids[:2].tolist() == [1, 2] and d.ids[2] == 2
    assert d.top1().tolist() == [1, 2]
    assert d.rows().tolist() == [0, 0, 1, 1, 1]
    assert len(SparseDist.from_logprobs(lp(0.1, 0.7, 0.2), mass=0.99, max_k=1).ids) == 1


def test_sparse_kld_exact_when_the_rest_is_one_token():
    # P = [.7, .2, .1] with nucleus {.7, .2}, Q = [.5, .3, .2]:
    # .7 ln(.7/.5) + .2 ln(.2/.3) + .1 ln(.1/.2) = 0.2355304 - 0.0810930 - 0.0693147 = 0.0851227
    p, q = lp(0.7, 0.2, 0.1), lp(0.5, 0.3, 0.2)
    ref = SparseDist.from_logprobs(p, mass=0.85)
    assert len(ref.ids) == 2
    assert kl_divergence_sparse(ref, q)[0] == pytest.approx(0.0851227, abs=1e-6)
    assert kl_divergence_full(p, q)[0] == pytest.approx(0.0851227, abs=1e-6)


def test_sparse_kld_is_a_lower_bound_and_exact_with_the_whole_mass():
    # P = [.7, .2, .05, .05], Q = [.5, .3, .15, .05]: exact = .2355304 - .0810930 + .05 ln(1/3) + .05 ln 1 = 0.0995068
    p, q = lp(0.7, 0.2, 0.05, 0.05), lp(0.5, 0.3, 0.15, 0.05)
    exact = kl_divergence_full(p, q)[0]
    assert exact == pytest.approx(0.1544374 - 0.0549306, abs=1e-6)
    lumped = kl_divergence_sparse(SparseDist.from_logprobs(p, mass=0.85), q)[0]
    assert lumped == pytest.approx(0.0851227, abs=1e-6)      # rest .1 vs .2, one bucket
    assert lumped <= exact
    assert kl_divergence_sparse(SparseDist.from_logprobs(p, mass=1.0), q)[0] == pytest.approx(exact, abs=1e-6)


def test_sparse_kld_on_quantization_like_noise_tracks_the_exact_value():
    # a "variant" = the reference's logits plus noise, over a 2,000-token vocabulary
    from evalsuite.metrics import log_softmax

    rng = np.random.default_rng(0)
    z = rng.standard_normal((32, 2000)) * 3
    p, q = log_softmax(z), log_softmax(z + rng.standard_normal(z.shape) * 0.5)
    exact = kl_divergence_full(p, q)
    ref = SparseDist.from_logprobs(p, mass=0.999)
    approx = kl_divergence_sparse(ref, q)
    assert len(ref.ids) < 0.6 * p.size                     # compact: about half the entries here
    assert np.all(approx <= exact + 1e-6)                  # log-sum inequality: a lower bound
    assert np.all(np.abs(approx - exact) / exact < 0.02)   # and within 2% at every position


def test_same_top1_and_kld_summary():
    p = np.concatenate([lp(0.6, 0.4), lp(0.3, 0.7)])
    q = np.concatenate([lp(0.9, 0.1), lp(0.8, 0.2)])
    assert same_top1(SparseDist.from_logprobs(p), q).tolist() == [True, False]
    s = summarize_kld(np.array([0.0, 0.1, 0.2, 0.3]))
    assert s["kld_mean"] == pytest.approx(0.15) and s["kld_median"] == pytest.approx(0.15)
    assert s["kld_max"] == pytest.approx(0.3) and s["kld_se"] == pytest.approx(np.std([0, .1, .2, .3], ddof=1) / 2)
    assert math.isnan(summarize_kld(np.array([]))["kld_mean"])
