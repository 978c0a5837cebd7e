"""The order and preshuffle stages' declarations for `pile build` (pipeline.contract).

order-<variant> writes the gpt-neox index maps and the provenance tables beside the token data
(`OUT/<variant>/`), preshuffle-<variant> the pre-shuffled shards (`OUT/<variant>/preshuffled/`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.config import StageConfig
from pipeline.contract import StageResult, StageSpec
from pipeline.errors import PipelineError
from pipeline.order.config import OrderConfig

MAX_PLANNED_SHARDS = 10_000  # a plan with more shards is refused by the plan check anyway
FIVE_DIGITS = "[0-9]" * 5


@dataclass(frozen=True)
class PreshuffleConfig(StageConfig):
    """What shapes the pre-shuffled data: the training order and the shard size in bytes (None:
    Pythia's 30 GB shards)."""

    order: OrderConfig
    shard_size: int | None = None


class OrderSpec(StageSpec):
    """gpt-neox v1.0 `GPT2Dataset` index maps (doc_idx, sample_idx, shuffle_idx) of the variant's
    token data, plus the random-access provenance tables."""

    name = "order"
    config_type = OrderConfig
    upstream = ("tokenize",)
    sized_by_tokens = True

    def config(self, job: Any, variant: str) -> OrderConfig:
        return job.order_config_for(variant)

    def fingerprints(self, job: Any, variant: str) -> dict[str, str]:
        return {"order": job.order_fingerprint()}

    def outputs(self, job: Any, variant: str) -> list[str]:
        from pipeline.order.mapfiles import index_map_paths
        from pipeline.order.provenance import table_paths

        data = job.data_prefix(variant)
        paths = [*index_map_paths(data, job.order_config).values(), *table_paths(data).values()]
        names = [p.relative_to(job.out).as_posix() for p in paths]
        if job.epochs is not None:
            # num_samples (in the map names) follows from the token count: any count
            tag = f"_{job.order_config.num_samples}ns_"
            names = [n.replace(tag, "_[0-9]*ns_") for n in names]
        return names

    def owns(self, variant: str) -> list[str]:
        from pipeline.order.mapfiles import owned_globs

        d = f"{variant}/pile*_text_document"
        maps = owned_globs(d)
        tables = [f"{d}.provenance{e}" for e in ("_doc_id.npy", "_set.npy", ".json")]
        return maps + tables

    def estimate(self, job: Any, variant: str) -> int:
        from pipeline.order.indexmap import index_map_bytes, num_epochs_for

        items, tokens, _ = job.estimated_counts(variant)
        cfg = job.estimated_order_config(tokens)
        try:
            epochs = num_epochs_for(tokens, cfg.seq_length, cfg.num_samples)
            maps = index_map_bytes(items, epochs, tokens, cfg.seq_length)
        except PipelineError:
            maps = 0
        # the maps, the provenance tables (doc_id int64 + set code) and their manifest
        return maps + 10 * items + 4096

    def run(self, job: Any, variant: str, executor: Any) -> StageResult:
        from pipeline.order.mapfiles import index_map_paths
        from pipeline.order.stage import run_order

        cfg = self.config(job, variant)
        manifest = run_order(job.data_prefix(variant), cfg)
        info = dict(manifest.get("counts", {}))
        if job.epochs is not None:
            info.update(epochs_requested=job.epochs, train_iters=cfg.train_iters)
        return StageResult(index_map_paths(job.data_prefix(variant), cfg)["manifest"], info)

    manifest_kinds = ("index-maps",)

    def set_check(self, kind: str):
        from pipeline.order.checks import SET_CHECKS, SET_COVERS

        return SET_CHECKS[kind], SET_COVERS[kind]


class PreshuffleSpec(StageSpec):
    """`document.idx` + `document-000NN-of-000MM.bin`: item i is training sample i."""

    name = "preshuffle"
    config_type = PreshuffleConfig
    upstream = ("order",)
    sized_by_tokens = True

    def config(self, job: Any, variant: str) -> PreshuffleConfig:
        return PreshuffleConfig(job.order_config_for(variant), job.shard_size)

    def fingerprints(self, job: Any, variant: str) -> dict[str, str]:
        return {"order": job.order_fingerprint(), "shard_size": str(job.shard_size)}

    def directory(self, job: Any, variant: str) -> str:
        return f"{variant}/preshuffled"

    def outputs(self, job: Any, variant: str) -> list[str]:
        from pipeline.order.preshuffle import PYTHIA_SHARD_SIZE
        from pipeline.order.shuffled import (
            PRESHUFFLED_MANIFEST,
            PRESHUFFLED_NAME,
            preshuffled_bytes,
            shard_names,
        )

        d = self.directory(job, variant)
        size = job.shard_size if job.shard_size is not None else PYTHIA_SHARD_SIZE
        # with --epochs, train_iters follows from the token count, not known when planning
        cfg = job.order_config if job.epochs is None else None
        # the shard count follows the token dtype: the names for 2- and 4-byte tokens. Unknown or
        # absurd counts are not listed: preshuffle itself removes shards of another count
        counts = [preshuffled_bytes(cfg, item)[0] // size + 1 for item in (2, 4)] if cfg else []
        shards = (
            {n for item in (2, 4) for n in shard_names(preshuffled_bytes(cfg, item)[0], size)}
            if cfg is not None and max(counts) <= MAX_PLANNED_SHARDS
            else set()
        )
        return [
            f"{d}/{PRESHUFFLED_NAME}.idx",
            *(f"{d}/{n}" for n in sorted(shards)),
            f"{d}/{PRESHUFFLED_MANIFEST}",
        ]

    def owns(self, variant: str) -> list[str]:
        from pipeline.order.shuffled import PRESHUFFLED_MANIFEST, PRESHUFFLED_NAME

        d = f"{variant}/preshuffled"
        return [
            f"{d}/{PRESHUFFLED_NAME}.idx",
            f"{d}/{PRESHUFFLED_NAME}.bin",
            f"{d}/{PRESHUFFLED_NAME}-{FIVE_DIGITS}-of-{FIVE_DIGITS}.bin",
            f"{d}/{PRESHUFFLED_MANIFEST}",
        ]

    def estimate(self, job: Any, variant: str) -> int:
        from pipeline.order.shuffled import preshuffled_bytes

        _, tokens, _ = job.estimated_counts(variant)
        cfg = job.estimated_order_config(tokens)
        shards, _ = preshuffled_bytes(cfg)
        return shards + 12 * cfg.train_samples + 4096

    def run(self, job: Any, variant: str, executor: Any) -> StageResult:
        from pipeline.order.preshuffle import PYTHIA_SHARD_SIZE, run_preshuffle
        from pipeline.order.shuffled import PRESHUFFLED_MANIFEST

        out = job.out / self.directory(job, variant)
        shard_size = job.shard_size if job.shard_size is not None else PYTHIA_SHARD_SIZE
        cfg = job.order_config_for(variant)
        manifest = run_preshuffle(job.data_prefix(variant), cfg, out, shard_size)
        return StageResult(out / PRESHUFFLED_MANIFEST, dict(manifest.get("counts", {})))

    manifest_kinds = ("preshuffled",)

    def set_check(self, kind: str):
        from pipeline.order.checks import SET_CHECKS, SET_COVERS

        return SET_CHECKS[kind], SET_COVERS[kind]
