"""The training-order config recorded with data on disk (for `pile inspect` / `pile preshuffle`).

Where a config is recorded:

- a pre-shuffled `document` dataset: `document.manifest.json` (kind "preshuffled"), `config`;
- a document-level dataset: the manifest of its gpt-neox index maps,
  `{prefix}_train_0_indexmap_{ns}ns_{sl}sl_{seed}s.manifest.json` (kind "index-maps"), `config`,
  next to the dataset or in the maps directory. One such manifest is unambiguous; several are not
  (ConfigError naming each and the flags that select it).

EleutherAI's published pre-shuffled data and maps built by gpt-neox itself carry no manifest: then
nothing is recorded and the caller falls back to the `pythia` preset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, IntegrityError
from pipeline.manifest import read_manifest
from pipeline.order.config import OrderConfig
from pipeline.order.data import resolve_form
from pipeline.order.mapfiles import MANIFEST_KIND, ORDER_FIELDS, find_manifests
from pipeline.order.shuffled import PRESHUFFLED_KIND, read_preshuffled_manifest

FLAGS = {
    "seq_length": "--seq-length",
    "global_batch": "--global-batch",
    "train_iters": "--train-iters",
    "seed": "--seed",
}


@dataclass(frozen=True)
class RecordedConfig:
    """An order config read from a manifest: the config, the manifest path and its map tag."""

    config: OrderConfig
    manifest: Path
    tag: str


def config_flags(config: OrderConfig) -> str:
    """`--seq-length 2048 --global-batch 1024 --train-iters 143000 --seed 1234`."""
    return " ".join(f"{FLAGS[k]} {getattr(config, k)}" for k in ORDER_FIELDS)


def config_from_manifest(path: Path, doc: dict[str, Any], kind: str) -> OrderConfig:
    """The OrderConfig in manifest `doc` (read from `path`), which must be of `kind`."""
    if doc.get("kind") != kind:
        raise IntegrityError(f"{path}: kind {doc.get('kind')!r}, expected {kind!r}")
    c = doc.get("config")
    missing = [k for k in ORDER_FIELDS if not isinstance(c, dict) or k not in c]
    if missing:
        raise IntegrityError(
            f"{path}: the recorded config lacks {', '.join(missing)}; the manifest is damaged. "
            f"Pass the order config explicitly ({' '.join(FLAGS[k] + ' N' for k in ORDER_FIELDS)} or "
            "--preset NAME), or rebuild the data."
        )
    try:
        return OrderConfig(**{k: c[k] for k in ORDER_FIELDS})
    except ConfigError as e:
        raise IntegrityError(f"{path}: invalid recorded order config: {e}") from None


def recorded_index_map_config(
    prefix: str | os.PathLike, maps_dir: str | os.PathLike | None = None
) -> RecordedConfig | None:
    """The config of the only index-map manifest of `prefix`; None if there is none.

    Raises ConfigError when there are several (it names each tag and its flags)."""
    found = find_manifests(prefix, maps_dir)
    if not found:
        return None
    recs = []
    for tag, path in found:
        cfg = config_from_manifest(path, read_manifest(path), MANIFEST_KIND)
        recs.append(RecordedConfig(cfg, path, tag))
    if len(recs) == 1:
        return recs[0]
    where = found[0][1].parent
    listing = "; ".join(f"{r.tag} ({config_flags(r.config)})" for r in recs)
    raise ConfigError(
        f"{prefix} has index maps for {len(recs)} order configs in {where}: {listing}. "
        "Pick one by passing its flags (or --preset NAME)."
    )


def recorded_preshuffled_config(prefix: str | os.PathLike) -> RecordedConfig | None:
    """The config in `document.manifest.json` of a pre-shuffled dataset; None without one."""
    doc = read_preshuffled_manifest(prefix)
    if doc is None:
        return None
    p = Path(str(prefix))
    path = p.parent / (p.name + ".manifest.json")
    cfg = config_from_manifest(path, doc, PRESHUFFLED_KIND)
    return RecordedConfig(cfg, path, cfg.map_tag)


def recorded_config(
    data: str | os.PathLike,
    *,
    maps_dir: str | os.PathLike | None = None,
    form: str = "auto",
) -> RecordedConfig | None:
    """The order config recorded with DATA (as `open_data` resolves it), or None."""
    prefix, form = resolve_form(data, form)
    if form == "preshuffled":
        return recorded_preshuffled_config(prefix)
    return recorded_index_map_config(prefix, maps_dir)
