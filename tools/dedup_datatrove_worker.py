"""Helper of tools/bench_dedup.py, run inside the benchmark venv that has datatrove 0.10 installed.

    python tools/dedup_datatrove_worker.py DOCS.jsonl --buckets 14 --rows 9 --ngram 5 [--clusters]

Reads documents ({"text": ...} per line), computes datatrove's MinhashDedupSignature shingles and
signatures for each (`get_shingles` + `get_signature`, exactly what its `run` does per document,
without the file writing), and prints one JSON object: documents, shingles, seconds and cpu_seconds
(signature work only, one process). With --clusters it also groups documents whose signatures agree on a whole
bucket (datatrove's stage 2) and joins them with union-find (its stage 3), printing the clusters.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("docs")
    ap.add_argument("--buckets", type=int, default=14)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clusters", action="store_true")
    args = ap.parse_args()
    try:
        import datatrove
        from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    except ImportError as e:  # pragma: no cover - benchmark environment only
        print(json.dumps({"error": f"datatrove not importable: {e}"}))
        return 1
    with open(args.docs, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    cfg = MinhashConfig(
        n_grams=args.ngram, num_buckets=args.buckets, hashes_per_bucket=args.rows, seed=args.seed
    )
    try:
        step = MinhashDedupSignature("/tmp/dedup-bench-datatrove-unused", cfg)
        step.get_shingles("warm up the word tokenizer once")
    except Exception as e:  # pragma: no cover
        print(json.dumps({"error": f"datatrove MinhashDedupSignature unusable: {e!r}"}))
        return 1
    sigs = []
    shingles = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    for text in texts:
        sh = step.get_shingles(text)
        shingles += int(sh.shape[0])
        sigs.append(step.get_signature(sh) if sh.size else None)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    out = {
        "datatrove_version": datatrove.__version__ if hasattr(datatrove, "__version__") else "?",
        "documents": len(texts),
        "shingles": shingles,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
    }
    if args.clusters:
        parent = list(range(len(texts)))

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for b in range(args.buckets):
            first: dict[tuple, int] = {}
            for i, s in enumerate(sigs):
                if s is None:
                    continue
                key = tuple(s[b])
                j = first.setdefault(key, i)
                if j != i:
                    ri, rj = find(i), find(j)
                    if ri != rj:
                        parent[max(ri, rj)] = min(ri, rj)
        groups: dict[int, list[int]] = {}
        for i in range(len(texts)):
            groups.setdefault(find(i), []).append(i)
        out["clusters"] = [g for g in groups.values() if len(g) > 1]
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
