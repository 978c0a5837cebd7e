"""Tokenize stage: gpt-neox semantics, provenance, worker invariance, exclusion, manifest."""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.engine import make_executor
from pipeline.errors import ConfigError, InputError
from pipeline.read import make_doc_id, resolve_inputs
from pipeline.shards.mmidx import MMIDXDataset
from pipeline.tokenize import sidecar as sidecar_mod
from pipeline.tokenize.encoder import load_encoder
from pipeline.tokenize.stage import (
    TokenizeConfig,
    load_exclude,
    output_names,
    plan_tasks,
    run_tokenize,
)


def write_corpus(path: Path, docs: list[tuple[str, str]]) -> Path:
    """`docs` = [(text, pile_set_name)] written as Pile-style jsonl.zst."""
    data = b"".join(
        json.dumps({"text": t, "meta": {"pile_set_name": n}}).encode() + b"\n" for t, n in docs
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zstandard.ZstdCompressor(level=3).compress(data))
    return path


SAMPLE_DOCS = [
    ("Hello, I am", "Pile-CC"),
    ("", "Pile-CC"),
    ("Hello world", "Wikipedia (en)"),
    ("two  spaces and    four", "Github"),
    ("a literal <|endoftext|> inside", "Github"),
    ("Cafe\u0301 na\u0308ive \u4e2d\u6587 \U0001f600 tabs\tand\nnewlines", "Pile-CC"),
] + [(f"document number {i} " + "word " * (i % 13), "ArXiv") for i in range(60)]


@pytest.fixture
def corpus(tmp_path):
    """Two input files: the sample docs (with one empty) split 40 / 26."""
    a = write_corpus(tmp_path / "in" / "00.jsonl.zst", SAMPLE_DOCS[:40])
    b = write_corpus(tmp_path / "in" / "01.jsonl.zst", SAMPLE_DOCS[40:])
    return [a, b]


@pytest.fixture
def make_corpus():
    return write_corpus


def _ds(out, prefix="t"):
    return MMIDXDataset(out / f"{prefix}_text_document")


def _files(out, prefix="t", backend_too=True):
    """The output files' bytes; backend_too=False drops the manifest's record of which backend
    made the ids (everything else must be identical whichever backend ran)."""
    n = output_names(prefix)
    res = {k: (out / n[k]).read_bytes() for k in ("bin", "idx", "sidecar", "manifest")}
    if not backend_too:
        m = json.loads(res["manifest"])
        assert m["tokenizer"].pop("backend").split()[0] in ("gigatoken", "fast", "hf")
        m.pop("manifest_sha256")  # the manifest's hash of its own bytes
        res["manifest"] = m
    return res


def test_golden_ids_and_eod(tmp_path, make_corpus):
    src = make_corpus(
        tmp_path / "g.jsonl.zst",
        [
            ("Hello, I am", "A"),
            ("Hello world", "A"),
            ("a" + " " * 5 + "b", "A"),
            (" " * 25 + "x", "A"),
        ],
    )
    counts = run_tokenize([src], tmp_path / "out", "t")
    ds = _ds(tmp_path / "out")
    assert ds.dtype == np.uint16
    assert ds[0].tolist() == [12092, 13, 309, 717, 0]
    assert ds[1].tolist() == [12092, 1533, 0]
    # runs of spaces are the added tokens 50254 (24 spaces) .. 50276 (2 spaces): 5 -> 50273
    assert ds[2].tolist() == [66, 50273, 67, 0]
    assert ds[3].tolist() == [50254, 1269, 0]  # 24 spaces, then " x"
    assert counts["documents"] == 4 and counts["tokens"] == 5 + 3 + 4 + 3


