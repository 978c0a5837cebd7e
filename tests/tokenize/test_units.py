"""Tokenize per work unit (pipeline.read.units): the dataset's bytes do not depend on the unit
size or the worker count, and a killed run with many units redoes only the unfinished units."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from pipeline.engine import make_executor
from pipeline.engine.local import WATCH_INTERVAL
from pipeline.errors import ConfigError
from pipeline.read import ReadConfig, resolve_inputs
from pipeline.tokenize.plan import TASKS_PER_WORKER, WHOLE_FILES, plan_tasks
from pipeline.tokenize.stage import TokenizeConfig, output_names, run_tokenize

SAMPLE = Path(__file__).resolve().parents[2] / "pipeline" / "data" / "sample" / "train"


def _lines(n: int, bad_every: int = 0) -> bytes:
    out = []
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            out.append(b'{"text": "broken ' + str(i).encode() + b'"\n')  # invalid JSON
        else:
            doc = {"text": f"doc {i} " + "word " * (i % 17), "meta": {"pile_set_name": "S"}}
            out.append(json.dumps(doc).encode() + b"\n")
    return b"".join(out)


def multi_frame(path: Path, data: bytes, frame: int = 700) -> Path:
    """`data` as independent zstd frames of `frame` bytes cut anywhere (mid-line too), as
    pzstd or `zstd -B` write them."""
    c = zstandard.ZstdCompressor(level=3, write_checksum=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(c.compress(data[i : i + frame]) for i in range(0, len(data), frame)))
    return path


def _outputs(out: Path, prefix: str = "t") -> dict[str, bytes]:
    n = output_names(prefix)
    return {k: (out / n[k]).read_bytes() for k in ("bin", "idx", "sidecar", "manifest")}


@pytest.fixture
def corpus(tmp_path):
    mf = multi_frame(tmp_path / "in" / "mf.jsonl.zst", _lines(300))
    plain = tmp_path / "in" / "plain.jsonl"
    plain.write_bytes(_lines(120))
    return [*sorted(SAMPLE.glob("*.jsonl.zst")), mf, plain]


@pytest.mark.slow
def test_unit_size_and_worker_count_do_not_change_a_byte(tmp_path, corpus):
    ref = tmp_path / "ref"
    run_tokenize(corpus, ref, "t", TokenizeConfig(unit_bytes=WHOLE_FILES))
    files = resolve_inputs(corpus)
    cache = tmp_path / "cache"
    one = plan_tasks(files, 1, WHOLE_FILES)
    assert len(one.units) == len(files)
    many = plan_tasks(files, 1, 4096, cache)
    # every file is split: the sample's single frames through the re-chunk cache
    assert all(len(many.units_of(f.index)) > 1 for f in files), many.manifest_entry()
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        cfg = TokenizeConfig(unit_bytes=4096, unit_cache=str(cache), batch_size=7)
        run_tokenize(corpus, out, "t", cfg, executor=make_executor("local", workers))
        assert _outputs(out) == _outputs(ref)
        # the plan is not in the manifest (it would differ with the unit size)
        assert b"unit_bytes" not in _outputs(out)["manifest"]


def test_default_units_are_balanced_for_the_workers(tmp_path):
    """A multi-frame file of most of the bytes among small ones is split so no unit holds much
    more than its share; with one worker every file is one unit."""
    big = multi_frame(tmp_path / "in" / "00.jsonl.zst", _lines(3000), frame=4000)
    small = [
        multi_frame(tmp_path / "in" / f"{k:02d}.jsonl.zst", _lines(60), frame=4000)
        for k in range(1, 5)
    ]
    files = resolve_inputs([big, *small])
    assert len(plan_tasks(files, 1).units) == len(files)
    plan = plan_tasks(files, 2)
    size = {f.index: os.path.getsize(f.path) for f in files}
    total = sum(size.values())
    big_units = plan.units_of(0)
    assert len(big_units) >= 2
    assert all(len(plan.units_of(k)) == 1 for k in range(1, 5))
    assert size[0] / len(big_units) <= 1.5 * total / (2 * TASKS_PER_WORKER)


def test_skip_mode_quarantine_is_the_same_for_any_unit_size(tmp_path):
    bad = multi_frame(tmp_path / "in" / "bad.jsonl.zst", _lines(200, bad_every=9))
    res = {}
    for name, ub in (("one", WHOLE_FILES), ("many", 1024)):
        q = tmp_path / f"q-{name}"
        rc = ReadConfig(on_error="skip", quarantine_dir=str(q))
        counts = run_tokenize([bad], tmp_path / name, "t", TokenizeConfig(unit_bytes=ub), rc)
        assert counts["rejected"] == 22
        res[name] = (_outputs(tmp_path / name), {p.name: p.read_bytes() for p in q.iterdir()})
    assert len(plan_tasks(resolve_inputs([bad]), 1, 1024).units) > 3
    assert res["many"] == res["one"]
    assert not any(".part" in n for n in res["many"][1])


def test_unit_bytes_must_be_positive():
    with pytest.raises(ConfigError, match="unit_bytes=0"):
        TokenizeConfig(unit_bytes=0)


def _kill_after(inputs, out, merged: int, unit_bytes: int) -> None:
    code = (
        "from pipeline.tokenize.stage import run_tokenize, TokenizeConfig; "
        f"run_tokenize({[str(p) for p in inputs]!r}, {str(out)!r}, 't', "
        f"TokenizeConfig(unit_bytes={unit_bytes}))"
    )
    env = {**os.environ, "PILE_FAULT": f"tokenize-task:{merged}"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300)
    assert r.returncode == -9, r.stderr[-2000:]
    time.sleep(4 * WATCH_INTERVAL)


@pytest.mark.slow
def test_killed_run_with_units_redoes_only_the_unfinished_units(tmp_path):
    inputs = [
        multi_frame(tmp_path / "in" / "a.jsonl.zst", _lines(300)),
        multi_frame(tmp_path / "in" / "b.jsonl.zst", _lines(200)),
    ]
    n = len(plan_tasks(resolve_inputs(inputs), 1, 2048).units)
    assert n >= 6
    clean = tmp_path / "clean"
    run_tokenize(inputs, clean, "t", TokenizeConfig(unit_bytes=2048))
    out = tmp_path / "out"
    _kill_after(inputs, out, 3, 2048)
    assert not (out / output_names("t")["manifest"]).exists()
    (work,) = out.glob(".t.tokenize.*.tmp")
    assert len(list(work.glob("*.task.json"))) == 3
    seen = []
    run_tokenize(inputs, out, "t", TokenizeConfig(unit_bytes=2048), progress=seen.append)
    assert [r["reused"] for r in seen] == [True] * 3 + [False] * (n - 3)
    assert _outputs(out) == _outputs(clean)
