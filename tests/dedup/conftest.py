"""Fixtures of the dedup tests: synthetic shingle-set pairs with exact Jaccard similarity."""

from __future__ import annotations

import numpy as np
import pytest


def make_pairs(
    j: float, n_pairs: int, union: int, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """`n_pairs` pairs of uint64 sets with |A & B| / |A | B| = round(j * union) / union exactly.

    Returns (hashes, counts, exact_j): hashes/counts list A_0, B_0, A_1, B_1, ... back to back.
    """
    rng = np.random.default_rng(seed)
    inter = int(round(j * union))
    da = (union - inter) // 2
    vals = rng.integers(0, np.iinfo(np.uint64).max, size=(n_pairs, union), dtype=np.uint64)
    a = vals[:, : inter + da]
    b = vals[:, da:]
    flat = np.concatenate([a, b], axis=1).ravel()
    counts = np.tile([a.shape[1], b.shape[1]], n_pairs).astype(np.int64)
    return flat, counts, inter / union


@pytest.fixture
def pairs():
    return make_pairs