def test_items_round_trip_to_nfc_text_and_sidecar_traces_every_item(tmp_path, corpus):
    counts = run_tokenize(corpus, tmp_path / "out", "t")
    ds = _ds(tmp_path / "out")
    side = pq.read_table(tmp_path / "out" / "t_text_document.docs.parquet").to_pylist()
    enc = load_encoder()
    nonempty = [(i, t, n) for i, (t, n) in enumerate(SAMPLE_DOCS) if t]
    assert len(ds) == len(side) == len(nonempty) == counts["documents"]
    for item, (row, (k, text, name)) in enumerate(zip(side, nonempty)):
        file_index = 0 if k < 40 else 1
        line = k + 1 if k < 40 else k - 40 + 1
        assert row["doc_id"] == make_doc_id(file_index, line)
        assert row["line"] == line and row["file"] == corpus[file_index].name  # relative name
        assert row["pile_set_name"] == name
        toks = ds[item]
        assert row["tokens"] == len(toks) == int(ds.sizes[item])
        assert toks[-1] == 0
        assert enc.decode(toks[:-1].tolist()) == unicodedata.normalize("NFC", text)
    assert ds.doc_idx.tolist() == list(range(len(ds) + 1))
    assert (
        ds.index.pointers.tolist() == [0] + np.cumsum(ds.sizes[:-1].astype(np.int64) * 2).tolist()
    )


def test_empty_docs_dropped_and_literal_eod_counted(tmp_path, corpus):
    counts = run_tokenize(corpus, tmp_path / "out", "t")
    assert counts["empty_dropped"] == 1
    assert counts["documents_with_literal_eod"] == 1
    assert counts["per_source"]["Pile-CC"]["empty"] == 1
    assert counts["per_source"]["Github"]["literal_eod"] == 1
    assert counts["per_source"]["ArXiv"]["documents"] == 60
    assert sum(s["tokens"] for s in counts["per_source"].values()) == counts["tokens"]
    # the literal string encodes as the EOD id inside the item, and the item still ends with EOD
    ds = _ds(tmp_path / "out")
    item = ds[3].tolist()
    assert item.count(0) == 2 and item[-1] == 0


def test_no_append_eod(tmp_path, corpus):
    run_tokenize(corpus, tmp_path / "out", "t", TokenizeConfig(append_eod=False))
    ds = _ds(tmp_path / "out")
    enc = load_encoder()
    assert ds[0].tolist() == [12092, 13, 309, 717]
    assert ds[1].tolist() == enc.encode("Hello world")
    m = json.loads((tmp_path / "out" / "t.manifest.json").read_text())
    assert m["eod"] == {"append_eod": False, "eod_id": 0, "token": "<|endoftext|>"}


@pytest.mark.parametrize("backend", ["hf", "fast", "gigatoken"])
def test_worker_count_and_backend_invariance(tmp_path, corpus, monkeypatch, backend):
    # tiny row groups so that the sidecar re-chunking across task boundaries is exercised
    monkeypatch.setattr(sidecar_mod, "ROW_GROUP_ROWS", 7)
    ref = tmp_path / "w1"
    run_tokenize(corpus, ref, "t", TokenizeConfig(batch_size=5), executor=make_executor("local", 1))
    out = tmp_path / f"w2-{backend}"
    run_tokenize(
        corpus[:1], tmp_path / "single1", "t", TokenizeConfig(), executor=make_executor("local", 1)
    )
    # 2 workers, tiny units (the files re-chunked into frames): partial outputs merged in order
    units = dict(unit_bytes=1, unit_cache=str(tmp_path / "cache"))
    assert len(plan_tasks(resolve_inputs(corpus), 2, 1, tmp_path / "cache").units) >= 4
    if backend == "gigatoken":
        pytest.importorskip("gigatoken")
    run_tokenize(
        corpus,
        out,
        "t",
        TokenizeConfig(backend=backend, batch_size=3, **units),
        executor=make_executor("local", 2),
    )
    assert _files(out, backend_too=False) == _files(ref, backend_too=False)
    assert json.loads(_files(out)["manifest"])["tokenizer"]["backend"].startswith(backend)
    assert pq.ParquetFile(out / "t_text_document.docs.parquet").num_row_groups > 1
    # one input file cut into units for 2 workers
    run_tokenize(
        corpus[:1],
        tmp_path / "single2",
        "t",
        TokenizeConfig(**units),
        executor=make_executor("local", 2),
    )
    assert _files(tmp_path / "single2") == _files(tmp_path / "single1")


