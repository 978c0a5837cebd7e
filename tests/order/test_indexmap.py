"""Index maps: bit-exact with gpt-neox v1.0 (literal ports in pipeline.order.reference)."""

from __future__ import annotations

import hashlib
import io
import math

import numpy as np
import pytest

from pipeline.errors import ConfigError, InputError
from pipeline.order import reference as ref
from pipeline.order.config import OrderConfig
from pipeline.order.indexmap import (
    build_doc_epoch,
    build_index_maps,
    build_sample_idx,
    num_epochs_for,
    num_samples_for,
    sample_idx_dtype,
)
from pipeline.order.mapfiles import check_against_sizes


def npy_sha(a: np.ndarray) -> str:
    b = io.BytesIO()
    np.save(b, a, allow_pickle=True)
    return hashlib.sha256(b.getvalue()).hexdigest()


# ---------------------------------------------------------------------------------------------
# golden values: a fixed input, checked by hand against the spec (see comments), then frozen

GOLDEN_SIZES = [5, 1, 3, 0, 8, 2, 1, 4, 6, 1]
GOLDEN_CONFIG = OrderConfig(seq_length=4, global_batch=2, train_iters=7, seed=1234)
# ceil(14 * 1.0 * 1.005) = 15 samples; 31 tokens/epoch: e=1 gives 30 // 4 = 7 < 15, e=2 gives
# 61 // 4 = 15 -> 2 epochs, 15 samples + 1 row.
GOLDEN_DOC_IDX = [3, 3, 2, 6, 4, 5, 4, 0, 8, 8, 7, 1, 0, 9, 7, 1, 9, 2, 6, 5]
# Flat stream (item sizes in doc_idx order) 0,0,3,1,8,2,8,5,6,6,4,1,5,1,4,1,1,3,1,2: doc_idx
# position k starts at 0,0,0,3,4,12,14,22,27,33,39,43,44,49,50,54,55,56,59,60. Row j = flat token 4j:
#   0 -> (0,0): written before any item is read, although item 3 at position 0 is empty
#   4 -> (4,0)   8 -> (4,4)  12 -> (5,0)  16 -> (6,2)  20 -> (6,6)  24 -> (7,2)  28 -> (8,1)
#  32 -> (8,5): sample 7 = tokens 28..32 ends exactly at the end of position 8, so row 8 points at
#               that item's last token (offset size-1), not at (9,0)
#  36 -> (9,3)  40 -> (10,1) 44 -> (12,0): position 11 (1 token, 43) lies inside sample 10
#  48 -> (12,4): again a sample ending exactly at an item end
#  52 -> (14,2) 56 -> (17,0): positions 15, 16 are 1-token items   60 -> (19,0)
GOLDEN_SAMPLE_IDX = [
    [0, 0], [4, 0], [4, 4], [5, 0], [6, 2], [6, 6], [7, 2], [8, 1], [8, 5], [9, 3], [10, 1],
    [12, 0], [12, 4], [14, 2], [17, 0], [19, 0],
]  # fmt: skip
GOLDEN_SHUFFLE_IDX = [10, 4, 12, 9, 1, 13, 8, 7, 3, 6, 14, 5, 11, 0, 2]
GOLDEN_SHA256 = {
    "doc_idx": "1b011b023bc60577b29414a454b5ef32486b6ca0c9c75e3ce9ece30389e94bad",
    "sample_idx": "a144c15c2cc2f732fa9dbbf16c2f6497ea2142e6bb0d675d261792b77efae944",
    "shuffle_idx": "669bddbfff8c716c0b8249f33987c66af5eb181957d09c8dc6ea01183a247e2b",
}


def test_golden_values_match_hand_checked_spec_and_reference():
    m = build_index_maps(np.array(GOLDEN_SIZES, dtype=np.int32), GOLDEN_CONFIG)
    assert GOLDEN_CONFIG.num_samples == 15
    assert (m.num_epochs, m.tokens_per_epoch, m.num_total) == (2, 31, 15)
    assert m.doc_idx.dtype == np.int32 and m.doc_idx.tolist() == GOLDEN_DOC_IDX
    assert m.sample_idx.dtype == np.int32 and m.sample_idx.tolist() == GOLDEN_SAMPLE_IDX
    assert m.shuffle_idx.dtype == np.uint32 and m.shuffle_idx.tolist() == GOLDEN_SHUFFLE_IDX
    # the literal port of gpt2_dataset.py + helpers.cpp gives the same arrays
    d, s, sh = ref.build_index_mappings_ref(GOLDEN_SIZES, 15, 4, 1234)
    assert d.tolist() == GOLDEN_DOC_IDX and s.tolist() == GOLDEN_SAMPLE_IDX
    assert sh.tolist() == GOLDEN_SHUFFLE_IDX
    assert {
        "doc_idx": npy_sha(m.doc_idx),
        "sample_idx": npy_sha(m.sample_idx),
        "shuffle_idx": npy_sha(m.shuffle_idx),
    } == GOLDEN_SHA256


