"""One writer per output directory: stages and builds lock DIR/.lock; killed runs leave nothing
that blocks or corrupts the next one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zstandard

from pipeline.cli.main import main
from pipeline.dedup import run_dedup
from pipeline.engine import make_executor
from pipeline.lock import BuildLocked, DirLock, holds_dir_locks, lock_dir
from pipeline.order import OrderConfig, run_order, run_preshuffle
from pipeline.shards.mmidx import MMIDXWriter
from pipeline.tokenize.stage import output_names, run_tokenize
from tests.procs import descendants, lock_held_elsewhere, running, wait_for

CFG = OrderConfig(seq_length=16, global_batch=4, train_iters=5, seed=1)


def write_corpus(path: Path, n: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
    docs = [" ".join(rng.choice(words, size=int(rng.integers(5, 40)))) for _ in range(n)]
    data = b"".join(
        json.dumps({"text": t, "meta": {"pile_set_name": "A"}}).encode() + b"\n" for t in docs
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zstandard.ZstdCompressor().compress(data))
    return path


@pytest.fixture
def corpus(tmp_path):
    return [write_corpus(tmp_path / "in" / f"{i:02d}.jsonl.zst", seed=i) for i in range(2)]


@pytest.fixture
def dataset(tmp_path):
    prefix = tmp_path / "ds" / "d_text_document"
    prefix.parent.mkdir()
    w = MMIDXWriter(prefix, np.uint16)
    sizes = np.random.RandomState(3).randint(1, 30, 50)
    w.add_items(np.arange(int(sizes.sum())) % 1000, sizes)
    w.finalize()
    return prefix


def test_lock_names_holder_and_is_removed_on_release(tmp_path):
    d = tmp_path / "d"
    with DirLock(d, "tokenize"):
        holder = json.loads((d / ".lock").read_text())
        assert holder["pid"] == os.getpid() and holder["what"] == "tokenize"
        # flock is per open file description: even this process cannot take it twice
        with pytest.raises(BuildLocked, match=rf"pid {os.getpid()} .*\(pile tokenize\)") as e:
            DirLock(d).acquire()
        assert e.value.exit_code == 5
    assert not (d / ".lock").exists()
    with DirLock(d, "build"):  # free again
        pass


def test_lock_file_of_a_dead_holder_does_not_block(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / ".lock").write_text(json.dumps({"pid": 999999999, "host": "x"}))
    with DirLock(d) as lk:
        assert json.loads(lk.path.read_text())["pid"] == os.getpid()


def test_holds_dir_locks_releases_on_error(tmp_path):
    @holds_dir_locks
    def failing(d):
        lock_dir(d, "tokenize")
        raise ValueError("boom")

    with pytest.raises(ValueError):
        failing(tmp_path / "d")
    assert not (tmp_path / "d" / ".lock").exists()
    with pytest.raises(RuntimeError, match="holds_dir_locks"):
        lock_dir(tmp_path / "d", "tokenize")


def test_tokenize_cli_refused_while_a_build_holds_the_directory(tmp_path, corpus, capsys):
    out = tmp_path / "out"
    with DirLock(out, "build"):
        rc = main(["tokenize", str(corpus[0].parent), "--out", str(out), "--prefix", "p"])
    assert rc == 5
    assert f"pid {os.getpid()}" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == []  # nothing touched, lock file gone


def test_dedup_refused_while_locked(tmp_path, corpus):
    with DirLock(tmp_path / "dd"), pytest.raises(BuildLocked, match=f"pid {os.getpid()}"):
        run_dedup(corpus, tmp_path / "dd", executor=make_executor("local", 1))


def test_order_refused_while_locked(tmp_path, dataset):
    with DirLock(dataset.parent), pytest.raises(BuildLocked, match=f"pid {os.getpid()}"):
        run_order(dataset, CFG)
    with DirLock(tmp_path / "maps"), pytest.raises(BuildLocked):
        run_order(dataset, CFG, tmp_path / "maps")
    run_order(dataset, CFG)  # released: runs
    assert not (dataset.parent / ".lock").exists()


def test_preshuffle_refused_while_locked(tmp_path, dataset):
    run_order(dataset, CFG)
    with DirLock(tmp_path / "pre"), pytest.raises(BuildLocked, match=f"pid {os.getpid()}"):
        run_preshuffle(dataset, CFG, tmp_path / "pre", shard_size=None)
    assert not (tmp_path / "pre" / "document.idx").exists()
    run_preshuffle(dataset, CFG, tmp_path / "pre", shard_size=None)
    assert (tmp_path / "pre" / "document.idx").exists()


# A tokenize run whose workers block after writing their first partial, so it can be killed
# mid-run deterministically. Workers import this module to unpickle the task function.
SLOW = """
import os, time
from pathlib import Path
import pipeline.tokenize.records as rec
_real = rec.run_task

