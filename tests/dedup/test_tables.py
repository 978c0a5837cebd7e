"""The dedup tables' owner (pipeline.dedup.tables): a finished run passes its structural check,
and each kind of damage is named."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.dedup import DedupConfig, run_dedup
from pipeline.dedup.signatures import write_table
from pipeline.dedup.tables import (
    CLUSTERS,
    CLUSTERS_KIND,
    REMOVED,
    REMOVED_KIND,
    check,
    load_removed_ids,
)

CONFIG = DedupConfig.from_preset("pythia-0.87", partitions=2)


@pytest.fixture(scope="module")
def run1(tmp_path_factory):
    """A finished dedup run over one small file with two planted clusters (3 copies, 2 copies)."""
    root = tmp_path_factory.mktemp("tables")
    words = [f"w{i}" for i in range(60)]
    a, b = " ".join(words), " ".join(reversed(words))
    texts = [a, "unrelated text of its own", a, b, a.upper(), b, "another lone document"]
    src = root / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    stats = run_dedup([src], root / "out", CONFIG)
    return root / "out", stats


def _copy(run1, tmp_path):
    d = tmp_path / "dd"
    shutil.copytree(run1[0], d)
    return d


def _rewrite(path, kind, edit):
    t = pq.read_table(path)
    write_table(path, edit(t), CONFIG.fingerprint(), kind)


def test_a_finished_run_has_no_problems(run1):
    out, stats = run1
    assert (stats["removed"], stats["clusters"]) == (3, 2)  # the planted copies
    assert check(out) == []
    assert len(load_removed_ids(out)) == stats["removed"]


def test_unsorted_removed_ids_are_named(run1, tmp_path):
    d = _copy(run1, tmp_path)
    _rewrite(d / REMOVED, REMOVED_KIND, lambda t: t.take(pa.array(range(t.num_rows - 1, -1, -1))))
    got = check(d)
    assert any(f"{d / REMOVED}: doc_id is not strictly ascending" in p for p in got), got


def test_a_cluster_without_its_removed_documents_is_named(run1, tmp_path):
    d = _copy(run1, tmp_path)
    _rewrite(d / REMOVED, REMOVED_KIND, lambda t: t.slice(1))
    got = check(d)
    assert any("clusters do not match" in p for p in got), got


def test_a_foreign_table_and_a_missing_one_are_named(run1, tmp_path):
    d = _copy(run1, tmp_path)
    t = pq.read_table(d / CLUSTERS)
    write_table(d / CLUSTERS, t, "0" * 64, CLUSTERS_KIND)
    assert any("is not the manifest's" in p for p in check(d))
    (d / REMOVED).unlink()
    assert any(f"{d / REMOVED}: not a readable parquet table" in p for p in check(d))


def test_wrong_columns_are_named(run1, tmp_path):
    d = _copy(run1, tmp_path)
    _rewrite(d / CLUSTERS, CLUSTERS_KIND, lambda t: t.drop(["size"]))
    assert any("expected ['cluster_id', 'kept_id', 'size'" in p for p in check(d))
