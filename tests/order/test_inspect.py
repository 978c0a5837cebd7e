"""Batch-exact replay: document-level + maps == gpt-neox __getitem__ == pre-shuffled data."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest

from pipeline.errors import ConfigError, InputError, IntegrityError
from pipeline.order import reference as ref
from pipeline.order.config import OrderConfig
from pipeline.order.data import open_data, resolve_data
from pipeline.order.document import DocumentData
from pipeline.order.inspect import save_steps_npy, step_report
from pipeline.order.mapfiles import index_map_paths
from pipeline.order.preshuffle import run_preshuffle
from pipeline.order.provenance import ProvenanceTable, table_paths
from pipeline.order.shuffled import (
    PRESHUFFLED_MANIFEST,
    PreshuffledData,
    find_bin_files,
    preshuffled_index_chunks,
    shard_names,
)
from pipeline.order.stage import run_order
from pipeline.shards.mmidx import MMIDXDataset, encode_index

CFG = OrderConfig(seq_length=16, global_batch=4, train_iters=40, seed=3)


@pytest.fixture
def built(make_dataset, tmp_path):
    sizes = np.random.RandomState(7).randint(1, 30, 70)
    sizes[[3, 10]] = 1
    sizes[20] = 0
    prefix, toks = make_dataset(sizes)
    run_order(prefix, CFG)
    return prefix, sizes, toks


def test_document_level_equals_gpt_neox_getitem(built):
    prefix, _, _ = built
    data = DocumentData(prefix, CFG)
    ds = MMIDXDataset(prefix)
    m = data.maps
    assert m.num_epochs >= 2
    for step in range(CFG.train_iters):
        batch = data.step(step)
        assert batch.shape == (4, 17) and batch.dtype == np.uint16
        for i in range(4):
            want = ref.get_sample_ref(ds, m.doc_idx, m.sample_idx, m.shuffle_idx, step * 4 + i)
            assert np.array_equal(batch[i].astype(np.int64), want), (step, i)


def test_samples_tile_the_flat_stream(built):
    prefix, sizes, toks = built
    data = DocumentData(prefix, CFG)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    flat = np.concatenate([toks[starts[d] : starts[d + 1]] for d in data.maps.doc_idx])
    for g in range(data.maps.num_total):
        s = int(data.maps.shuffle_idx[g])
        assert np.array_equal(data.samples(np.array([g]))[0], flat[s * 16 : s * 16 + 17])


@pytest.mark.parametrize("shard_size", [None, 1000, 136 * 5])
def test_preshuffled_equals_document_level_for_every_step(built, tmp_path, shard_size):
    prefix, _, _ = built
    out = tmp_path / f"pre_{shard_size}"
    man = run_preshuffle(prefix, CFG, out, shard_size=shard_size)
    total = 160 * 17 * 2
    assert man["counts"]["bytes"] == total and man["counts"]["step_bytes"] == 136
    names = [f["name"] for f in man["files"]]
    assert names == ["document.idx"] + shard_names(total, shard_size)
    if shard_size == 136 * 5:  # exact multiple: Pythia's naming ends with an empty shard
        assert (out / names[-1]).stat().st_size == 0 and names[-1].endswith("-of-00008.bin")
    doc = DocumentData(prefix, CFG)
    pre = open_data(out, CFG)
    assert isinstance(pre, PreshuffledData) and pre.num_steps == CFG.train_iters
    joined = b"".join((out / n).read_bytes() for n in names[1:])
    for step in range(CFG.train_iters):
        want = doc.step(step)
        assert np.array_equal(pre.step(step), want)
        # step N is the byte range [N*gb*(L+1)*2, (N+1)*gb*(L+1)*2)
        assert joined[step * 136 : (step + 1) * 136] == want.tobytes()
    assert np.array_equal(pre.steps(3, 7), doc.steps(3, 7))
    assert np.array_equal(
        pre.samples(np.array([5, 6, 7, 30, 2])), doc.samples(np.array([5, 6, 7, 30, 2]))
    )


def test_preshuffled_index_layout_matches_pythia():
    # sizes all L+1, pointers g*(L+1)*2, doc_idx = [0] (one entry), as in EleutherAI's document.idx
    got = b"".join(preshuffled_index_chunks(10, 17, np.uint16, chunk=3))
    assert got == encode_index(np.uint16, np.full(10, 17), np.array([0]))


def test_pythia_document_idx_known_answer():
    """EleutherAI's published document.idx (pile-*-pythia-preshuffled): 1,757,184,042 bytes,
    sha256 1d9fdd76... ; ours for the Pythia preset is byte-identical (streamed, ~3 s)."""
    h = hashlib.sha256()
    n = 0
    for chunk in preshuffled_index_chunks(143000 * 1024, 2049, np.uint16):
        h.update(chunk)
        n += len(chunk)
    assert n == 1_757_184_042
    assert h.hexdigest() == "1d9fdd760295eb2007a4874440b27c559ca722239fa2814aa8a2ee6724b7852f"


def test_pythia_shard_names():
    total = 143000 * 1024 * 2049 * 2
    names = shard_names(total, 30_000_000_000)
    assert len(names) == 21 and names[0] == "document-00000-of-00020.bin"
    assert names[-1] == "document-00020-of-00020.bin"
    assert shard_names(10, None) == ["document.bin"]


def test_provenance_spans_match_tokens_and_sidecar(built):
    import pyarrow.parquet as pq

    prefix, sizes, _ = built
    rows = pq.read_table(str(prefix) + ".docs.parquet").to_pylist()
    data = DocumentData(prefix, CFG)
    data.provenance(np.array([0]))
    assert isinstance(data._sidecar, ProvenanceTable)  # the table run_order built
    ds = MMIDXDataset(prefix)
    g = np.arange(CFG.train_samples)
    prov = data.provenance(g)
    toks = data.samples(g)
    doc_idx = np.asarray(data.maps.doc_idx)
    for r, segs in enumerate(prov):
        assert segs[0]["sample_tokens"][0] == 0 and segs[-1]["sample_tokens"][1] == 17
        parts = []
        for s in segs:
            a, b = s["item_tokens"]
            parts.append(np.asarray(ds.get(s["item"]))[a:b])
            assert s["sample_tokens"][1] - s["sample_tokens"][0] == b - a > 0
            want = rows[s["item"]]
            assert (s["doc_id"], s["file"], s["line"]) == (
                want["doc_id"],
                want["file"],
                want["line"],
            )
            assert s["pile_set_name"] == want["pile_set_name"]
            assert s["item_size"] == sizes[s["item"]] == want["tokens"]
            pos = s["doc_idx_pos"]
            assert doc_idx[pos] == s["item"]
            assert s["epoch"] == int((doc_idx[:pos] == s["item"]).sum())
        assert np.array_equal(np.concatenate(parts), toks[r])
    # without the doc_epoch sidecar the epoch copy is found by scanning doc_idx: same answer
    data.maps.doc_epoch = None
    assert data.provenance(g, with_sidecar=False)[5] == [
        {
            k: v
            for k, v in s.items()
            if k not in ("doc_id", "pile_set_name", "file", "line", "item_size")
        }
        for s in prov[5]
    ]


def test_preshuffled_provenance_follows_manifest_source(built, tmp_path):
    prefix, _, _ = built
    run_preshuffle(prefix, CFG, tmp_path / "pre", shard_size=999)
    pre = open_data(tmp_path / "pre" / "document.idx", CFG)
    assert pre.source is not None
    assert pre.provenance(np.array([9])) == DocumentData(prefix, CFG).provenance(np.array([9]))
    # EleutherAI's data has no manifest: provenance needs --source
    (tmp_path / "pre" / "document.manifest.json").unlink()
    bare = open_data(tmp_path / "pre", CFG)
    with pytest.raises(InputError, match="pass --source"):
        bare.provenance(np.array([0]))
    with_src = open_data(tmp_path / "pre", CFG, source=str(prefix) + ".bin")
    assert with_src.provenance(np.array([9]))[0][0]["item"] >= 0


def test_step_report_and_sample_selection(built):
    prefix, _, _ = built
    data = DocumentData(prefix, CFG)
    rep = step_report(data, 2, provenance=True)
    assert rep["samples_range"] == [8, 12] and len(rep["samples"]) == 4
    assert rep["samples"][1]["tokens"] == data.step(2)[1].tolist()
    one = step_report(data, 2, sample=3)
    assert [s["sample"] for s in one["samples"]] == [11]
    json.dumps(rep)
    with pytest.raises(ConfigError, match="--sample 4 is outside the batch"):
        step_report(data, 2, sample=4)


def test_decode_and_retokenized_provenance(tmp_path):
    """Items built with the real tokenizer: every provenance span re-tokenizes to its tokens."""
    from pipeline.shards.mmidx import MMIDXWriter
    from pipeline.tokenize.encoder import load_encoder

    enc = load_encoder()
    texts = [
        f"Document number {i}: " + "the quick brown fox jumps " * (i % 5 + 1) for i in range(30)
    ]
    prefix = tmp_path / "t_text_document"
    with MMIDXWriter(prefix, np.uint16) as w:
        for t in texts:
            w.add_item(enc.encode(t) + [0])
        w.finalize()
    cfg = OrderConfig(seq_length=32, global_batch=2, train_iters=20, seed=1)
    run_order(prefix, cfg)
    data = DocumentData(prefix, cfg)
    for step in range(cfg.train_iters):
        rep = step_report(data, step, decode=True)
        batch = data.step(step)
        g = np.arange(step * 2, step * 2 + 2)
        for r, segs in enumerate(data.provenance(g, with_sidecar=False)):
            for s in segs:
                a, b = s["item_tokens"]
                retok = (enc.encode(texts[s["item"]]) + [0])[a:b]
                x, y = s["sample_tokens"]
                assert batch[r][x:y].tolist() == retok
            assert rep["samples"][r]["text"] == enc.decode(batch[r].tolist())
    assert "quick brown fox" in rep["samples"][0]["text"]


def test_save_steps_npy_is_np_save_bytes(built, tmp_path):
    prefix, _, _ = built
    data = DocumentData(prefix, CFG)
    shape = save_steps_npy(data, 2, 5, tmp_path / "r" / "indicies.npy")
    assert shape == (16, 17)
    buf = io.BytesIO()
    np.save(buf, data.steps(2, 5))
    assert (tmp_path / "r" / "indicies.npy").read_bytes() == buf.getvalue()
    with pytest.raises(ConfigError, match="before --start-step"):
        save_steps_npy(data, 5, 2, tmp_path / "x.npy")


def test_step_beyond_the_end(built, tmp_path):
    prefix, _, _ = built
    data = DocumentData(prefix, CFG)
    with pytest.raises(ConfigError, match="step 40 is beyond the end of training"):
        data.step(40)
    with pytest.raises(ConfigError, match="step -1 must be >= 0"):
        data.step(-1)
    run_preshuffle(prefix, CFG, tmp_path / "pre", shard_size=None)
    pre = open_data(tmp_path / "pre", CFG)
    with pytest.raises(ConfigError, match="step 40 is beyond the end of the pre-shuffled data"):
        pre.step(40)


def test_preshuffled_damage_is_reported(built, tmp_path):
    prefix, _, _ = built
    out = tmp_path / "pre"
    man = run_preshuffle(prefix, CFG, out, shard_size=1000)
    shards = [out / f["name"] for f in man["files"][1:]]
    shards[2].unlink()
    with pytest.raises(InputError, match="document-00002-of-00005.bin missing"):
        open_data(out, CFG)
    run_preshuffle(prefix, CFG, out, shard_size=1000)
    with open(shards[-1], "r+b") as f:
        f.truncate(10)
    with pytest.raises(IntegrityError, match="bytes too few .a shard is truncated or missing"):
        open_data(out, CFG)
    run_preshuffle(prefix, CFG, out, shard_size=1000)
    with open(shards[-1], "ab") as f:
        f.write(b"\0" * 6)
    with pytest.raises(IntegrityError, match="6 bytes too many .a shard is too long"):
        open_data(out, CFG)


def test_resolve_data_forms(built, tmp_path):
    prefix, _, _ = built
    assert resolve_data(prefix) == (str(prefix), "document")
    assert resolve_data(str(prefix) + ".bin") == (str(prefix), "document")
    assert resolve_data(prefix.parent) == (str(prefix), "document")
    with pytest.raises(InputError, match="no dataset here"):
        resolve_data(tmp_path / "nothing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="directory without document.idx"):
        resolve_data(empty)
    with pytest.raises(InputError, match="neither"):
        find_bin_files(tmp_path / "document")
    with pytest.raises(ConfigError, match="--form"):
        open_data(prefix, CFG, form="weird")


def test_missing_maps_error_through_open_data(make_dataset):
    prefix, _ = make_dataset([10] * 30)
    with pytest.raises(InputError, match="not found"):
        open_data(prefix, CFG)
    run_order(prefix, CFG)
    index_map_paths(prefix, CFG)["doc_epoch"].unlink()
    data = open_data(prefix, CFG)
    assert data.maps.doc_epoch is None and data.provenance(np.array([0]))[0]


def test_provenance_table_equals_parquet_rows(built, make_dataset, tmp_path):
    prefix, _, _ = built
    man = run_order(prefix, CFG)  # rebuild: the manifest lists the table
    paths = table_paths(prefix)
    names = {f["name"] for f in man["files"]}
    assert {p.name for p in paths.values()} <= names
    g = np.arange(CFG.train_samples)
    via_table = DocumentData(prefix, CFG).provenance(g)
    for p in paths.values():
        p.unlink()
    fallback = DocumentData(prefix, CFG)
    assert fallback.provenance(g) == via_table
    assert not isinstance(fallback._sidecar, ProvenanceTable)
    # a sidecar whose line/file do not follow the doc_id identity gets no table, parquet is used
    other, _ = make_dataset([9] * 40, name="o_text_document", identity=False)
    run_order(other, CFG)
    assert not table_paths(other)["meta"].exists()
    prov = DocumentData(other, CFG).provenance(np.array([0]))[0]
    assert prov[0]["doc_id"] == prov[0]["item"] * 7 + 3


def test_truncated_document_bin_is_reported(built):
    prefix, _, _ = built
    data = DocumentData(prefix, CFG)
    with open(str(prefix) + ".bin", "r+b") as f:
        f.truncate(100)
    with pytest.raises(IntegrityError, match="short read .* the .bin is truncated"):
        for step in range(CFG.train_iters):
            data.step(step)


def test_reads_without_rwf_nowait_give_the_same_tokens(built, monkeypatch):
    from pipeline.order import prefetch

    prefix, _, _ = built
    want = [DocumentData(prefix, CFG).step(n) for n in range(0, CFG.train_iters, 7)]
    monkeypatch.setattr(prefetch, "NOWAIT", 0)  # platforms without RWF_NOWAIT: fadvise + pread
    data = DocumentData(prefix, CFG)
    assert all(np.array_equal(data.step(n), w) for n, w in zip(range(0, CFG.train_iters, 7), want))


def test_preshuffle_refuses_up_front_when_shards_cannot_fit(built, tmp_path, monkeypatch):
    import shutil

    from pipeline.order import preshuffle

    prefix, _, _ = built
    out = tmp_path / "pre_full"
    real = shutil.disk_usage
    monkeypatch.setattr(preshuffle.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(
        ConfigError, match=r"160 samples of 17 tokens need 7.40 kB but only 1.00 kB"
    ):
        run_preshuffle(prefix, CFG, out, shard_size=1000)
    assert not any(out.iterdir())
    # shards of an earlier run that are about to be replaced count as free space
    monkeypatch.setattr(preshuffle.shutil, "disk_usage", real)
    run_preshuffle(prefix, CFG, out, shard_size=1000)
    monkeypatch.setattr(preshuffle.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    run_preshuffle(prefix, CFG, out, shard_size=1000)


def test_interrupted_preshuffle_leaves_nothing_readable(built, tmp_path, monkeypatch):
    from pipeline.order import preshuffle

    prefix, _, _ = built
    out = tmp_path / "pre_int"
    run_preshuffle(prefix, CFG, out, shard_size=1000)
    calls = {"n": 0}
    real = preshuffle.DocumentData.samples

    def dying(self, idx):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt  # killed after the first block of a rerun
        return real(self, idx)

    monkeypatch.setattr(preshuffle.DocumentData, "samples", dying)
    with pytest.raises(KeyboardInterrupt):
        run_preshuffle(prefix, CFG, out, shard_size=1000, block=16)
    assert not (out / "document.idx").exists() and not (out / PRESHUFFLED_MANIFEST).exists()
    with pytest.raises((InputError, IntegrityError, ConfigError)):
        open_data(out, CFG)


def test_refused_preshuffle_creates_no_directory(built, tmp_path):
    prefix, _, _ = built
    other = OrderConfig(seq_length=16, global_batch=4, train_iters=7, seed=99)  # no maps built
    with pytest.raises((InputError, IntegrityError, ConfigError)):
        run_preshuffle(prefix, other, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_full_doc_idx_form_is_read_like_the_pythia_form(built, tmp_path, capsys):
    """--doc-idx full: doc_idx 0..N, as Megatron-LM's IndexedDataset asserts
    (`sequence_lengths.shape[0] == document_indices[-1]` unless fast_cache_load=True); the
    shards and every step are the same as with Pythia's [0]."""
    from pipeline.cli.main import main
    from pipeline.manifest import read_manifest
    from pipeline.order.preshuffle import preshuffle_command
    from pipeline.order.shuffled import preshuffled_bytes
    from pipeline.shards.mmidx import MMIDXIndex

    prefix, _, _ = built
    a, b = tmp_path / "pythia", tmp_path / "full"
    ma = run_preshuffle(prefix, CFG, a, shard_size=1000)
    mb = run_preshuffle(prefix, CFG, b, shard_size=1000, doc_idx="full")
    ia, ib = MMIDXIndex(a / "document.idx"), MMIDXIndex(b / "document.idx")
    n = len(ia)
    assert ia.doc_idx.tolist() == [0] and ib.doc_idx.tolist() == list(range(n + 1))
    # Megatron-LM's check without fast_cache_load: only the full form passes
    assert ib.doc_idx[-1] == ib.sizes.shape[0] and ia.doc_idx[-1] != ia.sizes.shape[0]
    assert (b / "document.idx").stat().st_size == preshuffled_bytes(CFG, 2, "full")[1]
    assert (a / "document.idx").stat().st_size == preshuffled_bytes(CFG, 2)[1]
    assert (
        ia.sizes.tobytes() == ib.sizes.tobytes() and ia.pointers.tobytes() == ib.pointers.tobytes()
    )
    assert [f["sha256"] for f in ma["files"][1:]] == [f["sha256"] for f in mb["files"][1:]]
    # the manifest records the form; the default (pythia) keeps earlier manifests' bytes
    assert mb["config"]["doc_idx"] == "full" and "doc_idx" not in ma["config"]
    assert read_manifest(b / "document.manifest.json")["config"]["doc_idx"] == "full"
    assert ma["config_fingerprint"] != mb["config_fingerprint"]
    cmd = preshuffle_command(prefix, prefix.parent, b, mb["config"])
    assert cmd.endswith(f"--doc-idx full --out-dir {b}") and "--shard-size 1000" in cmd
    pa, pb = open_data(a, CFG), open_data(b, CFG)
    assert (pa.doc_idx_form, pb.doc_idx_form) == ("pythia", "full")
    assert np.array_equal(pa.steps(0, CFG.train_iters - 1), pb.steps(0, CFG.train_iters - 1))
    # the CLI writes it and `pile verify` accepts it
    c = tmp_path / "cli"
    rc = main(["preshuffle", str(prefix), "--out-dir", str(c), "--doc-idx", "full",
               "--shard-size", "1000", "--seq-length", "16", "--global-batch", "4",
               "--train-iters", "40", "--seed", "3"])  # fmt: skip
    assert rc == 0 and (c / "document.idx").read_bytes() == (b / "document.idx").read_bytes()
    assert main(["verify", str(c)]) == 0
    capsys.readouterr()
    with pytest.raises(ConfigError, match="doc_idx 'megatron' not in pythia, full"):
        run_preshuffle(prefix, CFG, tmp_path / "x", doc_idx="megatron")


@pytest.mark.parametrize("doc_idx", [[0, 1, 2], [1], [0] * 161, list(range(161))[:-1] + [7]])
def test_damaged_preshuffled_doc_idx_is_named(built, tmp_path, doc_idx):
    prefix, _, _ = built
    out = tmp_path / "pre"
    run_preshuffle(prefix, CFG, out, shard_size=None)
    (out / "document.manifest.json").unlink()
    idx = out / "document.idx"
    raw = encode_index(np.uint16, np.full(160, 17), np.array(doc_idx))
    idx.write_bytes(raw)
    with pytest.raises(IntegrityError, match=rf"{idx} is damaged: its doc_idx has {len(doc_idx)} "):
        open_data(out, CFG)
