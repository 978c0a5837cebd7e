"""Global near-duplicate detection: MinHash signatures, LSH banding, star edges, union-find.

    from pipeline.dedup import DedupConfig, run_dedup, load_removed_ids
    stats = run_dedup(["train/"], "out/dedup", DedupConfig.from_preset("pythia-0.87"), workers=2)
    removed = load_removed_ids("out/dedup", expected_fingerprint=cfg.fingerprint())

Modules (each documents its choices): shingle (normalisation, n-gram shingles, 64-bit hashes),
minhash (hash family, signatures), lsh (bands/rows, S-curve, band keys), edges (bucket partitions,
star edges, verification), components (union-find, cluster rule), signatures (per-file artifacts), stage (the
pipeline stage and its outputs), export (surviving documents as Pile-format jsonl.zst), explain
(a removed document next to the one kept in its place).
"""

from pipeline.dedup.config import DedupConfig
from pipeline.dedup.export import export_text
from pipeline.dedup.lsh import candidate_probability, expected_recall, optimal_bands_rows, s_curve
from pipeline.dedup.stage import load_removed_ids, run_dedup

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