def slow(task):
    _real(task)
    Path(os.environ["PILE_TEST_MARKS"], str(os.getpid())).write_text("")
    while True:
        time.sleep(0.1)

rec.run_task = slow
"""


def test_killed_tokenize_run_locks_then_leaves_nothing_behind(tmp_path, corpus, capsys):
    (tmp_path / "pile_slow.py").write_text(SLOW)
    marks = tmp_path / "marks"
    marks.mkdir()
    out = tmp_path / "out"
    argv = ["tokenize", str(corpus[0].parent), "--out", str(out), "--prefix", "t"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PILE_TEST_MARKS": str(marks)}
    code = f"import sys, pile_slow; from pipeline.cli.main import main; sys.exit(main({argv + ['--workers', '2']!r}))"
    p = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(list(marks.iterdir())) >= 2, "both workers to write a partial")
        tree = descendants(p.pid)
        # a second run into the same directory is refused, naming the live one
        assert main(argv) == 5
        assert f"pid {p.pid}" in capsys.readouterr().err
        assert len(list(out.glob(".t.tokenize.*.tmp"))) == 1  # the first run's, untouched
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        wait_for(lambda: not running(tree), "the killed run's workers to exit")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # the rerun (with its own temp dir) removes the dead run's and matches a clean run
    assert main([*argv, "--workers", "2"]) == 0
    clean = tmp_path / "clean"
    run_tokenize(corpus, clean, "t", executor=make_executor("local", 2))
    names = output_names("t")
    for k in ("bin", "idx", "sidecar", "manifest"):
        assert (out / names[k]).read_bytes() == (clean / names[k]).read_bytes(), k
    assert sorted(q.name for q in out.iterdir() if q.name.startswith(".")) == []


def test_a_stage_inside_a_directory_another_run_holds_is_refused(tmp_path, corpus, capsys):
    out = tmp_path / "build_out"
    with lock_held_elsewhere(out) as holder:
        rc = main(
            ["tokenize", str(corpus[0].parent), "--out", str(out / "standard"), "--prefix", "pile"]
        )
        assert rc == 5
        err = capsys.readouterr().err
        assert "is inside" in err and f"pid {holder.pid}" in err and "(pile build)" in err
        assert not (out / "standard" / "pile_text_document.bin").exists()
    # the holder is gone: the same command now runs
    assert (
        main(
            ["tokenize", str(corpus[0].parent), "--out", str(out / "standard"), "--prefix", "pile"]
        )
        == 0
    )


def test_planted_lock_symlink_is_not_followed(tmp_path):
    from pipeline.errors import PipelineError
    from pipeline.lock import DirLock

    victim = tmp_path / "victim"
    victim.write_text("keep me")
    d = tmp_path / "out"
    d.mkdir()
    (d / ".lock").symlink_to(victim)
    with pytest.raises(PipelineError, match=r"\.lock is a symlink"):
        DirLock(d).acquire()
    assert victim.read_text() == "keep me"
