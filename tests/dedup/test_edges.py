"""Bucket partitions and star edges."""

from __future__ import annotations

import numpy as np

from pipeline.dedup.edges import (
    BucketWriter,
    SignatureStore,
    partition_of,
    read_partition,
    star_edges,
    unique_edges,
    verify_edges,
)
from pipeline.dedup.signatures import SignatureArrayWriter


def test_star_edges_point_to_smallest_id_never_all_pairs():
    keys = np.array([5, 9, 5, 5, 7, 9, 1], dtype=np.uint64)
    docs = np.array([10, 11, 12, 13, 14, 15, 16], dtype=np.int64)
    src, dst, largest = star_edges(keys, docs)
    assert list(zip(src.tolist(), dst.tolist())) == [(12, 10), (13, 10), (15, 11)]
    assert largest == 3


def test_boilerplate_bucket_is_linear():
    n = 100_000
    keys = np.full(n, 42, dtype=np.uint64)
    docs = np.arange(n, dtype=np.int64) * 3 + 7
    src, dst, largest = star_edges(keys, docs)
    assert len(src) == n - 1 and (dst == 7).all() and largest == n


def test_unique_edges_sorted():
    s, d = unique_edges(np.array([5, 3, 5, 3]), np.array([1, 2, 1, 1]))
    assert s.tolist() == [3, 3, 5] and d.tolist() == [1, 2, 1]


def test_bucket_writer_partitions_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    parts = 8
    keys = rng.integers(0, 2**64 - 1, size=(500, 3), dtype=np.uint64)
    keys[10] = keys[3]  # doc 3 and 10 share every band
    ids = np.arange(500, dtype=np.int64) + (2 << 40)
    with BucketWriter(tmp_path, 2, parts) as w:
        w.add(keys[:250], ids[:250])
        w.add(keys[250:], ids[250:])
    assert w.records == 1500
    total = 0
    for p in range(parts):
        rec = read_partition(tmp_path, p, [2])
        assert (partition_of(rec["key"], parts) == p).all()
        total += len(rec)
    assert total == 1500
    edges = set()
    for p in range(parts):
        rec = read_partition(tmp_path, p, [2])
        s, d, _ = star_edges(rec["key"], rec["doc"])
        edges |= set(zip(s.tolist(), d.tolist()))
    assert edges == {(int(ids[10]), int(ids[3]))}


def test_verify_edges_uses_full_signature(tmp_path):
    k = 16
    sig = np.zeros((4, k), dtype=np.uint32)
    sig[1] = sig[0]
    sig[2, :12] = 0
    sig[2, 12:] = 7  # agrees with doc 0 on 12/16 = 0.75
    sig[3] = 9
    path = tmp_path / "s.npy"
    with open(path, "wb") as f:
        w = SignatureArrayWriter(f, k)
        w.add(np.array([0, 1, 2, 5]), sig)  # rows 3 and 4: no document (sentinel)
        w.finish()
    arr = np.load(path)
    assert arr.shape == (6, k) and (arr[3:5] == 0xFFFFFFFF).all() and (arr[5] == 9).all()
    store = SignatureStore({0: path})
    src, dst, agree = verify_edges(np.array([1, 2, 5]), np.array([0, 0, 0]), store, 0.8)
    assert agree.tolist() == [1.0, 0.75, 0.0]
    assert src.tolist() == [1] and dst.tolist() == [0]
