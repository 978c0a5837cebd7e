"""Process helpers for the tests that kill runs: descendants, which still run, waiting."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import psutil
import pytest

TIMEOUT = 60.0  # generous: only bounds a hang; killed workers normally exit within ~1 s


def descendants(pid: int) -> set[int]:
    """Pids of every process below `pid` (workers, forkserver, resource tracker)."""
    return {p.pid for p in psutil.Process(pid).children(recursive=True)}


def running(pids: set[int]) -> set[int]:
    """The pids of `pids` that still exist and are not zombies."""
    out = set()
    for p in pids:
        try:
            if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                out.add(p)
        except psutil.NoSuchProcess:
            pass
    return out


def wait_for(cond, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def lock_held_elsewhere(directory, what: str = "build"):
    """Another live process holding `directory`'s pile lock; yields its Popen, kills it after."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from pipeline.lock import DirLock; "
            f"DirLock({str(directory)!r}, {what!r}).acquire(); print('locked', flush=True); "
            "time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()
