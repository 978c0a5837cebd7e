"""Local engine: ordered results, and pool workers that die with the main process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.engine import make_executor
from pipeline.engine.local import _alive, _start_time
from tests.procs import descendants, running, wait_for


def test_results_in_task_order_for_any_worker_count():
    # a builtin, not a function of this module: pool workers unpickle tasks by module name, and
    # the forkserver's sys.path may not reach tests/ (it starts in whatever cwd a test left)
    tasks = [-5, 3, -1, 8, -2, 0, 7]
    got = {}
    for workers in (1, 3):
        with make_executor("local", workers) as executor:
            got[workers] = (executor.map(abs, tasks), list(executor.imap(abs, tasks, ahead=2)))
    assert got[1] == got[3] == ([5, 3, 1, 8, 2, 0, 7], [5, 3, 1, 8, 2, 0, 7])


def test_alive_tracks_pid_start_time_and_zombies():
    me = os.getpid()
    assert _alive(me, _start_time(me))
    assert not _alive(me, "0")  # same pid, another start time: the pid was reused
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    start = _start_time(p.pid)
    assert _alive(p.pid, start)
    p.kill()
    # killed but not reaped yet (a zombie) already counts as dead
    wait_for(lambda: not _alive(p.pid, start), "the killed child to count as dead")
    p.wait()
    assert not _alive(p.pid, start)


BLOCKER = """
import os, time
from pathlib import Path

def block(i):
    Path(os.environ["PILE_TEST_MARKS"], str(os.getpid())).write_text(str(i))
    while True:
        time.sleep(0.1)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to list processes")
def test_workers_exit_when_the_main_process_is_killed(tmp_path):
    (tmp_path / "blocker.py").write_text(BLOCKER)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PILE_TEST_MARKS": str(marks)}
    code = (
        "import blocker; from pipeline.engine import make_executor; "
        "make_executor('local', 2).map(blocker.block, range(4))"
    )
    p = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        wait_for(lambda: len(list(marks.iterdir())) >= 2, "both workers to start a task")
        workers = {int(m.name) for m in marks.iterdir()}
        tree = descendants(p.pid)  # workers, forkserver, resource tracker
        assert workers <= tree
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        wait_for(lambda: not running(tree), f"processes {sorted(running(tree))} to exit")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
