"""Resume inside the tokenize stage: a killed run's finished tasks are reused by the rerun, which
runs only the others and writes the same bytes as an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from pipeline.engine import make_executor
from pipeline.engine.local import WATCH_INTERVAL
from pipeline.tokenize.stage import TokenizeConfig, output_names, run_tokenize
from tests.tokenize.test_stage import SAMPLE_DOCS, write_corpus

pytestmark = pytest.mark.slow


@pytest.fixture
def inputs(tmp_path):
    """Four input files (four tasks with one worker)."""
    docs = SAMPLE_DOCS * 2
    step = len(docs) // 4
    return [
        write_corpus(tmp_path / "in" / f"{i:02d}.jsonl.zst", docs[i * step : (i + 1) * step])
        for i in range(4)
    ]


def _outputs(out, prefix="t"):
    n = output_names(prefix)
    return {k: (out / n[k]).read_bytes() for k in ("bin", "idx", "sidecar", "manifest")}


def _kill_after(inputs, out, merged: int, workers: int) -> None:
    """Run tokenize in a child process that SIGKILLs itself after `merged` tasks are merged."""
    code = (
        "from pipeline.tokenize.stage import run_tokenize; "
        "from pipeline.engine import make_executor; "
        f"run_tokenize({[str(p) for p in inputs]!r}, {str(out)!r}, 't', "
        f"executor=make_executor('local', {workers}))"
    )
    env = {**os.environ, "PILE_FAULT": f"tokenize-task:{merged}"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300)
    assert r.returncode == -9, r.stderr[-2000:]
    time.sleep(4 * WATCH_INTERVAL)  # the dead run's workers stop within WATCH_INTERVAL


def _records(out):
    dirs = list(out.glob(".t.tokenize.*.tmp"))
    assert len(dirs) == 1, dirs
    return sorted(dirs[0].glob("*.task.json"))


def _rerun(inputs, out, workers, **kw):
    seen = []
    run_tokenize(
        inputs, out, "t", executor=make_executor("local", workers), progress=seen.append, **kw
    )
    return [r["reused"] for r in seen]


@pytest.mark.parametrize("workers", [1, 2])
def test_killed_tokenize_reruns_only_the_unfinished_tasks(tmp_path, inputs, workers, caplog):
    clean = tmp_path / "clean"
    run_tokenize(inputs, clean, "t", executor=make_executor("local", workers))
    out = tmp_path / "out"
    _kill_after(inputs, out, 2, workers)
    assert not (out / output_names("t")["manifest"]).exists()
    done = _records(out)
    assert len(done) >= 2  # the two merged tasks, and any a worker finished ahead of the merge
    caplog.set_level("INFO", logger="pipeline.tokenize")
    reused = _rerun(inputs, out, workers)
    assert len(reused) >= 4 and sum(reused) == len(done)  # only the rest ran
    assert reused[:2] == [True, True]
    assert f"ran {len(reused) - len(done)} of {len(reused)} task(s)" in caplog.text
    assert _outputs(out) == _outputs(clean)
    # the work directory goes once the manifest is written
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_a_damaged_or_foreign_task_record_is_not_reused(tmp_path, inputs):
    clean = tmp_path / "clean"
    run_tokenize(inputs, clean, "t")
    out = tmp_path / "out"
    _kill_after(inputs, out, 3, 1)
    recs = _records(out)
    assert len(recs) == 3
    work = recs[0].parent
    # task 0: a flipped byte in its partial .bin (same size): its sha256 no longer matches
    part = work / recs[0].name.replace(".task.json", ".bin")
    data = bytearray(part.read_bytes())
    data[0] ^= 1
    part.write_bytes(bytes(data))
    # task 1: a record of another config
    rec = json.loads(recs[1].read_text())
    rec["fingerprint"] = "0" * 64
    recs[1].write_text(json.dumps(rec))
    assert _rerun(inputs, out, 1) == [False, False, True, False]
    assert _outputs(out) == _outputs(clean)


def test_input_changed_since_the_kill_redoes_its_task(tmp_path, inputs):
    out = tmp_path / "out"
    _kill_after(inputs, out, 2, 1)
    os.utime(inputs[1], ns=(1, 1))  # touched: size and mtime are the task's identity
    assert _rerun(inputs, out, 1) == [True, False, False, False]
    clean = tmp_path / "clean"
    run_tokenize(inputs, clean, "t")
    assert _outputs(out) == _outputs(clean)


def test_another_config_discards_the_work_directory(tmp_path, inputs):
    out = tmp_path / "out"
    _kill_after(inputs, out, 2, 1)
    old = _records(out)[0].parent
    assert _rerun(inputs, out, 1, config=TokenizeConfig(append_eod=False)) == [False] * 4
    assert not old.exists()
    clean = tmp_path / "clean"
    run_tokenize(inputs, clean, "t", TokenizeConfig(append_eod=False))
    assert _outputs(out) == _outputs(clean)


def test_a_failed_run_keeps_its_finished_tasks(tmp_path, inputs):
    bad = tmp_path / "in" / "04.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": \n')
    out = tmp_path / "out"
    from pipeline.errors import InputError

    with pytest.raises(InputError, match="04.jsonl:2"):
        run_tokenize([*inputs, bad], out, "t")
    assert len(_records(out)) == 4
    bad.write_text('{"text": "fine"}\n{"text": "fixed"}\n')
    assert _rerun([*inputs, bad], out, 1) == [True] * 4 + [False]
    clean = tmp_path / "clean"
    run_tokenize([*inputs, bad], clean, "t")
    assert _outputs(out) == _outputs(clean)
