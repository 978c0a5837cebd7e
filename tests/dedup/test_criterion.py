"""What dedup really removes: the recorded criterion, `verify="exact"`, and input sizes."""

from __future__ import annotations

import json
import os

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from pipeline.cli.main import main
from pipeline.dedup import DedupConfig, run_dedup
from pipeline.dedup.shingle import normalize_words
from pipeline.dedup.verification import ShingleTask, shingle_task
from pipeline.engine import make_executor
from pipeline.errors import ConfigError, IntegrityError
from pipeline.read import ReadConfig, make_doc_id, resolve_inputs


def true_jaccard(a: str, b: str, n: int = 5) -> float:
    def sh(t: str) -> set[tuple[str, ...]]:
        w = normalize_words(t)
        return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}

    x, y = sh(a), sh(b)
    return len(x & y) / len(x | y)


def planted_corpus(path, seed: int = 7) -> dict[float, list[tuple[int, int]]]:
    """Pairs of random-word documents with exact 5-gram Jaccard 0.80, 0.90 and 1.0.

    m + 4 words give M = m shingles; replacing the last k words of the copy gives
    J = (M - k) / (M + k): M = 180, k = 20 -> 0.80; M = 190, k = 10 -> 0.90.
    Returns {J: [(line_a, line_b)]}.
    """
    rng = np.random.default_rng(seed)
    fresh = iter(f"w{i}" for i in rng.permutation(10**6))
    texts: list[str] = []
    pairs: dict[float, list[tuple[int, int]]] = {0.8: [], 0.9: [], 1.0: []}
    for j, m, k, n in ((0.8, 180, 20, 16), (0.9, 190, 10, 6), (1.0, 180, 0, 4)):
        for _ in range(n):
            a = [next(fresh) for _ in range(m + 4)]
            b = a[: m + 4 - k] + [next(fresh) for _ in range(k)]
            texts += [" ".join(a), " ".join(b)]
            pairs[j].append((len(texts) - 1, len(texts)))
    for _ in range(10):  # unrelated documents
        texts.append(" ".join(next(fresh) for _ in range(100)))
    path.write_bytes(b"".join(orjson.dumps({"text": t}) + b"\n" for t in texts))
    for j, ps in pairs.items():
        for la, lb in ps:
            assert true_jaccard(texts[la - 1], texts[lb - 1]) == pytest.approx(j)
    return pairs


def removed_lines(out) -> set[int]:
    return set(pq.read_table(out / "removed.parquet").column("line").to_pylist())


def test_exact_keeps_pairs_below_threshold_that_the_estimate_removes(tmp_path):
    src = tmp_path / "planted.jsonl"
    pairs = planted_corpus(src)
    est = run_dedup(
        [src], tmp_path / "est", DedupConfig.from_preset("pythia-0.87", verify="estimate")
    )
    exact = run_dedup([src], tmp_path / "exact", DedupConfig.from_preset("pythia-0.87"))
    r_est, r_exact = removed_lines(tmp_path / "est"), removed_lines(tmp_path / "exact")
    low = {b for _, b in pairs[0.8]}
    high = {b for j in (0.9, 1.0) for _, b in pairs[j]}
    assert len(low & r_est) >= 3  # the estimate check removes pairs at true J = 0.80 ...
    assert not low & r_exact  # ... the exact check keeps every one of them
    assert high <= r_est and high <= r_exact  # pairs >= 0.87 go in both modes
    assert r_exact == high
    assert not (tmp_path / "exact" / "exact").exists()  # intermediate shingle sets removed

    assert est["counts"]["jaccard_cut"] == pytest.approx(0.810549)
    assert est["criterion"]["summary"] == (
        "MinHash estimate >= 0.8105 (0.87 - 2 sigma) with the document kept in its place "
        "(clusters split by id until this holds); candidates: LSH at 0.87"
    )
    assert exact["counts"]["jaccard_cut"] == 0.87
    v = exact["verification"]
    assert v["mode"] == "exact" and v["exact_kept_pairs"] == len(high) == v["kept_pairs"]
    assert v["exact_dropped_pairs"] >= len(low & r_est)  # the exact mode screens looser
    stats = json.loads((tmp_path / "exact" / "stats.json").read_text())
    manifest = json.loads((tmp_path / "exact" / "manifest.json").read_text())
    assert stats["criterion"] == manifest["criterion"] == exact["criterion"]
    assert manifest["counts"]["jaccard_cut"] == 0.87 and manifest["config"]["verify"] == "exact"


def test_exact_is_deterministic_across_workers(tmp_path):
    src = tmp_path / "planted.jsonl"
    planted_corpus(src)
    cfg = DedupConfig.from_preset("pythia-0.87", verify="exact", partitions=4)
    run_dedup([src, src], tmp_path / "w1", cfg, executor=make_executor("local", 1))
    run_dedup([src, src], tmp_path / "w2", cfg, executor=make_executor("local", 2))
    for name in ("removed.parquet", "clusters.parquet", "stats.json"):
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()
    # cross-file pairs are checked too: the second copy goes (62) plus one of each high pair
    # (10) in the first; each 0.80 pair stays as two clusters {a, a'}, {b, b'}
    assert len(pq.read_table(tmp_path / "w1" / "removed.parquet")) == 72


def test_shingle_task_names_a_candidate_missing_on_the_second_read(tmp_path):
    src = tmp_path / "a.jsonl"
    src.write_bytes(b'{"text": "one two three four five six"}\n\n')
    (tmp_path / "exact").mkdir()
    f = resolve_inputs([src])[0]
    task = ShingleTask(f, str(tmp_path), np.array([make_doc_id(0, 2)]), DedupConfig(), ReadConfig())
    with pytest.raises(IntegrityError, match=r"a\.jsonl line 2: candidate document .* changed"):
        shingle_task(task)


