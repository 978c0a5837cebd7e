"""MMIDIDX format: hand-built bytes, round trip, and every error branch of the reader."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import IntegrityError
from pipeline.shards.mmidx import (
    HEADER_SIZE,
    MMIDXDataset,
    MMIDXIndex,
    MMIDXWriter,
    encode_index,
    token_dtype_for_vocab,
)


def le(n: int, width: int) -> bytes:
    return n.to_bytes(width, "little", signed=True)


# items [[1, 2, 3], [4], [50276, 0]] as uint16, built byte by byte from the format table
HAND_IDX = (
    b"MMIDIDX\x00\x00"
    + b"\x01\x00\x00\x00\x00\x00\x00\x00"  # version 1
    + b"\x08"  # dtype code 8 = uint16
    + b"\x03\x00\x00\x00\x00\x00\x00\x00"  # N = 3
    + b"\x04\x00\x00\x00\x00\x00\x00\x00"  # D = 4
    + le(3, 4)
    + le(1, 4)
    + le(2, 4)  # sizes
    + le(0, 8)
    + le(6, 8)
    + le(8, 8)  # pointers (bytes)
    + le(0, 8)
    + le(1, 8)
    + le(2, 8)
    + le(3, 8)  # doc_idx
)
HAND_BIN = bytes([1, 0, 2, 0, 3, 0, 4, 0]) + (50276).to_bytes(2, "little") + b"\x00\x00"
ITEMS = [[1, 2, 3], [4], [50276, 0]]


def test_header_is_34_bytes_and_arrays_start_there():
    assert HEADER_SIZE == 34
    assert len(HAND_IDX) == 34 + 12 * 3 + 8 * 4


def test_writer_matches_hand_built_bytes(tmp_path):
    w = MMIDXWriter(tmp_path / "d", np.uint16)
    for it in ITEMS:
        w.add_item(it)
    idx, bin_ = w.finalize()
    assert idx.read_bytes() == HAND_IDX
    assert bin_.read_bytes() == HAND_BIN
    assert encode_index(np.uint16, np.array([3, 1, 2])) == HAND_IDX


def test_add_items_and_append_bin_file_equal_add_item(tmp_path):
    w = MMIDXWriter(tmp_path / "a", np.uint16)
    w.add_items(np.array([1, 2, 3, 4], dtype=np.int64), np.array([3, 1]))
    part = tmp_path / "part.bin"
    part.write_bytes(np.array([50276, 0], dtype="<u2").tobytes())
    w.append_bin_file(part, np.array([2]))
    assert w.num_items == 3
    assert w.sizes().tolist() == [3, 1, 2]
    idx, bin_ = w.finalize()
    assert idx.read_bytes() == HAND_IDX and bin_.read_bytes() == HAND_BIN


def test_int32_dtype_code_and_pointers(tmp_path):
    w = MMIDXWriter(tmp_path / "i", np.int32)
    w.add_item([70000, 1])
    w.add_item([2])
    idx, _ = w.finalize()
    raw = idx.read_bytes()
    assert raw[17] == 4  # int32
    ds = MMIDXDataset(tmp_path / "i")
    assert ds.index.pointers.tolist() == [0, 8]
    assert ds[0].tolist() == [70000, 1] and ds[1].tolist() == [2]


def test_reader_round_trip_and_get_offsets(tmp_path):
    rng = np.random.default_rng(7)
    items = [rng.integers(0, 50277, size=int(n)) for n in rng.integers(1, 40, size=200)]
    w = MMIDXWriter(tmp_path / "r", np.uint16)
    for it in items:
        w.add_item(it)
    w.finalize()
    ds = MMIDXDataset(tmp_path / "r")
    assert len(ds) == 200 and ds.dtype == np.uint16
    assert ds.doc_idx.tolist() == list(range(201))
    for i, it in enumerate(items):
        assert ds[i].tolist() == it.tolist()
    assert ds.get(5, offset=1, length=2).tolist() == items[5][1:3].tolist()
    assert ds[-1].tolist() == items[-1].tolist()
    assert [x.tolist() for x in ds][:3] == [it.tolist() for it in items[:3]]
    with pytest.raises(IndexError, match="out of range"):
        ds.get(200)


def test_pointer_arithmetic_is_int64():
    # 3 items of 2**31-1 tokens: byte pointers exceed int32 and must not wrap
    sizes = np.full(3, 2**31 - 1)
    raw = encode_index(np.uint16, sizes)
    ptr = np.frombuffer(raw, dtype="<i8", count=3, offset=HEADER_SIZE + 12)
    assert ptr.tolist() == [0, 2 * (2**31 - 1), 4 * (2**31 - 1)]


def test_empty_dataset(tmp_path):
    w = MMIDXWriter(tmp_path / "e", np.uint16)
    w.finalize()
    ds = MMIDXDataset(tmp_path / "e")
    assert len(ds) == 0 and ds.doc_idx.tolist() == [0]


def test_token_dtype_for_vocab():
    assert token_dtype_for_vocab(50277) == np.uint16
    assert token_dtype_for_vocab(65499) == np.uint16
    assert token_dtype_for_vocab(65500) == np.int32
    with pytest.raises(ValueError, match="positive"):
        token_dtype_for_vocab(0)


def test_writer_rejects_ids_that_do_not_fit(tmp_path):
    w = MMIDXWriter(tmp_path / "x", np.uint16)
    with pytest.raises(ValueError, match="outside uint16"):
        w.add_item(np.array([1, 70000]))
    with pytest.raises(ValueError, match="outside uint16"):
        w.add_items(np.array([-1]), np.array([1]))
    with pytest.raises(ValueError, match="sizes sum to 3 but 2 tokens"):
        w.add_items(np.array([1, 2]), np.array([3]))
    with pytest.raises(ValueError, match="item sizes"):
        w.add_items(np.array([], dtype=np.uint16), np.array([-1, 1]))
    w.abort()
    assert not list(tmp_path.iterdir())


def test_append_bin_file_size_mismatch(tmp_path):
    part = tmp_path / "p.bin"
    part.write_bytes(b"\x01\x00\x02")
    w = MMIDXWriter(tmp_path / "m", np.uint16)
    with pytest.raises(IntegrityError, match="p.bin: 3 bytes but its sizes add up to 4"):
        w.append_bin_file(part, np.array([2]))
    w.abort()


def test_writer_context_manager_aborts_on_error(tmp_path):
    with pytest.raises(RuntimeError), MMIDXWriter(tmp_path / "c", np.uint16) as w:
        w.add_item([1])
        raise RuntimeError("boom")
    assert not list(tmp_path.glob("c*"))


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_missing_index(tmp_path):
    with pytest.raises(IntegrityError, match="index file not found"):
        MMIDXIndex(tmp_path / "nope.idx")


def test_truncated_header(tmp_path):
    p = _write(tmp_path / "t.idx", HAND_IDX[:20])
    with pytest.raises(IntegrityError, match="20 bytes is shorter than the 34-byte"):
        MMIDXIndex(p)


def test_truncated_arrays(tmp_path):
    p = _write(tmp_path / "t.idx", HAND_IDX[:-1])
    with pytest.raises(IntegrityError, match="1 bytes short: the index is truncated"):
        MMIDXIndex(p)
    p = _write(tmp_path / "u.idx", HAND_IDX + b"\0\0")
    with pytest.raises(IntegrityError, match="2 extra bytes: corrupt"):
        MMIDXIndex(p)


def test_bad_magic(tmp_path):
    p = _write(tmp_path / "m.idx", b"MMIDIDY" + HAND_IDX[7:])
    with pytest.raises(IntegrityError, match="bad magic"):
        MMIDXIndex(p)


def test_bad_version(tmp_path):
    p = _write(tmp_path / "v.idx", HAND_IDX[:9] + le(2, 8) + HAND_IDX[17:])
    with pytest.raises(IntegrityError, match="version 2"):
        MMIDXIndex(p)


def test_bad_dtype_code(tmp_path):
    p = _write(tmp_path / "d.idx", HAND_IDX[:17] + b"\x09" + HAND_IDX[18:])
    with pytest.raises(IntegrityError, match="dtype code 9 unknown"):
        MMIDXIndex(p)


def test_missing_bin(tmp_path):
    _write(tmp_path / "b.idx", HAND_IDX)
    with pytest.raises(IntegrityError, match="data file not found"):
        MMIDXDataset(tmp_path / "b")
