"""Megatron / gpt-neox v1.0 `MMIDIDX` indexed dataset: `.idx` + `.bin`.

Byte layout of `{prefix}.idx` (little-endian, no padding; arrays start at byte 34, unaligned):

    offset  size        type      field
    0       9           bytes     magic  b"MMIDIDX\\x00\\x00"
    9       8           <Q        version (1)
    17      1           <B        dtype code (1 u8, 2 i8, 3 i16, 4 i32, 5 i64, 6 f32, 7 f64, 8 u16)
    18      8           <Q        N = number of items (sizes / pointers length)
    26      8           <Q        D = length of doc_idx (N + 1 for one item per document)
    34      4*N         <i4[N]    sizes: tokens per item
    34+4N   8*N         <i8[N]    pointers: byte offset of item i in .bin = itemsize * sum(sizes[:i])
    34+12N  8*D         <i8[D]    doc_idx: item index where each document starts (0, 1, ..., N)

`{prefix}.bin` is the tokens of every item back to back in the dtype above, no header.

Reader: memory-mapped, O(1) per item; all offset arithmetic is int64 (the Pile has ~300B tokens).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.errors import IntegrityError
from pipeline.io import fsync_dir, open_new, tmp_path, write_error

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, N, D
HEADER_SIZE = HEADER.size  # 34

DTYPE_CODES: dict[int, type] = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float32,
    7: np.float64,
    8: np.uint16,
}


def dtype_code(dtype) -> int:
    dt = np.dtype(dtype)
    for code, t in DTYPE_CODES.items():
        if np.dtype(t) == dt:
            return code
    raise ValueError(
        f"dtype {dt} has no MMIDIDX code; allowed: {[np.dtype(t).name for t in DTYPE_CODES.values()]}"
    )


def token_dtype_for_vocab(vocab_size: int) -> np.dtype:
    """gpt-neox `best_fitting_dtype`: uint16 when vocab_size < 65500, else int32."""
    if vocab_size is None or vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size!r}")
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


def data_paths(prefix: str | os.PathLike) -> tuple[Path, Path]:
    p = str(prefix)
    return Path(p + ".idx"), Path(p + ".bin")


def encode_index(dtype, sizes: np.ndarray, doc_idx: np.ndarray | None = None) -> bytes:
    """The full `.idx` bytes for item `sizes` (pointers derived, int64)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.size and (sizes.min() < 0 or sizes.max() > np.iinfo(np.int32).max):
        raise ValueError("item sizes must fit in int32 and be >= 0")
    itemsize = np.dtype(dtype).itemsize
    pointers = np.zeros(sizes.size, dtype=np.int64)
    if sizes.size > 1:
        np.cumsum(sizes[:-1] * itemsize, out=pointers[1:])
    if doc_idx is None:
        doc_idx = np.arange(sizes.size + 1, dtype=np.int64)
    doc_idx = np.asarray(doc_idx, dtype=np.int64)
    header = HEADER.pack(MAGIC, VERSION, dtype_code(dtype), sizes.size, doc_idx.size)
    return b"".join(
        [
            header,
            sizes.astype("<i4").tobytes(),
            pointers.astype("<i8").tobytes(),
            doc_idx.astype("<i8").tobytes(),
        ]
    )


def _check_sizes(sizes) -> np.ndarray:
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1)
    if sizes.size and (sizes.min() < 0 or sizes.max() > np.iinfo(np.int32).max):
        raise ValueError(
            f"item sizes must be in [0, 2**31-1], got [{int(sizes.min())}, {int(sizes.max())}]"
        )
    return sizes


