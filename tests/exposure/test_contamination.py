"""`pile contamination` finds planted benchmark items (exact and near) in a small real-text build,
with the first step they were seen, and nothing for unrelated text."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.cli.main import main
from pipeline.exposure.contamination import ngram_hashes
from pipeline.order import OrderConfig, open_data, run_order
from pipeline.shards.mmidx import MMIDXWriter

CONFIG = OrderConfig(seq_length=64, global_batch=4, train_iters=90, seed=3)


@pytest.fixture(scope="module")
def text_build(tmp_path_factory):
    import pyarrow as pa

    from pipeline.tokenize.encoder import load_encoder

    d = tmp_path_factory.mktemp("contam")
    rs = np.random.RandomState(11)
    vocab = [f"w{i}x" for i in range(400)]
    docs = [" ".join(rs.choice(vocab, int(rs.randint(60, 200)))) for _ in range(40)]
    enc = load_encoder()
    ids = [np.array(t + [0], dtype=np.uint16) for t in enc.encode_batch(docs)]
    prefix = d / "t_text_document"
    w = MMIDXWriter(prefix, np.uint16)
    w.add_items(np.concatenate(ids), np.array([x.size for x in ids]))
    w.finalize()
    n = len(docs)
    pq.write_table(
        pa.table(
            {
                "doc_id": np.arange(n, dtype=np.int64),
                "file": ["00.jsonl"] * n,
                "line": np.arange(1, n + 1),
                "pile_set_name": ["Pile-CC"] * n,
                "tokens": [x.size for x in ids],
            }
        ),  # fmt: skip
        str(prefix) + ".docs.parquet",
    )
    run_order(prefix, CONFIG)
    long = int(np.argmax([len(x.split()) for x in docs]))
    words = docs[long].split()
    words[len(words) // 2] = "changed"
    queries = [
        {"id": "exact", "text": "Question: " + " ".join(docs[5].split()[10:40]) + " Answer: yes"},
        {"id": "near", "text": " ".join(words)},
        {"id": "clean", "text": " ".join(f"zz{i}q" for i in range(80))},
    ]
    qf = d / "bench.jsonl"
    qf.write_text("".join(json.dumps(q) + "\n" for q in queries))
    return {"dir": d, "prefix": prefix, "docs": docs, "long": long, "queries": qf, "enc": enc}


def _brute_first_step(text_build, text: str, n: int = 13):
    """Earliest step whose sample holds any 13-gram of the query, scanning the training samples."""
    q = np.array(text_build["enc"].encode(text), dtype=np.int64)
    grams = set(ngram_hashes(q, n).tolist())
    data = open_data(text_build["prefix"], CONFIG)
    for step in range(CONFIG.train_iters):
        for row in data.step(step):
            if grams & set(ngram_hashes(row.astype(np.int64), n).tolist()):
                return step
    return None


def test_planted_items_are_found_and_unrelated_text_is_not(text_build, capsys):
    out = text_build["dir"] / "hits.parquet"
    rc = main(["-q", "contamination", str(text_build["prefix"]), "--queries",
               str(text_build["queries"]), "--id-key", "id", "--out", str(out), "--json"])  # fmt: skip
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)["summary"][0]
    assert summary["queries"] == 3 and summary["contaminated"] == 2
    assert summary["exact"] == 2 and summary["near"] == 1
    rows = pq.read_table(out).to_pylist()
    by = {(r["query_id"], r["kind"]): r for r in rows}
    assert {r["query_id"] for r in rows} == {"exact", "near"}
    assert by[("exact", "exact")]["item"] == 5
    assert by[("near", "near")]["item"] == text_build["long"]
    assert by[("near", "near")]["jaccard"] >= 0.9
    queries = [json.loads(x) for x in text_build["queries"].read_text().splitlines()]
    assert by[("exact", "exact")]["first_step"] == _brute_first_step(text_build, queries[0]["text"])
    assert by[("near", "exact")]["first_step"] == _brute_first_step(text_build, queries[1]["text"])
    for r in rows:
        assert r["first_checkpoint"] == r["first_step"] + 1


def test_fail_above_gives_an_exit_code(text_build, capsys):
    args = ["-q", "contamination", str(text_build["prefix"]), "--queries",
            str(text_build["queries"]), "--out", str(text_build["dir"] / "h.parquet")]  # fmt: skip
    assert main([*args, "--fail-above", "0.5"]) == 6
    assert "above --fail-above" in capsys.readouterr().err
    assert main([*args, "--fail-above", "0.7"]) == 0


def test_threshold_is_configurable(text_build, capsys):
    out = text_build["dir"] / "strict.parquet"
    rc = main(["-q", "contamination", str(text_build["prefix"]), "--queries",
               str(text_build["queries"]), "--out", str(out), "--threshold", "0.99"])  # fmt: skip
    assert rc == 0
    assert not [r for r in pq.read_table(out).to_pylist() if r["kind"] == "near"]


def test_find_doc_with_sorted_doc_ids(text_build, capsys):
    rc = main(["-q", "find", str(text_build["prefix"]), "--doc", "5", "--json"])
    r = json.loads(capsys.readouterr().out)
    assert rc == 0 and r["item"] == 5 and r["doc_id"] == 5
    assert main(["-q", "find", str(text_build["prefix"]), "--doc", "99"]) == 3
