"""Step 2 of the dedup stage: candidate pairs from the LSH buckets.

One task per hash partition p reads the band records of every input file for p
(`buckets/<p>/<i>.bin`, pipeline.dedup.edges), joins each bucket's documents to its smallest
(star edges) and writes `edges/<p>.npy`; the driver concatenates the partitions in order and keeps
each unordered pair once, so the candidates do not depend on the worker count.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.dedup.edges import read_partition, star_edges, unique_edges, write_edges
from pipeline.engine.base import Executor


@dataclass(frozen=True)
class EdgeTask:
    out_dir: str
    partition: int
    file_indices: tuple[int, ...]
    buckets_dir: str = ""  # default: out_dir/buckets


def edge_task(task: EdgeTask) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = Path(task.out_dir)
    buckets = Path(task.buckets_dir) if task.buckets_dir else out / "buckets"
    rec = read_partition(buckets, task.partition, list(task.file_indices))
    keys = rec["key"]
    src, dst, largest = star_edges(keys, rec["doc"])
    write_edges(out / "edges" / f"{task.partition:05d}.npy", src, dst)
    return {
        "records": int(len(rec)),
        "edges": int(len(src)),
        "largest_bucket": largest,
        "seconds": time.perf_counter() - t0,
    }


def candidate_pairs(
    out: Path, buckets: Path, file_indices: Sequence[int], partitions: int, executor: Executor
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """(src, dst) of every unique candidate pair (src < dst, sorted), and each partition's
    counts; the partitions' edge files are written to `out/edges/`."""
    tasks = [EdgeTask(str(out), p, tuple(file_indices), str(buckets)) for p in range(partitions)]
    results = executor.map(edge_task, tasks)
    parts = [np.load(out / "edges" / f"{p:05d}.npy") for p in range(partitions)]
    all_edges = np.concatenate(parts) if parts else np.empty((0, 2), np.int64)
    src, dst = unique_edges(all_edges[:, 0].copy(), all_edges[:, 1].copy())
    return src, dst, results