class MMIDXWriter:
    """Streams items to `prefix.bin.tmp`; `finalize()` writes `.idx` and renames both atomically.

    Sizes are kept in a growable int32 numpy buffer (4 bytes per item: 211M items ~ 0.85 GB).
    """

    def __init__(self, prefix: str | os.PathLike, dtype) -> None:
        self.idx_path, self.bin_path = data_paths(prefix)
        self.dtype = np.dtype(dtype)
        self.bin_path.parent.mkdir(parents=True, exist_ok=True)
        self._bin = open_new(tmp_path(self.bin_path))
        self._sizes = np.empty(1 << 16, dtype=np.int32)
        self._n = 0
        self._closed = False

    def _grow(self, need: int) -> None:
        if need > self._sizes.size:
            new = np.empty(max(need, self._sizes.size * 2), dtype=np.int32)
            new[: self._n] = self._sizes[: self._n]
            self._sizes = new

    def _cast(self, tokens) -> np.ndarray:
        """`tokens` as this writer's dtype; values that do not fit raise instead of wrapping."""
        arr = np.asarray(tokens)
        if arr.dtype == self.dtype:
            return arr.reshape(-1)
        if arr.size and arr.dtype.kind in "iub" and self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            lo, hi = int(arr.min()), int(arr.max())
            if lo < info.min or hi > info.max:
                raise ValueError(
                    f"token ids span [{lo}, {hi}], outside {self.dtype.name} [{info.min}, "
                    f"{info.max}]; choose the dtype with token_dtype_for_vocab(vocab_size)."
                )
        return arr.astype(self.dtype, copy=False).reshape(-1)

    def add_item(self, tokens) -> None:
        arr = self._cast(tokens)
        if arr.size > np.iinfo(np.int32).max:
            raise ValueError(f"an item of {arr.size} tokens does not fit the int32 sizes array")
        self._grow(self._n + 1)
        self._sizes[self._n] = arr.size
        self._n += 1
        self._write(arr.tobytes())

    def add_items(self, flat_tokens: np.ndarray, sizes: np.ndarray) -> None:
        """Append many items at once: `flat_tokens` is their concatenation, `sizes` their lengths."""
        flat = self._cast(flat_tokens)
        sizes = _check_sizes(sizes)
        if int(sizes.sum()) != flat.size:
            raise ValueError(f"sizes sum to {int(sizes.sum())} but {flat.size} tokens were given")
        self._grow(self._n + sizes.size)
        self._sizes[self._n : self._n + sizes.size] = sizes
        self._n += sizes.size
        self._write(flat.tobytes())

    def _write(self, data: bytes) -> None:
        try:
            self._bin.write(data)
        except OSError as e:  # disk full: name the file (a bare write() error names none)
            raise write_error(tmp_path(self.bin_path), e) from e

    def append_bin_file(self, bin_path: Path, sizes: np.ndarray) -> None:
        """Merge a partial `.bin` (same dtype) written elsewhere, with its item sizes."""
        sizes = _check_sizes(sizes)
        expected = int(sizes.sum()) * self.dtype.itemsize
        actual = Path(bin_path).stat().st_size
        if actual != expected:
            raise IntegrityError(
                f"{bin_path}: {actual} bytes but its sizes add up to {expected}; partial output is "
                "corrupt, delete it and rerun."
            )
        with open(bin_path, "rb") as src:
            while True:
                buf = src.read(16 << 20)
                if not buf:
                    break
                self._write(buf)
        self._grow(self._n + sizes.size)
        self._sizes[self._n : self._n + sizes.size] = sizes
        self._n += sizes.size

    @property
    def num_items(self) -> int:
        return self._n

    def sizes(self) -> np.ndarray:
        return self._sizes[: self._n].copy()

    def finalize(self) -> tuple[Path, Path]:
        try:
            self._bin.flush()
            os.fsync(self._bin.fileno())
            self._bin.close()
        except OSError as e:
            raise write_error(tmp_path(self.bin_path), e) from e
        self._closed = True
        idx_tmp = tmp_path(self.idx_path)
        try:
            with open_new(idx_tmp) as f:
                f.write(encode_index(self.dtype, self._sizes[: self._n]))
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise write_error(idx_tmp, e) from e
        os.replace(tmp_path(self.bin_path), self.bin_path)
        os.replace(idx_tmp, self.idx_path)
        fsync_dir(self.idx_path.parent)
        return self.idx_path, self.bin_path

    def abort(self) -> None:
        if not self._closed:
            self._bin.close()
            self._closed = True
        for p in (tmp_path(self.bin_path), tmp_path(self.idx_path)):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> MMIDXWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


