"""A token dataset's names and manifest: `{prefix}_text_document.bin/.idx` (MMIDIDX,
pipeline.shards.mmidx), `{prefix}_text_document.docs.parquet` (provenance sidecar,
pipeline.tokenize.sidecar) and `{prefix}.manifest.json`, written last. One owner for tokenizing
(pipeline.tokenize.stage) and for deriving the deduped dataset from the standard one
(pipeline.tokenize.derive), so both give the same bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import StageConfig
from pipeline.manifest import write_manifest
from pipeline.read import ReadConfig
from pipeline.tokenize.config import TokenizeConfig

FORMAT_VERSION = 1
MANIFEST_KIND = "token-dataset"
EOD_TOKEN = "<|endoftext|>"


def output_names(prefix: str) -> dict[str, str]:
    """File names of a token dataset `prefix` (relative to its directory)."""
    data = f"{prefix}_text_document"
    return {
        "data_prefix": data,
        "bin": f"{data}.bin",
        "idx": f"{data}.idx",
        "sidecar": f"{data}.docs.parquet",
        "manifest": f"{prefix}.manifest.json",
    }


def fingerprinted(cfg: StageConfig) -> dict[str, Any]:
    return {k: v for k, v in cfg.to_dict().items() if k not in cfg._not_fingerprinted}


def write_dataset_manifest(
    manifest_path: Path,
    names: dict[str, str],
    *,
    fingerprint: str,
    config: TokenizeConfig,
    read_config: ReadConfig,
    exclude_fingerprint: str | None,
    counts: dict[str, Any],
    tokenizer: dict[str, Any],
    dtype: str,
    eod_id: int,
    inputs: list[str],
    workers: int,
) -> None:
    """The token dataset's manifest, written last: one writer for tokenizing and for deriving the
    deduped dataset from the standard one (`pipeline.tokenize.derive`), so both give its bytes."""
    out = Path(manifest_path).parent
    write_manifest(
        manifest_path,
        kind=MANIFEST_KIND,
        config_fingerprint=fingerprint,
        files=[
            (out / names["bin"], "bin"),
            (out / names["idx"], "idx"),
            (out / names["sidecar"], "sidecar"),
        ],
        config={
            # only what determines the bytes: backend, batch size, paths and workers do not
            "tokenize": fingerprinted(config),
            "read": fingerprinted(read_config),
            "exclude_fingerprint": exclude_fingerprint,
        },
        counts=counts,
        extra={
            "tokenize_format_version": FORMAT_VERSION,
            "data_prefix": names["data_prefix"],
            "tokenizer": tokenizer,
            "dtype": dtype,
            "eod": {"append_eod": bool(config.append_eod), "eod_id": eod_id, "token": EOD_TOKEN},
            "inputs": inputs,
        },
        workers=workers,
    )
