"""The dedup tables' owner (pipeline.dedup.tables): a finished run passes its structural check,
and each kind of damage is named."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dedup.signatures import write_table
from pipeline.dedup.tables import (
    CLUSTERS,
    CLUSTERS_KIND,
    REMOVED,
    REMOVED_KIND,
    check,
    load_removed_ids,
)
from tests.dedup.test_stage import CONFIG, corpus, run1  # noqa: F401 (fixtures)


def _copy(run1, tmp_path):  # noqa: F811
    d = tmp_path / "dd"
    shutil.copytree(run1[0], d)
    return d


def _rewrite(path, kind, edit):
    t = pq.read_table(path)
    write_table(path, edit(t), CONFIG.fingerprint(), kind)


def test_a_finished_run_has_no_problems(run1):  # noqa: F811
    out, stats = run1
    assert stats["removed"] > 0 and stats["clusters"] > 0  # the corpus plants duplicates
    assert check(out) == []
    assert len(load_removed_ids(out)) == stats["removed"]


def test_unsorted_removed_ids_are_named(run1, tmp_path):  # noqa: F811
    d = _copy(run1, tmp_path)
    _rewrite(d / REMOVED, REMOVED_KIND, lambda t: t.take(pa.array(range(t.num_rows - 1, -1, -1))))
    got = check(d)
    assert any(f"{d / REMOVED}: doc_id is not strictly ascending" in p for p in got), got


def test_a_cluster_without_its_removed_documents_is_named(run1, tmp_path):  # noqa: F811
    d = _copy(run1, tmp_path)
    _rewrite(d / REMOVED, REMOVED_KIND, lambda t: t.slice(1))
    got = check(d)
    assert any("clusters do not match" in p for p in got), got


def test_a_foreign_table_and_a_missing_one_are_named(run1, tmp_path):  # noqa: F811
    d = _copy(run1, tmp_path)
    t = pq.read_table(d / CLUSTERS)
    write_table(d / CLUSTERS, t, "0" * 64, CLUSTERS_KIND)
    assert any("is not the manifest's" in p for p in check(d))
    (d / REMOVED).unlink()
    assert any(f"{d / REMOVED}: not a readable parquet table" in p for p in check(d))


def test_wrong_columns_are_named(run1, tmp_path):  # noqa: F811
    d = _copy(run1, tmp_path)
    _rewrite(d / CLUSTERS, CLUSTERS_KIND, lambda t: t.drop(["size"]))
    assert any("expected ['cluster_id', 'kept_id', 'size'" in p for p in check(d))
