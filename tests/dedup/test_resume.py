"""Resume inside the dedup stage: the signature files a killed run finished (one task record
per input file) are reused by the rerun, which reads only the other files and writes the same
bytes as an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from pipeline.dedup import DedupConfig, run_dedup
from pipeline.engine import make_executor
from pipeline.engine.local import WATCH_INTERVAL
from tests.dedup.test_stage import CONFIG, _tree_bytes, corpus, run1  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


def _kill_after(paths, out, done: int, workers: int) -> None:
    code = (
        "from pipeline.dedup import DedupConfig, run_dedup; "
        "from pipeline.engine import make_executor; "
        f"run_dedup({paths!r}, {str(out)!r}, "
        "DedupConfig.from_preset('pythia-0.87', partitions=8), "
        f"executor=make_executor('local', {workers}))"
    )
    env = {**os.environ, "PILE_FAULT": f"dedup-signatures:{done}"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300)
    assert r.returncode == -9, r.stderr[-2000:]
    time.sleep(4 * WATCH_INTERVAL)  # the dead run's workers stop within WATCH_INTERVAL


def _records(out):
    dirs = list(out.glob(".signatures.*.tmp"))
    assert len(dirs) == 1, dirs
    return sorted(dirs[0].glob("*.task.json"))


def _rerun(paths, out, workers=1, config=CONFIG):
    seen = []
    run_dedup(paths, out, config, executor=make_executor("local", workers), progress=seen.append)
    return [bool(p.get("reused")) for p in seen if p.get("phase") == "signatures"]


@pytest.mark.parametrize("workers", [1, 2])
def test_killed_dedup_rereads_only_the_unfinished_files(corpus, run1, tmp_path, workers, caplog):  # noqa: F811
    out = tmp_path / "out"
    _kill_after(corpus["paths"], out, 2, workers)
    assert not (out / "manifest.json").exists()
    assert len(_records(out)) == 2
    caplog.set_level("INFO", logger="pipeline.dedup")
    assert _rerun(corpus["paths"], out, workers) == [True, True, False]
    assert "read 1 of 3 file(s), reused 2" in caplog.text
    assert _tree_bytes(out) == _tree_bytes(run1[0])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_damaged_signature_work_files_are_redone(corpus, run1, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    _kill_after(corpus["paths"], out, 2, 1)
    recs = _records(out)
    work = recs[0].parent
    sig = work / "signatures" / "000000.npy"
    data = bytearray(sig.read_bytes())
    data[-1] ^= 1  # same size, other bytes: only the sha256 tells
    sig.write_bytes(bytes(data))
    rec = json.loads(recs[1].read_text())
    rec["task"]["mtime_ns"] += 1  # as if the input changed since
    recs[1].write_text(json.dumps(rec))
    assert _rerun(corpus["paths"], out) == [False, False, False]
    assert _tree_bytes(out) == _tree_bytes(run1[0])


def test_another_config_discards_the_signature_work(corpus, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    _kill_after(corpus["paths"], out, 1, 1)
    old = _records(out)[0].parent
    other = DedupConfig.from_preset("pythia-0.87", partitions=8, seed=7)
    assert _rerun(corpus["paths"], out, config=other) == [False, False, False]
    assert not old.exists()
    clean = tmp_path / "clean"
    run_dedup(corpus["paths"], clean, other, executor=make_executor("local", 1))
    assert _tree_bytes(out) == _tree_bytes(clean)


def test_keep_intermediate_keeps_the_buckets(corpus, run1, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    cfg = DedupConfig.from_preset("pythia-0.87", partitions=8, keep_intermediate=True)
    run_dedup(corpus["paths"], out, cfg, executor=make_executor("local", 1))
    assert len(list((out / "buckets").rglob("*.bin"))) == 3 * 8
    assert (out / "edges").is_dir()
    got = {
        k: v for k, v in _tree_bytes(out).items() if not k.startswith(("buckets", "edges", "exact"))
    }
    assert got == _tree_bytes(run1[0])
