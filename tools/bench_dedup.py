"""Benchmark of the dedup stage: per-pair quality and cost of every mode, peers, speed, scale.

    python tools/bench_dedup.py [--quick] [--rounds 3] [--datatrove-configs 14x8,14x9,20x6]
        [--datatrove-python /work/venvs/datatrove/bin/python] [--skip pairs quality speed scale]
        [--json results.json]

The datatrove figures run in a separate venv (datatrove is not a project dependency):
    python3 -m venv /work/venvs/datatrove
    /work/venvs/datatrove/bin/pip install datatrove==0.10.1 spacy "xxhash<4" regex tokenizers
(datatrove 0.10's English word tokenizer needs spaCy, and its xxhash call passes str, which
xxhash >= 4 rejects with "Strings must be encoded before hashing"). Without that venv the
datatrove rows print "NOT RUN" with the reason.

Sections (every figure is measured in this run; ratios are printed against the named peers):

0. Pairs (the figures in the README's dedup table): on the shared novels cut into ~4 KB documents
   in order (11 novels appear in two editions: natural near-duplicates at every similarity) and on
   LAMBADA, the truth is every pair with exact word-5-gram Jaccard >= 0.87 (prefix filtering:
   complete). Each method's removals are judged per pair: precision = share of removed documents
   whose exact Jaccard with the document kept in their place is >= 0.87 (with the count in
   0.80-0.87, 0.70-0.80 and below 0.70), recall = share of truth pairs that lost a member. Methods:
   `pile dedup` end to end in a fresh process (1 worker) in every --verify mode and the old
   default (estimate + component), datasketch MinHashLSH(0.87, 128) used Pythia's way (a document
   is dropped when the index of kept documents returns any candidate), and datatrove 0.10's full
   MinHash pipeline (tools/dedup_datatrove_pipeline.py: its reader, 4 stages and writers) at each
   --datatrove-configs layout (its default 14x8, ours 14x9, 20x6). CPU seconds: median of
   --rounds interleaved runs (process and children).
1. Quality (pair precision / recall / ARI) of `run_dedup` with the pythia-0.87 preset, with and
   without candidate verification, against exact shingle Jaccard, on
   a) a labelled generated set: Zipf-vocabulary documents plus variants made by word substitutions
      at similarities spread over 0.5..1.0, and
   b) the natural near/exact duplicates of ../shared/corpora/lambada (if present).
   Truth: all pairs with exact 5-word-shingle Jaccard >= 0.87 (our normalisation), found by an
   inverted index over the shingles. Reported: precision = share of predicted same-cluster pairs
   that are in the same truth component (transitive closure of the truth pairs); recall = share of
   truth pairs that end in one predicted cluster; recall@t = the same for truth pairs with
   0.87 <= J < 0.90; ARI between predicted clusters and truth components (singletons included).
   Peers on the same documents: datasketch MinHashLSH (threshold 0.87, its default weights -> 7x18,
   and with our 14x9 bands) on datasketch MinHash of our shingles; datatrove 0.10's signatures
   with 14 buckets x 9 hashes and its bucket matching + union-find (in the benchmark venv).
2. Speed, one process (= per core), same documents (lambada + English novels): shingles/s of
   ours (normalise + shingle + hash + 128 MinHash rows) versus datasketch `MinHash.update_batch`
   (fed our normalised 5-word shingles, shingle strings built in Python as its users do) and
   versus datatrove's `MinhashDedupSignature.get_shingles + get_signature` (its own tokenizer).
3. Scale: bucket partitions -> star edges -> union-find on >= 10M synthetic document ids (14
   bands each; 10% planted duplicates incl. cross-file ones, one 100k-document boilerplate
   bucket), run in a fresh process; wall time, peak RSS (sampled every 0.1 s with psutil for the
   main process and each worker) and the linear projection to the Pile's 211M documents.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.dedup import DedupConfig, run_dedup  # noqa: E402
from pipeline.dedup.components import connected_components  # noqa: E402
from pipeline.dedup.hashing import fmix64  # noqa: E402
from pipeline.dedup.minhash import minhash_signatures, permutation_params  # noqa: E402
from pipeline.dedup.shingle import normalize_words, shingle_hashes  # noqa: E402

SHARED = REPO.parent / "shared"
THRESHOLD = 0.87
PILE_DOCS = 211_000_000
DEFAULT_DT_PY = "/work/venvs/datatrove/bin/python"


# --------------------------------------------------------------------------- data
def lambada_texts() -> list[str] | None:
    p = SHARED / "corpora" / "lambada" / "lambada_test.jsonl"
    if not p.exists():
        return None
    return [json.loads(line)["text"] for line in p.open(encoding="utf-8")]


def novel_texts(limit_chars: int) -> list[str]:
    p = SHARED / "corpora" / "novels" / "100_english_novels.jsonl.zst"
    if not p.exists():
        return []
    import zstandard

    out, total = [], 0
    with p.open("rb") as f:
        reader = zstandard.ZstdDecompressor().stream_reader(f)
        import io

        for line in io.TextIOWrapper(reader, encoding="utf-8"):
            t = json.loads(line)["text"]
            out.append(t)
            total += len(t)
            if total >= limit_chars:
                break
    return out


def _letters(i: int) -> str:
    """Words of letters only (datatrove's normaliser maps digits to 0, which would merge them)."""
    out = ""
    while True:
        out += "abcdefghijklmnopqrstuvwxyz"[i % 26]
        i //= 26
        if not i:
            return out


def generated_set(n_base: int, seed: int = 7) -> list[str]:
    """Zipf-vocabulary documents plus word-substitution variants at similarities 0.5..1.0."""
    rng = np.random.default_rng(seed)
    vocab = np.array([_letters(i) for i in range(50_000)])
    ranks = np.arange(1, len(vocab) + 1)
    p = 1.0 / ranks**1.05
    p /= p.sum()
    docs: list[str] = []
    for _ in range(n_base):
        m = int(rng.integers(60, 400))
        words = vocab[rng.choice(len(vocab), size=m, p=p)].tolist()
        docs.append(" ".join(words))
        for _ in range(int(rng.integers(0, 4))):
            target = float(rng.uniform(0.5, 1.0))
            s = max(1, m - 4)
            changed = s * (1 - target) / (1 + target)  # shingles to change for Jaccard = target
            edits = int(round(changed / 5))
            var = list(words)
            for pos in rng.choice(m, size=min(edits, m), replace=False):
                var[pos] = "x" + _letters(int(rng.integers(0, 10**9)))
            if rng.random() < 0.3:
                var = [w.upper() for w in var]  # normalisation-only difference
            docs.append(" ".join(var))
    order = rng.permutation(len(docs))
    return [docs[i] for i in order]


# --------------------------------------------------------------------------- truth and metrics
def shingle_sets(texts: list[str]) -> list[np.ndarray]:
    h, c = shingle_hashes(texts, 5)
    off = np.concatenate([[0], np.cumsum(c)])
    return [np.unique(h[off[i] : off[i + 1]]) for i in range(len(texts))]


def truth_pairs(sets: list[np.ndarray], threshold: float, cap: int = 300) -> dict[tuple, float]:
    """Exact Jaccard of every pair sharing a shingle (posting lists longer than `cap` skipped:
    a pair >= 0.87 shares many rarer shingles too)."""
    hs = np.concatenate(sets)
    ds = np.concatenate([np.full(len(s), i, dtype=np.int64) for i, s in enumerate(sets)])
    order = np.argsort(hs, kind="stable")
    hs, ds = hs[order], ds[order]
    bounds = np.flatnonzero(np.diff(hs)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(hs)]])
    codes = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        k = e - s
        if k < 2 or k > cap:
            continue
        d = ds[s:e]
        i, j = np.triu_indices(k, 1)
        a, b = d[i], d[j]
        codes.append(np.minimum(a, b) * len(sets) + np.maximum(a, b))
    if not codes:
        return {}
    pair, inter = np.unique(np.concatenate(codes), return_counts=True)
    a, b = pair // len(sets), pair % len(sets)
    sizes = np.array([len(s) for s in sets])
    jac = inter / (sizes[a] + sizes[b] - inter)
    keep = jac >= threshold
    return {(int(x), int(y)): float(j) for x, y, j in zip(a[keep], b[keep], jac[keep])}


