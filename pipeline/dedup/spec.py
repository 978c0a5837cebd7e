"""The dedup stage's declaration for `pile build` (pipeline.contract): `OUT/dedup/`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.contract import StageResult, StageSpec
from pipeline.dedup.config import DedupConfig

SIG_EXT = ("npy", "parquet")  # signatures/<i>.npy|.parquet, one pair per input file
SIX_DIGITS = "[0-9]" * 6
OUTPUTS = ("manifest.json", "removed.parquet", "clusters.parquet", "stats.json")


class DedupSpec(StageSpec):
    """Global MinHash/LSH near-duplicates of the inputs: the removed ids the deduped variant's
    tokenize excludes. One stage for the build, planned only when it builds `deduped`."""

    name = "dedup"
    config_type = DedupConfig
    per_variant = False
    uses_inputs = True
    manifest_kinds = ("dedup",)

    def variants(self, variants: tuple[str, ...]) -> list[str]:
        return ["deduped"] if "deduped" in variants else []

    def config(self, job: Any, variant: str) -> DedupConfig:
        return job.dedup_config

    def fingerprints(self, job: Any, variant: str) -> dict[str, str]:
        return {"dedup": job.dedup_config.fingerprint()}

    def directory(self, job: Any, variant: str) -> str:
        return "dedup"

    def outputs(self, job: Any, variant: str) -> list[str]:
        # run_dedup also replaces its own work directories; these are the files it leaves
        sigs = [f"signatures/{i:06d}.{ext}" for i in range(len(job.inputs)) for ext in SIG_EXT]
        return [f"dedup/{n}" for n in (*OUTPUTS, *sigs)]

    def owns(self, variant: str) -> list[str]:
        return [
            *(f"dedup/{n}" for n in OUTPUTS),
            *(f"dedup/signatures/{SIX_DIGITS}.{e}" for e in SIG_EXT),
        ]

    def work_dirs(self, variant: str) -> list[str]:
        return ["dedup/buckets", "dedup/edges"]

    def estimate(self, job: Any, variant: str) -> int:
        # signatures: num_perm uint32 per document, and their doc-id table
        items, _, _ = job.estimated_counts("standard", guess_only="standard" not in job.variants)
        return items * (4 * job.dedup_config.num_perm + 16) + 65536

    def run(self, job: Any, variant: str, executor: Any) -> StageResult:
        from pipeline.dedup import run_dedup

        out = job.out / "dedup"
        stats = run_dedup(
            job.inputs,
            out,
            job.dedup_config,
            job.read_config,
            executor=executor,
            progress=lambda info: job.progress(self.name, info),
        )
        # wall-clock timings are not an artifact (they differ run to run): keep them with the logs
        timings = out / "timings.json"
        if timings.exists():
            (job.out / "logs").mkdir(parents=True, exist_ok=True)
            os.replace(timings, job.out / "logs" / "dedup_timings.json")
        info = {"removed": stats.get("removed"), "clusters": stats.get("clusters")}
        return StageResult(out / "manifest.json", info)

    def set_check(self, kind: str):
        from pipeline.dedup import tables

        names = (tables.REMOVED, tables.CLUSTERS)
        return (
            lambda manifest: tables.check(Path(manifest).parent),
            lambda role, name: os.path.basename(name) in names,
        )
