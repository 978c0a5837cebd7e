"""LSH: band choice, S-curve (empirical vs theory), band keys."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from pipeline.dedup.lsh import (
    band_keys,
    candidate_probability,
    expected_recall,
    optimal_bands_rows,
    s_curve,
    verification_pass_probability,
)
from pipeline.dedup.minhash import minhash_signatures, permutation_params


@pytest.mark.parametrize(
    "threshold,num_perm,expected",
    # datasketch.lsh._optimal_param(t, K, 0.5, 0.5) for the same arguments
    [(0.87, 128, (7, 18)), (0.5, 128, (25, 5)), (0.8, 256, (17, 15)), (0.7, 64, (8, 8))],
)
def test_optimiser_matches_datasketch_choice(threshold, num_perm, expected):
    assert optimal_bands_rows(threshold, num_perm, 0.5, 0.5) == expected


def test_recall_first_weights_used_by_the_preset():
    b, r = optimal_bands_rows(0.87, 128, 0.01, 0.99)
    assert (b, r) == (14, 9)
    assert candidate_probability(0.87, b, r) > 0.99


def test_s_curve_and_expected_recall_values():
    curve = s_curve(14, 9)
    assert [j for j, _ in curve] == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert curve[0][1] == pytest.approx(1 - (1 - 0.5**9) ** 14, abs=1e-6)
    ps = [p for _, p in curve]
    assert ps == sorted(ps)
    rec = expected_recall(0.87, 14, 9)
    assert rec["at_threshold"] == pytest.approx(1 - (1 - 0.87**9) ** 14, abs=1e-6)
    assert rec["at_threshold"] < rec["mean_above_threshold"] <= 1
    rec = expected_recall(0.87, 14, 9, 128, 0.84)
    # P(Binomial(128, 0.87) >= 108) (108 = ceil(0.84 * 128)) times P(candidate)
    tail = sum(comb(128, m) * 0.87**m * 0.13 ** (128 - m) for m in range(108, 129))
    assert rec["with_verification_at_threshold"] == pytest.approx(
        tail * rec["at_threshold"], abs=1e-6
    )
    assert verification_pass_probability(0.5, 128, 1.0) == pytest.approx(0.5**128)


def test_empirical_candidate_rate_follows_s_curve(pairs):
    a = permutation_params(128, 1)
    for j in (0.5, 0.7, 0.8, 0.9, 0.95):
        h, c, exact = pairs(j, 2500, 120, seed=int(j * 100))
        sig = minhash_signatures(h, c, a)
        for bands, rows in ((14, 9), (7, 18), (32, 4)):
            keys = band_keys(sig, bands, rows)
            candidate = (keys[0::2] == keys[1::2]).any(axis=1)
            theory = candidate_probability(exact, bands, rows)
            assert abs(candidate.mean() - theory) <= 0.03, (
                j,
                bands,
                rows,
                candidate.mean(),
                theory,
            )


def test_band_keys_identify_equal_bands_only():
    rng = np.random.default_rng(2)
    sig = rng.integers(0, 2**32, size=(4, 12), dtype=np.uint32)
    sig[1] = sig[0]
    sig[2, :4] = sig[0, :4]  # same first band only
    sig[3, 4:8] = sig[0, :4]  # band 0's values in band 1's position: a different bucket
    k = band_keys(sig, 3, 4)
    assert k.shape == (4, 3)
    assert (k[1] == k[0]).all()
    assert k[2, 0] == k[0, 0] and (k[2, 1:] != k[0, 1:]).all()
    assert k[3, 1] != k[0, 0]
    assert band_keys(sig, 3, 4).tolist() == k.tolist()
