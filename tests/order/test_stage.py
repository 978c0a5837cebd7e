"""`run_order` / `load_order`: gpt-neox file names, manifest, identity checks and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.config import combine_fingerprints
from pipeline.errors import ConfigError, InputError, IntegrityError
from pipeline.io import sha256_file
from pipeline.manifest import read_manifest
from pipeline.order import reference as ref
from pipeline.order.checks import CHECKS
from pipeline.order.config import OrderConfig
from pipeline.order.mapfiles import index_map_paths, load_order
from pipeline.order.stage import run_order

CFG = OrderConfig(seq_length=16, global_batch=4, train_iters=30, seed=42)


def test_run_order_writes_gpt_neox_files_and_manifest(make_dataset):
    prefix, _ = make_dataset(np.random.RandomState(1).randint(0, 40, 80))
    m = run_order(prefix, CFG)
    base = f"{prefix.name}_train_0_indexmap_121ns_16sl_42s"
    names = sorted(p.name for p in prefix.parent.iterdir() if p.name.startswith(base))
    assert names == sorted(
        [f"{base}_doc_idx.npy", f"{base}_sample_idx.npy", f"{base}_shuffle_idx.npy",
         f"{base}_doc_epoch.npy", f"{base}.manifest.json"]
    )  # fmt: skip
    assert m == read_manifest(prefix.parent / f"{base}.manifest.json")
    assert m["kind"] == "index-maps"
    roles = {f["role"]: f for f in m["files"]}
    assert set(roles) == {"doc_idx", "sample_idx", "shuffle_idx", "sidecar"}
    idx_sha = sha256_file(str(prefix) + ".idx")
    assert m["config_fingerprint"] == combine_fingerprints(CFG.fingerprint(), idx_sha)
    assert m["dataset"]["idx_sha256"] == idx_sha
    for role in ("doc_idx", "sample_idx", "shuffle_idx"):
        p = prefix.parent / roles[role]["name"]
        assert roles[role]["sha256"] == sha256_file(p)
        assert CHECKS[role](p) == []
    # the saved arrays are the reference's, byte for byte
    from pipeline.shards.mmidx import MMIDXDataset

    sizes = np.asarray(MMIDXDataset(prefix).sizes)
    d, s, sh = ref.build_index_mappings_ref(sizes, CFG.num_samples, 16, 42)
    paths = index_map_paths(prefix, CFG)
    for role, want in (("doc_idx", d), ("sample_idx", s), ("shuffle_idx", sh)):
        got = np.load(paths[role])
        assert got.dtype == want.dtype and np.array_equal(got, want)
    c = m["counts"]
    assert c["num_samples"] == 121 and c["num_total_samples"] == len(sh)
    assert c["train_samples"] == 120 and c["steps"] == 30


def test_out_dir_and_reuse(make_dataset, tmp_path):
    prefix, _ = make_dataset([30] * 20)
    out = tmp_path / "maps"
    m1 = run_order(prefix, CFG, out)
    paths = index_map_paths(prefix, CFG, out)
    assert paths["manifest"].exists() and paths["doc_idx"].parent == out
    assert m1["dataset"]["prefix"] == "../d_text_document"
    mtime = paths["doc_idx"].stat().st_mtime_ns
    m2 = run_order(prefix, CFG, out, reuse=True)
    assert m2 == m1 and paths["doc_idx"].stat().st_mtime_ns == mtime
    maps = load_order(prefix, CFG, out, check_dataset="full")
    assert maps.num_total == m1["counts"]["num_total_samples"]
    assert maps.doc_epoch is not None and maps.doc_epoch.shape == maps.doc_idx.shape


def test_same_bytes_on_rebuild(make_dataset, tmp_path):
    prefix, _ = make_dataset(np.random.RandomState(2).randint(1, 50, 40))
    a = run_order(prefix, CFG, tmp_path / "a")
    b = run_order(prefix, CFG, tmp_path / "b")
    assert [f["sha256"] for f in a["files"]] == [f["sha256"] for f in b["files"]]


def test_load_order_missing_maps(make_dataset):
    prefix, _ = make_dataset([20] * 10)
    with pytest.raises(InputError, match="index maps for .* not found.*pile order"):
        load_order(prefix, CFG)


def test_load_order_other_config(make_dataset):
    prefix, _ = make_dataset([20] * 10)
    run_order(prefix, CFG)
    other = OrderConfig(seq_length=16, global_batch=4, train_iters=31, seed=42)
    with pytest.raises(ConfigError, match="different config: 121ns_16sl_42s"):
        load_order(prefix, other)


def test_load_order_dataset_changed(make_dataset, tmp_path):
    prefix, _ = make_dataset([20] * 10)
    run_order(prefix, CFG)
    # rewrite the dataset with other sizes (same prefix): the maps now belong to another dataset
    make_dataset([21] * 10)
    with pytest.raises(IntegrityError, match="built from a different dataset"):
        load_order(prefix, CFG)


def test_load_order_full_check_catches_same_size_change(make_dataset):
    prefix, _ = make_dataset([20] * 10)
    run_order(prefix, CFG)
    m = index_map_paths(prefix, CFG)["manifest"]
    doc = json.loads(m.read_text())
    doc["dataset"]["idx_sha256"] = "0" * 64
    m.write_text(json.dumps(doc))
    load_order(prefix, CFG)  # quick identity still matches
    with pytest.raises(IntegrityError, match="idx_sha256"):
        load_order(prefix, CFG, check_dataset="full")


def test_maps_without_manifest_are_accepted_after_shape_check(make_dataset, tmp_path):
    prefix, _ = make_dataset([20] * 10)
    run_order(prefix, CFG)
    index_map_paths(prefix, CFG)["manifest"].unlink()
    maps = load_order(prefix, CFG)
    assert maps.manifest is None and maps.num_total > 0
    make_dataset([20] * 11)  # 11 items: doc_idx length no longer a multiple
    with pytest.raises(IntegrityError, match="not a multiple"):
        load_order(prefix, CFG)


def test_mismatched_shuffle_idx_length(make_dataset):
    prefix, _ = make_dataset([20] * 10)
    run_order(prefix, CFG)
    p = index_map_paths(prefix, CFG)["shuffle_idx"]
    np.save(p, np.arange(5, dtype=np.uint32))
    with pytest.raises(IntegrityError, match="from different builds"):
        load_order(prefix, CFG)


def test_run_order_errors(tmp_path, make_dataset):
    with pytest.raises(InputError, match="token dataset index not found"):
        run_order(tmp_path / "missing_text_document", CFG)
    prefix, _ = make_dataset([1])
    with pytest.raises(InputError, match="at least 2"):
        run_order(prefix, CFG)


def test_index_map_bytes_is_what_run_order_writes(make_dataset):
    from pipeline.order.indexmap import index_map_bytes

    prefix, _ = make_dataset([5, 1, 3, 8, 2, 9, 4])
    m = run_order(prefix, CFG)
    paths = index_map_paths(prefix, CFG)
    written = sum(
        np.load(paths[k], mmap_mode="r").nbytes
        for k in ("doc_idx", "sample_idx", "shuffle_idx", "doc_epoch")
    )
    c = m["counts"]
    assert c["tokens_per_epoch"] == 32
    assert index_map_bytes(c["items"], c["num_epochs"], 32, CFG.seq_length) == written


def test_order_refuses_up_front_when_the_maps_cannot_fit(make_dataset, monkeypatch):
    import shutil

    from pipeline.order import stage

    prefix, _ = make_dataset([5, 1, 3, 8, 2, 9, 4])
    first = run_order(prefix, CFG)
    paths = index_map_paths(prefix, CFG)
    before = {p.name: p.read_bytes() for p in prefix.parent.iterdir() if p.is_file()}
    real = shutil.disk_usage
    monkeypatch.setattr(stage.shutil, "disk_usage", lambda p: real(p)._replace(free=100))
    with pytest.raises(ConfigError, match=r"need .* only 100 B is free.*--preset sample"):
        run_order(prefix, CFG)
    # nothing was touched: the earlier maps and their manifest are still complete
    assert {p.name: p.read_bytes() for p in prefix.parent.iterdir() if p.is_file()} == before
    assert read_manifest(paths["manifest"])["config_fingerprint"] == first["config_fingerprint"]


def test_failed_order_keeps_the_earlier_manifest(make_dataset):
    prefix, _ = make_dataset([5, 1, 3, 8, 2, 9, 4])
    run_order(prefix, CFG)
    paths = index_map_paths(prefix, CFG)
    idx = prefix.with_suffix(".idx")
    idx.write_bytes(idx.read_bytes()[:-3])  # a damaged dataset index
    with pytest.raises((InputError, IntegrityError)):
        run_order(prefix, CFG)
    assert paths["manifest"].exists()
