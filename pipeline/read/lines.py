"""Raw line streams with byte offsets, at constant memory.

Lines are split on b"\\n" only (never `str.splitlines()`, which also splits on U+2028, U+0085, ...,
characters that appear inside Pile documents). Decompression reads large chunks; a zstd file may
hold several frames; a frame that ends early (truncated download) or corrupt data raises InputError
naming the file and the decompressed byte offset where reading stopped.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator

import zstandard

from pipeline.errors import InputError

READ_SIZE = 1 << 16  # compressed bytes per decompress call: bounds what a corrupt block loses
CHUNK_SIZE = 8 << 20  # plain bytes per read


def _zstd_chunks(path: str) -> Iterator[bytes]:
    dctx = zstandard.ZstdDecompressor()
    produced = 0
    with open(path, "rb") as f:
        dobj = dctx.decompressobj()
        in_frame = False
        while True:
            data = f.read(READ_SIZE)
            if not data:
                break
            while data:
                try:
                    out = dobj.decompress(data)
                except zstandard.ZstdError as e:
                    raise InputError(
                        f"{path}: corrupt zstd data at decompressed byte offset {produced} ({e}). "
                        "The file is damaged: re-download it and check it against the published "
                        "SHA256SUMS, or use --on-error skip to keep what was read before it."
                    ) from e
                in_frame = True
                if out:
                    produced += len(out)
                    yield out
                if dobj.eof:
                    data = dobj.unused_data
                    dobj = dctx.decompressobj()
                    in_frame = False
                else:
                    data = b""
        if in_frame:
            raise InputError(
                f"{path}: truncated zstd stream: the last frame ends early after {produced} "
                "decompressed bytes. The file is incomplete: re-download it, or use --on-error skip "
                "to keep what was read before it."
            )


def _gzip_chunks(path: str) -> Iterator[bytes]:
    produced = 0
    try:
        with gzip.open(path, "rb") as f:
            while True:
                out = f.read(CHUNK_SIZE)
                if not out:
                    break
                produced += len(out)
                yield out
    except (EOFError, OSError, zlib.error) as e:
        what = "truncated" if isinstance(e, EOFError) else "corrupt"
        raise InputError(
            f"{path}: {what} gzip stream at decompressed byte offset {produced} ({e}). "
            "Re-download the file, or use --on-error skip to keep what was read before it."
        ) from e


def _plain_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while True:
            out = f.read(CHUNK_SIZE)
            if not out:
                break
            yield out


def byte_chunks(path: str, kind: str) -> Iterator[bytes]:
    if kind == "jsonl.zst":
        return _zstd_chunks(path)
    if kind == "jsonl.gz":
        return _gzip_chunks(path)
    return _plain_chunks(path)


def iter_lines(path: str, kind: str) -> Iterator[tuple[int, int, bytes]]:
    """Yield (1-based line number, decompressed byte offset of the line, line bytes without \\n).

    A final line without a trailing newline is yielded too; the empty tail after the last newline
    is not a line.
    """
    line_no = 0
    offset = 0
    tail = b""
    for chunk in byte_chunks(path, kind):
        if tail:
            chunk = tail + chunk
        parts = chunk.split(b"\n")
        tail = parts.pop()
        for part in parts:
            line_no += 1
            yield line_no, offset, part
            offset += len(part) + 1
    if tail:
        line_no += 1
        yield line_no, offset, tail