def test_tasks_are_balanced_by_bytes(tmp_path):
    """One file of 40% of the bytes among many small ones is cut so no task holds much more than
    its share; with one worker nothing is cut."""
    big = write_corpus(
        tmp_path / "in" / "00.jsonl.zst", [(f"w{i} " * 400, "A") for i in range(400)]
    )
    small = [
        write_corpus(tmp_path / "in" / f"{k:02d}.jsonl.zst", [(f"s{k}x{i} " * 400, "B") for i in range(40)])
        for k in range(1, 13)
    ]  # fmt: skip
    files = resolve_inputs([big, *small])
    size = {str(f.path): os.path.getsize(f.path) for f in files}
    total = sum(size.values())
    assert size[str(big)] > 0.25 * total
    plan = plan_tasks(files, 2, None, tmp_path / "cache")  # single frames: re-chunked
    assert len(plan.units_of(files[1].index)) == 1
    big_units = plan.units_of(files[0].index)
    assert len(big_units) >= 2 and big_units[0].first_line == 1 and big_units[-1].last
    assert len(plan_tasks(files, 1).units) == len(files)
    # and the output is the same for any split
    run_tokenize(
        [big, *small[:3]],
        tmp_path / "w1",
        "t",
        TokenizeConfig(),
        executor=make_executor("local", 1),
    )
    run_tokenize(
        [big, *small[:3]],
        tmp_path / "w2",
        "t",
        TokenizeConfig(unit_cache=str(tmp_path / "cache")),
        executor=make_executor("local", 2),
    )
    assert _files(tmp_path / "w1") == _files(tmp_path / "w2")


def test_exclude_ids_skipped_and_counted(tmp_path, corpus):
    # exclude "Hello world" (file 0 line 3), file 1 line 5, and an id of a file that does not exist
    ids = np.array([make_doc_id(1, 5), make_doc_id(0, 3), make_doc_id(7, 1)], dtype=np.int64)
    npy = tmp_path / "removed.npy"
    np.save(npy, ids)
    loaded, fp = load_exclude(npy)
    assert loaded.tolist() == sorted(ids.tolist()) and len(fp) == 64
    counts = run_tokenize(corpus, tmp_path / "out", "t", exclude_ids=loaded, exclude_fingerprint=fp)
    side = pq.read_table(tmp_path / "out" / "t_text_document.docs.parquet").column("doc_id")
    kept = set(side.to_pylist())
    assert make_doc_id(0, 3) not in kept and make_doc_id(1, 5) not in kept
    assert counts["excluded"] == 2
    assert counts["exclude_ids_unmatched"] == 1 and counts["exclude_ids_beyond_inputs"] == 1
    assert counts["documents"] == 65 - 2
    full = run_tokenize(corpus, tmp_path / "full", "t")
    assert full["documents"] - counts["documents"] == 2
    m1 = json.loads((tmp_path / "out" / "t.manifest.json").read_text())
    m2 = json.loads((tmp_path / "full" / "t.manifest.json").read_text())
    assert m1["config_fingerprint"] != m2["config_fingerprint"]
    assert m1["config"]["exclude_fingerprint"] == fp


def test_exclude_worker_invariance(tmp_path, corpus):
    ids = np.array([make_doc_id(0, k) for k in (1, 7, 21, 33)] + [make_doc_id(1, 2)])
    a = run_tokenize(
        corpus, tmp_path / "a", "t", exclude_ids=ids, executor=make_executor("local", 1)
    )
    b = run_tokenize(
        corpus, tmp_path / "b", "t", exclude_ids=ids, executor=make_executor("local", 2)
    )
    assert a == b and a["excluded"] == 5
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_exclude_from_dedup_directory(tmp_path, corpus, monkeypatch):
    import pipeline.dedup as dedup

    d = tmp_path / "dedup"
    d.mkdir()
    monkeypatch.setattr(
        dedup, "load_removed_ids", lambda p: np.array([make_doc_id(0, 1)]), raising=False
    )
    ids, fp = load_exclude(d)
    assert ids.tolist() == [0] and len(fp) == 64


def test_exclude_bad_inputs(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_exclude(tmp_path / "nope.npy")
    (tmp_path / "x.txt").write_text("1\n")
    with pytest.raises(ConfigError, match="unsupported file type '.txt'"):
        load_exclude(tmp_path / "x.txt")
    np.save(tmp_path / "f.npy", np.array([1.5]))
    with pytest.raises(InputError, match="1-D integer array"):
        load_exclude(tmp_path / "f.npy")
    np.save(tmp_path / "n.npy", np.array([-3]))
    with pytest.raises(InputError, match="must be >= 0"):
        load_exclude(tmp_path / "n.npy")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="not a readable .npy"):
        load_exclude(tmp_path / "bad.npy")