def test_hand_built_exact_document_end():
    # seq_length 4, items of 5, 4, 1, 3 tokens in this order (no shuffle): flat 0..4 | 5..8 | 9 |
    # 10..12. Sample 0 = 0..4 = all of item 0 -> row 1 is (0, 4), item 0's last token; sample 1 =
    # 4..8 ends exactly at item 1's end -> row 2 is (1, 3); row 3 = token 12 = (3, 2).
    sizes = np.array([5, 4, 1, 3], dtype=np.int32)
    doc_idx = np.arange(4, dtype=np.int32)
    want = [[0, 0], [0, 4], [1, 3], [3, 2]]
    assert build_sample_idx(sizes, doc_idx, 4, 1, 13).tolist() == want
    assert ref.build_sample_idx_ref(sizes, doc_idx, 4, 1, 13).tolist() == want


def _random_sizes(rs, kind, n):
    if kind == 0:
        return rs.randint(1, 3, n)  # many 1-token items
    if kind == 1:
        return rs.randint(0, 12, n)  # empty items
    if kind == 2:
        return np.where(rs.rand(n) < 0.4, 1, rs.randint(1, 60, n))
    return rs.randint(1, 5, n) * 4  # multiples of seq_length: frequent exact ends


def test_vectorised_sample_idx_equals_cpp_loop_port_on_random_inputs():
    rs = np.random.RandomState(5)
    exact_ends = 0
    for trial in range(400):
        n = int(rs.randint(1, 30))
        sizes = _random_sizes(rs, trial % 4, n).astype(np.int32)
        if sizes.sum() < 2:
            continue
        L = int(rs.choice([2, 3, 4, 5, 8]))
        epochs = int(rs.randint(1, 4))
        doc_idx = np.tile(np.arange(n, dtype=np.int32), epochs)
        rs.shuffle(doc_idx)
        tpe = int(sizes.sum())
        want = ref.build_sample_idx_ref(sizes, doc_idx, L, epochs, tpe)
        for chunk in (1, 3, 1 << 20):
            got = build_sample_idx(sizes, doc_idx, L, epochs, tpe, chunk=chunk)
            assert got.dtype == want.dtype
            assert np.array_equal(got, want), (trial, chunk, sizes.tolist(), doc_idx.tolist(), L)
        # count samples that end exactly at an item end (offset == size - 1 on the next row)
        exact_ends += int((want[1:, 1] == sizes[doc_idx[want[1:, 0]]] - 1).sum())
        assert check_against_sizes(doc_idx, want, sizes, L) == []
    assert exact_ends > 100  # the edge case was exercised


def test_sample_idx_int32_and_int64_chunk_arithmetic():
    """Chunk positions are int32 when max(size) * chunk + 2L fits, else int64: same rows."""
    rs = np.random.RandomState(8)
    sizes = rs.randint(0, 3000, 500).astype(np.int32)
    sizes[[7, 123]] = [5_000_000, 70_000]  # 5M x 2**10 > 2**31: the int64 path
    doc_idx = np.tile(np.arange(500, dtype=np.int32), 2)
    rs.shuffle(doc_idx)
    tpe = int(sizes.sum())
    for L in (2048, 2047):  # a shift, and a division
        want = ref.build_sample_idx_ref(sizes, doc_idx, L, 2, tpe)
        for chunk in (1 << 10, 64, 1):  # int64, then int32 (5M x 64 + 2L < 2**31)
            got = build_sample_idx(sizes, doc_idx, L, 2, tpe, chunk=chunk)
            assert np.array_equal(got, want), (L, chunk)


def test_full_build_equals_reference_on_random_inputs():
    rs = np.random.RandomState(11)
    for trial in range(150):
        n = int(rs.randint(1, 25))
        sizes = _random_sizes(rs, trial % 4, n).astype(np.int32)
        if sizes.sum() < 2:
            continue
        cfg = OrderConfig(
            seq_length=int(rs.choice([2, 3, 4, 7, 16])),
            global_batch=int(rs.randint(1, 5)),
            train_iters=int(rs.randint(1, 12)),
            seed=int(rs.randint(0, 2**32 - 1, dtype=np.int64)),
        )
        m = build_index_maps(sizes, cfg)
        d, s, sh = ref.build_index_mappings_ref(sizes, cfg.num_samples, cfg.seq_length, cfg.seed)
        for a, b in ((m.doc_idx, d), (m.sample_idx, s), (m.shuffle_idx, sh)):
            assert a.dtype == b.dtype and np.array_equal(a, b), (trial, cfg, sizes.tolist())


