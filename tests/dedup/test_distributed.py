"""Dedup's pair work on the executor: the exact Jaccard of candidate pairs runs as tasks over
contiguous runs of pairs; the tables must not depend on the worker count or on how the pairs
are cut into tasks."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from pipeline.dedup import DedupConfig, run_dedup, verification
from pipeline.dedup.verification import MAX_PAIRS_PER_TASK, MIN_PAIRS_PER_TASK, pair_runs
from pipeline.engine import make_executor


def test_pair_runs_cover_every_pair_once_in_order():
    for n in (0, 1, MIN_PAIRS_PER_TASK - 1, MIN_PAIRS_PER_TASK * 3 + 7, MAX_PAIRS_PER_TASK * 5 + 1):
        for partitions in (1, 2, 8, 64):
            runs = pair_runs(n, partitions)
            flat = [k for a, b in runs for k in range(a, b)] if n < 10**5 else None
            if flat is not None:
                assert flat == list(range(n))
            assert sum(b - a for a, b in runs) == n
            assert all(b - a <= MAX_PAIRS_PER_TASK for a, b in runs)
            assert len(runs) <= max(partitions, -(-n // MAX_PAIRS_PER_TASK))
            if n >= MIN_PAIRS_PER_TASK * partitions:
                assert len(runs) >= partitions  # enough pairs: at least one run per partition


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> list[str]:
    """3 files, 60 clusters of 6 near-copies of a 100-word text (one word replaced in each, so
    some pairs pass the 0.87 cut and some fail: the center rule needs several rounds)."""
    root = tmp_path_factory.mktemp("ddist_corpus")
    rng = random.Random(11)
    files: list[list[bytes]] = [[], [], []]
    for c in range(60):
        base = [f"c{c}w{i}x{rng.randint(0, 99)}" for i in range(100)]
        for m in range(6):
            words = list(base)
            if m:
                words[rng.randrange(len(words))] = f"m{c}_{m}"
            rec = {"text": " ".join(words), "meta": {"pile_set_name": "Pile-CC"}}
            files[rng.randrange(3)].append(orjson.dumps(rec) + b"\n")
    for k in range(40):  # unrelated singles
        rec = {
            "text": " ".join(f"s{k}w{i}" for i in range(50)),
            "meta": {"pile_set_name": "Github"},
        }
        files[k % 3].append(orjson.dumps(rec) + b"\n")
    paths = []
    for k, lines in enumerate(files):
        p = root / f"part{k}.jsonl"
        p.write_bytes(b"".join(lines))
        paths.append(str(p))
    return paths


def _tables(out: Path) -> dict[str, bytes]:
    return {
        name: (out / name).read_bytes()
        for name in ("removed.parquet", "clusters.parquet", "stats.json", "manifest.json")
    }


def test_one_vs_two_workers_identical_with_many_pair_tasks(planted, tmp_path, monkeypatch):
    cfg = DedupConfig.from_preset("pythia-0.87", partitions=4)
    ref = run_dedup(planted, tmp_path / "default", cfg, executor=make_executor("local", 1))
    checked = ref["verification"]["exact_checked_pairs"]
    # cut the pairs into many small runs: several tasks per partition
    monkeypatch.setattr(verification, "MIN_PAIRS_PER_TASK", 7)
    monkeypatch.setattr(verification, "MAX_PAIRS_PER_TASK", 23)
    assert len(verification.pair_runs(checked, cfg.partitions)) >= 8
    for workers in (1, 2):
        run_dedup(planted, tmp_path / f"w{workers}", cfg, executor=make_executor("local", workers))
    assert _tables(tmp_path / "w1") == _tables(tmp_path / "default")
    assert _tables(tmp_path / "w2") == _tables(tmp_path / "default")
    removed = pq.read_table(tmp_path / "w2" / "removed.parquet").to_pydict()
    # planted answer: only near-copies are removed, each against a member of its own cluster
    assert 0 < ref["removed"] <= 60 * 5
    assert ref["verification"]["exact_dropped_pairs"] > 0  # some pairs failed the exact check
    assert all(j >= cfg.threshold - 1e-12 for j in removed["jaccard"])


def test_ray_equals_local_with_many_pair_tasks(planted, tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="the optional Ray extra is not installed")
    cfg = DedupConfig.from_preset("pythia-0.87", partitions=4)
    run_dedup(planted, tmp_path / "local", cfg, executor=make_executor("local", 1))
    monkeypatch.setattr(verification, "MIN_PAIRS_PER_TASK", 7)
    monkeypatch.setattr(verification, "MAX_PAIRS_PER_TASK", 23)
    # nothing leaves the machine: no usage report
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    from pipeline.engine import ray as ray_engine

    before = ray_engine.tasks_submitted()
    with make_executor("ray", 2) as ex:
        run_dedup(planted, tmp_path / "ray", cfg, executor=ex)
    assert ray_engine.tasks_submitted() - before >= 8, "the pair tasks did not run on Ray"
    assert _tables(tmp_path / "ray") == _tables(tmp_path / "local")