def test_manifest_contents_and_fingerprint(tmp_path, corpus):
    seen = []
    counts = run_tokenize(corpus, tmp_path / "out", "t", progress=seen.append)
    assert [r["seq"] for r in seen] == [0, 1]  # one progress call per merged task, in order
    assert sum(r["counts"]["documents"] for r in seen) == counts["documents"] == 65
    m = json.loads((tmp_path / "out" / "t.manifest.json").read_text())
    assert m["kind"] == "token-dataset" and m["tokenize_format_version"] == 1
    assert m["tokenizer"]["sha256"] == load_encoder().sha256
    assert m["tokenizer"]["vocab_size"] == 50277 and m["tokenizer"]["eod_id"] == 0
    assert m["dtype"] == "uint16" and m["eod"]["append_eod"] is True
    roles = {f["name"]: f["role"] for f in m["files"]}
    assert roles == {
        "t_text_document.bin": "bin",
        "t_text_document.idx": "idx",
        "t_text_document.docs.parquet": "sidecar",
    }
    for f in m["files"]:
        assert (tmp_path / "out" / f["name"]).stat().st_size == f["bytes"]
    md = sidecar_mod.sidecar_metadata(tmp_path / "out" / "t_text_document.docs.parquet")
    assert md["pile.config_fingerprint"] == m["config_fingerprint"]
    assert m["counts"]["per_file"]["00.jsonl.zst"]["documents"] == 39
    assert m["inputs"] == ["00.jsonl.zst", "01.jsonl.zst"]
    # fingerprint: backend/batch size do not count, append_eod does
    fp = TokenizeConfig().fingerprint()
    assert TokenizeConfig(backend="hf", batch_size=3).fingerprint() == fp
    assert TokenizeConfig(append_eod=False).fingerprint() != fp
    assert not list((tmp_path / "out").glob(".*"))  # temp dir removed


def test_int32_tokens_for_a_large_vocabulary(tmp_path, make_corpus):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<|endoftext|>": 0, "[UNK]": 1, "small": 2, "big": 70000}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "big_vocab.json"
    tok.save(str(path))
    src = make_corpus(tmp_path / "b.jsonl.zst", [("small big big", "A"), ("other", "A")])
    cfg = TokenizeConfig.for_tokenizer(path)
    run_tokenize([src], tmp_path / "out", "t", cfg)
    ds = _ds(tmp_path / "out")
    assert ds.dtype == np.int32
    assert (tmp_path / "out" / "t_text_document.idx").read_bytes()[17] == 4
    assert ds[0].tolist() == [2, 70000, 70000, 0] and ds[1].tolist() == [1, 0]


def test_config_errors(tmp_path, corpus):
    with pytest.raises(ConfigError, match="backend 'gpu' is not one of"):
        TokenizeConfig(backend="gpu")
    with pytest.raises(ConfigError, match="batch_size=0"):
        TokenizeConfig(batch_size=0)
    with pytest.raises(ConfigError, match="not a 64-digit hex"):
        TokenizeConfig(tokenizer_sha256="abc")
    with pytest.raises(ConfigError, match="config expects"):
        run_tokenize(corpus, tmp_path / "o", "t", TokenizeConfig(tokenizer_sha256="0" * 64))
    with pytest.raises(ConfigError, match="plain file name prefix"):
        run_tokenize(corpus, tmp_path / "o", "a/b")
    with pytest.raises(ConfigError, match="no such file"):
        TokenizeConfig.for_tokenizer(tmp_path / "missing.json")


def test_failed_run_leaves_no_outputs(tmp_path, make_corpus):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": \n')
    with pytest.raises(InputError, match="bad.jsonl:2"):
        run_tokenize([bad], tmp_path / "out", "t")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


def test_rerun_replaces_outputs_and_manifest(tmp_path, corpus):
    run_tokenize(corpus, tmp_path / "out", "t", TokenizeConfig(append_eod=False))
    first = _files(tmp_path / "out")
    run_tokenize(corpus, tmp_path / "out", "t")
    second = _files(tmp_path / "out")
    assert first["bin"] != second["bin"] and first["manifest"] != second["manifest"]
    run_tokenize(corpus, tmp_path / "again", "t")
    assert _files(tmp_path / "again") == second


