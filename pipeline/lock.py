"""One writer per output directory: an advisory `flock` on `DIR/.lock` holding the owner's pid.

`pile build` locks OUT; every stage (`run_tokenize`, `run_dedup`, `run_order`, `run_preshuffle`)
locks the directory it writes, so two runs into one directory, standalone or inside a build,
exclude each other (a build's stages write subdirectories of OUT, so it never meets its own lock).
The kernel drops the lock when the owner dies (even by SIGKILL), so a stale lock never blocks a
rerun; a live owner is named in the error. The lock file is removed on release (while still
locked; acquirers check they locked the file that is still linked), so finished outputs carry no
`.lock`. Locks are per open file description: a process trying to lock a directory it already
holds is refused like any other process.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import fcntl
import functools
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pipeline.errors import PipelineError

LOCK_NAME = ".lock"
F = TypeVar("F", bound=Callable[..., Any])


class BuildLocked(PipelineError):
    """The output directory is locked by another live run (a build or a stage)."""

    exit_code = 5


DirLocked = BuildLocked


# directories this process holds locked: a build's stages write below its own OUT
_OWN: set[Path] = set()


def held_by_this_process(directory: Path) -> bool:
    """True when this process holds the lock of `directory` (e.g. `pile build`'s final verify)."""
    return directory.resolve() in _OWN


def _owner(fd: int) -> str:
    """'pid N on HOST (pile WHAT)' from the JSON a lock holder writes into its `.lock`."""
    try:
        owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        owner = {}
    what = owner.get("what")
    return (
        f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
        f"{f' (pile {what})' if what else ''}"
    )


def lock_holder(lock: str | os.PathLike) -> str | None:
    """Who holds the lock file `lock` now ('pid N on HOST (pile WHAT)'), or None when it is
    free or absent: a shared-lock probe fails only while a live run holds it."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _owner(fd)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _check_ancestors(d: Path) -> None:
    """Refuse to write inside a directory another live run holds (a stage command into a running
    build's OUT/standard, say)."""
    for a in Path(d).resolve().parents:
        if a in _OWN:
            continue
        holder = lock_holder(a / LOCK_NAME)
        if holder:
            raise BuildLocked(
                f"{d} is inside {a}, which is being written by {holder}; lock {a / LOCK_NAME}. "
                "Wait for that run to finish, or write elsewhere."
            )


class DirLock:
    def __init__(self, out_dir: str | os.PathLike, what: str = "build") -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> DirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _check_ancestors(self.path.parent)
        for _ in range(100):  # retries only when a holder unlinked the file under us
            try:
                # O_NOFOLLOW: a `.lock` planted as a symlink must not make us truncate its target
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except FileNotFoundError:  # the directory was removed meanwhile
                self.path.parent.mkdir(parents=True, exist_ok=True)
                continue
            except OSError as e:
                if e.errno != errno.ELOOP:
                    raise
                raise PipelineError(
                    f"{self.path} is a symlink; pile's lock file is never followed. Remove it "
                    "(it is not pile's) and rerun."
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _owner(fd)
                os.close(fd)
                raise BuildLocked(
                    f"{self.path.parent} is being built by {holder}; lock "
                    f"{self.path}. Wait for it to finish, or stop that process; the lock is "
                    "released automatically when it exits."
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder unlinked this file before we locked it
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            info = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what}
            os.pwrite(fd, json.dumps(info).encode(), 0)
            self._fd = fd
            _OWN.add(self.path.parent.resolve())
            return self
        raise BuildLocked(f"could not lock {self.path}: it keeps being replaced; rerun.")

    def release(self) -> None:
        if self._fd is None:
            return
        # unlink while still holding the lock: acquirers re-check the inode after locking
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        _OWN.discard(self.path.parent.resolve())

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


_HELD: contextvars.ContextVar[list[DirLock] | None] = contextvars.ContextVar(
    "pile_dir_locks", default=None
)


def holds_dir_locks(fn: F) -> F:
    """Release every lock taken with `lock_dir` inside `fn` when `fn` returns or raises.

    Lets a stage take its lock after validating its arguments (so a refused call creates no
    directory) without re-indenting its body into a `with` block.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        held: list[DirLock] = []
        token = _HELD.set(held)
        try:
            return fn(*args, **kwargs)
        finally:
            _HELD.reset(token)
            for lk in reversed(held):
                lk.release()

    return wrapper  # type: ignore[return-value]


def lock_dir(out_dir: str | os.PathLike, what: str) -> DirLock:
    """Lock `out_dir` until the enclosing `@holds_dir_locks` function ends; BuildLocked (exit 5)
    names the holder when another run owns it."""
    held = _HELD.get()
    if held is None:
        raise RuntimeError("lock_dir() must be called inside a @holds_dir_locks function")
    lk = DirLock(out_dir, what).acquire()
    held.append(lk)
    return lk