def test_fingerprint_records_the_mode_and_the_rule():
    exact = DedupConfig.from_preset("pythia-0.87")
    assert exact.verify == "exact" and exact.cluster_rule == "center"
    assert exact.fingerprint() == DedupConfig().fingerprint()
    prints = {
        DedupConfig(verify=v, cluster_rule=r).fingerprint()
        for v in ("exact", "estimate")
        for r in ("center", "component")
    }
    assert len(prints) == 4
    # the older spelling of verify="none" is the same config
    assert DedupConfig(verify_candidates=False) == DedupConfig(verify="none")
    assert DedupConfig(verify="none").cluster_rule == "component"


def test_criterion_wording_per_mode():
    c = DedupConfig().criterion()
    assert c["summary"] == (
        "exact Jaccard >= 0.87 with the document kept in its place (clusters split by id until "
        "this holds); candidates: LSH at 0.87, MinHash estimate >= 0.7808"
    )
    assert (c["check"], c["jaccard_cut"], c["estimate_cut"]) == ("exact", 0.87, 0.780824)
    assert (c["cluster_rule"], c["rule"]) == ("center", "jaccard>=0.87")
    c = DedupConfig(verify="none").criterion()
    assert c["check"] == "none" and c["jaccard_cut"] is None and c["rule"] == "lsh-component"
    assert c["summary"] == (
        "LSH candidates at Jaccard 0.87 (14 bands x 9 rows), all joined unchecked into "
        "components (pairs well below 0.87 can be removed)"
    )
    c = DedupConfig(
        threshold=0.8, verify="estimate", verify_sigmas=1.0, num_perm=256, cluster_rule="component"
    ).criterion()
    assert c["summary"] == (
        "MinHash estimate >= 0.7750 (0.8 - 1 sigma) with a neighbour in its cluster (chains "
        "allowed); candidates: LSH at 0.8"
    )
    assert c["rule"] == "estimate>=0.7750 (chain)"


def test_verify_mode_rejected():
    with pytest.raises(
        ConfigError, match="verify='close' is invalid; allowed: exact, estimate, none"
    ):
        DedupConfig(verify="close")


def test_cluster_rule_rejected():
    with pytest.raises(
        ConfigError, match="cluster_rule='star' is invalid; allowed: center, component"
    ):
        DedupConfig(cluster_rule="star")


def test_cli_verify_exact_and_summary(tmp_path, capsys):
    src = tmp_path / "planted.jsonl"
    planted_corpus(src)
    rc = main(["dedup", str(src), "--out", str(tmp_path / "o"), "--verify", "exact"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "verification (estimated J >= 0.7808, then exact J >= 0.87): kept 10 of" in text
    assert (
        "near-duplicates: exact Jaccard >= 0.87 with the document kept in its place (clusters "
        "split by id until this holds); candidates: LSH at 0.87, MinHash estimate >= 0.7808\n"
    ) in text
    assert "62 documents, 10 duplicate clusters, 10 removed" in text


def test_cli_estimate_summary_states_the_estimate_cut(tmp_path, capsys):
    src = tmp_path / "planted.jsonl"
    planted_corpus(src)
    assert main(["dedup", str(src), "--out", str(tmp_path / "o"), "--verify", "estimate"]) == 0
    text = capsys.readouterr().out
    assert (
        "near-duplicates: MinHash estimate >= 0.8105 (0.87 - 2 sigma) with the document kept in "
        "its place (clusters split by id until this holds); candidates: LSH at 0.87\n"
    ) in text


def test_cli_bad_verify_choice(tmp_path, capsys):
    src = tmp_path / "a.jsonl"
    src.write_bytes(b'{"text": "x"}\n')
    with pytest.raises(SystemExit) as e:
        main(["dedup", str(src), "--out", str(tmp_path / "o"), "--verify", "close"])
    assert e.value.code == 2
    assert "invalid choice: 'close'" in capsys.readouterr().err


def test_manifest_records_input_bytes(tmp_path):
    datasets = pytest.importorskip("datasets")
    a = tmp_path / "a.jsonl"
    a.write_bytes(b'{"text": "alpha beta gamma delta epsilon"}\n')
    disk = tmp_path / "disk"
    datasets.Dataset.from_dict({"text": ["zeta eta theta iota kappa"]}).save_to_disk(str(disk))
    run_dedup([a, disk], tmp_path / "o", DedupConfig(partitions=2))
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["inputs"] == ["a.jsonl", "disk"]
    assert m["input_bytes"] == [os.stat(a).st_size, None]


def test_lambada_exact_removes_only_pairs_at_the_threshold(shared, tmp_path):
    src = shared("corpora", "lambada", "lambada_test.jsonl")
    lines = src.read_bytes().split(b"\n")

    def true_js(out) -> list[float]:
        t = pq.read_table(out / "removed.parquet").to_pylist()
        text = [orjson.loads(lines[r["line"] - 1])["text"] for r in t]
        kept = [orjson.loads(lines[(r["kept_id"] & ((1 << 40) - 1))])["text"] for r in t]
        return [true_jaccard(a, b) for a, b in zip(text, kept)]

    chain = DedupConfig.from_preset("pythia-0.87", verify="estimate", cluster_rule="component")
    run_dedup([src], tmp_path / "est", chain)
    run_dedup([src], tmp_path / "exact", DedupConfig.from_preset("pythia-0.87"))
    est, exact = true_js(tmp_path / "est"), true_js(tmp_path / "exact")
    assert len(est) == 10 and sum(j < 0.87 for j in est) == 7 and min(est) > 0.79
    assert len(exact) == 3 and min(exact) >= 0.87
