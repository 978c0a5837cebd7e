"""Global near-duplicate detection: MinHash signatures, LSH banding, star edges, union-find.

    from pipeline.dedup import DedupConfig, run_dedup, load_removed_ids
    with make_executor("local", 2) as executor:  # pipeline.engine; default: in process
        stats = run_dedup(["train/"], "out/dedup", DedupConfig.from_preset("pythia-0.87"), executor)
    removed = load_removed_ids("out/dedup", expected_fingerprint=cfg.fingerprint())

Modules (each documents its choices): shingle (normalisation, n-gram shingles, 64-bit hashes),
minhash (hash family, signatures), lsh (bands/rows, S-curve, band keys), edges (bucket partitions,
star edges, verification), components (union-find, cluster rule), signatures (per-file artifacts).
The stage's steps: signing (1: signatures and band records, resume records), candidates (2: edges
per partition), verification (3: screening and exact Jaccard), clustering (4: what is removed),
tables (5: removed.parquet / clusters.parquet: names, writing, reading, check), summary
(stats.json), stage (`run_dedup` orchestrating them, the manifest). export (surviving documents
as Pile-format jsonl.zst), explain (a removed document next to the one kept in its place).
"""

from pipeline.dedup.config import DedupConfig
from pipeline.dedup.export import export_text
from pipeline.dedup.lsh import candidate_probability, expected_recall, optimal_bands_rows, s_curve
from pipeline.dedup.stage import run_dedup
from pipeline.dedup.tables import load_removed_ids

__all__ = [
    "DedupConfig",
    "candidate_probability",
    "expected_recall",
    "export_text",
    "load_removed_ids",
    "optimal_bands_rows",
    "run_dedup",
    "s_curve",
]
