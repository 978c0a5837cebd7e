"""The tokenize stage's declaration for `pile build` (pipeline.contract): `OUT/<variant>/`."""

from __future__ import annotations

import json
from typing import Any

from pipeline.contract import StageResult, StageSpec
from pipeline.tokenize.config import TokenizeConfig

KINDS = ("bin", "idx", "sidecar", "manifest")


class TokenizeSpec(StageSpec):
    """GPT-NeoX tokens of the inputs as `{prefix}_text_document.bin/.idx` + sidecar + manifest;
    the deduped variant skips the documents dedup removed."""

    name = "tokenize"
    config_type = TokenizeConfig
    upstream = ("dedup",)
    uses_inputs = True
    merges_partials = True

    def reads(self, variant: str, specs: dict[str, StageSpec], variants: list[str]) -> list[str]:
        # only the deduped variant reads the dedup set
        return super().reads(variant, specs, variants) if variant == "deduped" else []

    def config(self, job: Any, variant: str) -> TokenizeConfig:
        return job.tokenize_config

    def fingerprints(self, job: Any, variant: str) -> dict[str, str]:
        return {"tokenize": job.tokenize_config.fingerprint()}

    def outputs(self, job: Any, variant: str) -> list[str]:
        from pipeline.tokenize.stage import output_names

        names = output_names(job.prefix(variant))
        return [f"{variant}/{names[k]}" for k in KINDS]

    def owns(self, variant: str) -> list[str]:
        # the prefixes `pile` and `pile_<threshold>_deduped`; not `pile*.manifest.json`, which
        # would also match order's index-map manifests beside them
        names = []
        for prefix in (f"{variant}/pile", f"{variant}/pile_*_deduped"):
            names += [f"{prefix}_text_document.{e}" for e in ("bin", "idx", "docs.parquet")]
            names.append(f"{prefix}.manifest.json")
        return names

    def estimate(self, job: Any, variant: str) -> int:
        items, tokens, _ = job.estimated_counts(variant)
        # .bin (2-byte tokens), .idx (sizes, pointers, doc_idx), sidecar, manifest
        return 2 * tokens + 20 * items + 16 * items + 4096

    def run(self, job: Any, variant: str, executor: Any) -> StageResult:
        from pipeline.job.faults import fault_point
        from pipeline.tokenize.stage import output_names, run_tokenize

        out = job.out / variant
        prefix = job.prefix(variant)
        manifest = out / output_names(prefix)["manifest"]
        exclude_ids = exclude_fp = None
        if variant == "deduped":
            from pipeline.dedup import load_removed_ids

            exclude_fp = job.dedup_config.fingerprint()
            exclude_ids = load_removed_ids(job.out / "dedup", exclude_fp)
        stage = self.stage_name(variant)
        merged = {"tasks": 0}

        def on_task(result: dict[str, Any]) -> None:
            merged["tasks"] += 1
            job.progress(stage, result)
            if merged["tasks"] == 1:
                fault_point(stage, "mid")

        if variant == "deduped" and job.stage(self.stage_name("standard")) is not None:
            # tokenize once: the deduped tokens are the standard ones minus the removed documents
            # (byte-identical to tokenizing again, so the stage key does not change; the standard
            # stage runs first, and derive_excluded tokenizes when its outputs do not fit)
            from pipeline.tokenize.derive import derive_excluded

            counts = derive_excluded(
                job.out / "standard",
                job.prefix("standard"),
                out,
                prefix,
                job.tokenize_config,
                job.read_config,
                exclude_ids,
                exclude_fp,
            )
            if counts is not None:
                return StageResult(manifest, counts)
        total = expected_documents(job, variant)
        if total is not None:
            job.progress(stage, {"status": "total", "documents": total})
        counts = run_tokenize(
            job.inputs,
            out,
            prefix,
            job.tokenize_config,
            job.read_config,
            exclude_ids=exclude_ids,
            exclude_fingerprint=exclude_fp,
            executor=executor,
            progress=on_task,
        )
        return StageResult(manifest, counts)


def expected_documents(job: Any, variant: str) -> int | None:
    """Documents the tokenize stage will write, when the dedup stage has counted them (for the
    progress bar's ETA only)."""
    try:
        stats = json.loads((job.out / "dedup" / "stats.json").read_text("utf-8"))
        n = int(stats["counts"]["documents"])
        return n - int(stats["counts"]["removed"]) if variant == "deduped" else n
    except (OSError, ValueError, KeyError):
        return None