def components_of_pairs(pairs, n: int) -> np.ndarray:
    if not pairs:
        return np.arange(n)
    src = np.array([p[1] for p in pairs], dtype=np.int64)
    dst = np.array([p[0] for p in pairs], dtype=np.int64)
    nodes, root = connected_components(src, dst)
    label = np.arange(n)
    label[nodes] = root
    return label


def pairs_of_labels(label: np.ndarray) -> set[tuple[int, int]]:
    out = set()
    groups: dict[int, list[int]] = {}
    for i, lab in enumerate(label.tolist()):
        groups.setdefault(lab, []).append(i)
    for g in groups.values():
        if len(g) > 1:
            g.sort()
            for x in range(len(g)):
                for y in range(x + 1, len(g)):
                    out.add((g[x], g[y]))
    return out


def metrics(pred_label: np.ndarray, truth: dict[tuple, float], n: int) -> dict[str, float]:
    truth_label = components_of_pairs(list(truth), n)
    pred = pairs_of_labels(pred_label)
    true_comp = pairs_of_labels(truth_label)
    direct = set(truth)
    near_t = {p for p, j in truth.items() if j < 0.90}
    both = len(pred & true_comp)
    total = n * (n - 1) / 2
    expected = len(pred) * len(true_comp) / total
    denom = 0.5 * (len(pred) + len(true_comp)) - expected
    return {
        "pred_pairs": len(pred),
        "truth_pairs": len(direct),
        "precision": both / len(pred) if pred else 1.0,
        "recall": len(pred & direct) / len(direct) if direct else 1.0,
        "recall_at_t": len(pred & near_t) / len(near_t) if near_t else float("nan"),
        "truth_pairs_at_t": len(near_t),
        "ari": (both - expected) / denom if denom else 1.0,
    }


