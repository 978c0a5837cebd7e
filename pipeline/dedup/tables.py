"""The dedup tables: `removed.parquet` and `clusters.parquet` of a dedup output directory.

removed.parquet (doc_id, cluster_id, kept_id, pile_set_name, file, line, minhash_estimate,
jaccard, rule): the evidence of each removal against the document kept in its place (jaccard is
null unless verify="exact"), sorted by doc_id. clusters.parquet (cluster_id, kept_id, size,
pile_set_name, file, line of the kept document), sorted by cluster_id. The cluster id is the kept
doc_id; a cluster is the kept document and the documents removed in its place. Both carry the
stage's config fingerprint in their schema metadata (pipeline.dedup.signatures.write_table).

This module owns their names, schemas, writing (`write_tables`), reading (`load_removed_ids`)
and structural check (`check`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import docid
from pipeline.dedup.signatures import signature_paths, table_fingerprint, write_table
from pipeline.errors import IntegrityError
from pipeline.manifest import read_manifest
from pipeline.read import InputFile

MANIFEST_KIND = "dedup"
REMOVED = "removed.parquet"
CLUSTERS = "clusters.parquet"
REMOVED_KIND = "dedup-removed"  # the tables' pile.kind metadata
CLUSTERS_KIND = "dedup-clusters"

REMOVED_SCHEMA = pa.schema(
    [
        ("doc_id", pa.int64()),
        ("cluster_id", pa.int64()),
        ("kept_id", pa.int64()),
        ("pile_set_name", pa.string()),
        ("file", pa.string()),
        ("line", pa.int64()),
        # evidence: the MinHash estimate and (verify="exact") the exact Jaccard with kept_id,
        # and the rule the document met (DedupConfig.rule())
        ("minhash_estimate", pa.float64()),
        ("jaccard", pa.float64()),
        ("rule", pa.string()),
    ]
)
CLUSTERS_SCHEMA = pa.schema(
    [
        ("cluster_id", pa.int64()),
        ("kept_id", pa.int64()),
        ("size", pa.int64()),
        ("pile_set_name", pa.string()),
        ("file", pa.string()),
        ("line", pa.int64()),
    ]
)


def doc_meta(
    out_dir: Path, files: Sequence[InputFile], ids: np.ndarray
) -> tuple[list[str], list[str], np.ndarray]:
    """(pile_set_name, file, line) of sorted unique doc ids, from the per-file docs tables."""
    names: list[str] = []
    paths: list[str] = []
    line_out = np.empty(len(ids), dtype=np.int64)
    fi = docid.file_index(ids)
    pos = 0
    for f in files:
        sel = ids[fi == f.index]
        if not len(sel):
            continue
        t = pq.read_table(
            signature_paths(out_dir, f.index)[1], columns=["doc_id", "line", "pile_set_name"]
        )
        doc_id = t.column("doc_id").to_numpy()
        where = np.searchsorted(doc_id, sel)
        if np.any(where >= len(doc_id)) or np.any(
            doc_id[np.minimum(where, len(doc_id) - 1)] != sel
        ):
            raise IntegrityError(
                f"{signature_paths(out_dir, f.index)[1]}: a duplicate document is missing from the "
                "docs table; the dedup directory is inconsistent. Rerun `pile dedup`."
            )
        idx = pa.array(where)
        names.extend(t.column("pile_set_name").take(idx).to_pylist())
        line_out[pos : pos + len(sel)] = t.column("line").to_numpy()[where]
        paths.extend([f.label] * len(sel))
        pos += len(sel)
    return names, paths, line_out


@dataclass(frozen=True)
class Written:
    """What the statistics need of the written tables."""

    removed_names: list[str]  # pile_set_name of each removed document
    cluster_ids: np.ndarray  # sorted; the kept doc ids
    cluster_sizes: np.ndarray  # 1 + the documents removed in favour of each
    kept_names: list[str]  # pile_set_name of each cluster's kept document


def write_tables(
    out: Path,
    work: Path,
    files: Sequence[InputFile],
    removed_ids: np.ndarray,
    kept_ids: np.ndarray,
    estimate: np.ndarray,
    jaccard: np.ndarray | None,
    rule: str,
    fingerprint: str,
) -> Written:
    """Write `out/removed.parquet` and `out/clusters.parquet` for the documents `removed_ids`
    (sorted), each removed in favour of `kept_ids[i]` with the given evidence; the documents'
    metadata comes from the docs tables in `work`."""
    cluster_ids, removed_per_cluster = np.unique(kept_ids, return_counts=True)
    cluster_sizes = removed_per_cluster + 1
    r_names, r_files, r_lines = doc_meta(work, files, removed_ids)
    c_names, c_files, c_lines = doc_meta(work, files, cluster_ids)
    removed_table = pa.Table.from_arrays(
        [
            pa.array(removed_ids, pa.int64()),
            pa.array(kept_ids, pa.int64()),
            pa.array(kept_ids, pa.int64()),
            pa.array(r_names, pa.string()),
            pa.array(r_files, pa.string()),
            pa.array(r_lines, pa.int64()),
            pa.array(np.round(estimate, 6), pa.float64()),
            pa.array(
                np.round(jaccard, 6) if jaccard is not None else [None] * len(removed_ids),
                pa.float64(),
            ),
            pa.array([rule] * len(removed_ids), pa.string()),
        ],
        schema=REMOVED_SCHEMA,
    )
    clusters_table = pa.Table.from_arrays(
        [
            pa.array(cluster_ids, pa.int64()),
            pa.array(cluster_ids, pa.int64()),
            pa.array(cluster_sizes.astype(np.int64), pa.int64()),
            pa.array(c_names, pa.string()),
            pa.array(c_files, pa.string()),
            pa.array(c_lines, pa.int64()),
        ],
        schema=CLUSTERS_SCHEMA,
    )
    write_table(out / REMOVED, removed_table, fingerprint, REMOVED_KIND)
    write_table(out / CLUSTERS, clusters_table, fingerprint, CLUSTERS_KIND)
    return Written(r_names, cluster_ids, cluster_sizes, c_names)


def load_removed_ids(out_dir: str | Path, expected_fingerprint: str | None = None) -> np.ndarray:
    """Sorted int64 doc ids removed by a finished dedup run in `out_dir`.

    Checks that the run finished (manifest present, kind "dedup") and, when given, that its config
    fingerprint is `expected_fingerprint`; raises IntegrityError otherwise.
    """
    out = Path(out_dir)
    manifest = read_manifest(out / "manifest.json")
    if manifest.get("kind") != MANIFEST_KIND:
        raise IntegrityError(
            f"{out / 'manifest.json'}: kind {manifest.get('kind')!r}, expected {MANIFEST_KIND!r}; "
            "point to the output directory of `pile dedup`."
        )
    fp = manifest.get("config_fingerprint")
    if expected_fingerprint is not None and fp != expected_fingerprint:
        raise IntegrityError(
            f"{out}: dedup set was built with config fingerprint {fp}, expected "
            f"{expected_fingerprint}; rerun `pile dedup` with the intended settings."
        )
    path = out / REMOVED
    if not path.exists():
        raise IntegrityError(f"{path}: missing although the manifest lists it. Rerun `pile dedup`.")
    if table_fingerprint(path) != fp:
        raise IntegrityError(
            f"{path}: fingerprint {table_fingerprint(path)} does not match the manifest's {fp}; "
            "the directory mixes two runs. Rerun `pile dedup`."
        )
    ids = pq.read_table(path, columns=["doc_id"]).column("doc_id").to_numpy().astype(np.int64)
    if len(ids) > 1 and np.any(np.diff(ids) <= 0):
        raise IntegrityError(f"{path}: doc_id column is not strictly ascending; file is corrupt.")
    return ids


def check(path: str | Path) -> list[str]:
    """Structural problems of the dedup tables in directory `path` (empty when none): both
    tables readable with their schema and the manifest's fingerprint, removed doc ids strictly
    ascending, cluster ids strictly ascending and equal to the kept ids, every removed
    document's cluster listed, each cluster's size 1 + its removed documents, and no document
    both removed and kept."""
    d = Path(path)
    try:
        fp = read_manifest(d / "manifest.json").get("config_fingerprint")
    except IntegrityError as e:
        return [str(e)]
    tables = {}
    problems = []
    for name, schema in ((REMOVED, REMOVED_SCHEMA), (CLUSTERS, CLUSTERS_SCHEMA)):
        p = d / name
        try:
            t = pq.read_table(p)
        except (OSError, pa.ArrowException) as e:
            problems.append(f"{p}: not a readable parquet table ({e})")
            continue
        if not t.schema.equals(schema, check_metadata=False):
            problems.append(f"{p}: columns {t.schema.names}, expected {schema.names}")
            continue
        if table_fingerprint(p) != fp:
            problems.append(f"{p}: fingerprint {table_fingerprint(p)} is not the manifest's {fp}")
        tables[name] = t
    if problems:
        return problems
    removed, clusters = tables[REMOVED], tables[CLUSTERS]
    doc = removed.column("doc_id").to_numpy()
    cid = removed.column("cluster_id").to_numpy()
    kept = removed.column("kept_id").to_numpy()
    cl = clusters.column("cluster_id").to_numpy()
    size = clusters.column("size").to_numpy()
    rp, cp = d / REMOVED, d / CLUSTERS
    if len(doc) > 1 and np.any(np.diff(doc) <= 0):
        problems.append(f"{rp}: doc_id is not strictly ascending")
    if not np.array_equal(cid, kept):
        problems.append(f"{rp}: cluster_id differs from kept_id")
    if len(cl) > 1 and np.any(np.diff(cl) <= 0):
        problems.append(f"{cp}: cluster_id is not strictly ascending")
    if not np.array_equal(cl, clusters.column("kept_id").to_numpy()):
        problems.append(f"{cp}: cluster_id differs from kept_id")
    ids, counts = np.unique(cid, return_counts=True)
    if not np.array_equal(ids, cl) or not np.array_equal(counts + 1, size):
        problems.append(
            f"{cp}: clusters do not match {rp} (every cluster has 1 kept + its removed documents)"
        )
    both = np.intersect1d(doc, cl)
    if len(both):
        problems.append(f"{rp}: document {int(both[0])} is both removed and kept")
    return problems
