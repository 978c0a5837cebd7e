"""The dedup stage end to end on generated inputs with planted duplicates."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.data import sample_dir
from pipeline.dedup import DedupConfig, export_text, load_removed_ids, run_dedup
from pipeline.dedup.shingle import normalize_words
from pipeline.engine import make_executor
from pipeline.errors import IntegrityError
from pipeline.read import LINE_BITS

CONFIG = DedupConfig.from_preset("pythia-0.87", partitions=8)


def _shingles(text: str, n: int = 5) -> set[str]:
    w = normalize_words(text)
    return {" ".join(w[i : i + n]) for i in range(max(1, len(w) - n + 1))} if w else set()


def _jaccard(a: str, b: str) -> float:
    x, y = _shingles(a), _shingles(b)
    return len(x & y) / len(x | y)


def _variant(words: list[str], j: float, tag: str) -> list[str]:
    """Keep a prefix of `words` and replace the rest so that the shingle Jaccard is ~j."""
    s = len(words) - 4
    shared = round(2 * s * j / (1 + j))
    k = shared + 4
    return words[:k] + [f"{tag}{i}" for i in range(len(words) - k)]


def _write(path: Path, records: list[dict]) -> None:
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    if path.suffix == ".zst":
        data = zstandard.ZstdCompressor(level=3).compress(data)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """3 input files; planted groups: (kind, [doc ids], exact J of each to the first)."""
    root = tmp_path_factory.mktemp("dedup_corpus")
    rng = random.Random(1234)
    files: list[list[dict]] = [[], [], []]
    groups = []

    def add(file_no: int, text: str, source: str) -> int:
        line = len(files[file_no])
        files[file_no].append({"text": text, "meta": {"pile_set_name": source, "n": line}})
        return (file_no << LINE_BITS) | line

    def fresh(tag: str, m: int = 120) -> list[str]:
        return [f"{tag}w{i}x{rng.randint(0, 9)}" for i in range(m)]

    sources = ["Pile-CC", "Github", "ArXiv"]
    for j in (0.5, 0.7, 0.8, 0.9, 0.95):
        for p in range(25):
            words = fresh(f"j{j}p{p}")
            var = _variant(words, j, f"v{j}p{p}_")
            a = add(rng.randrange(3), " ".join(words), rng.choice(sources))
            b = add(rng.randrange(3), " ".join(var), rng.choice(sources))
            groups.append(("pair", [a, b], [1.0, _jaccard(" ".join(words), " ".join(var))]))
    for c in range(10):  # exact and normalised copies, clusters of 3-4
        words = fresh(f"c{c}")
        text = " ".join(words)
        members = [add(c % 3, text, "Pile-CC")]
        members.append(add((c + 1) % 3, text.upper(), "OpenWebText2"))
        members.append(add((c + 2) % 3, "\n".join(words), "Books3"))
        if c % 2:
            members.append(add(c % 3, text, "Pile-CC"))
        groups.append(("copies", members, [1.0] * len(members)))
    singles = [
        add(i % 3, " ".join(fresh(f"s{i}", rng.randint(1, 60))), "Github") for i in range(60)
    ]
    blanks = [add(0, "   \n ", "Pile-CC"), add(1, "\t", "Pile-CC")]
    paths = [root / "a.jsonl", root / "b.jsonl.zst", root / "c.jsonl"]
    for p, recs in zip(paths, files):
        _write(p, recs)
    return {
        "paths": [str(p) for p in paths],
        "groups": groups,
        "singles": singles,
        "blanks": blanks,
    }


@pytest.fixture(scope="module")
def run1(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("dedup_out1")
    stats = run_dedup(corpus["paths"], out, CONFIG, executor=make_executor("local", 1))
    return out, stats


def _flags(corpus, root: dict[int, int]) -> list[bool]:
    """Per planted group: did all its members end in one cluster?"""
    return [len({root.get(m, m) for m in members}) == 1 for _, members, _ in corpus["groups"]]


def _roots(out: Path) -> dict[int, int]:
    t = pq.read_table(out / "removed.parquet").to_pydict()
    assert t["cluster_id"] == t["kept_id"]
    return dict(zip(t["doc_id"], t["kept_id"]))


def test_planted_duplicates_found_and_one_kept_per_cluster(corpus, run1):
    out, stats = run1
    root = _roots(out)
    found = _flags(corpus, root)
    for (_, members, _), f in zip(corpus["groups"], found):
        kept = [m for m in members if m not in root]
        # whatever is merged keeps exactly one document: the smallest id
        assert kept == ([min(members)] if f else kept) and len(kept) >= 1
    by_level: dict[str, list[bool]] = {"copies": [], "high": [], "0.9": [], "mid": [], "low": []}
    for (kind, _, js), f in zip(corpus["groups"], found):
        j = js[-1]
        level = (
            "copies"
            if kind == "copies"
            else "high"
            if j >= 0.94
            else "0.9"
            if j > 0.88
            else "mid"
            if j > 0.72
            else "low"
        )
        by_level[level].append(f)
    # exact / normalised copies and J ~ 0.95: always found (P(miss) < 1e-6 each)
    assert len(by_level["copies"]) == 10 and all(by_level["copies"])
    assert len(by_level["high"]) == 25 and all(by_level["high"])
    # J ~ 0.90: P(found) = P(candidate) * P(passes verification) = 0.999 * 0.984 per pair
    assert len(by_level["0.9"]) == 25 and sum(by_level["0.9"]) >= 22
    # J <= 0.7: P(passes the verification cut 0.840) < 0.001; at most a rare one merges
    assert len(by_level["low"]) == 50 and sum(by_level["low"]) <= 2
    for d in corpus["singles"] + corpus["blanks"]:
        assert d not in root
        assert d not in set(root.values())
    # every cluster keeps exactly one document: its smallest id
    clusters = pq.read_table(out / "clusters.parquet").to_pydict()
    assert clusters["cluster_id"] == clusters["kept_id"]
    for cid, size in zip(clusters["cluster_id"], clusters["size"]):
        members = [d for d, r in root.items() if r == cid]
        assert cid not in root and len(members) == size - 1 and min(members) > cid
    assert stats["counts"]["removed"] == stats["removed"] == len(root)
    assert stats["clusters"] == stats["counts"]["clusters"] and "timings" in stats
    assert stats["counts"]["documents_without_shingles"] == 2


def test_removed_table_has_provenance(corpus, run1):
    out, _ = run1
    t = pq.read_table(out / "removed.parquet").to_pylist()
    assert t, "planted duplicates must be removed"
    recs = [[orjson.loads(x) for x in _lines(p)] for p in corpus["paths"]]
    for row in t:
        fi, line = row["doc_id"] >> LINE_BITS, row["doc_id"] & ((1 << LINE_BITS) - 1)
        assert row["file"] == Path(corpus["paths"][fi]).name  # relative to the inputs' root
        assert row["line"] == line + 1
        assert row["pile_set_name"] == recs[fi][line]["meta"]["pile_set_name"]


def _lines(path: str) -> list[bytes]:
    data = Path(path).read_bytes()
    if path.endswith(".zst"):
        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data.splitlines()


def test_stats_json(run1):
    out, stats = run1
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["counts"] == stats["counts"]
    per = on_disk["per_pile_set_name"]
    assert sum(v["removed"] for v in per.values()) == stats["counts"]["removed"]
    assert sum(v["documents"] for v in per.values()) == stats["counts"]["documents"]
    hist = on_disk["cluster_size_histogram"]
    assert sum(c for _, c in hist) == stats["counts"]["clusters"]
    assert sum(s * c for s, c in hist) == stats["counts"]["documents_in_clusters"]
    assert [j for j, _ in on_disk["s_curve"]][0] == 0.5 and len(on_disk["s_curve"]) == 10
    assert on_disk["expected_recall"]["at_threshold"] > 0.99
    v = on_disk["verification"]
    assert v["enabled"] and v["kept_pairs"] + v["dropped_pairs"] == v["candidate_pairs"]
    assert "timings" not in on_disk and (out / "timings.json").exists()
    assert not (out / "buckets").exists() and not (out / "edges").exists()


def test_fingerprints_in_parquet_and_manifest(run1):
    out, _ = run1
    fp = CONFIG.fingerprint()
    for p in [
        out / "removed.parquet",
        out / "clusters.parquet",
        *sorted((out / "signatures").glob("*.parquet")),
    ]:
        assert pq.read_schema(p).metadata[b"pile.config_fingerprint"] == fp.encode()
    man = json.loads((out / "manifest.json").read_text())
    assert man["kind"] == "dedup" and man["config_fingerprint"] == fp
    names = {f["name"] for f in man["files"]}
    assert {"removed.parquet", "clusters.parquet", "stats.json", "signatures/000001.npy"} <= names
    sig = np.load(out / "signatures" / "000000.npy")
    assert sig.dtype == np.uint32 and sig.shape[1] == 128


def _tree_bytes(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "timings.json"
    }


def test_byte_identical_for_workers_and_reruns(corpus, run1, tmp_path):
    out1, _ = run1
    cfg = DedupConfig.from_preset("pythia-0.87", partitions=4, batch_chars=3000)
    run_dedup(corpus["paths"], tmp_path / "w2", cfg, executor=make_executor("local", 2))
    run_dedup(corpus["paths"], tmp_path / "w1", CONFIG, executor=make_executor("local", 1))
    ref = _tree_bytes(out1)
    assert len(ref) == 3 * 2 + 4
    assert _tree_bytes(tmp_path / "w2") == ref
    assert _tree_bytes(tmp_path / "w1") == ref


def test_load_removed_ids_checks_manifest(run1, tmp_path):
    out, _ = run1
    ids = load_removed_ids(out, CONFIG.fingerprint())
    assert ids.dtype == np.int64 and (np.diff(ids) > 0).all()
    assert set(ids.tolist()) == set(_roots(out))
    with pytest.raises(IntegrityError, match="expected 0000"):
        load_removed_ids(out, "0000")
    with pytest.raises(IntegrityError, match="manifest not found"):
        load_removed_ids(tmp_path)


def test_export_text_keeps_survivors_with_meta(corpus, run1, tmp_path):
    out, _ = run1
    counts = export_text(
        corpus["paths"], out, tmp_path / "exp", expected_fingerprint=CONFIG.fingerprint()
    )
    removed = set(load_removed_ids(out).tolist())
    total = 0
    for fi, (src, name) in enumerate(zip(corpus["paths"], ["a", "b", "c"])):
        got = [orjson.loads(x) for x in _lines(str(tmp_path / "exp" / f"{name}.jsonl.zst"))]
        want = [
            orjson.loads(x)
            for i, x in enumerate(_lines(src))
            if ((fi << LINE_BITS) | i) not in removed
        ]
        assert got == want  # same order, text and whole meta (including the extra "n" field)
        total += len(got)
    assert counts["documents_written"] == total
    assert counts["documents_dropped"] == len(removed)
    man = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert man["kind"] == "dedup-export" and len(man["files"]) == 3


def test_giant_documents(tmp_path):
    rng = np.random.default_rng(9)
    vocab = np.array([f"v{i}" for i in range(5000)])
    giant = " ".join(vocab[rng.integers(0, 5000, 2_000_000)].tolist())
    assert len(giant) > 10 * 1024 * 1024
    recs = [
        {"text": giant, "meta": {"pile_set_name": "Books3"}},
        {"text": "a short unrelated document", "meta": {"pile_set_name": "Github"}},
        {"text": giant.upper(), "meta": {"pile_set_name": "Books3"}},
    ]
    _write(tmp_path / "g.jsonl", recs)
    stats = run_dedup([tmp_path / "g.jsonl"], tmp_path / "out", CONFIG)
    assert load_removed_ids(tmp_path / "out").tolist() == [2]
    assert stats["counts"]["shingles"] == 2 * (2_000_000 - 4) + 1


def test_bundled_sample_planted_clusters(tmp_path):
    root = sample_dir()
    gt_path = root / "ground_truth.json"
    if not gt_path.exists():
        pytest.skip("bundled sample not generated yet")
    gt = json.loads(gt_path.read_text())
    order = [
        *sorted(f for f, v in gt["files"].items() if v["split"] == "train"),
        "val.jsonl.zst",
        "test.jsonl.zst",
    ]
    run_dedup([root / f for f in order], tmp_path / "out", CONFIG)
    root_of = _roots(tmp_path / "out")
    expected_removed = set()
    for c in gt["clusters"]:
        ids = [(order.index(m["file"]) << LINE_BITS) | (m["line"] - 1) for m in c["members"]]
        for m, i in zip(c["members"], ids):
            if m["doc_id"] is not None:
                assert m["doc_id"] == i
        roots = {root_of.get(i, i) for i in ids}
        if c["kind"] == "negative":
            assert len(roots) == len(ids), c["id"]
        else:
            assert roots == {min(ids)}, c["id"]
            expected_removed |= set(ids) - {min(ids)}
    # nothing outside the planted clusters is removed (the sample has no other pair above 0.3)
    assert set(root_of) == expected_removed


def test_input_without_usable_documents(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text('{"text": ""}\n{"text": "  \\n "}\n\n')
    stats = run_dedup([p], tmp_path / "out", CONFIG)
    c = stats["counts"]
    assert (c["documents"], c["documents_without_shingles"], c["removed"]) == (1, 1, 0)
    assert stats["reader"]["empty"] == 1 and stats["reader"]["blank_lines"] == 1
    assert load_removed_ids(tmp_path / "out").tolist() == []
    # line-indexed signature rows: line 1 (empty text) and line 2 (no words) hold the sentinel
    sig = np.load(tmp_path / "out" / "signatures" / "000000.npy")
    assert sig.shape == (2, 128) and (sig == 0xFFFFFFFF).all()