def labels_from_run(out: Path, n: int) -> np.ndarray:
    import pyarrow.parquet as pq

    t = pq.read_table(out / "removed.parquet", columns=["doc_id", "kept_id"]).to_pydict()
    label = np.arange(n)
    mask = (1 << 40) - 1
    for d, k in zip(t["doc_id"], t["kept_id"]):
        label[d & mask] = k & mask
    return label


def labels_from_clusters(clusters: list[list[int]], n: int) -> np.ndarray:
    label = np.arange(n)
    for g in clusters:
        label[g] = min(g)
    return label


# --------------------------------------------------------------------------- peers
def _find(parent: list[int], x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def datasketch_clusters(texts: list[str], params_list) -> tuple[dict, float]:
    from datasketch import MinHash, MinHashLSH

    t0 = time.perf_counter()
    template = MinHash(num_perm=128, seed=1)
    mhs = []
    for t in texts:
        w = normalize_words(t)
        sh = [" ".join(w[i : i + 5]).encode() for i in range(max(1, len(w) - 4))] if w else []
        m = template.copy()
        if sh:
            m.update_batch(sh)
        mhs.append(m)
    sig_seconds = time.perf_counter() - t0
    out = {}
    for name, kwargs in params_list:
        lsh = MinHashLSH(num_perm=128, **kwargs)
        for i, m in enumerate(mhs):
            lsh.insert(i, m)
        parent = list(range(len(texts)))
        for i, m in enumerate(mhs):
            for j in lsh.query(m):
                ri, rj = _find(parent, i), _find(parent, j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
        out[name] = (np.array([_find(parent, i) for i in range(len(texts))]), lsh.b, lsh.r)
    return out, sig_seconds


def run_datatrove(texts: list[str], dt_python: str, buckets: int, rows: int, clusters: bool):
    if not Path(dt_python).exists():
        return {"error": f"{dt_python} not found: create the venv (see --help)"}
    with tempfile.TemporaryDirectory() as td:
        p = Path(td) / "docs.jsonl"
        with p.open("w", encoding="utf-8") as f:
            for t in texts:
                f.write(json.dumps({"text": t}) + "\n")
        cmd = [dt_python, str(REPO / "tools" / "dedup_datatrove_worker.py"), str(p)]
        cmd += ["--buckets", str(buckets), "--rows", str(rows)]
        if clusters:
            cmd.append("--clusters")
        r = subprocess.run(cmd, capture_output=True, text=True)
        try:
            return json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            return {"error": f"datatrove helper failed (rc={r.returncode}): {r.stderr[-500:]}"}


# --------------------------------------------------------------------------- sections
def quality_section(name: str, texts: list[str], dt_python: str, results: dict) -> None:
    n = len(texts)
    print(f"\n== quality: {name} ({n} documents) ==")
    t0 = time.perf_counter()
    truth = truth_pairs(shingle_sets(texts), THRESHOLD)
    print(
        f"exact truth: {len(truth)} pairs with J >= {THRESHOLD} ({time.perf_counter() - t0:.1f}s)"
    )
    rows = []
    with tempfile.TemporaryDirectory() as td:
        src = Path(td) / "docs.jsonl"
        with src.open("w", encoding="utf-8") as f:
            for t in texts:
                f.write(json.dumps({"text": t}) + "\n")
        variants = (
            ("ours 14x9, exact (default)", "exact", 2.0),
            ("ours 14x9 + estimate (2 sigma)", "estimate", 2.0),
            ("ours 14x9 + estimate (1 sigma)", "estimate", 1.0),
            ("ours 14x9, no verify", "none", 2.0),
        )
        for label, verify, sig in variants:
            cfg = DedupConfig.from_preset("pythia-0.87", verify=verify, verify_sigmas=sig)
            out = Path(td) / f"out{verify}{sig}"
            t0 = time.perf_counter()
            run_dedup([src], out, cfg)
            rows.append(
                (label, metrics(labels_from_run(out, n), truth, n), time.perf_counter() - t0)
            )
    ds, _ = datasketch_clusters(
        texts,
        [
            ("datasketch LSH t=0.87 (default)", {"threshold": THRESHOLD}),
            ("datasketch LSH 14x9", {"params": (14, 9)}),
        ],
    )
    for lab, (label, b, r) in ds.items():
        rows.append((f"{lab} [{b}x{r}]", metrics(label, truth, n), None))
    dt = run_datatrove(texts, dt_python, 14, 9, clusters=True)
    if "error" in dt:
        print(f"datatrove: NOT RUN: {dt['error']}")
    else:
        rows.append(
            (
                "datatrove 0.10 14x9",
                metrics(labels_from_clusters(dt["clusters"], n), truth, n),
                None,
            )
        )
    print(f"{'method':38s} {'pairs':>7s} {'prec':>7s} {'recall':>7s} {'rec@t':>7s} {'ARI':>7s}")
    for lab, m, secs in rows:
        print(
            f"{lab:38s} {m['pred_pairs']:7d} {m['precision']:7.4f} {m['recall']:7.4f} "
            f"{m['recall_at_t']:7.4f} {m['ari']:7.4f}" + (f"   ({secs:.1f}s stage)" if secs else "")
        )
    ours = rows[0][1]
    for lab, m, _ in rows[4:]:
        if m["recall"] > 0:
            print(f"recall ratio ours/{lab}: {ours['recall'] / m['recall']:.3f}")
    results[f"quality_{name}"] = {lab: m for lab, m, _ in rows}
    results[f"quality_{name}"]["truth_pairs_at_t"] = ours["truth_pairs_at_t"]


# --------------------------------------------------------------------------- per-pair quality
def novel_chunks(limit_docs: int | None = None, size: int = 4096) -> list[str]:
    """Both shared novel collections cut into ~4 KB documents in order (cut at the last
    whitespace before `size` characters): 11 novels appear in two editions, so their chunks
    are natural near-duplicates at every similarity."""
    import io

    import zstandard

    out: list[str] = []
    for p in sorted((SHARED / "corpora" / "novels").glob("*.jsonl.zst")):
        with p.open("rb") as f:
            lines = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(f), "utf-8")
            for line in lines:
                t = json.loads(line)["text"]
                i = 0
                while i < len(t):
                    j = min(len(t), i + size)
                    if j < len(t):
                        k = max(t.rfind(" ", i, j), t.rfind("\n", i, j))
                        if k > i:
                            j = k + 1
                    out.append(t[i:j])
                    i = j
                    if limit_docs and len(out) >= limit_docs:
                        return out
    return out


def exact_truth(sets: list[np.ndarray], threshold: float) -> dict[tuple[int, int], float]:
    """Every pair with exact Jaccard >= threshold, by prefix filtering (complete: two sets with
    J >= t share an element among the |x| - ceil(t |x|) + 1 rarest of each)."""
    import math

    allh = np.concatenate(sets) if sets else np.empty(0, np.uint64)
    uniq, freq = np.unique(allh, return_counts=True)
    index: dict[int, list[int]] = {}
    cand: set[tuple[int, int]] = set()
    for i, s in enumerate(sets):
        if not len(s):
            continue
        f = freq[np.searchsorted(uniq, s)]
        pre = s[np.lexsort((s, f))][: len(s) - math.ceil(threshold * len(s)) + 1]
        for h in pre.tolist():
            lst = index.setdefault(h, [])
            for j in lst:
                cand.add((j, i))
            lst.append(i)
    out = {}
    for a, b in cand:
        j = jaccard(sets[a], sets[b])
        if j >= threshold:
            out[(a, b)] = j
    return out


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    if not len(a) and not len(b):
        return 0.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def pair_metrics(
    removed: list[tuple[int, int]], truth: dict, sets: list[np.ndarray], threshold: float
) -> dict:
    """Per pair: precision = share of removed documents whose exact Jaccard with the document
    kept in their place is >= threshold; recall = share of truth pairs (J >= threshold) of
    which at least one document was removed (the pair no longer occurs twice)."""
    js = [jaccard(sets[d], sets[k]) if k >= 0 else 0.0 for d, k in removed]
    gone = {d for d, _ in removed}
    hit = sum(1 for a, b in truth if a in gone or b in gone)
    ok = sum(j >= threshold for j in js)
    return {
        "removed": len(removed),
        "precision": ok / len(removed) if removed else 1.0,
        "recall": hit / len(truth) if truth else 1.0,
        "below_threshold": len(removed) - ok,
        "in_0.80_0.87": sum(0.80 <= j < threshold for j in js),
        "in_0.70_0.80": sum(0.70 <= j < 0.80 for j in js),
        "below_0.70": sum(j < 0.70 for j in js),
    }


OUR_MODES = (
    ("pile default (--verify exact)", ["--verify", "exact"]),
    ("pile --verify estimate", ["--verify", "estimate"]),
    (
        "pile --verify estimate --cluster-rule component (old default)",
        ["--verify", "estimate", "--cluster-rule", "component"],
    ),
    ("pile --verify none (Pythia-like)", ["--verify", "none"]),
)
OLD_DEFAULT = OUR_MODES[2][0]


def _child_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_ours(src: Path, out: Path, flags: list[str]) -> tuple[list[tuple[int, int]], float]:
    """`pile dedup` end to end in a fresh process, 1 worker: (removed, kept) lines, CPU s."""
    import pyarrow.parquet as pq

    c0 = _child_cpu()
    cmd = [sys.executable, "-m", "pipeline.cli.main", "dedup", str(src), "--out", str(out)]
    r = subprocess.run([*cmd, "--workers", "1", *flags], capture_output=True, text=True, cwd=REPO)
    cpu = _child_cpu() - c0
    if r.returncode:
        raise RuntimeError(f"pile dedup failed: {r.stderr[-800:]}")
    t = pq.read_table(out / "removed.parquet", columns=["doc_id", "kept_id"]).to_pydict()
    mask = (1 << 40) - 1
    return [(d & mask, k & mask) for d, k in zip(t["doc_id"], t["kept_id"])], cpu


def run_datasketch_pythia(texts: list[str]) -> tuple[list[tuple[int, int]], float]:
    """Pythia-era dedup: datasketch MinHashLSH(threshold=0.87, num_perm=128); each document in
    order is removed when the index of the kept documents returns any candidate (kept in its
    place: the smallest such id), else inserted. No check of the candidates."""
    from datasketch import MinHash, MinHashLSH

    c0 = time.process_time()
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)
    template = MinHash(num_perm=128, seed=1)
    removed = []
    for i, t in enumerate(texts):
        w = normalize_words(t)
        sh = [" ".join(w[k : k + 5]).encode() for k in range(max(1, len(w) - 4))] if w else []
        m = template.copy()
        if sh:
            m.update_batch(sh)
        hits = lsh.query(m)
        if hits:
            removed.append((i, min(hits)))
        else:
            lsh.insert(i, m)
    return removed, time.process_time() - c0