class MMIDXIndex:
    """The parsed `.idx`: dtype, sizes (int32), pointers (int64), doc_idx (int64), memory-mapped."""

    def __init__(self, idx_path: str | os.PathLike) -> None:
        self.path = Path(idx_path)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError as e:
            raise IntegrityError(f"{self.path}: index file not found.") from e
        if size < HEADER_SIZE:
            raise IntegrityError(
                f"{self.path}: {size} bytes is shorter than the 34-byte MMIDIDX header; truncated."
            )
        with open(self.path, "rb") as f:
            magic, version, code, n, d = HEADER.unpack(f.read(HEADER_SIZE))
        if magic != MAGIC:
            raise IntegrityError(
                f"{self.path}: bad magic (it does not start with {MAGIC!r}); not a Megatron MMIDIDX "
                "index."
            )
        if version != VERSION:
            raise IntegrityError(f"{self.path}: MMIDIDX version {version}, only 1 is supported.")
        if code not in DTYPE_CODES:
            raise IntegrityError(
                f"{self.path}: dtype code {code} unknown (allowed {sorted(DTYPE_CODES)})."
            )
        expected = HEADER_SIZE + 12 * n + 8 * d
        if size != expected:
            how = (
                f"{size - expected} extra bytes: corrupt, or not the index its header describes"
                if size > expected
                else f"{expected - size} bytes short: the index is truncated"
            )
            raise IntegrityError(
                f"{self.path}: {size} bytes, but a header with {n} items and {d} doc_idx entries "
                f"needs {expected}; {how}."
            )
        self.dtype = np.dtype(DTYPE_CODES[code])
        self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
        self.sizes = np.frombuffer(self._mm, dtype="<i4", count=n, offset=HEADER_SIZE)
        self.pointers = np.frombuffer(self._mm, dtype="<i8", count=n, offset=HEADER_SIZE + 4 * n)
        self.doc_idx = np.frombuffer(self._mm, dtype="<i8", count=d, offset=HEADER_SIZE + 12 * n)

    def __len__(self) -> int:
        return int(self.sizes.size)

    def data_bytes(self) -> int:
        """Bytes of `.bin` this index describes: last pointer + last size x itemsize (O(1))."""
        n = len(self)
        if n == 0:
            return 0
        return int(self.pointers[n - 1]) + int(self.sizes[n - 1]) * self.dtype.itemsize


