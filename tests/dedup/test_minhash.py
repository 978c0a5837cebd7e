"""MinHash signatures: determinism, batching, unbiasedness, agreement with datasketch."""

from __future__ import annotations

import numpy as np
import pytest

import pipeline.dedup.minhash as M
from pipeline.dedup.hashing import fmix64, fmix64_int, splitmix64_stream
from pipeline.dedup.minhash import (
    estimate_jaccard,
    minhash_signatures,
    permutation_params,
    signatures_of_sets,
)


def test_splitmix64_known_answer():
    # published SplitMix64 outputs for seed 0 (Vigna's reference implementation)
    assert splitmix64_stream(0, 3) == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_fmix64_vector_equals_scalar():
    x = np.array([0, 1, 2**63, 2**64 - 1, 12345], dtype=np.uint64)
    assert fmix64(x).tolist() == [fmix64_int(int(v)) for v in x]
    assert fmix64_int(0) == 0


def test_permutation_params_depend_only_on_seed():
    a1 = permutation_params(16, 7)
    a2 = permutation_params(16, 7)
    a3 = permutation_params(16, 8)
    assert (a1 == a2).all() and not (a1 == a3).all()
    assert (a1 & np.uint64(1) == 1).all()
    assert a1.tolist() == [v | 1 for v in splitmix64_stream(7, 16)]


def test_signature_is_min_of_high_half_by_definition():
    rng = np.random.default_rng(0)
    sets = [rng.integers(0, 2**63, n, dtype=np.uint64) for n in (1, 5, 300)]
    sig = signatures_of_sets(sets, 8, 3)
    a = permutation_params(8, 3)
    for s, row in zip(sets, sig):
        for k in range(8):
            full = min((int(a[k]) * int(x)) % 2**64 for x in s)
            assert int(row[k]) == full >> 32


def test_batching_and_empty_documents(monkeypatch):
    rng = np.random.default_rng(1)
    counts = np.array([0, 3, 0, 0, 700, 1, 0, 2000, 5, 0], dtype=np.int64)
    h = rng.integers(0, 2**63, int(counts.sum()), dtype=np.uint64)
    a = permutation_params(32, 1)
    whole = minhash_signatures(h, counts, a)
    monkeypatch.setattr(M, "BLOCK_BYTES", 256 * 8 * 32)  # 256-shingle chunks: docs span chunks
    chunked = minhash_signatures(h, counts, a)
    assert (whole == chunked).all()
    off = np.concatenate([[0], np.cumsum(counts)])
    for i, c in enumerate(counts):
        alone = minhash_signatures(h[off[i] : off[i + 1]], np.array([c]), a)[0]
        assert (alone == whole[i]).all()
    assert (whole[counts == 0] == 0xFFFFFFFF).all()


def test_mismatched_counts_raise():
    a = permutation_params(4, 1)
    with pytest.raises(ValueError, match="counts sum"):
        minhash_signatures(np.zeros(3, np.uint64), np.array([2]), a)


@pytest.mark.parametrize("j", [0.3, 0.5, 0.7, 0.87, 0.95])
def test_estimator_is_unbiased(pairs, j):
    h, c, exact = pairs(j, 3000, 150, seed=int(j * 100))
    a = permutation_params(128, 1)
    sig = minhash_signatures(h, c, a)
    est = estimate_jaccard(sig[0::2], sig[1::2])
    assert abs(est.mean() - exact) < 0.005
    # variance of the MinHash estimator: J (1 - J) / K
    assert abs(est.var() - exact * (1 - exact) / 128) < 0.3 * exact * (1 - exact) / 128 + 1e-4


def test_agrees_with_datasketch(pairs):
    datasketch = pytest.importorskip("datasketch")
    for j in (0.5, 0.7, 0.9):
        h, c, exact = pairs(j, 500, 80, seed=int(j * 1000))
        a = permutation_params(128, 1)
        sig = minhash_signatures(h, c, a)
        ours = estimate_jaccard(sig[0::2], sig[1::2])
        off = np.concatenate([[0], np.cumsum(c)])
        template = datasketch.MinHash(num_perm=128, seed=1)
        items = [x.tobytes() for x in h]  # the same 64-bit shingle values, as 8 bytes each
        theirs = []
        for p in range(len(c) // 2):
            ms = []
            for d in (2 * p, 2 * p + 1):
                m = template.copy()
                m.update_batch(items[off[d] : off[d + 1]])
                ms.append(m)
            theirs.append(ms[0].jaccard(ms[1]))
        theirs = np.array(theirs)
        assert abs(ours.mean() - theirs.mean()) < 0.01, (j, ours.mean(), theirs.mean())
        assert abs(ours.mean() - exact) < 0.01
