"""Raw line streams with byte offsets, at constant memory.

Lines are split on b"\\n" only (never `str.splitlines()`, which also splits on U+2028, U+0085, ...,
characters that appear inside Pile documents). A line longer than `max_line_bytes` is never held
whole: it is handed out as a `LongLine` whose bytes stream in pieces.

zstd is decoded one block at a time: the frame and block headers (RFC 8878) are parsed here and each
block is fed to the decompressor alone, so a corrupt block loses only its own bytes (every line
decoded before it comes out) and the damage is named by its compressed and decompressed byte
offsets. Frames that carry a content checksum are verified (libzstd checks it when the frame's last
4 bytes are fed); a file whose frames carry none gets one warning: damage that still decodes cannot
be seen here, only by checking the file against its published sha256 (`pile verify`). A frame that
ends early (truncated download) or corrupt data raises StreamError once every complete line before
the damage has been handed out.

A URL input (`s3://`, `gs://`, `hf://`, `https://`) is opened through `pipeline.read.remote` (fsspec
with a bounded read-ahead) and goes through the same code, so its errors are the same, naming it.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Iterator

import zstandard

from pipeline.errors import InputError
from pipeline.read.remote import is_url, open_input, read_head

log = logging.getLogger(__name__)


class StreamError(InputError):
    """A damaged compressed stream: `detail` says what and where, `fix` what to do.

    `partial` holds the bytes of the unfinished last line read before the damage (kept by the
    reader's quarantine), `line` its 1-based number, `offset` where it starts. `fatal`: the damage
    was found after the data it spoils was handed out (a content checksum checked at the end of
    its frame), so skipping cannot keep the output clean."""

    def __init__(self, detail: str, fix: str, fatal: bool = False) -> None:
        super().__init__(f"{detail}. {fix}")
        self.detail = detail
        self.fix = fix
        self.fatal = fatal
        self.partial = b""
        self.line = 0
        self.offset = 0  # decompressed byte offset of that line


READ_SIZE = 1 << 16  # compressed bytes read at a time outside zstd blocks
BUFFER_SIZE = 1 << 20  # bytes per read of plain and gzip files

_ZSTD_MAGIC = 0xFD2FB528
_SKIPPABLE_MASK, _SKIPPABLE_MAGIC = 0xFFFFFFF0, 0x184D2A50
_DICT_ID_BYTES = (0, 1, 2, 4)
_FCS_BYTES = (0, 2, 4, 8)  # by Frame_Content_Size_flag; flag 0 with Single_Segment means 1 byte
_SKIP_FIX = (
    "The file is damaged: re-download it and check it against the published SHA256SUMS "
    "(pile verify SHA256SUMS.txt --root DIR), or use --on-error skip to keep what was read "
    "before the damage."
)


def zstd_checksummed(path: str) -> bool | None:
    """Whether the first zstd frame of `path` carries a content checksum (None: the file does not
    start with a zstd frame). Files are written with one setting, so the first frame tells."""
    try:
        if is_url(path):
            head = read_head(path, 5)
        else:
            with open(path, "rb") as f:
                head = f.read(5)
    except (OSError, InputError):
        return None
    if len(head) < 5 or int.from_bytes(head[:4], "little") != _ZSTD_MAGIC:
        return None
    return bool((head[4] >> 2) & 1)


class _ZstdSource:
    """Decompressed chunks of a (multi-frame) zstd file, block by block. `error` is set (not
    raised) on damage, so the caller first hands out every complete line before it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._f = open_input(path, buffering=BUFFER_SIZE)
        self._dctx = zstandard.ZstdDecompressor()
        self.decoded = 0  # decompressed bytes produced so far
        self.error: StreamError | None = None

    def close(self) -> None:
        self._f.close()

    def _units(self) -> Iterator[tuple[int, bytes, str]]:
        """(compressed offset, bytes, what) in stream order: a frame header, each block, the
        checksum; `what` is "end" on the unit that completes a frame. A short read ends the
        generator: the caller reports the truncation."""
        f = self._f
        pos = 0
        while True:
            magic = f.read(4)
            if not magic:
                return
            if len(magic) < 4:
                yield pos, magic, "partial"
                return
            m = int.from_bytes(magic, "little")
            if m & _SKIPPABLE_MASK == _SKIPPABLE_MAGIC:  # skippable frame: no content
                size = f.read(4)
                if len(size) < 4:
                    yield pos, magic + size, "partial"
                    return
                n = int.from_bytes(size, "little")
                body = f.read(n)
                if len(body) < n:
                    yield pos, magic + size + body, "partial"
                    return
                pos += 8 + n
                continue
            if m != _ZSTD_MAGIC:
                # not a frame: the decompressor rejects it with its own message
                yield pos, magic + f.read(READ_SIZE), "block"
                return
            fhd_b = f.read(1)
            if not fhd_b:
                yield pos, magic, "partial"
                return
            fhd = fhd_b[0]
            single = (fhd >> 5) & 1
            checksum = (fhd >> 2) & 1
            fcs_flag = fhd >> 6
            n = (0 if single else 1) + _DICT_ID_BYTES[fhd & 3]
            n += _FCS_BYTES[fcs_flag] or (1 if single else 0)
            rest = f.read(n)
            header = magic + fhd_b + rest
            if len(rest) < n:
                yield pos, header, "partial"
                return
            yield pos, header, "header"
            pos += len(header)
            while True:
                head = f.read(3)
                if len(head) < 3:
                    yield pos, head, "partial"
                    return
                h = int.from_bytes(head, "little")
                last = h & 1
                size = 1 if (h >> 1) & 3 == 1 else h >> 3  # an RLE block stores one byte
                body = f.read(size)
                if len(body) < size:
                    yield pos, head + body, "partial"
                    return
                yield pos, head + body, ("end" if last and not checksum else "block")
                pos += 3 + size
                if last:
                    break
            if checksum:
                ck = f.read(4)
                yield pos, ck, ("end" if len(ck) == 4 else "partial")
                pos += len(ck)
                if len(ck) < 4:
                    return

    def chunks(self) -> Iterator[bytes]:
        dobj = self._dctx.decompressobj()
        in_frame = False
        frame_at = frame_from = 0  # compressed offset and decompressed offset of the frame
        for pos, data, what in self._units():
            if not in_frame:
                in_frame, frame_at, frame_from = True, pos, self.decoded
            try:
                piece = dobj.decompress(data)
            except zstandard.ZstdError as e:
                if "checksum" in str(e):
                    self.error = StreamError(
                        f"{self.path}: zstd content checksum mismatch in the frame at compressed "
                        f"byte offset {frame_at} (decompressed bytes {frame_from}-{self.decoded}): "
                        f"that data decoded but is damaged ({e})",
                        "Its documents were already read and may be altered, so skipping cannot "
                        "help: re-download the file and check it against the published SHA256SUMS "
                        "(pile verify SHA256SUMS.txt --root DIR)",
                        fatal=True,
                    )
                else:
                    self.error = StreamError(
                        f"{self.path}: corrupt zstd data at compressed byte offset {pos} "
                        f"(decompressed byte offset {self.decoded}; {e})",
                        _SKIP_FIX,
                    )
                self.error.__cause__ = e
                return
            if piece:
                self.decoded += len(piece)
                yield piece
            if what == "partial":
                break
            if what == "end" or dobj.eof:
                dobj = self._dctx.decompressobj()
                in_frame = False
        if in_frame:
            self.error = StreamError(
                f"{self.path}: truncated zstd stream: the last frame ends early after "
                f"{self.decoded} decompressed bytes",
                "The file is incomplete: re-download it, or use --on-error skip to keep what was "
                "read before it",
            )


class _GzipSource:
    """gzip chunks with truncation and corruption errors that name the file and offset."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._raw = open_input(path) if is_url(path) else None
        self._g = gzip.open(self._raw or path, "rb")  # noqa: SIM115
        self.decoded = 0
        self.error: StreamError | None = None

    def close(self) -> None:
        self._g.close()
        if self._raw is not None:
            self._raw.close()

    def chunks(self) -> Iterator[bytes]:
        while True:
            try:
                # read1: one decompression step per call, so the bytes before a damage are handed
                # out before the error
                data = self._g.read1(BUFFER_SIZE)
            except (EOFError, OSError, zlib.error) as e:
                what = "truncated" if isinstance(e, EOFError) else "corrupt"
                self.error = StreamError(
                    f"{self.path}: {what} gzip stream at decompressed byte offset {self.decoded} "
                    f"({e})",
                    "Re-download the file, or use --on-error skip to keep what was read before it",
                )
                self.error.__cause__ = e
                return
            if not data:
                return
            self.decoded += len(data)
            yield data


class _PlainSource:
    def __init__(self, path: str) -> None:
        self.path = path
        self._f = open_input(path, buffering=0)
        self.error: StreamError | None = None

    def close(self) -> None:
        self._f.close()

    def chunks(self) -> Iterator[bytes]:
        while data := self._f.read(BUFFER_SIZE):
            yield data


def _open_source(path: str, kind: str):
    if kind == "jsonl.zst":
        return _ZstdSource(path)
    if kind == "jsonl.gz":
        return _GzipSource(path)
    return _PlainSource(path)


def byte_chunks(path: str, kind: str) -> Iterator[bytes]:
    """The decompressed bytes in chunks (for hashing, counting or copying whole files)."""
    src = _open_source(path, kind)
    try:
        yield from src.chunks()
        if src.error is not None:
            raise src.error
    finally:
        src.close()


class LongLine:
    """A line longer than the limit, streamed: `chunks()` yields its bytes (without the newline)
    piece by piece, at most one decompressed chunk at a time in memory; `size` counts what was
    yielded. If the stream is damaged before the line ends, `chunks()` raises the StreamError
    (its `line` is this line, its `partial` empty: the pieces were handed out already)."""

    def __init__(self, pieces: Iterator[bytes] | None = None) -> None:
        self._pieces = iter(pieces or ())
        self.size = 0
        self.newline = False  # set when the line ended with b"\n" (not at the end of the file)

    def chunks(self) -> Iterator[bytes]:
        for piece in self._pieces:
            self.size += len(piece)
            yield piece

    def drain(self) -> int:
        """Read (and drop) the rest of the line; its full size in bytes."""
        for _ in self.chunks():
            pass
        return self.size


def iter_lines(
    path: str,
    kind: str,
    max_line_bytes: int | None = None,
    *,
    source=None,
    first_line: int = 1,
    offset: int = 0,
) -> Iterator[tuple[int, int, bytes | LongLine]]:
    """Yield (1-based line number, decompressed byte offset of the line, line bytes).

    Each line keeps its trailing b"\\n" (the last one may lack it); callers strip it when they
    need the bare record. The empty tail after the last newline is not a line. A line of more than
    `max_line_bytes` bytes (newline excluded) comes as a `LongLine` instead of bytes; what the
    caller leaves of it unread is skipped before the next line.

    `source` (a source positioned at the start of line `first_line`, decompressed byte `offset`)
    reads part of a file: pipeline.read.units enters a file at a frame or byte boundary.
    """
    limit = max_line_bytes or 0
    src = _open_source(path, kind) if source is None else source
    it = src.chunks()
    line_no = first_line - 1
    head: list[bytes] = []  # pieces of the line begun in earlier chunks
    head_len = 0
    rest = b""  # what followed the newline of a long line

    def long_pieces(first: list[bytes], complete: bool, ll: LongLine) -> Iterator[bytes]:
        nonlocal rest
        yield from first
        if complete:  # the whole line is in memory already (bounded by limit + a chunk)
            ll.newline = True
            return
        for data in it:
            end = data.find(b"\n")
            if end < 0:
                yield data
                continue
            if end:
                yield data[:end]
            rest = data[end + 1 :]
            ll.newline = True
            return
        if src.error is not None:
            src.error.line, src.error.offset, src.error.partial = line_no, offset, b""
            raise src.error

    try:
        while True:
            if rest:
                chunk, rest = rest, b""
            else:
                chunk = next(it, None)
                if chunk is None:
                    break
            start = 0
            while True:
                end = chunk.find(b"\n", start)
                if end < 0:
                    break
                line_no += 1
                if head:
                    head.append(chunk[start : end + 1])
                    line = b"".join(head)
                    head = []
                    head_len = 0
                else:
                    line = chunk[start : end + 1]
                start = end + 1
                if limit and len(line) - 1 > limit:
                    ll = LongLine()
                    ll._pieces = long_pieces([line[:-1]], True, ll)
                    yield line_no, offset, ll
                    ll.drain()
                    offset += len(line)
                    continue
                yield line_no, offset, line
                offset += len(line)
            if start < len(chunk):
                tail = chunk[start:] if start else chunk
                head.append(tail)
                head_len += len(tail)
                if limit and head_len > limit:
                    # the unfinished line is over the limit already: stream the rest of it
                    line_no += 1
                    ll = LongLine()
                    ll._pieces = long_pieces(head, False, ll)
                    head = []
                    head_len = 0
                    yield line_no, offset, ll
                    ll.drain()
                    offset += ll.size + ll.newline
        if head:
            line = b"".join(head)
            line_no += 1
            if src.error is not None:
                # the unfinished line the damage cut off: hand it over with the error
                src.error.partial, src.error.line, src.error.offset = line, line_no, offset
                raise src.error
            if limit and len(line) > limit:
                ll = LongLine(iter((line,)))
                yield line_no, offset, ll
                ll.drain()
            else:
                yield line_no, offset, line
            offset += len(line)
        if src.error is not None:
            src.error.line, src.error.offset = line_no + 1, offset
            raise src.error
    finally:
        src.close()
