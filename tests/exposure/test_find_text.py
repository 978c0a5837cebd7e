"""`pile find --text/--tokens` agrees with a brute-force scan of the pre-shuffled tokens, on
both data forms and both search paths (k-gram index, scan)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.cli.main import main
from pipeline.exposure.textindex import build_index, paths, search, stream_of
from pipeline.order import open_data

from .conftest import Model


def _brute(model, q):
    out = set()
    n = q.size
    for g in range(model.trained):
        row = model.sample_tokens(g)
        for o in range(row.size - n + 1):
            if np.array_equal(row[o : o + n], q):
                out.add((g, o))
    return out


def _snippets(built, count=12, seed=1):
    rs = np.random.RandomState(seed)
    sizes = built["sizes"]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    out = [built["tokens"][starts[4] + 1 : starts[4] + 13]]  # planted in items 4 and 10
    while len(out) < count:
        i = int(rs.randint(0, sizes.size))
        n = int(rs.choice([3, 5, 7, 9, 12]))
        if sizes[i] - 1 < n:
            continue
        a = int(rs.randint(0, sizes[i] - n))  # never the EOD token
        out.append(built["tokens"][starts[i] + a : starts[i] + a + n])
    return out


def _find(capsys, data, q, *extra):
    rc = main(["-q", "find", str(data), "--tokens", " ".join(map(str, q.tolist())), "--json",
               "--kgram", "4", "--stride", "4", *extra])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    return json.loads(out)


@pytest.mark.parametrize("form", ["document", "preshuffled"])
@pytest.mark.parametrize("scan", [False, True])
def test_find_text_agrees_with_brute_force(built, capsys, form, scan):
    model = Model(built)
    data = built["prefix"] if form == "document" else built["dir"] / "preshuffled"
    for q in _snippets(built):
        want = _brute(model, q)
        r = _find(capsys, data, q, *(["--scan"] if scan else []))
        got = {(o["sample"], o["offset"]) for o in r["occurrences"] if not o["split"]}
        assert got == want, q
        assert r["search"] == ("index" if q.size >= 7 and not scan else "scan")
        for o in r["occurrences"]:
            assert o["step"] == o["sample"] // built["config"].global_batch
            assert o["epoch"] in (0, 1, 2)
            assert {"step", "sample", "offset", "epoch"} <= set(o)
        if want:
            assert r["first_step"] == min(g for g, _ in want) // built["config"].global_batch


def test_planted_repeat_is_found_in_both_documents(built, capsys):
    sizes = built["sizes"]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    q = built["tokens"][starts[4] + 1 : starts[4] + 13]
    r = _find(capsys, built["prefix"], q)
    assert r["matches"] == 2
    assert {o["item"] for o in r["occurrences"]} == {4, 10}
    assert {o["item_offset"] for o in r["occurrences"]} == {1}


def test_index_is_built_once_with_a_manifest_and_matches_the_scan(built, tmp_path):
    data = open_data(built["prefix"], built["config"])
    stream = stream_of(data)
    m = build_index(stream, 4, 4, tmp_path)
    assert m["kind"] == "ngram-index" and m["counts"]["tokens"] == stream.n_tokens
    ps = paths(stream.prefix, 4, 4, tmp_path)
    keys = np.load(ps["keys"])
    assert (np.diff(keys.astype(np.int64)) >= 0).all()
    assert keys.size == (stream.n_tokens - 4) // 4 + 1
    # deterministic bytes
    first = ps["keys"].read_bytes() + ps["pos"].read_bytes()
    build_index(stream, 4, 4, tmp_path)
    assert ps["keys"].read_bytes() + ps["pos"].read_bytes() == first
    from pipeline.exposure.textindex import open_index, scan

    idx = open_index(stream, 4, 4, tmp_path, build=False)
    for q in _snippets(built, 20, seed=5):
        assert np.array_equal(search(stream, q, idx), scan(stream, q))