def test_num_samples_and_epochs():
    assert num_samples_for(143000, 1024) == 147164160  # Pythia (issue)
    assert num_samples_for(143000, 1024) == ref.num_samples_ref(143000, 1024)
    for ti, gb in [(1, 1), (7, 2), (96, 8), (1000, 3), (12345, 77)]:
        assert num_samples_for(ti, gb) == ref.num_samples_ref(ti, gb)
        assert num_samples_for(ti, gb) == int(math.ceil(ti * gb * 1.0 * 1.005))
    rs = np.random.RandomState(2)
    for _ in range(300):
        tpe = int(rs.randint(1000, 10**6))
        L = int(rs.randint(2, 5000))
        ns = int(rs.randint(1, 10**4))
        assert num_epochs_for(tpe, L, ns) == ref.num_epochs_ref(tpe, L, ns)
    with pytest.raises(InputError, match="at least 2"):
        num_epochs_for(1, 2048, 10)


def test_sample_idx_dtype_threshold_uses_float_division():
    # 2 * ((e*T - 1) / L + 1) < 2**31 - 1 -> int32, else int64
    L = 2048
    T = (2**30 - 2) * L  # num_samples_f = (T - 1)/L just below 2**30 - 2
    assert sample_idx_dtype(1, T, L) == np.int32
    assert sample_idx_dtype(1, T + 2 * L, L) == np.int64
    assert sample_idx_dtype(2, 207_000_000_000, 2048) == np.int32  # Pythia-deduped scale


def test_doc_epoch_counts_earlier_occurrences():
    rs = np.random.RandomState(3)
    for epochs in (1, 2, 3, 7):
        n = 50
        doc_idx = np.tile(np.arange(n, dtype=np.int32), epochs)
        rs.shuffle(doc_idx)
        want = np.array([(doc_idx[:k] == doc_idx[k]).sum() for k in range(doc_idx.size)])
        for chunk in (1, 13, 1 << 20):
            got = build_doc_epoch(doc_idx, n, chunk=chunk)
            assert got.dtype == np.uint8 and np.array_equal(got, want)
    big = np.tile(np.arange(2, dtype=np.int32), 300)
    assert build_doc_epoch(big, 2).dtype == np.uint16
    # 256 epochs: uint8, whose per-item counter wraps to 0 after the last copy; every item
    # repeats inside every chunk (the stable-sort branch), and chunks of 1 never repeat
    for epochs, dtype in ((256, np.uint8), (300, np.uint16)):
        doc_idx = np.tile(np.arange(3, dtype=np.int32), epochs)
        rs.shuffle(doc_idx)
        want = np.zeros(doc_idx.size, dtype=np.int64)
        for i in range(3):
            want[doc_idx == i] = np.arange(epochs)
        for chunk in (1, 5, 1 << 16):
            got = build_doc_epoch(doc_idx, 3, chunk=chunk)
            assert got.dtype == dtype and np.array_equal(got, want)


def test_config_validation_and_presets():
    assert OrderConfig.from_preset("pythia") == OrderConfig(2048, 1024, 143000, 1234)
    sample = OrderConfig.from_preset("sample")
    assert sample.seq_length == 2048 and sample.global_batch == 8
    assert OrderConfig.from_preset("pythia", seed=5, seq_length=None).seed == 5
    assert OrderConfig(2048, 1024, 143000, 1234).map_tag == "147164160ns_2048sl_1234s"
    with pytest.raises(ConfigError, match="seq_length 1 is out of range"):
        OrderConfig(seq_length=1)
    with pytest.raises(ConfigError, match="global_batch 0"):
        OrderConfig(global_batch=0)
    with pytest.raises(ConfigError, match="train_iters -1"):
        OrderConfig(train_iters=-1)
    with pytest.raises(ConfigError, match="seed -1 is out of range"):
        OrderConfig(seed=-1)
    with pytest.raises(ConfigError, match="must be an integer"):
        OrderConfig(seq_length=2048.0)
    with pytest.raises(ConfigError, match="unknown order preset 'nope'"):
        OrderConfig.from_preset("nope")
    assert OrderConfig().fingerprint() != OrderConfig(seed=1).fingerprint()


