"""Dedup signatures per work unit (pipeline.read.units): the stage's outputs are byte-identical
whatever the unit size or worker count, and a killed run's finished units are reused."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from pipeline.dedup import DedupConfig, run_dedup
from pipeline.engine import make_executor
from pipeline.engine.local import WATCH_INTERVAL
from pipeline.read import ReadConfig
from tests.dedup.test_stage import _tree_bytes, corpus  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parents[2] / "pipeline" / "data" / "sample" / "train"
WHOLE = 1 << 62  # one unit per file


def _cfg(**kw) -> DedupConfig:
    return DedupConfig.from_preset("pythia-0.87", partitions=8, **kw)


def _run(paths, out, workers: int, caplog, **kw) -> tuple[int, int]:
    """(units signed, units reused) of one dedup run, from its log."""
    caplog.clear()
    caplog.set_level("INFO", logger="pipeline.dedup")
    run_dedup(paths, out, _cfg(**kw), executor=make_executor("local", workers))
    m = re.search(r"(\d+) unit\(s\) signed, (\d+) unit\(s\) reused", caplog.text)
    assert m, caplog.text[-2000:]
    return int(m.group(1)), int(m.group(2))


@pytest.fixture(scope="module")
def multi_frame(corpus, tmp_path_factory):  # noqa: F811
    """The corpus with its first file as a multi-frame .jsonl.zst (frames cut inside lines)."""
    root = tmp_path_factory.mktemp("dedup_units")
    data = Path(corpus["paths"][0]).read_bytes()
    cut = 1500
    frames = [data[i : i + cut] for i in range(0, len(data), cut)]
    p = root / "a.jsonl.zst"
    p.write_bytes(b"".join(zstandard.ZstdCompressor(level=3).compress(x) for x in frames))
    assert len(frames) > 8
    return [str(p), *corpus["paths"][1:]]


def test_units_give_the_same_bytes_on_the_sample(tmp_path, caplog):
    paths = [str(p) for p in sorted(SAMPLE.glob("*.jsonl.zst"))]
    signed, _ = _run(paths, tmp_path / "whole", 1, caplog, unit_bytes=WHOLE)
    assert signed == len(paths)
    want = _tree_bytes(tmp_path / "whole")
    assert {"removed.parquet", "clusters.parquet", "stats.json", "manifest.json"} <= set(want)
    cache = tmp_path / "cache"
    for workers in (1, 2):
        out = tmp_path / f"units{workers}"
        signed, _ = _run(paths, out, workers, caplog, unit_bytes=300_000, unit_cache=str(cache))
        assert signed > 2 * len(paths)  # the single-frame files were split via the cache
        assert _tree_bytes(out) == want


def test_units_give_the_same_bytes_on_a_multi_frame_file(multi_frame, tmp_path, caplog):
    signed, _ = _run(multi_frame, tmp_path / "whole", 1, caplog, unit_bytes=WHOLE)
    assert signed == len(multi_frame)
    want = _tree_bytes(tmp_path / "whole")
    assert any(k.startswith("signatures/") for k in want)
    for workers, unit_bytes in ((1, 2000), (2, 2000), (2, 5000), (2, None)):
        out = tmp_path / f"u{workers}.{unit_bytes}"
        signed, _ = _run(multi_frame, out, workers, caplog, unit_bytes=unit_bytes)
        if unit_bytes == 2000:
            assert signed > 2 * len(multi_frame)
        assert _tree_bytes(out) == want, (workers, unit_bytes)


def test_killed_run_reuses_exactly_its_finished_units(multi_frame, tmp_path, caplog):
    want_dir = tmp_path / "whole"
    _run(multi_frame, want_dir, 1, caplog, unit_bytes=WHOLE)
    out = tmp_path / "out"
    done = 3
    code = (
        "from pipeline.dedup import DedupConfig, run_dedup; "
        "from pipeline.engine import make_executor; "
        f"run_dedup({multi_frame!r}, {str(out)!r}, "
        "DedupConfig.from_preset('pythia-0.87', partitions=8, unit_bytes=2000), "
        "executor=make_executor('local', 1))"
    )
    env = {**os.environ, "PILE_FAULT": f"dedup-units:{done}"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300)
    assert r.returncode == -9, r.stderr[-2000:]
    time.sleep(4 * WATCH_INTERVAL)
    assert not (out / "manifest.json").exists()
    records = list(out.glob(".signatures.*.tmp/units/*.json"))
    assert len(records) == done
    signed, reused = _run(multi_frame, out, 1, caplog, unit_bytes=2000)
    assert reused == done
    assert signed > 0
    assert _tree_bytes(out) == _tree_bytes(want_dir)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_skipped_lines_are_quarantined_the_same_per_unit(corpus, tmp_path, caplog):  # noqa: F811
    """Bad lines in several units: the same outputs and the same quarantine files as one unit."""
    lines = Path(corpus["paths"][0]).read_bytes().splitlines(keepends=True)
    for i in (3, len(lines) // 2, len(lines) - 2):
        lines[i] = b'{"text": broken\n'
    data = b"".join(lines)
    p = tmp_path / "bad.jsonl.zst"
    p.write_bytes(
        b"".join(
            zstandard.ZstdCompressor(level=3).compress(data[i : i + 1500])
            for i in range(0, len(data), 1500)
        )
    )
    paths = [str(p), corpus["paths"][2]]
    got = {}
    for name, unit_bytes, workers in (("whole", WHOLE, 1), ("units", 2000, 2)):
        q = tmp_path / "q"  # one path: the manifest records it
        caplog.clear()
        caplog.set_level("INFO", logger="pipeline.dedup")
        run_dedup(
            paths,
            tmp_path / name,
            _cfg(unit_bytes=unit_bytes),
            read_config=ReadConfig(on_error="skip", quarantine_dir=str(q)),
            executor=make_executor("local", workers),
        )
        signed = int(re.search(r"(\d+) unit\(s\) signed", caplog.text).group(1))
        assert signed > 2 if name == "units" else signed == 2
        got[name] = (_tree_bytes(tmp_path / name), _tree_bytes(q))
        q.rename(tmp_path / f"q_{name}")
    assert got["units"] == got["whole"]
    rejected = [v for k, v in got["whole"][1].items() if k.endswith(".rejected.jsonl")]
    assert len(rejected) == 1 and rejected[0].count(b"\n") == 3
