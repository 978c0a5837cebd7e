"""One build per output directory: an advisory `flock` on `OUT/.lock` holding the owner's pid.

The kernel drops the lock when the owner dies (even by SIGKILL), so a stale lock never blocks a
resume; a live owner is named in the error.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from pipeline.errors import PipelineError


class BuildLocked(PipelineError):
    exit_code = 5


class BuildLock:
    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> BuildLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                owner = {}
            os.close(fd)
            raise BuildLocked(
                f"{self.path.parent} is being built by pid {owner.get('pid', '?')} on "
                f"{owner.get('host', '?')} (lock {self.path}). Wait for it to finish, or stop that "
                "process; the lock is released automatically when it exits."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> BuildLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
