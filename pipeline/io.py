"""Atomic file writes and streaming hashes.

Every artifact is written as `<name>.tmp`, flushed, fsync'ed, then renamed over `<name>` and the
directory fsync'ed, so a crash leaves either the old file, the new file, or a `.tmp` that no reader
mistakes for a finished file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import PipelineError

HASH_CHUNK = 8 << 20  # 8 MiB reads: large enough that hashing runs at OpenSSL speed


def tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[BinaryIO]:
    """Open `path.tmp` for writing; on success fsync and rename to `path`; on error remove it."""
    path = Path(path)
    if "w" not in mode:
        raise ValueError(f"atomic_open is for writing, got mode {mode!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PipelineError(
            f"cannot create output directory {path.parent}: {e.strerror}. "
            "Choose a writable output location."
        ) from e
    tmp = tmp_path(path)
    try:
        f = open(tmp, mode)  # noqa: SIM115
    except OSError as e:
        raise PipelineError(
            f"cannot write {tmp}: {e.strerror}. Check permissions and free space of {path.parent}."
        ) from e
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError):
            raise PipelineError(
                f"writing {path} failed: {e.strerror or e}. Check free space and permissions; "
                "no partial file was left behind."
            ) from e
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike, chunk: int = HASH_CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        # a zero-filled 8 MiB buffer per call costs more than hashing a small file: size it to
        # the file (+1 so one read reaches EOF; a file that grew meanwhile just takes more reads)
        buf = bytearray(max(1, min(chunk, os.fstat(f.fileno()).st_size + 1)))
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def human_bytes(n: float) -> str:
    """1234567 -> '1.23 MB' (decimal units, as disk sizes are quoted)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} PB"  # pragma: no cover - unreachable
