"""The dedup stage: (inputs, DedupConfig) -> OUT/{signatures/, removed.parquet, clusters.parquet,
stats.json, timings.json, manifest.json}.

Steps and their tasks (each task is a pure function of its arguments; results merged in task
order, so 1 or N workers give byte-identical files):
  1. signatures (pipeline.dedup.signing): one task per work unit of the inputs
     (pipeline.read.units: whole files, or byte/frame ranges of large files; `unit_bytes`,
     `unit_cache`): the worker reads its unit and computes shingles + hash + MinHash + band keys
     (pipeline.dedup.shingle / .minhash / .lsh) batch by batch, committing its arrays and record
     in the work directory. The main process joins a file's units in unit order into
     `signatures/<i>.npy|.parquet` and the LSH band records in `buckets/<p>/<i>.bin`
     (pipeline.dedup.edges): the same bytes for any worker count, unit or batch size.
  2. edges (pipeline.dedup.candidates): one task per hash partition p: star edges of every
     bucket -> `edges/<p>.npy` (written atomically, so a retried task never leaves half a file).
  3. verification (pipeline.dedup.verification): candidate pairs screened on the full
     signatures in the main process (estimate >= DedupConfig.screen_cut, vectorised). With
     `verify="exact"` (the default), a second pass (one task per input file) re-reads the files
     and writes the sorted unique shingle hashes of the documents in the surviving pairs to
     `exact/<i>.hashes.npy` + `.offsets.npy` + `.ids.npy`; the exact Jaccard of the pairs runs
     as tasks over contiguous runs of pairs (`exact_jaccard_tasks`); a pair is kept only when it
     is >= threshold. The main process never opens a shingle set.
  4. clusters (pipeline.dedup.clustering): vectorised union-find over the kept pairs in the main
     process (memory linear in the edges, pipeline.dedup.components), then the cluster rule
     (DedupConfig.cluster_rule): "center" keeps the smallest doc_id of each component and removes
     a member only when it passes the same check against that kept document, resolving the rest
     again among themselves (pipeline.dedup.components.split_by_center); "component" (and
     verify="none") removes every member but the smallest.
  5. tables (pipeline.dedup.tables): removed.parquet (doc_id, cluster_id, kept_id, pile_set_name, file, line,
     minhash_estimate, jaccard, rule: the evidence of each removal against the document kept in
     its place; jaccard is null unless verify="exact") sorted by doc_id; clusters.parquet
     (cluster_id, kept_id, size, pile_set_name, file, line of the kept document) sorted by
     cluster_id; the cluster id is the kept doc_id, a cluster is the kept document and the
     documents removed in its place.
  6. stats.json (pipeline.dedup.summary; deterministic: counts, duplicates per pile_set_name, cluster-size histogram, the
     S-curve and expected recall, verification counts, `criterion`: the rule a removed pair met,
     see DedupConfig.criterion), timings.json (wall-clock seconds per step;
     kept out of stats.json so every listed output is byte-identical across reruns), and
     manifest.json last (kind "dedup", config fingerprint, sha256 of every output).
The manifest also records `inputs` (labels) and `input_bytes` (on-disk size of each input, null
for datasets / hf: directories), so a consumer can tell an input rewritten under the same name.
Intermediate buckets/, edges/ and exact/ are deleted at the end unless `keep_intermediate`.

A document without shingles (only whitespace after normalisation) is never a candidate and is
never removed. Keep policy: the smallest global doc_id in each cluster, which depends only on the
ids, never on worker count or chunking.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pipeline import docid
from pipeline.config import combine_fingerprints
from pipeline.dedup.candidates import candidate_pairs
from pipeline.dedup.clustering import cluster
from pipeline.dedup.config import DedupConfig
from pipeline.dedup.edges import SignatureStore, remove_tree
from pipeline.dedup.lsh import expected_recall, s_curve
from pipeline.dedup.signatures import signature_paths
from pipeline.dedup.signing import compute_signatures, work_dir_name
from pipeline.dedup.summary import STATS, dedup_stats, fingerprinted_config, write_stats
from pipeline.dedup.tables import CLUSTERS, MANIFEST_KIND, REMOVED, load_removed_ids, write_tables
from pipeline.dedup.verification import verify_pairs
from pipeline.engine.base import Executor, InlineExecutor
from pipeline.errors import ConfigError
from pipeline.io import atomic_write_text, fsync_dir
from pipeline.lock import holds_dir_locks, lock_dir
from pipeline.manifest import write_manifest
from pipeline.read import InputFile, ReadConfig, resolve_inputs
from pipeline.read.remote import input_stat

log = logging.getLogger(__name__)

__all__ = ["MANIFEST_KIND", "load_removed_ids", "run_dedup", "work_dir_name"]


@holds_dir_locks
def run_dedup(
    inputs: Iterable[Any],
    out_dir: str | Path,
    config: DedupConfig | None = None,
    read_config: ReadConfig | None = None,
    executor: Executor | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the dedup stage on `executor` (default: in this process); returns the stats:
    stats.json's content plus "timings" and top-level copies of counts' documents, removed, kept
    and clusters. `progress(info)` is called after each input file's signatures are written (for
    progress bars)."""
    config = config or DedupConfig()
    read_config = read_config or ReadConfig()
    executor = executor or InlineExecutor()
    out = Path(out_dir)
    files = resolve_inputs(inputs)
    _check_inputs(files)
    work, work_fp = _prepare(out, config, read_config)  # locks `out` until return
    curve, recall = _log_plan(files, config)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    sig_results = compute_signatures(files, work, config, read_config, executor, progress, work_fp)
    timings["signatures"] = time.perf_counter() - t0
    timings["signatures_task_seconds_sum"] = sum(r["seconds"] for r in sig_results)

    t0 = time.perf_counter()
    indices = [f.index for f in files]
    src, dst, edge_results = candidate_pairs(
        out, work / "buckets", indices, config.partitions, executor
    )
    timings["edges"] = time.perf_counter() - t0

    store = SignatureStore({f.index: signature_paths(work, f.index)[0] for f in files})
    verified = verify_pairs(src, dst, out, files, config, read_config, store, executor)
    timings.update(verified.timings)

    t0 = time.perf_counter()
    removals = cluster(verified.src, verified.dst, config, store, verified.sets, executor)
    store.close()
    timings["components"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    written = write_tables(
        out,
        work,
        files,
        removals.removed_ids,
        removals.kept_ids,
        removals.estimate,
        removals.jaccard,
        config.rule(),
        config.fingerprint(),
    )
    stats = dedup_stats(
        config,
        len(files),
        sig_results,
        edge_results,
        int(len(src)),
        int(len(verified.src)),
        verified.info,
        removals,
        written,
        curve,
        recall,
    )
    write_stats(out, stats)
    timings["tables"] = time.perf_counter() - t0
    _place_outputs(out, work, files, config)

    t0 = time.perf_counter()
    _write_manifest(out, files, config, read_config, stats["counts"])
    timings["manifest"] = time.perf_counter() - t0
    _write_timings(out, timings, stats["counts"])
    remove_tree(work)
    counts = stats["counts"]
    log.info(
        "dedup: %d documents, %d candidate pairs, %d clusters, %d removed (%.2f%%)",
        counts["documents"],
        counts["candidate_pairs"],
        counts["clusters"],
        counts["removed"],
        100.0 * counts["removed"] / max(counts["documents"], 1),
    )
    # convenience copies of the headline counts for callers (not part of stats.json)
    headline = {k: counts[k] for k in ("documents", "removed", "kept", "clusters")}
    return {**stats, **headline, "timings": timings}


def _check_inputs(files: Sequence[InputFile]) -> None:
    for f in files:
        if f.index >= docid.MAX_FILES:
            raise ConfigError(
                f"too many input files ({len(files)}); at most {1 << 23} are supported."
            )


def _prepare(out: Path, config: DedupConfig, read_config: ReadConfig) -> tuple[Path, str]:
    """Lock `out`, drop its stale manifest and intermediates; (work directory, its fingerprint).

    Signatures and buckets are made in a work directory of this config, kept when a run is killed
    so that the rerun reuses the files it finished; those of other configs go."""
    # held until run_dedup returns; the lock also makes buckets/, edges/, exact/ this run's alone
    lock_dir(out, "dedup")
    stale = out / "manifest.json"
    if stale.exists():
        stale.unlink()  # this directory is not a complete result again until the new manifest
    for d in ("buckets", "edges", "exact"):
        remove_tree(out / d)
    work_fp = combine_fingerprints(
        config.fingerprint(), read_config.fingerprint(), f"partitions={config.partitions}"
    )
    work = out / work_dir_name(work_fp)
    if out.is_dir():
        for old in out.glob(".signatures.*.tmp"):
            if old != work:
                remove_tree(old)
    work.mkdir(parents=True, exist_ok=True)
    return work, work_fp


def _log_plan(files: Sequence[InputFile], config: DedupConfig) -> tuple[list, dict[str, Any]]:
    """Log the settings, the S-curve and the expected recall; (S-curve, expected recall)."""
    criterion = config.criterion()
    log.info(
        "dedup: %d input file(s), K=%d, bands %d x rows %d, %d-word shingles; near-duplicates: %s",
        len(files),
        config.num_perm,
        config.bands,
        config.rows,
        config.ngram,
        criterion["summary"],
    )
    curve = s_curve(config.bands, config.rows)
    recall = expected_recall(
        config.threshold,
        config.bands,
        config.rows,
        config.num_perm if config.verify_candidates else None,
        config.screen_cut if config.verify_candidates else None,
    )
    log.info(
        "S-curve P(candidate|J): %s; expected recall at J=%.2f: %.3f (mean over J>=t: %.3f)",
        ", ".join(f"{j:.2f}:{p:.3f}" for j, p in curve),
        config.threshold,
        recall["at_threshold"],
        recall["mean_above_threshold"],
    )
    return curve, recall


def _place_outputs(out: Path, work: Path, files: Sequence[InputFile], config: DedupConfig) -> None:
    """Drop (or keep, keep_intermediate) the intermediates; move the signatures to their place."""
    if not config.keep_intermediate:
        remove_tree(out / "edges")
        remove_tree(out / "exact")
    else:
        os.replace(work / "buckets", out / "buckets")
    # the signatures move to their place only now: until here a killed run reuses them
    (out / "signatures").mkdir(exist_ok=True)
    for f in files:
        for src_p, dst_p in zip(signature_paths(work, f.index), signature_paths(out, f.index)):
            os.replace(src_p, dst_p)
    fsync_dir(out / "signatures")


def _input_bytes(f: InputFile) -> int | None:
    """On-disk size of a file input; None for directory inputs (datasets, hf:)."""
    if f.kind in ("hf-disk", "hf-hub"):
        return None
    return input_stat(f.path).st_size


def _write_manifest(
    out: Path,
    files: Sequence[InputFile],
    config: DedupConfig,
    read_config: ReadConfig,
    counts: dict[str, Any],
) -> None:
    manifest_files: list[tuple[Path, str]] = []
    for f in files:
        npy, docs = signature_paths(out, f.index)
        manifest_files += [(npy, "signatures"), (docs, "table")]
    manifest_files += [(out / REMOVED, "table"), (out / CLUSTERS, "table"), (out / STATS, "stats")]
    write_manifest(
        out / "manifest.json",
        kind=MANIFEST_KIND,
        config_fingerprint=config.fingerprint(),
        files=manifest_files,
        config=fingerprinted_config(config),
        counts=counts,
        extra={
            "inputs": [f.label for f in files],
            "input_bytes": [_input_bytes(f) for f in files],
            "read_config": read_config.to_dict(),
            "criterion": config.criterion(),
        },
    )


def _write_timings(out: Path, timings: dict[str, float], counts: dict[str, Any]) -> None:
    timings["total"] = sum(
        v for k, v in timings.items() if k not in ("signatures_task_seconds_sum",)
    )
    if counts["shingles"] and timings["signatures_task_seconds_sum"] > 0:
        timings["shingles_per_second_per_core"] = (
            counts["shingles"] / timings["signatures_task_seconds_sum"]
        )
    atomic_write_text(out / "timings.json", json.dumps(timings, indent=1, sort_keys=True) + "\n")
