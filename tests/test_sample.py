"""The bundled Pile-shaped sample (pipeline/data/sample): files, format, sources, ground truth, and
the determinism of tools/make_sample.py (which regenerates it from ../shared)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import zstandard

from pipeline.data import sample_dir, sample_train_files
from pipeline.sources import PILE_SET_NAMES
from tests.conftest import REPO, SHARED, shared_path

TRAIN = [f"train/{i:02d}.jsonl.zst" for i in range(4)]
FILES = [*TRAIN, "val.jsonl.zst", "test.jsonl.zst"]
MAX_COMPRESSED = 3_000_000


def _decompress(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return zstandard.ZstdDecompressor().stream_reader(fh).read()


def _lines(path: Path) -> list[bytes]:
    data = _decompress(path)
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")


@pytest.fixture(scope="module")
def gt() -> dict:
    return json.loads((sample_dir() / "ground_truth.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def docs() -> dict[str, list[dict]]:
    return {f: [json.loads(ln) for ln in _lines(sample_dir() / f)] for f in FILES}


# Independent re-implementation of the ground truth's normalisation (NFC, lowercase, whitespace
# words, 5-word shingles), so the test does not trust the generator's own code.
def _shingles(text: str) -> set[tuple[str, ...]]:
    w = unicodedata.normalize("NFC", text).lower().split()
    if len(w) < 5:
        return {tuple(w)}
    return set(zip(w, w[1:], w[2:], w[3:], w[4:]))


def test_files_present_and_small():
    root = sample_dir()
    assert [p.relative_to(root).as_posix() for p in sample_train_files()] == TRAIN
    for f in [*FILES, "ground_truth.json"]:
        assert (root / f).is_file(), f
    total = sum((root / f).stat().st_size for f in FILES)
    assert total <= MAX_COMPRESSED


def test_pile_line_format():
    for f in FILES:
        raw = (sample_dir() / f).read_bytes()
        params = zstandard.get_frame_parameters(raw)
        assert params.window_size > 0
        for ln in _lines(sample_dir() / f):
            obj = json.loads(ln)
            assert list(obj) == ["text", "meta"]
            assert list(obj["meta"]) == ["pile_set_name"]
            assert obj["meta"]["pile_set_name"] in PILE_SET_NAMES
            assert isinstance(obj["text"], str) and obj["text"].strip()
            # exactly the bytes json.dumps writes (the Pile's serialisation: ASCII, ", " / ": ")
            assert ln == json.dumps(obj).encode("ascii")


def test_single_zstd_frame_per_file():
    for f in FILES:
        raw = (sample_dir() / f).read_bytes()
        obj = zstandard.ZstdDecompressor().decompressobj()
        obj.decompress(raw)
        assert obj.eof and obj.unused_data == b"", f


def test_all_22_sources_with_realistic_shares(gt, docs):
    counts = {s: 0 for s in PILE_SET_NAMES}
    text_bytes = {s: 0 for s in PILE_SET_NAMES}
    for rows in docs.values():
        for d in rows:
            counts[d["meta"]["pile_set_name"]] += 1
            text_bytes[d["meta"]["pile_set_name"]] += len(d["text"].encode("utf-8"))
    assert min(counts.values()) >= 5
    assert {s: v["documents"] for s, v in gt["sources"].items()} == counts
    assert {s: v["text_bytes"] for s, v in gt["sources"].items()} == text_bytes
    total = sum(text_bytes.values())
    assert 4e6 <= total <= 8e6
    assert 1500 <= sum(counts.values()) <= 5000
    # the biggest Pile components are the biggest here too (paper weights 18.11 % vs 0.14 %)
    assert text_bytes["Pile-CC"] == max(text_bytes.values())
    assert text_bytes["Pile-CC"] > 20 * text_bytes["Enron Emails"]
    assert all(len(d["text"].encode("utf-8")) <= 40_000 for rows in docs.values() for d in rows)


def test_ground_truth_files_match(gt, docs):
    for f in FILES:
        meta = gt["files"][f]
        raw = (sample_dir() / f).read_bytes()
        assert meta["documents"] == len(docs[f])
        assert meta["bytes"] == len(raw)
        assert meta["sha256"] == hashlib.sha256(raw).hexdigest()
        assert meta["jsonl_sha256"] == hashlib.sha256(_decompress(sample_dir() / f)).hexdigest()
        assert meta["file_index"] == (TRAIN.index(f) if f in TRAIN else None)
    assert "description" in gt and "doc_id" in gt["description"]


def test_ground_truth_clusters(gt, docs):
    kinds = {}
    order = {f: i for i, f in enumerate(FILES)}
    for c in gt["clusters"]:
        members = c["members"]
        assert 2 <= len(members) <= 6
        keys = [(order[m["file"]], m["line"]) for m in members]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        texts = []
        for m in members:
            d = docs[m["file"]][m["line"] - 1]
            assert d["meta"]["pile_set_name"] == m["pile_set_name"]
            assert m["split"] == ("train" if m["file"] in TRAIN else m["file"].split(".")[0])
            want_id = (
                (TRAIN.index(m["file"]) << 40 | (m["line"] - 1)) if m["file"] in TRAIN else None
            )
            assert m["doc_id"] == want_id
            texts.append(d["text"])
        first = _shingles(texts[0])
        for m, t in zip(members, texts):
            sh = _shingles(t)
            inter, union = len(first & sh), len(first | sh)
            assert (m["intersection"], m["union"]) == (inter, union)
            assert m["jaccard"] == pytest.approx(inter / union, abs=1e-6)
        shs = [_shingles(t) for t in texts]
        pairwise = min(len(a & b) / len(a | b) for i, a in enumerate(shs) for b in shs[i + 1 :])
        assert c["min_pairwise_jaccard"] == pytest.approx(pairwise, abs=1e-6)
        js = [m["jaccard"] for m in members[1:]]
        if c["kind"] == "exact":
            assert all(t == texts[0] for t in texts)
        elif c["kind"] == "near":
            assert all(0.90 <= j <= 0.99 for j in js)
        elif c["kind"] == "normalized":
            assert all(j == 1.0 for j in js) and all(t != texts[0] for t in texts[1:])
        elif c["kind"] == "negative":
            assert len(members) == 2 and 0.5 <= js[0] <= 0.7
        else:
            raise AssertionError(f"unknown kind {c['kind']}")
        kinds.setdefault(c["kind"], set()).update(c["scope"])
        srcs = {m["pile_set_name"] for m in members}
        assert ("cross-source" in c["scope"]) == (len(srcs) > 1)
        assert ("cross-split" in c["scope"]) == (len({m["split"] for m in members}) > 1)
    for kind in ("exact", "near"):
        assert {"within-source", "cross-source", "same-file", "cross-file", "cross-split"} <= kinds[
            kind
        ]
    assert "negative" in kinds and "normalized" in kinds
    assert max(len(c["members"]) for c in gt["clusters"]) == 6


def test_no_exact_duplicates_outside_clusters(gt, docs):
    planted = {(m["file"], m["line"]) for c in gt["clusters"] for m in c["members"]}
    seen: dict[str, tuple[str, int]] = {}
    for f in FILES:
        for i, d in enumerate(docs[f], start=1):
            prev = seen.setdefault(d["text"], (f, i))
            if prev != (f, i):
                assert prev in planted and (f, i) in planted


def test_reader_ids_match_ground_truth(gt):
    from pipeline.read import iter_documents

    want = {
        m["doc_id"]: (m["file"], m["line"], m["pile_set_name"])
        for c in gt["clusters"]
        for m in c["members"]
        if m["doc_id"] is not None
    }
    got = {}
    for doc in iter_documents([sample_dir() / "train"]):
        if doc.doc_id in want:
            got[doc.doc_id] = (doc.line, doc.pile_set_name)
    assert got == {k: (v[1], v[2]) for k, v in want.items()}


def test_real_pile_documents_included_verbatim(docs):
    real = shared_path("corpora", "pile_real")
    raw = {f: set(_lines(sample_dir() / f)) for f in FILES}
    for name, dest in [
        ("train_00.jsonl.zst", None),
        ("val.jsonl.zst", "val.jsonl.zst"),
        ("test.jsonl.zst", "test.jsonl.zst"),
    ]:
        (line,) = _lines(real / name)
        where = [f for f in FILES if line in raw[f]]
        assert where and (dest is None or dest in where), name


def _zstd_version_of(gt: dict) -> str:
    return gt["zstd"]["libzstd"]


def test_generator_is_deterministic(tmp_path, gt):
    shared_path("corpora", "novels")
    shared_path("corpora", "pile_real")
    cmd = [sys.executable, str(REPO / "tools" / "make_sample.py"), "--out", str(tmp_path)]
    subprocess.run([*cmd, "--shared", str(SHARED)], check=True, capture_output=True)
    new = json.loads((tmp_path / "ground_truth.json").read_text("utf-8"))
    same_zstd = _zstd_version_of(new) == _zstd_version_of(gt)
    for f in FILES:
        assert _decompress(tmp_path / f) == _decompress(sample_dir() / f), f
        if same_zstd:
            assert (tmp_path / f).read_bytes() == (sample_dir() / f).read_bytes(), f
    if same_zstd:
        assert (tmp_path / "ground_truth.json").read_bytes() == (
            sample_dir() / "ground_truth.json"
        ).read_bytes()
    else:  # a different libzstd may compress differently; everything else must match
        for g in (new, gt):
            g.pop("zstd")
            g["totals"].pop("compressed_bytes")
            for m in g["files"].values():
                m.pop("bytes"), m.pop("sha256")
        assert new == gt
