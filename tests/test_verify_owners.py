"""`pile verify` reports a damaged set with its format owner's message and exits 4: index maps
(pipeline.order.mapfiles.check), a pre-shuffled directory (pipeline.order.shuffled.check), dedup
tables (pipeline.dedup.tables.check). Each damage is planted with the manifest re-hashed, so only
the owner's structural check can catch it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli.main import main
from pipeline.dedup import DedupConfig, run_dedup, tables
from pipeline.dedup.signatures import write_table
from pipeline.manifest import write_manifest
from pipeline.order import mapfiles, shuffled
from pipeline.order.config import OrderConfig
from pipeline.order.preshuffle import run_preshuffle
from pipeline.order.stage import run_order
from tests.order.conftest import write_dataset

CFG = OrderConfig(seq_length=16, global_batch=4, train_iters=25, seed=1234)
OTHER = OrderConfig(seq_length=16, global_batch=2, train_iters=25, seed=7)  # another sample count
DEDUP = DedupConfig.from_preset("pythia-0.87", partitions=2)
TOKEN_FILES = ((".bin", "bin"), (".idx", "idx"))
STANDARD = {"format", "format_version", "kind", "config_fingerprint", "config", "counts", "files"}


def _rehash(manifest):
    """Rewrite `manifest` with the sizes and sha256 of its files as they are now."""
    doc = json.loads(manifest.read_text())
    write_manifest(
        manifest,
        kind=doc["kind"],
        config_fingerprint=doc["config_fingerprint"],
        files=[(manifest.parent / f["name"], f.get("role")) for f in doc["files"]],
        config=doc["config"],
        counts=doc["counts"],
        extra={k: v for k, v in doc.items() if k not in STANDARD | {"manifest_sha256"}},
    )


def _verify(capsys, path):
    rc = main(["verify", str(path)])
    return rc, capsys.readouterr().out


def _verify_err(capsys, path):
    rc = main(["verify", str(path)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _owner_says(out, msgs):
    """Every owner message (`<path>: what`) is a STRUCTURE line of verify's output."""
    assert msgs, "the planted damage must be one the owner finds"
    for m in msgs:
        assert f"STRUCTURE {m}" in out, (m, out)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A dataset with its index maps (two configs) and a pre-shuffled copy in 4 shards."""
    root = tmp_path_factory.mktemp("owners")
    prefix = root / "data" / "d_text_document"
    prefix.parent.mkdir()
    write_dataset(prefix, np.random.RandomState(3).randint(1, 40, 60), sidecar=False)
    write_manifest(  # the one `pile tokenize` writes next to the dataset
        root / "data" / "d.manifest.json",
        kind="token-dataset",
        config_fingerprint="0" * 64,
        files=[(prefix.with_name(prefix.name + s), r) for s, r in TOKEN_FILES],
    )
    run_order(prefix, CFG)
    run_order(prefix, OTHER)
    run_preshuffle(prefix, CFG, root / "data" / "pre", shard_size=1000)
    return root


@pytest.fixture
def data(built, tmp_path):
    shutil.copytree(built / "data", tmp_path / "data")
    return tmp_path / "data"


def test_good_sets_pass(data, capsys):
    rc, out = _verify(capsys, data)
    assert rc == 0 and "all OK" in out, out


def test_index_maps_mixed_from_two_builds_get_the_owners_message(data, capsys):
    prefix = data / "d_text_document"
    mine, other = mapfiles.index_map_paths(prefix, CFG), mapfiles.index_map_paths(prefix, OTHER)
    shutil.copyfile(other["shuffle_idx"], mine["shuffle_idx"])  # a sound permutation, wrong length
    _rehash(mine["manifest"])
    msgs = mapfiles.check(mine["manifest"])
    assert any("the maps are from different builds" in m for m in msgs), msgs
    rc, out = _verify(capsys, mine["manifest"])
    assert rc == 4
    _owner_says(out, msgs)
    assert f"STRUCTURE {mine['shuffle_idx']}: " in out


def test_index_maps_of_another_dataset_are_stale(data, capsys, tmp_path):
    # the map set of a dataset with other sizes, moved next to this one under the same names
    prefix = data / "d_text_document"
    other = tmp_path / "o" / "d_text_document"
    other.parent.mkdir()
    write_dataset(other, np.random.RandomState(4).randint(1, 40, 60), sidecar=False)
    run_order(other, CFG)
    for role, p in mapfiles.index_map_paths(other, CFG).items():
        if p.exists():
            shutil.copyfile(p, mapfiles.index_map_paths(prefix, CFG)[role])
    rc, out = _verify(capsys, mapfiles.index_map_paths(prefix, CFG)["manifest"])
    assert rc == 4 and "index maps were built from a different dataset" in out, out


def test_damaged_map_gets_the_owners_message_not_a_second_one(data, capsys):
    m = mapfiles.index_map_paths(data / "d_text_document", CFG)
    np.save(m["doc_idx"], np.zeros((2, 2), dtype=np.int32))
    _rehash(m["manifest"])
    msgs = mapfiles.check(m["manifest"])
    rc, out = _verify(capsys, m["manifest"])
    assert rc == 4
    _owner_says(out, msgs)
    assert out.count(f"STRUCTURE {m['doc_idx']}: ") == 1, out  # no per-file check besides it


def test_missing_preshuffled_shard_gets_the_owners_message(data, capsys):
    pre = data / "pre"
    (pre / "document-00002-of-00003.bin").unlink()
    msgs = shuffled.check(pre)
    assert msgs == [f"{pre}: shard(s) document-00002-of-00003.bin missing (3 of 4 present)"]
    rc, out = _verify(capsys, pre)
    assert rc == 4
    _owner_says(out, msgs)
    assert f"MISSING   {pre / 'document-00002-of-00003.bin'}: file not found" in out


def test_irregular_preshuffled_index_gets_the_owners_message(data, capsys):
    pre = data / "pre"
    idx = pre / "document.idx"
    raw = bytearray(idx.read_bytes())
    raw[34 + 4 * 7] ^= 0x01  # sizes[7]: 17 -> 16 tokens, a sample shorter than the others
    idx.write_bytes(bytes(raw))
    _rehash(pre / shuffled.PRESHUFFLED_MANIFEST)
    msgs = shuffled.check(pre)
    assert any("sample 7 has sizes[7] = 16" in m for m in msgs), msgs
    rc, out = _verify(capsys, pre)
    assert rc == 4
    _owner_says(out, msgs)


@pytest.fixture(scope="module")
def dedup_run(tmp_path_factory):
    """A finished dedup run with two planted clusters (3 copies, 2 copies)."""
    root = tmp_path_factory.mktemp("dedup_owner")
    words = [f"w{i}" for i in range(60)]
    a, b = " ".join(words), " ".join(reversed(words))
    texts = [a, "unrelated text of its own", a, b, a.upper(), b, "another lone document"]
    src = root / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    run_dedup([src], root / "out", DEDUP)
    return root / "out"


@pytest.fixture
def dd(dedup_run, tmp_path):
    shutil.copytree(dedup_run, tmp_path / "dd")
    return tmp_path / "dd"


def test_good_dedup_tables_pass(dd, capsys):
    rc, out = _verify(capsys, dd)
    assert rc == 0 and "all OK" in out, out


def test_unsorted_removed_table_gets_the_owners_message(dd, capsys):
    path = dd / tables.REMOVED
    t = pq.read_table(path)
    write_table(path, t.take(pa.array(range(t.num_rows - 1, -1, -1))), DEDUP.fingerprint(),
                tables.REMOVED_KIND)  # fmt: skip
    _rehash(dd / "manifest.json")
    msgs = tables.check(dd)
    assert f"{path}: doc_id is not strictly ascending" in msgs, msgs
    rc, out = _verify(capsys, dd)
    assert rc == 4
    _owner_says(out, msgs)


def test_foreign_clusters_table_gets_the_owners_message(dd, capsys):
    path = dd / tables.CLUSTERS
    write_table(path, pq.read_table(path), "0" * 64, tables.CLUSTERS_KIND)
    _rehash(dd / "manifest.json")
    msgs = tables.check(dd)
    assert any("is not the manifest's" in m for m in msgs), msgs
    rc, out = _verify(capsys, dd / "manifest.json")
    assert rc == 4
    _owner_says(out, msgs)


def test_a_table_the_owner_cannot_read_is_a_structure_problem(dd, capsys):
    from pipeline.dedup.signatures import FINGERPRINT_KEY, KIND_KEY

    path = dd / tables.CLUSTERS
    t = pq.read_table(path)  # a fingerprint that is not text: the owner's check raises
    meta = {FINGERPRINT_KEY: b"\xff\xfe", KIND_KEY: tables.CLUSTERS_KIND.encode()}
    pq.write_table(t.replace_schema_metadata(meta), path)
    _rehash(dd / "manifest.json")
    rc, out = _verify(capsys, dd)
    assert rc == 4
    assert f"STRUCTURE {dd / 'manifest.json'}: the dedup set cannot be read to check it (" in out


def test_a_set_listing_a_file_outside_its_directory_is_not_opened(data, capsys, tmp_path):
    m = mapfiles.index_map_paths(data / "d_text_document", CFG)
    outside = tmp_path / "elsewhere_doc_idx.npy"
    shutil.move(m["doc_idx"], outside)
    doc = json.loads(m["manifest"].read_text())
    for f in doc["files"]:
        if f.get("role") == "doc_idx":
            f["name"] = "../elsewhere_doc_idx.npy"
    m["manifest"].write_text(json.dumps(doc))
    _rehash(m["manifest"])
    rc, out, err = _verify_err(capsys, m["manifest"])
    assert rc == 4 and "REFUSED" in out and "doc_idx" in out, out
    assert f"warning: {m['manifest']}: the index-maps set was not checked as a whole" in err, err
    assert "STRUCTURE" not in out, out