class MMIDXDataset:
    """Read-only `prefix.idx/.bin` pair. `ds[i]` is item i's tokens (a view into the mmap)."""

    def __init__(self, prefix: str | os.PathLike) -> None:
        self.prefix = str(prefix)
        idx_path, self.bin_path = data_paths(prefix)
        self.index = MMIDXIndex(idx_path)
        if not self.bin_path.exists():
            raise IntegrityError(f"{self.bin_path}: data file not found next to {idx_path}.")
        nbytes = self.bin_path.stat().st_size
        # gpt-neox's reader maps whatever .bin it finds; a .bin with extra or missing bytes belongs
        # to another .idx (or a half-written one), so refuse it here. O(1): a stat and the last
        # index entries, never a scan (`pile verify` re-checks pointers against sizes).
        want = self.index.data_bytes()
        if nbytes != want:
            what = (
                f"has {nbytes - want} extra trailing bytes"
                if nbytes > want
                else f"is {want - nbytes} bytes short (truncated)"
            )
            raise IntegrityError(
                f"{self.bin_path}: {nbytes} bytes, but {idx_path} describes {want} (last pointer + "
                f"last size x itemsize {self.index.dtype.itemsize}): the .bin {what}, or the two "
                "files are not a pair. Check them with `pile verify`, or re-tokenize."
            )
        self.bin = (
            np.memmap(self.bin_path, dtype=self.index.dtype, mode="r")
            if nbytes
            else np.empty(0, dtype=self.index.dtype)
        )

    @property
    def dtype(self) -> np.dtype:
        return self.index.dtype

    @property
    def sizes(self) -> np.ndarray:
        return self.index.sizes

    @property
    def doc_idx(self) -> np.ndarray:
        return self.index.doc_idx

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.get(i)

    def get(self, i: int, offset: int = 0, length: int | None = None) -> np.ndarray:
        """Tokens of item i from `offset` for `length` tokens (gpt-neox `get` semantics)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"item {i} out of range for {n} items in {self.prefix}")
        i = int(i) % n
        size = int(self.index.sizes[i])
        if length is None:
            length = size - offset
        start = int(self.index.pointers[i]) // self.dtype.itemsize + int(offset)
        return self.bin[start : start + int(length)]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.get(i)


# ----------------------------------------------------------------------------------------------
# structure checks (`pile verify` dispatches here)

CHUNK = 1 << 24  # array elements per step of the checks (bounded memory at Pile scale)


def check_index(idx_path: str | os.PathLike, one_doc_per_item: bool = False) -> list[str]:
    """Problems of an MMIDIDX `.idx`: header, sizes > 0, pointers, doc_idx (empty list = fine).

    doc_idx must start at 0, never decrease, and end at N, except that [0] alone is accepted
    (Pythia's pre-shuffled `document.idx`: its builder never ended a document). With
    `one_doc_per_item` (a token dataset) it must be exactly 0, 1, ..., N.
    """
    try:
        idx = MMIDXIndex(idx_path)
    except IntegrityError as e:
        return [str(e)]
    problems = []
    n = len(idx)
    item = idx.dtype.itemsize
    expected = 0  # running pointer, Python int (no overflow)
    for s in range(0, n, CHUNK):
        sz = np.asarray(idx.sizes[s : s + CHUNK], dtype=np.int64)
        if sz.size and int(sz.min()) <= 0:
            j = s + int(np.argmax(sz <= 0))
            problems.append(f"{idx_path}: item {j} has size {int(idx.sizes[j])}; sizes must be > 0")
            break
        ptr = np.asarray(idx.pointers[s : s + CHUNK], dtype=np.int64)
        want = np.empty_like(sz)
        want[0] = expected
        if sz.size > 1:
            np.cumsum(sz[:-1] * item, out=want[1:])
            want[1:] += expected
        bad = np.flatnonzero(ptr != want)
        if bad.size:
            j = s + int(bad[0])
            problems.append(
                f"{idx_path}: pointer of item {j} is {int(idx.pointers[j])}, expected "
                f"{int(want[bad[0]])} (= {item} x tokens before it)"
            )
            break
        expected += int(sz.sum()) * item
    d = idx.doc_idx
    if d.size == 0:
        problems.append(f"{idx_path}: doc_idx is empty (needs at least [0])")
    else:
        if int(d[0]) != 0:
            problems.append(f"{idx_path}: doc_idx starts at {int(d[0])}, expected 0")
        # [0] alone is what a builder that never marks document ends writes (EleutherAI's
        # pre-shuffled document.idx); otherwise the last document ends at N.
        if one_doc_per_item and d.size != n + 1:
            problems.append(
                f"{idx_path}: doc_idx has {d.size} entries; a token dataset with one item per "
                f"document needs N + 1 = {n + 1} (0, 1, ..., N)"
            )
        if int(d[-1]) != n and not (d.size == 1 and n > 0 and not one_doc_per_item):
            problems.append(f"{idx_path}: doc_idx ends at {int(d[-1])}, expected N = {n}")
        prev = None
        for s in range(0, d.size, CHUNK):
            c = np.asarray(d[s : s + CHUNK + 1], dtype=np.int64)
            step = np.diff(c)
            bad = step <= 0 if one_doc_per_item else step < 0
            if c.size > 1 and bool(np.any(bad)):
                j = s + int(np.argmax(bad)) + 1
                what = "does not increase" if one_doc_per_item else "decreases"
                problems.append(f"{idx_path}: doc_idx {what} at position {j}")
                break
            if prev is not None and c.size and int(c[0]) < prev:
                problems.append(f"{idx_path}: doc_idx decreases at position {s}")
                break
            prev = int(c[-1]) if c.size else prev
    return problems


def index_tokens(idx_path: str | os.PathLike) -> tuple[int, int]:
    """(number of items, number of tokens) of a valid `.idx`, summed in int64 chunks."""
    idx = MMIDXIndex(idx_path)
    total = 0
    for s in range(0, len(idx), CHUNK):
        total += int(np.asarray(idx.sizes[s : s + CHUNK], dtype=np.int64).sum())
    return len(idx), total


def off_by(found: int, expected: int) -> str:
    # which way it is off: a longer file is not truncated, it holds bytes that do not belong
    diff = found - expected
    return f"{diff} bytes too many" if diff > 0 else f"{-diff} bytes too few, truncated"


def check_bin(bin_path: str | os.PathLike, idx_path: str | os.PathLike) -> list[str]:
    """`.bin` size must be tokens x itemsize of its `.idx`."""
    try:
        idx = MMIDXIndex(idx_path)
        _, tokens = index_tokens(idx_path)
    except IntegrityError as e:
        return [f"{bin_path}: cannot check against {idx_path}: {e}"]
    want = tokens * idx.dtype.itemsize
    have = Path(bin_path).stat().st_size
    if have != want:
        return [
            f"{bin_path}: {have} bytes, but {idx_path} describes {tokens} tokens x "
            f"{idx.dtype.itemsize} bytes = {want} ({off_by(have, want)})"
        ]
    return []


def check(prefix: str | os.PathLike, one_doc_per_item: bool = False) -> list[str]:
    """Problems of the dataset `prefix` (`.idx`, and `.bin` when present); empty = fine."""
    idx_path, bin_path = data_paths(prefix)
    problems = check_index(idx_path, one_doc_per_item)
    if not problems and bin_path.exists():
        problems += check_bin(bin_path, idx_path)
    return problems
