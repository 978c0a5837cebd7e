"""`pipeline.order.checks.CHECKS` (pipeline.order.mapfiles): what `pile verify` runs on index maps."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.order import mapfiles
from pipeline.order.checks import CHECKS
from pipeline.order.config import OrderConfig
from pipeline.order.indexmap import build_index_maps
from pipeline.order.mapfiles import check_against_sizes


@pytest.fixture
def good(tmp_path):
    sizes = np.random.RandomState(0).randint(0, 30, 60).astype(np.int32)
    m = build_index_maps(sizes, OrderConfig(seq_length=8, global_batch=4, train_iters=50, seed=9))
    paths = {}
    for role, arr in (
        ("doc_idx", m.doc_idx),
        ("sample_idx", m.sample_idx),
        ("shuffle_idx", m.shuffle_idx),
    ):
        p = tmp_path / f"{role}.npy"
        np.save(p, arr)
        paths[role] = p
    return m, sizes, paths


def save(tmp_path, name, arr):
    p = tmp_path / name
    np.save(p, arr)
    return p


def test_roles_and_good_maps_pass(good):
    m, sizes, paths = good
    assert set(CHECKS) == {"doc_idx", "sample_idx", "shuffle_idx"}
    assert m.num_epochs > 1
    for role, p in paths.items():
        assert CHECKS[role](p) == []
    assert check_against_sizes(m.doc_idx, m.sample_idx, sizes, 8) == []


def test_small_chunks_behave_like_one_chunk(good, monkeypatch):
    m, sizes, paths = good
    monkeypatch.setattr(mapfiles, "CHECK_CHUNK", 7)
    for role, p in paths.items():
        assert CHECKS[role](p) == []
    bad = np.asarray(m.shuffle_idx).copy()
    bad[20] = bad[3]
    assert "repeated" in CHECKS["shuffle_idx"](save(paths["doc_idx"].parent, "s.npy", bad))[0]


def test_shuffle_idx_mostly_zeros_is_reported(tmp_path):
    # the failure Pythia users met: a published shuffle_idx that was 92% zeros
    a = np.arange(1000, dtype=np.uint32)
    a[80:] = 0
    (msg,) = CHECKS["shuffle_idx"](save(tmp_path, "s.npy", a))
    assert "not a permutation of arange(1000)" in msg and "92.1% zeros" in msg
    assert "920 repeated values" in msg and "920 values missing" in msg


def test_shuffle_idx_out_of_range_and_dtype(tmp_path):
    a = np.arange(10, dtype=np.int64)
    a[4] = 10
    (msg,) = CHECKS["shuffle_idx"](save(tmp_path, "s.npy", a))
    assert "shuffle_idx[4] = 10 is outside 0..9" in msg
    probs = CHECKS["shuffle_idx"](save(tmp_path, "f.npy", np.arange(5, dtype=np.float64)))
    assert "dtype is float64" in probs[0]
    probs = CHECKS["shuffle_idx"](save(tmp_path, "n.npy", np.zeros((2, 2), dtype=np.uint32)))
    assert "must be 1-D" in probs[0]


def test_sample_idx_problems(good, tmp_path):
    m, _, _ = good
    s = np.asarray(m.sample_idx).copy()
    back = s.copy()
    back[10, 0] = back[9, 0] - 1
    assert "not monotone: row 10" in CHECKS["sample_idx"](save(tmp_path, "a.npy", back))[0]
    stuck = s.copy()
    stuck[5] = stuck[4]
    assert "does not advance" in CHECKS["sample_idx"](save(tmp_path, "b.npy", stuck))[0]
    neg = s.copy()
    neg[3, 1] = -1
    assert "row 3 has a negative value" in CHECKS["sample_idx"](save(tmp_path, "c.npy", neg))[0]
    first = s.copy()
    first[0] = [1, 0]
    assert "sample_idx[0] is [1, 0]" in CHECKS["sample_idx"](save(tmp_path, "d.npy", first))[0]
    assert "shape" in CHECKS["sample_idx"](save(tmp_path, "e.npy", s[:, :1]))[0]
    assert "at least 2" in CHECKS["sample_idx"](save(tmp_path, "f.npy", s[:1]))[0]


def test_doc_idx_problems(tmp_path):
    d = np.array([0, 1, 2, 2, 1, 0, 3], dtype=np.int32)  # item 3 appears once, others twice
    (msg,) = CHECKS["doc_idx"](save(tmp_path, "a.npy", d))
    assert "same number of times" in msg and "item 3 x1" in msg
    assert "negative" in CHECKS["doc_idx"](save(tmp_path, "b.npy", np.array([0, -1], np.int32)))[0]
    probs = CHECKS["doc_idx"](save(tmp_path, "c.npy", np.array([1, 0], np.int64)))
    assert probs == ["%s: doc_idx dtype is int64, gpt-neox writes int32" % (tmp_path / "c.npy")]
    assert "empty" in CHECKS["doc_idx"](save(tmp_path, "e.npy", np.array([], np.int32)))[-1]


def test_missing_and_unreadable_files(tmp_path):
    for role in CHECKS:
        assert "file not found" in CHECKS[role](tmp_path / "nope.npy")[0]
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not an npy")
    for role in CHECKS:
        assert "not a readable .npy" in CHECKS[role](junk)[0]


def test_check_against_sizes_detects_offsets_and_tiling(good):
    m, sizes, _ = good
    s = np.asarray(m.sample_idx).astype(np.int64)
    over = s.copy()
    over[7, 1] = sizes[m.doc_idx[over[7, 0]]] + 1
    assert "beyond the end of its document" in check_against_sizes(m.doc_idx, over, sizes, 8)[0]
    shifted = s.copy()
    shifted[7, 1] = max(0, shifted[7, 1] - 1) if shifted[7, 1] else 1
    assert "do not tile" in check_against_sizes(m.doc_idx, shifted, sizes, 8)[0]
    far = s.copy()
    far[2, 0] = len(m.doc_idx)
    assert ">= len(doc_idx)" in check_against_sizes(m.doc_idx, far, sizes, 8)[0]
