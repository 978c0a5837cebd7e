"""MMIDXDataset refuses a `.bin` whose size is not what its `.idx` describes (checked on open)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import IntegrityError
from pipeline.shards.mmidx import MMIDXDataset, MMIDXIndex, MMIDXWriter, check_bin


def _write(prefix, items, dtype=np.uint16):
    w = MMIDXWriter(prefix, dtype)
    for it in items:
        w.add_item(np.asarray(it, dtype=dtype))
    w.finalize()
    return str(prefix) + ".idx", str(prefix) + ".bin"


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_data_bytes_is_last_pointer_plus_last_size(tmp_path, dtype):
    idx, bin_ = _write(tmp_path / "d", [[1, 2, 3], [4], [], [5, 6]], dtype)
    index = MMIDXIndex(idx)
    assert index.data_bytes() == 6 * np.dtype(dtype).itemsize
    assert index.data_bytes() == (tmp_path / "d.bin").stat().st_size
    assert MMIDXDataset(tmp_path / "d")[3].tolist() == [5, 6]


def test_bin_with_extra_trailing_bytes_is_refused(tmp_path):
    idx, bin_ = _write(tmp_path / "d", [[1, 2, 3], [4]])
    with open(bin_, "ab") as f:
        f.write(b"\x07\x00\x08")
    with pytest.raises(IntegrityError) as e:
        MMIDXDataset(tmp_path / "d")
    msg = str(e.value)
    assert bin_ in msg and idx in msg  # names both files
    assert "11 bytes" in msg and "describes 8" in msg and "3 extra trailing bytes" in msg
    # `pile verify`'s own structural check still reports the same file on its own
    assert check_bin(bin_, idx) and "11 bytes" in check_bin(bin_, idx)[0]


def test_truncated_bin_is_refused_on_open(tmp_path):
    idx, bin_ = _write(tmp_path / "d", [[1, 2, 3], [4]])
    with open(bin_, "r+b") as f:
        f.truncate(5)
    with pytest.raises(IntegrityError, match=r"5 bytes, but .* describes 8 .* 3 bytes short"):
        MMIDXDataset(tmp_path / "d")


def test_empty_index_needs_an_empty_bin(tmp_path):
    idx, bin_ = _write(tmp_path / "e", [])
    assert len(MMIDXDataset(tmp_path / "e")) == 0
    with open(bin_, "wb") as f:
        f.write(b"\x00\x00")
    with pytest.raises(IntegrityError, match="2 extra trailing bytes"):
        MMIDXDataset(tmp_path / "e")


def test_size_check_does_not_read_the_bin(tmp_path):
    """O(1): a sparse 64 GiB .bin (no data blocks) is refused from its size alone."""
    _write(tmp_path / "d", [[1, 2, 3]])
    with open(tmp_path / "d.bin", "r+b") as f:
        f.truncate(1 << 36)
    with pytest.raises(IntegrityError, match="extra trailing bytes"):
        MMIDXDataset(tmp_path / "d")
