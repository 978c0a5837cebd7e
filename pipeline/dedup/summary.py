"""The dedup stage's stats.json: deterministic counts, duplicates per pile_set_name, the
cluster-size histogram, the S-curve and expected recall, verification counts and `criterion`
(the rule a removed pair met, see DedupConfig.criterion). Wall-clock timings are kept out (in
timings.json) so that every listed output is byte-identical across reruns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.dedup.clustering import Removals
from pipeline.dedup.config import DedupConfig
from pipeline.dedup.tables import Written
from pipeline.io import atomic_write_text

STATS = "stats.json"


def fingerprinted_config(config: DedupConfig) -> dict[str, Any]:
    """The config fields that determine the outputs (scheduling knobs left out)."""
    return {k: v for k, v in config.to_dict().items() if k not in config._not_fingerprinted}


def histogram(sizes: np.ndarray) -> list[list[int]]:
    if not len(sizes):
        return []
    vals, cnt = np.unique(sizes, return_counts=True)
    return [[int(v), int(c)] for v, c in zip(vals, cnt)]


def per_set_table(
    sig_results: list[dict[str, Any]], removals: Removals, written: Written
) -> dict[str, dict[str, Any]]:
    """Documents and removals per pile_set_name, and where the removed ones were kept."""
    docs_per_set: dict[str, int] = {}
    for r in sig_results:
        for k, v in r["per_set"].items():
            docs_per_set[k] = docs_per_set.get(k, 0) + v
    removed_per_set: dict[str, int] = {}
    for name in written.removed_names:
        removed_per_set[name] = removed_per_set.get(name, 0) + 1
    kept_name = dict(zip(written.cluster_ids.tolist(), written.kept_names))
    cross: dict[str, dict[str, int]] = {}
    for name, rid in zip(written.removed_names, removals.kept_ids.tolist()):
        row = cross.setdefault(name, {})
        kn = kept_name[rid]
        row[kn] = row.get(kn, 0) + 1
    return {
        name: {
            "documents": docs_per_set.get(name, 0),
            "removed": removed_per_set.get(name, 0),
            "removed_fraction": round(removed_per_set.get(name, 0) / docs_per_set[name], 6)
            if docs_per_set.get(name)
            else 0.0,
            "kept_in": dict(sorted(cross.get(name, {}).items())),
        }
        for name in sorted(set(docs_per_set) | set(removed_per_set))
    }


def dedup_stats(
    config: DedupConfig,
    input_files: int,
    sig_results: list[dict[str, Any]],
    edge_results: list[dict[str, Any]],
    candidates: int,
    edges: int,
    verification: dict[str, Any],
    removals: Removals,
    written: Written,
    curve: list,
    recall: dict[str, Any],
) -> dict[str, Any]:
    """stats.json's content."""
    criterion = config.criterion()
    total_docs = sum(r["documents"] for r in sig_results)
    n_removed = int(len(removals.removed_ids))
    counts = {
        "input_files": input_files,
        "documents": total_docs,
        "documents_without_shingles": sum(r["no_shingles"] for r in sig_results),
        "shingles": sum(r["shingles"] for r in sig_results),
        "chars": sum(r["chars"] for r in sig_results),
        "band_records": sum(r["records"] for r in sig_results),
        "largest_bucket": max((r["largest_bucket"] for r in edge_results), default=0),
        "candidate_pairs": candidates,
        "edges": edges,
        "clusters": int(len(written.cluster_ids)),
        "documents_in_clusters": n_removed + int(len(written.cluster_ids)),
        "removed": n_removed,
        "kept": total_docs - n_removed,
        # the similarity a joined pair reached (see criterion.check for which similarity)
        "jaccard_cut": criterion["jaccard_cut"],
    }
    return {
        "config": fingerprinted_config(config),
        "config_fingerprint": config.fingerprint(),
        "counts": counts,
        "per_pile_set_name": per_set_table(sig_results, removals, written),
        "cluster_size_histogram": histogram(written.cluster_sizes),
        "s_curve": curve,
        "expected_recall": recall,
        "verification": {**verification, "kept_by_cluster_rule": removals.kept_by_cluster_rule},
        "criterion": criterion,
        "reader": {
            k: sum(r["reader"][k] for r in sig_results)
            for k in ("lines", "empty", "blank_lines", "rejected")
        },
    }


def write_stats(out: Path, stats: dict[str, Any]) -> None:
    atomic_write_text(
        out / STATS, json.dumps(stats, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    )
