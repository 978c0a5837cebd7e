"""Atomic file writes and streaming hashes.

Every artifact is written as `<name>.tmp`, flushed, fsync'ed, then renamed over `<name>` and the
directory fsync'ed, so a crash leaves either the old file, the new file, or a `.tmp` that no reader
mistakes for a finished file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
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


# O_NOFOLLOW: a `*.tmp` planted as a symlink must fail to open, never be followed and overwritten
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC


def write_error(path: str | os.PathLike, e: OSError, what: str = "writing") -> PipelineError:
    """The error for a failed write, naming the file: a bare `write()` error (disk full) carries
    no file name of its own."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"Free space on the disk holding {Path(path).parent} (or write to a larger disk)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "Check permissions (or pick a writable output location)"
    else:
        fix = "Check free space and permissions"
    return PipelineError(
        f"{what} {path} failed: {e.strerror or e}. {fix}, then rerun; "
        "no partial file was left behind."
    )


def open_new(path: str | os.PathLike, mode: str = "wb") -> BinaryIO:
    """Create `path` (a temporary: `*.tmp`) for writing without following symlinks.

    A file already at `path` is a leftover of a killed run of the same writer (only pile names
    its temporaries so): it is unlinked first, which removes a planted symlink itself and never
    its target. O_EXCL|O_NOFOLLOW then makes the create fail rather than follow a link that
    appeared in between.
    """
    path = Path(path)
    if "w" not in mode:
        raise ValueError(f"open_new is for writing, got mode {mode!r}")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise PipelineError(
            f"cannot write {path}: a directory is in the way. Move it away and rerun."
        ) from None
    except OSError as e:
        raise write_error(path, e, "replacing") from e
    try:
        fd = os.open(path, _NEW_FLAGS, 0o644)
    except OSError as e:
        raise PipelineError(
            f"cannot write {path}: {e.strerror}. Check permissions and free space of {path.parent}."
        ) from e
    return os.fdopen(fd, mode)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike, mode: str = "wb", per_process: bool = False
) -> Iterator[BinaryIO]:
    """Open `path.tmp` for writing; on success fsync and rename to `path`; on error remove it.

    The temporary is created with O_EXCL|O_NOFOLLOW (`open_new`) and renamed over `path`, which
    replaces a symlink at `path` rather than writing through it. `per_process` names it
    `path.<pid>.tmp`: a straggling worker of a killed run can then never rename this run's
    half-written file (task outputs written by pool workers).
    """
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
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp") if per_process else tmp_path(path)
    f = open_new(tmp, mode)
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
            raise write_error(path, e) from e
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike, chunk: int = HASH_CHUNK) -> str:
    h = hashlib.sha256()
    # O_NONBLOCK: opening a FIFO must not wait for a writer; only regular files are read (a
    # device such as /dev/zero would never end)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file, not read", str(path))
    with open(fd, "rb", buffering=0) as f:
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
