"""The format owners: index-map files (pipeline.order.mapfiles) and the pre-shuffled layout
(pipeline.order.shuffled): their one finder of files and their structural `check()`, which must
name the damaged file."""

from __future__ import annotations

import fnmatch
import json

import numpy as np
import pytest

from pipeline.order import mapfiles, shuffled
from pipeline.order.checks import SET_CHECKS
from pipeline.order.config import OrderConfig
from pipeline.order.mapfiles import find_manifests, index_map_paths, map_tags, owned_globs
from pipeline.order.preshuffle import run_preshuffle
from pipeline.order.stage import run_order
from pipeline.shards.mmidx import HEADER_SIZE

CFG = OrderConfig(seq_length=16, global_batch=4, train_iters=25, seed=1234)
CFG_B = OrderConfig(seq_length=16, global_batch=2, train_iters=25, seed=7)


@pytest.fixture
def maps(ds):
    run_order(ds, CFG)
    return ds, index_map_paths(ds, CFG)


@pytest.fixture
def pre(maps, tmp_path):
    ds, _ = maps
    out = tmp_path / "pre"
    run_preshuffle(ds, CFG, out, shard_size=1000)  # 100 samples x 17 tokens x 2 bytes: 4 shards
    return out


# ----------------------------------------------------------------------------------------------
# index-map files


def test_one_finder_for_index_map_files(maps):
    ds, paths = maps
    run_order(ds, CFG_B)
    stray = ds.parent / f"{ds.name}_train_0_indexmap_bogus_doc_idx.npy"  # not a map tag
    stray.write_bytes(b"x")
    other = ds.parent / f"other_text_document_train_0_indexmap_{CFG.map_tag}.manifest.json"
    other.write_text("{}")  # another dataset's manifest
    assert map_tags(ds) == {CFG.map_tag, CFG_B.map_tag}
    found = find_manifests(ds)
    assert found == sorted(
        [(CFG.map_tag, paths["manifest"]), (CFG_B.map_tag, index_map_paths(ds, CFG_B)["manifest"])]
    )
    assert find_manifests(ds, ds.parent / "nowhere") == []
    # the build's ownership globs cover every map file of every config (any name of that shape)
    globs = owned_globs(str(ds.parent / "d*_text_document"))
    owned = {p.name for p in ds.parent.iterdir() if any(fnmatch.fnmatch(str(p), g) for g in globs)}
    want = {p.name for c in (CFG, CFG_B) for p in index_map_paths(ds, c).values()}
    assert owned == want | {stray.name}
    for _, manifest in found:
        assert manifest in [p for p, _ in mapfiles.manifests_for(ds, ds.parent, _cfg_of(manifest))]


def _cfg_of(manifest):
    return json.loads(manifest.read_text())["config"]


def test_map_set_check_passes_a_good_set(maps):
    _, paths = maps
    assert mapfiles.check(paths["manifest"]) == []
    assert SET_CHECKS["index-maps"](paths["manifest"]) == []


def test_map_set_check_names_a_shuffle_idx_from_another_build(maps):
    _, paths = maps
    n = np.load(paths["shuffle_idx"]).size
    np.save(paths["shuffle_idx"], np.arange(n - 3, dtype=np.uint32))
    (msg,) = mapfiles.check(paths["manifest"])
    assert str(paths["shuffle_idx"]) in msg and f"{n - 3} entries" in msg


def test_map_set_check_names_an_unreadable_or_missing_map(maps):
    _, paths = maps
    paths["doc_idx"].write_bytes(b"\x93NUMPY garbage")
    paths["sample_idx"].unlink()
    msgs = mapfiles.check(paths["manifest"])
    assert any(str(paths["doc_idx"]) in m and "not a readable .npy" in m for m in msgs), msgs
    assert any(str(paths["sample_idx"]) in m and "not found" in m for m in msgs), msgs


def test_map_set_check_names_a_damaged_doc_idx_and_doc_epoch(maps):
    _, paths = maps
    good = np.load(paths["doc_idx"])
    d = good.copy()
    d[0] = d[1] if d[0] != d[1] else d[2]  # one item once more, another once less
    np.save(paths["doc_idx"], d)
    (msg,) = mapfiles.check(paths["manifest"])
    assert str(paths["doc_idx"]) in msg and "same number of times" in msg
    np.save(paths["doc_idx"], good)
    e = np.load(paths["doc_epoch"])
    np.save(paths["doc_epoch"], e[:-1])
    msgs = mapfiles.check(paths["manifest"])
    assert any(str(paths["doc_epoch"]) in m and "shape" in m for m in msgs), msgs


def test_map_set_check_of_a_wrong_manifest(maps, tmp_path):
    _, paths = maps
    doc = json.loads(paths["manifest"].read_text())
    doc["kind"] = "preshuffled"
    bad = tmp_path / "x.manifest.json"
    bad.write_text(json.dumps(doc))
    (msg,) = mapfiles.check(bad)
    assert str(bad) in msg and "'index-maps'" in msg
    (msg,) = mapfiles.check(tmp_path / "missing.manifest.json")
    assert "missing.manifest.json" in msg and "not found" in msg


# ----------------------------------------------------------------------------------------------
# the pre-shuffled layout


def test_preshuffled_names_use_the_shard_pattern():
    assert shuffled.shard_names(2500, 1000) == [
        "document-00000-of-00002.bin",
        "document-00001-of-00002.bin",
        "document-00002-of-00002.bin",
    ]
    assert shuffled.shard_names(2500, None) == ["document.bin"]
    assert shuffled.is_bin_name("document.bin")
    assert shuffled.is_bin_name("document-00003-of-00020.bin")
    assert not shuffled.is_bin_name("documents-00003-of-00020.bin")
    assert not shuffled.is_bin_name("document.idx")


def test_preshuffled_check_passes_a_good_directory(pre):
    assert shuffled.check(pre) == []
    assert SET_CHECKS["preshuffled"](pre / shuffled.PRESHUFFLED_MANIFEST) == []


def test_preshuffled_check_names_a_missing_shard(pre):
    (pre / "document-00002-of-00003.bin").unlink()
    (msg,) = shuffled.check(pre)
    assert "document-00002-of-00003.bin" in msg and "missing" in msg


def test_preshuffled_check_names_a_truncated_shard(pre):
    last = pre / "document-00003-of-00003.bin"
    last.write_bytes(last.read_bytes()[:-10])
    (msg,) = shuffled.check(pre)
    assert str(pre) in msg and "document-00003-of-00003.bin" in msg
    assert "3390 bytes but document.idx needs 3400" in msg


def test_preshuffled_check_names_a_damaged_index(pre):
    idx = pre / "document.idx"
    raw = bytearray(idx.read_bytes())
    raw[HEADER_SIZE + 4 * 5 : HEADER_SIZE + 4 * 6] = np.int32(16).tobytes()  # sizes[5]
    idx.write_bytes(bytes(raw))
    (msg,) = shuffled.check(pre)
    assert str(idx) in msg and "sample 5 has sizes[5] = 16 tokens" in msg
    idx.write_bytes(b"MMIDIDX\x00\x00 broken")
    (msg,) = shuffled.check(pre)
    assert str(idx) in msg
