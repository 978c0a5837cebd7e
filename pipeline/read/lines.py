"""Raw line streams with byte offsets, at constant memory.

Lines are split on b"\\n" only (never `str.splitlines()`, which also splits on U+2028, U+0085, ...,
characters that appear inside Pile documents): a `BufferedReader` iterates the decompressed bytes
line by line in C. zstd is decompressed by a raw stream over `decompressobj` (not
`stream_reader`, which ends silently on a truncated file); a file may hold several frames; a frame
that ends early (truncated download) or corrupt data raises InputError naming the file and the
decompressed byte offset where reading stopped.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator

import zstandard

from pipeline.errors import InputError


class StreamError(InputError):
    """A damaged compressed stream: `detail` says what and where, `fix` what to do.

    `partial` holds the bytes of the unfinished last line read before the damage (kept by the
    reader's quarantine), `line` its 1-based number, `offset` where it starts."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(f"{detail}. {fix}")
        self.detail = detail
        self.fix = fix
        self.partial = b""
        self.line = 0
        self.offset = 0  # decompressed byte offset of that line


READ_SIZE = 1 << 16  # compressed bytes per decompress call: bounds what a corrupt block loses
BUFFER_SIZE = 1 << 20  # decompressed bytes per line-buffer refill


class _ZstdRaw(io.RawIOBase):
    """Decompressed bytes of a (multi-frame) zstd file, with truncation and corruption errors."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._f = open(path, "rb")  # noqa: SIM115
        self._dctx = zstandard.ZstdDecompressor()
        self._dobj = self._dctx.decompressobj()
        self._in_frame = False
        self._buf = memoryview(b"")
        self._pos = 0
        self.produced = 0  # decompressed bytes handed out so far
        # Raised by iter_lines once every complete line before the damage is out: raising from
        # readinto would lose the bytes the line buffer holds.
        self.error: StreamError | None = None

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()

    def _refill(self) -> bool:
        out: list[bytes] = []
        while not out and self.error is None:
            data = self._f.read(READ_SIZE)
            if not data:
                if self._in_frame:
                    self.error = StreamError(
                        f"{self.path}: truncated zstd stream: the last frame ends early after "
                        f"{self.produced} decompressed bytes",
                        "The file is incomplete: re-download it, or use --on-error skip to keep "
                        "what was read before it.",
                    )
                break
            while data:
                try:
                    piece = self._dobj.decompress(data)
                except zstandard.ZstdError as e:
                    self.error = StreamError(
                        f"{self.path}: corrupt zstd data at decompressed byte offset "
                        f"{self.produced + sum(map(len, out))} ({e})",
                        "The file is damaged: re-download it and check it against the published "
                        "SHA256SUMS, or use --on-error skip to keep what was read before it.",
                    )
                    self.error.__cause__ = e
                    break
                self._in_frame = True
                if piece:
                    out.append(piece)
                if self._dobj.eof:
                    data = self._dobj.unused_data
                    self._dobj = self._dctx.decompressobj()
                    self._in_frame = False
                else:
                    data = b""
        if not out:
            return False  # end of data; iter_lines raises self.error, if any, after the last line
        self._buf = memoryview(out[0] if len(out) == 1 else b"".join(out))
        self._pos = 0
        return True

    def readinto(self, b) -> int:
        if self._pos >= len(self._buf) and not self._refill():
            return 0
        n = min(len(b), len(self._buf) - self._pos)
        b[:n] = self._buf[self._pos : self._pos + n]
        self._pos += n
        self.produced += n
        return n


class _GzipRaw(io.RawIOBase):
    """gzip bytes with truncation and corruption errors that name the file and offset."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._g = gzip.open(path, "rb")  # noqa: SIM115
        self.produced = 0
        self.error: StreamError | None = None  # see _ZstdRaw.error

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self._g.close()
        super().close()

    def readinto(self, b) -> int:
        if self.error is not None:
            return 0
        try:
            # read1: one decompression step per call, so the bytes before a damage are handed
            # out before the error (readinto would drop a partly filled buffer with it)
            data = self._g.read1(len(b))
        except (EOFError, OSError, zlib.error) as e:
            what = "truncated" if isinstance(e, EOFError) else "corrupt"
            self.error = StreamError(
                f"{self.path}: {what} gzip stream at decompressed byte offset {self.produced} "
                f"({e})",
                "Re-download the file, or use --on-error skip to keep what was read before it.",
            )
            self.error.__cause__ = e
            return 0
        n = len(data)
        b[:n] = data
        self.produced += n
        return n


def open_stream(path: str, kind: str) -> io.BufferedReader:
    if kind == "jsonl.zst":
        return io.BufferedReader(_ZstdRaw(path), buffer_size=BUFFER_SIZE)
    if kind == "jsonl.gz":
        return io.BufferedReader(_GzipRaw(path), buffer_size=BUFFER_SIZE)
    return open(path, "rb", buffering=BUFFER_SIZE)  # noqa: SIM115


def byte_chunks(path: str, kind: str, size: int = BUFFER_SIZE) -> Iterator[bytes]:
    """The decompressed bytes in chunks (for hashing or copying whole files)."""
    with open_stream(path, kind) as f:
        while chunk := f.read(size):
            yield chunk
        error = getattr(getattr(f, "raw", None), "error", None)
        if error is not None:
            raise error


def iter_lines(path: str, kind: str) -> Iterator[tuple[int, int, bytes]]:
    """Yield (1-based line number, decompressed byte offset of the line, line bytes).

    Each line keeps its trailing b"\\n" (the last one may lack it); callers strip it when they
    need the bare record. The empty tail after the last newline is not a line.
    """
    offset = 0
    line_no = 0
    with open_stream(path, kind) as f:
        raw = getattr(f, "raw", None)
        for line_no, line in enumerate(f, start=1):
            if not line.endswith(b"\n") and getattr(raw, "error", None) is not None:
                # the unfinished line the damage cut off: hand it over with the error
                raw.error.partial, raw.error.line, raw.error.offset = line, line_no, offset
                raise raw.error
            yield line_no, offset, line
            offset += len(line)
        if getattr(raw, "error", None) is not None:
            raw.error.line, raw.error.offset = line_no + 1, offset
            raise raw.error