def test_skip_policy_with_file_cut_into_ranges(tmp_path):
    from pipeline.read import ReadConfig

    lines = [json.dumps({"text": f"doc {i}", "meta": {"pile_set_name": "S"}}) for i in range(40)]
    lines[3] = '{"text": 5}'  # rejected, in the first line range
    lines[30] = ""  # blank line, in the last range
    src = tmp_path / "x.jsonl"
    src.write_text("\n".join(lines) + "\n")
    res = {}
    for w in (1, 2):
        rc = ReadConfig(on_error="skip", quarantine_dir=str(tmp_path / f"q{w}"))
        res[w] = run_tokenize(
            [src], tmp_path / f"o{w}", "t", read_config=rc, executor=make_executor("local", w)
        )
        q = sorted((tmp_path / f"q{w}").glob("*.rejected.jsonl"))
        assert len(q) == 1 and q[0].read_text() == '{"text": 5}\n'
    assert res[1] == res[2]
    assert res[1]["rejected"] == 1 and res[1]["blank_lines"] == 1 and res[1]["documents"] == 38
    assert _files(tmp_path / "o1") == _files(tmp_path / "o2")


def test_all_documents_empty(tmp_path, make_corpus):
    from pipeline.verify import verify_paths

    src = make_corpus(tmp_path / "e.jsonl.zst", [("", "A"), ("", "B")])
    counts = run_tokenize([src], tmp_path / "out", "t")
    assert counts["documents"] == 0 and counts["tokens"] == 0 and counts["empty_dropped"] == 2
    ds = _ds(tmp_path / "out")
    assert len(ds) == 0 and ds.doc_idx.tolist() == [0]
    assert pq.read_table(tmp_path / "out" / "t_text_document.docs.parquet").num_rows == 0
    assert verify_paths([tmp_path / "out"]).ok


def test_exclude_inputs_must_be_these_inputs(tmp_path, corpus):
    ids = np.array([make_doc_id(0, 1)], dtype=np.int64)
    with pytest.raises(ConfigError, match="computed over 1 input file.*these are 2"):
        run_tokenize(corpus, tmp_path / "o", "t", exclude_ids=ids, exclude_inputs=["00.jsonl.zst"])
    counts = run_tokenize(
        corpus,
        tmp_path / "o",
        "t",
        exclude_ids=ids,
        exclude_inputs=["00.jsonl.zst", "01.jsonl.zst"],
    )
    assert counts["excluded"] == 1


def test_exclude_input_rewritten_under_the_same_name_is_refused(tmp_path, corpus):
    from pipeline.read import resolve_inputs
    from pipeline.tokenize.stage import check_exclude_inputs

    files = resolve_inputs(corpus)
    names = [f.name for f in files]
    sizes = [corpus[0].stat().st_size, corpus[1].stat().st_size]
    check_exclude_inputs("D", names, files, sizes)  # same files: fine
    check_exclude_inputs("D", names, files, [None, None])  # sizes unknown: names only
    with pytest.raises(
        ConfigError, match=r"01.jsonl.zst is \d+ bytes but was 7 bytes.*Rerun `pile dedup`"
    ):
        check_exclude_inputs("D", names, files, [sizes[0], 7])


def test_exclude_a_dedup_directory_from_the_library(tmp_path, corpus):
    from pipeline.dedup import DedupConfig, run_dedup

    run_dedup(corpus, tmp_path / "dd", DedupConfig.from_preset("pythia-0.87"))
    counts = run_tokenize(corpus, tmp_path / "o", "t", exclude=tmp_path / "dd")
    assert counts["exclude_ids"] == counts["excluded"]
    with pytest.raises(ConfigError, match="first differ at position 0"):
        run_tokenize(corpus[::-1], tmp_path / "o2", "t", exclude=tmp_path / "dd")
    with pytest.raises(ConfigError, match="either exclude"):
        run_tokenize(corpus, tmp_path / "o3", "t", exclude=tmp_path / "dd", exclude_ids=[1])