def test_scaled_synthetic_build_two_epochs_tiles_the_stream():
    """2M items, Pythia's seq_length and batch, 2 epochs: structure checked end to end (~3 s)."""
    n = 2_000_000
    sizes = np.random.default_rng(0).integers(1, 1962, n, dtype=np.int32)
    cfg = OrderConfig(seq_length=2048, global_batch=1024, train_iters=1400, seed=1234)
    m = build_index_maps(sizes, cfg)
    assert m.num_epochs == 2 and m.num_total == (2 * int(sizes.sum(dtype=np.int64)) - 1) // 2048
    assert m.num_total >= cfg.num_samples
    assert check_against_sizes(m.doc_idx, m.sample_idx, sizes, 2048) == []
    assert np.array_equal(np.sort(m.shuffle_idx), np.arange(m.num_total, dtype=np.uint32))
    assert np.array_equal(np.bincount(m.doc_idx, minlength=n), np.full(n, 2))


def test_streamed_npy_has_np_save_bytes(tmp_path):
    """run_order streams doc_epoch and sample_idx block by block: same bytes as np.save."""
    from pipeline.order.indexmap import iter_doc_epoch, iter_sample_idx
    from pipeline.order.mapfiles import NpyBlocks, save_npy

    rs = np.random.RandomState(4)
    sizes = rs.randint(0, 40, 300).astype(np.int32)
    doc_idx = np.tile(np.arange(300, dtype=np.int32), 3)
    rs.shuffle(doc_idx)
    tpe = int(sizes.sum())
    want = ref.build_sample_idx_ref(sizes, doc_idx, 7, 3, tpe)
    blocks = iter_sample_idx(sizes, doc_idx, 7, 3, tpe, chunk=50)
    save_npy(tmp_path / "s.npy", NpyBlocks(want.dtype, want.shape, blocks))
    assert (tmp_path / "s.npy").read_bytes() == _npy_bytes(want)
    epoch = build_doc_epoch(doc_idx, 300, chunk=1 << 20)
    save_npy(
        tmp_path / "e.npy", NpyBlocks(epoch.dtype, epoch.shape, iter_doc_epoch(doc_idx, 300, 64))
    )
    assert (tmp_path / "e.npy").read_bytes() == _npy_bytes(epoch)


def test_save_npy_returns_the_sha256_of_np_save_bytes(tmp_path):
    """run_order hashes the maps as it writes them; the manifest takes those hashes."""
    import hashlib

    from pipeline.io import sha256_file
    from pipeline.manifest import read_manifest, write_manifest
    from pipeline.order.mapfiles import NpyBlocks, save_npy

    arrays = {
        "a.npy": np.arange(1000, dtype=np.int32)[::-1],  # a view with a negative stride
        "b.npy": np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4)),
        "c.npy": np.empty(0, dtype=np.uint32),
    }
    for name, arr in arrays.items():
        digest = save_npy(tmp_path / name, arr)
        assert (tmp_path / name).read_bytes() == _npy_bytes(arr)
        assert digest == sha256_file(tmp_path / name)
    blocks = NpyBlocks(np.dtype(np.int32), (5, 2), iter([np.zeros((2, 2), np.int32)] * 2 + [
        np.ones((1, 2), np.int32)]))  # fmt: skip
    digest = save_npy(tmp_path / "d.npy", blocks)
    assert digest == hashlib.sha256((tmp_path / "d.npy").read_bytes()).hexdigest()

    (tmp_path / "e.txt").write_text("not hashed while written")
    files = [tmp_path / n for n in ("a.npy", "b.npy", "e.txt")]
    known = {tmp_path / "a.npy": "f" * 64}  # a known hash is taken as given, the rest is read
    m = write_manifest(tmp_path / "m.json", kind="t", config_fingerprint="x", files=files,
                       hashes=known)  # fmt: skip
    got = {f["name"]: f["sha256"] for f in read_manifest(tmp_path / "m.json")["files"]}
    assert m["files"] == read_manifest(tmp_path / "m.json")["files"]
    assert got == {"a.npy": "f" * 64, "b.npy": sha256_file(files[1]),
                   "e.txt": sha256_file(files[2])}  # fmt: skip


def test_sample_idx_from_unaligned_sizes():
    # a .idx holds its sizes at byte 34: the builder must give the same rows from such a view
    sizes = np.array([5, 1, 3, 0, 8, 2, 1, 4, 6, 1], dtype=np.int32)
    buf = np.zeros(2 + sizes.nbytes, dtype=np.uint8)
    view = np.frombuffer(buf.data, dtype=np.int32, count=sizes.size, offset=2)
    buf[2:] = sizes.view(np.uint8)
    assert not view.flags.aligned
    doc_idx = np.array(GOLDEN_DOC_IDX, dtype=np.int32)
    got = build_sample_idx(view, doc_idx, 4, 2, 31, chunk=3)
    assert got.tolist() == GOLDEN_SAMPLE_IDX


def _npy_bytes(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, a, allow_pickle=True)
    return b.getvalue()
