"""Helper of tools/bench_dedup.py: datatrove 0.10's full MinHash pipeline, run in its own venv.

    /work/venvs/datatrove/bin/python tools/dedup_datatrove_pipeline.py DOCS.jsonl WORKDIR \
        --buckets 14 --rows 8

Runs datatrove's four stages end to end with its LocalPipelineExecutor, its own reader and
writers (JsonlReader -> MinhashDedupSignature -> MinhashDedupBuckets -> MinhashDedupCluster ->
MinhashDedupFilter with an exclusion writer, cluster ids saved), exactly as its
examples/minhash_deduplication.py does, one task per stage. DOCS.jsonl holds {"text", "id"} with
id = 0-based line. Prints one JSON object: the removed ids with the id of the document datatrove
kept from the same cluster, and the CPU seconds of the whole run (this process and its children).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path


def _cpu() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _read_jsonl_gz(folder: Path) -> list[dict]:
    out = []
    for p in sorted(folder.rglob("*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            out += [json.loads(line) for line in f]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("docs")
    ap.add_argument("workdir")
    ap.add_argument("--buckets", type=int, default=14)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--ngram", type=int, default=5)
    args = ap.parse_args()
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    src = Path(args.docs).resolve()
    cfg = MinhashConfig(
        n_grams=args.ngram, num_buckets=args.buckets, hashes_per_bucket=args.rows, seed=1
    )

    def reader():
        return JsonlReader(str(src.parent), glob_pattern=src.name, id_key="id")

    t0, c0 = time.perf_counter(), _cpu()
    stages = [
        [reader(), MinhashDedupSignature(output_folder=str(work / "sigs"), config=cfg)],
        [
            MinhashDedupBuckets(
                input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=cfg
            )
        ],
        [
            MinhashDedupCluster(
                input_folder=str(work / "buckets"),
                output_folder=str(work / "remove"),
                config=cfg,
                save_cluster_id=True,
            )
        ],
        [
            reader(),
            MinhashDedupFilter(
                input_folder=str(work / "remove"),
                exclusion_writer=JsonlWriter(str(work / "removed")),
                load_cluster_ids=True,
            ),
            JsonlWriter(str(work / "kept")),
        ],
    ]
    tasks = [1, cfg.num_buckets, 1, 1]
    for i, (pipeline, n) in enumerate(zip(stages, tasks)):
        LocalPipelineExecutor(
            pipeline=pipeline,
            tasks=n,
            workers=1,
            logging_dir=str(work / f"logs{i}"),
        ).run()
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    kept_of_cluster = {}
    for d in _read_jsonl_gz(work / "kept"):
        cid = d.get("metadata", {}).get("minhash_cluster_id", -1)
        if cid != -1:
            kept_of_cluster[cid] = int(d["id"])
    removed = []
    for d in _read_jsonl_gz(work / "removed"):
        cid = d.get("metadata", {}).get("minhash_cluster_id", -1)
        removed.append([int(d["id"]), kept_of_cluster.get(cid, -1)])
    print(json.dumps({"removed": removed, "seconds": seconds, "cpu_seconds": cpu}))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