def run_datatrove_pipeline(
    texts: list[str], dt_python: str, buckets: int, rows: int, work: Path
) -> dict:
    if not Path(dt_python).exists():
        return {"error": f"{dt_python} not found: create the venv (see --help)"}
    p = work / "dt_docs.jsonl"
    with p.open("w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"text": t, "id": str(i)}) + "\n")
    cmd = [dt_python, str(REPO / "tools" / "dedup_datatrove_pipeline.py"), str(p)]
    cmd += [str(work / "dt_work"), "--buckets", str(buckets), "--rows", str(rows)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"datatrove pipeline failed (rc={r.returncode}): {r.stderr[-800:]}"}


def pairs_section(
    name: str,
    texts: list[str],
    dt_python: str,
    dt_configs: list[tuple[int, int]],
    rounds: int,
    results: dict,
) -> None:
    n = len(texts)
    print(
        f"\n== per-pair quality and cost: {name} ({n} documents, {sum(map(len, texts)) / 1e6:.1f}M chars) =="
    )
    t0 = time.perf_counter()
    sets = shingle_sets(texts)
    truth = exact_truth(sets, THRESHOLD)
    print(
        f"truth: {len(truth)} pairs with exact J >= {THRESHOLD} (prefix filtering, "
        f"{time.perf_counter() - t0:.1f}s)"
    )
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as td:
        src = Path(td) / f"{name}.jsonl"
        with src.open("w", encoding="utf-8") as f:
            for t in texts:
                f.write(json.dumps({"text": t}) + "\n")
        cpu: dict[str, list[float]] = {lab: [] for lab, _ in OUR_MODES}
        removed_of: dict[str, list] = {}
        for _ in range(rounds):  # interleaved: every mode once per round
            for lab, flags in OUR_MODES:
                removed, c = run_ours(src, Path(td) / "out", flags)
                cpu[lab].append(c)
                removed_of[lab] = removed
        for lab, _ in OUR_MODES:
            m = pair_metrics(removed_of[lab], truth, sets, THRESHOLD)
            m["cpu_seconds"] = float(np.median(cpu[lab]))
            rows[lab] = m
        removed, c = run_datasketch_pythia(texts)
        rows["datasketch MinHashLSH(0.87, 128), unchecked"] = {
            **pair_metrics(removed, truth, sets, THRESHOLD),
            "cpu_seconds": c,
        }
        for b, r in dt_configs:
            lab = f"datatrove 0.10 full pipeline {b}x{r}"
            dt = run_datatrove_pipeline(texts, dt_python, b, r, Path(td))
            if "error" in dt:
                print(f"{lab}: NOT RUN: {dt['error']}")
                continue
            rem = [(int(d), int(k)) for d, k in dt["removed"]]
            rows[lab] = {
                **pair_metrics(rem, truth, sets, THRESHOLD),
                "cpu_seconds": dt["cpu_seconds"],
            }
    base = rows[OLD_DEFAULT]["cpu_seconds"]
    print(
        f"{'method':64s} {'removed':>7s} {'prec':>6s} {'recall':>6s} {'<t':>5s} "
        f"{'.8-.87':>6s} {'.7-.8':>5s} {'<.7':>5s} {'CPU s':>7s} {'x old':>6s}"
    )
    for lab, m in rows.items():
        print(
            f"{lab:64s} {m['removed']:7d} {m['precision']:6.3f} {m['recall']:6.3f} "
            f"{m['below_threshold']:5d} {m['in_0.80_0.87']:6d} {m['in_0.70_0.80']:5d} "
            f"{m['below_0.70']:5d} {m['cpu_seconds']:7.2f} {m['cpu_seconds'] / base:6.2f}"
        )
    print(
        f"(CPU s: median of {rounds} interleaved end-to-end runs, 1 worker, process + children; "
        "'x old' = CPU relative to the old default, estimate + component; the machine is shared)"
    )
    results[f"pairs_{name}"] = {"truth_pairs": len(truth), "methods": rows}


def _ours_once(texts: list[str], a: np.ndarray) -> tuple[int, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    total = 0
    batch: list[str] = []
    size = 0
    for t in [*texts, None]:
        if t is not None:
            batch.append(t)
            size += len(t)
        if batch and (t is None or size >= 1 << 22):
            h, c = shingle_hashes(batch, 5)
            minhash_signatures(h, c, a)
            total += len(h)
            batch, size = [], 0
    return total, time.process_time() - c0, time.perf_counter() - t0


def _datasketch_once(texts: list[str]) -> tuple[int, float, float]:
    from datasketch import MinHash

    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    template = MinHash(num_perm=128, seed=1)
    for t in texts:
        w = normalize_words(t)
        sh = [" ".join(w[i : i + 5]).encode() for i in range(max(1, len(w) - 4))] if w else []
        n += len(sh)
        m = template.copy()
        m.update_batch(sh)
    return n, time.process_time() - c0, time.perf_counter() - t0


def speed_section(texts: list[str], dt_python: str, rounds: int, results: dict) -> None:
    n_chars = sum(len(t) for t in texts)
    print(
        f"\n== speed: {len(texts)} documents, {n_chars / 1e6:.1f}M chars, 1 process; CPU seconds "
        f"of the process (= per core; the machine is shared), best of {rounds} interleaved rounds =="
    )
    a = permutation_params(128, 1)
    shingle_hashes(texts[:50], 5)  # warm-up (power tables)
    ours, ds = [], []
    for _ in range(rounds):
        ours.append(_ours_once(texts, a))
        ds.append(_datasketch_once(texts))
    o = sorted(ours, key=lambda x: x[1])[len(ours) // 2]  # median CPU of the interleaved rounds
    d = sorted(ds, key=lambda x: x[1])[len(ds) // 2]
    ours_rate, ds_rate = o[0] / o[1], d[0] / d[1]
    print(
        f"ours:       {o[0]} shingles, {o[1]:.2f} CPU s ({o[2]:.2f} wall) = {ours_rate:,.0f} shingles/s"
    )
    print(
        f"datasketch: {d[0]} shingles, {d[1]:.2f} CPU s ({d[2]:.2f} wall) = {ds_rate:,.0f} shingles/s"
    )
    print(
        f"ratio ours / datasketch MinHash.update_batch: {ours_rate / ds_rate:.1f}x (target >= 5x)"
    )
    res = {
        "documents": len(texts),
        "chars": n_chars,
        "ours_shingles_per_cpu_s": ours_rate,
        "datasketch_shingles_per_cpu_s": ds_rate,
        "ours_docs_per_cpu_s": len(texts) / o[1],
        "datasketch_docs_per_cpu_s": len(texts) / d[1],
    }
    dt = run_datatrove(texts, dt_python, 14, 9, clusters=False)
    if "error" in dt:
        print(f"datatrove: NOT RUN: {dt['error']}")
        res["datatrove_error"] = dt["error"]
    else:
        dt_rate = dt["shingles"] / dt["cpu_seconds"]
        print(
            f"datatrove:  {dt['shingles']} shingles, {dt['cpu_seconds']:.2f} CPU s "
            f"({dt['seconds']:.2f} wall) = {dt_rate:,.0f} shingles/s (its own tokenizer, 126 hashes)"
        )
        print(
            f"ratio ours / datatrove 0.10 MinhashDedupSignature: {ours_rate / dt_rate:.1f}x "
            "(target >= 30x)"
        )
        dt_docs = dt["documents"] / dt["cpu_seconds"]
        print(
            f"documents per CPU second: ours {len(texts) / o[1]:,.0f}, datasketch "
            f"{len(texts) / d[1]:,.0f}, datatrove {dt_docs:,.0f} -> ours/datatrove "
            f"{(len(texts) / o[1]) / dt_docs:.1f}x, ours/datasketch {d[1] / o[1]:.1f}x"
        )
        res["datatrove_shingles_per_cpu_s"] = dt_rate
        res["datatrove_docs_per_cpu_s"] = dt_docs
    results["speed"] = res


def _scale_generate(root: Path, n_docs: int, files: int, bands: int, partitions: int) -> dict:
    from pipeline.dedup.edges import BucketWriter

    rng = np.random.default_rng(42)
    per = n_docs // files
    planted = 0
    boiler = 0
    for fi in range(files):
        local = np.arange(per, dtype=np.int64)
        gid = fi * per + local  # global ordinal
        ids = (np.int64(fi) << 40) | local
        src = gid.copy()
        dup = rng.random(per) < 0.10
        dup &= gid > 0
        src[dup] = (rng.random(int(dup.sum())) * gid[dup]).astype(np.int64)  # an earlier doc
        planted += int(dup.sum())
        keys = np.empty((per, bands), dtype=np.uint64)
        for b in range(bands):
            keys[:, b] = fmix64((gid.astype(np.uint64) << np.uint64(5)) + np.uint64(b))
            # duplicates share at least one band with their source (near) or all (exact)
            share = dup & ((rng.random(per) < 0.5) | (b == 0))
            keys[share, b] = fmix64((src[share].astype(np.uint64) << np.uint64(5)) + np.uint64(b))
        if fi == 0:
            keys[: min(100_000, per), 1] = np.uint64(0xB011E4B1A7E)  # a boilerplate bucket
            boiler = min(100_000, per)
        with BucketWriter(root / "buckets", fi, partitions) as w:
            for s in range(0, per, 1 << 18):
                w.add(keys[s : s + (1 << 18)], ids[s : s + (1 << 18)])
    return {"documents": per * files, "planted_duplicates": planted, "boilerplate_bucket": boiler}


def _scale_child(root: str, files: int, partitions: int, workers: int) -> None:
    """Runs in a fresh process: edges per partition (workers), merge, components."""
    import psutil

    from pipeline.dedup.candidates import EdgeTask, edge_task
    from pipeline.dedup.edges import unique_edges
    from pipeline.engine import make_executor

    # current RSS after imports (ru_maxrss would include the parent's peak: Linux keeps it
    # across fork + exec)
    baseline = psutil.Process().memory_info().rss
    out = Path(root)
    t0 = time.perf_counter()
    tasks = [EdgeTask(str(out), p, tuple(range(files))) for p in range(partitions)]
    with make_executor("local", workers) as executor:
        res = executor.map(edge_task, tasks)
    t1 = time.perf_counter()
    rss_after_edges = psutil.Process().memory_info().rss
    parts = [np.load(out / "edges" / f"{p:05d}.npy") for p in range(partitions)]
    e = np.concatenate(parts)
    del parts
    src, dst = unique_edges(e[:, 0].copy(), e[:, 1].copy())
    del e
    t2 = time.perf_counter()
    rss_after_merge = psutil.Process().memory_info().rss
    nodes, root_ = connected_components(src, dst)
    removed = int((nodes != root_).sum())
    t3 = time.perf_counter()
    print(
        json.dumps(
            {
                "records": sum(r["records"] for r in res),
                "largest_bucket": max(r["largest_bucket"] for r in res),
                "edges": int(len(src)),
                "nodes": int(len(nodes)),
                "removed": removed,
                "edge_seconds": t1 - t0,
                "merge_seconds": t2 - t1,
                "components_seconds": t3 - t2,
                "baseline_rss_main": baseline,
                "rss_after_edges": rss_after_edges,
                "rss_after_merge": rss_after_merge,
                "rss_after_components": psutil.Process().memory_info().rss,
            }
        )
    )


def _watch_tree(pid: int, stop, peaks: dict) -> None:
    """Sample the RSS of a process and its descendants (forkserver workers included)."""
    import psutil

    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return
    while not stop.is_set():
        try:
            procs = [proc, *proc.children(recursive=True)]
            rss = {}
            for p in procs:
                try:
                    rss[p.pid] = p.memory_info().rss
                except psutil.Error:
                    pass
            others = [v for k, v in rss.items() if k != pid]
            peaks["main"] = max(peaks.get("main", 0), rss.get(pid, 0))
            peaks["tree"] = max(peaks.get("tree", 0), sum(rss.values()))
            if others:
                peaks["worker"] = max(peaks.get("worker", 0), max(others))
        except psutil.Error:
            pass
        stop.wait(0.1)


def scale_section(n_docs: int, workers: int, results: dict) -> None:
    import threading

    bands, partitions, files = 14, 64, 20
    print(f"\n== scale: edges + components on {n_docs:,} synthetic documents ({bands} bands) ==")
    root = Path(tempfile.mkdtemp(prefix="dedup-scale-"))
    try:
        t0 = time.perf_counter()
        gen = _scale_generate(root, n_docs, files, bands, partitions)
        print(f"generated bucket files in {time.perf_counter() - t0:.1f}s: {gen}")
        cmd = [sys.executable, __file__, "--scale-child", str(root), str(files)]
        cmd += [str(partitions), str(workers)]
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peaks: dict = {}
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_tree, args=(child.pid, stop, peaks))
        watcher.start()
        stdout, stderr = child.communicate()
        stop.set()
        watcher.join()
        wall = time.perf_counter() - t0
        if child.returncode != 0:
            print(f"scale child failed: {stderr[-2000:]}")
            return
        s = json.loads(stdout.strip().splitlines()[-1])
        s["peak_rss_main"] = peaks.get("main", 0)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    f = PILE_DOCS / gen["documents"]
    gib = 1024**3
    work_rss = s["peak_rss_main"] - s["baseline_rss_main"]
    print(
        f"records {s['records']:,}, largest bucket {s['largest_bucket']:,}, edges {s['edges']:,}, "
        f"documents in clusters {s['nodes']:,}, removed {s['removed']:,} "
        f"(planted duplicates {gen['planted_duplicates']:,})"
    )
    secs = s["edge_seconds"] + s["merge_seconds"] + s["components_seconds"]
    print(
        f"time: edges {s['edge_seconds']:.1f}s ({workers} workers), merge {s['merge_seconds']:.1f}s, "
        f"components {s['components_seconds']:.1f}s, process wall {wall:.1f}s"
    )
    print(
        f"peak RSS: main {s['peak_rss_main'] / gib:.2f} GiB (of which {work_rss / gib:.2f} GiB "
        f"above the {s['baseline_rss_main'] / gib:.2f} GiB after imports), largest worker "
        f"{peaks.get('worker', 0) / gib:.2f} GiB, whole process tree {peaks.get('tree', 0) / gib:.2f} GiB"
    )
    base = s["baseline_rss_main"]
    worker_work = max(peaks.get("worker", 0) - base, 0)  # workers import the same modules
    print(
        f"projection to {PILE_DOCS / 1e6:.0f}M documents (x{f:.1f}, linear in documents and, for "
        f"the main process, in clustered documents; same 10% duplicate share): time "
        f"{secs * f / 60:.0f} min with {workers} workers; main process "
        f"~{(base + work_rss * f) / gib:.1f} GiB; a worker ~{(base + worker_work * f) / gib:.1f} GiB "
        f"with {partitions} partitions or ~{(base + worker_work * f * partitions / 1024) / gib:.1f} "
        f"GiB with 1024 (records per partition {s['records'] / partitions * f / 1e6:.0f}M at "
        f"{partitions})"
    )
    results["scale"] = {
        **gen,
        **s,
        "peak_rss_worker": peaks.get("worker", 0),
        "peak_rss_tree": peaks.get("tree", 0),
        "projection_factor": f,
        "workers": workers,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="smaller inputs (smoke run)")
    ap.add_argument("--scale-docs", type=int, default=10_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--datatrove-python", default=DEFAULT_DT_PY)
    ap.add_argument("--skip", nargs="*", default=[], choices=["pairs", "quality", "speed", "scale"])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved runs per mode (median)")
    ap.add_argument(
        "--datatrove-configs",
        default="14x8,14x9,20x6",
        help="bands x rows of datatrove's full pipeline to run (its default is 14x8)",
    )
    ap.add_argument("--novels-docs", type=int, default=None, help="limit the novels corpus")
    ap.add_argument("--json", help="write all figures to this file")
    ap.add_argument("--scale-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.scale_child:
        root, files, parts, workers = args.scale_child
        _scale_child(root, int(files), int(parts), int(workers))
        return 0
    results: dict = {"cpu_count": os.cpu_count()}
    dt_ok = Path(args.datatrove_python).exists()
    print(
        f"datatrove venv: {args.datatrove_python} "
        + ("found" if dt_ok else "MISSING -> datatrove figures will be reported as NOT RUN")
    )
    lam = lambada_texts()
    if "pairs" not in args.skip:
        dt_configs = [
            tuple(int(x) for x in c.split("x")) for c in args.datatrove_configs.split(",") if c
        ]
        novels = novel_chunks(2000 if args.quick else args.novels_docs)
        if novels:
            pairs_section(
                "novels-4k", novels, args.datatrove_python, dt_configs, args.rounds, results
            )
        else:
            print("\n== pairs: novels: NOT RUN (../shared/corpora/novels missing) ==")
        if lam is not None:
            pairs_section("lambada", lam, args.datatrove_python, dt_configs, args.rounds, results)
    if "quality" not in args.skip:
        quality_section(
            "generated", generated_set(300 if args.quick else 1500), args.datatrove_python, results
        )
        if lam is None:
            print("\n== quality: lambada: NOT RUN (../shared/corpora/lambada missing) ==")
        else:
            quality_section(
                "lambada", lam[:1000] if args.quick else lam, args.datatrove_python, results
            )
    if "speed" not in args.skip:
        texts = (lam or [])[: 1000 if args.quick else None] + novel_texts(
            1_000_000 if args.quick else 8_000_000
        )
        if not texts:
            texts = generated_set(500)
        speed_section(texts, args.datatrove_python, 2 if args.quick else 3, results)
    if "scale" not in args.skip:
        scale_section(args.scale_docs if not args.quick else 1_000_000, args.workers, results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    random.seed(0)
    sys.exit(main())
