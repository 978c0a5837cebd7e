"""The `pile order` stage: build and write the gpt-neox index maps of a token dataset.

`run_order(prefix, config, out_dir=None)` computes the maps (pipeline.order.indexmap), writes
them with their manifest last (pipeline.order.mapfiles: names, `save_npy`, manifest fields) and
the random-access provenance table (pipeline.order.provenance); `order_command` is the exact
command line that (re)builds a config's maps, quoted in every error that asks for a rebuild.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, IntegrityError
from pipeline.io import human_bytes
from pipeline.lock import holds_dir_locks, lock_dir
from pipeline.manifest import read_manifest, write_manifest
from pipeline.order import mapfiles
from pipeline.order.config import OrderConfig
from pipeline.order.indexmap import (
    build_doc_idx,
    build_shuffle_idx,
    doc_epoch_dtype,
    index_map_bytes,
    iter_doc_epoch,
    iter_sample_idx,
    num_epochs_for,
    sample_idx_dtype,
)
from pipeline.order.mapfiles import (
    DATASET_NAME,
    EPOCH_ROLE,
    MANIFEST_KIND,
    ORDER_FIELDS,
    NpyBlocks,
    dataset_identity,
    dataset_sizes,
    index_map_paths,
    order_fingerprint,
)
from pipeline.order.provenance import build_table

log = logging.getLogger(__name__)


def _check_space(
    out_dir: Path,
    n_items: int,
    num_epochs: int,
    tokens_per_epoch: int,
    config: OrderConfig,
    doc_epoch: bool,
) -> None:
    """Refuse up front when the maps cannot fit: a too-large preset for a small dataset (the
    Pythia preset on a few MB of text means ~10^5 epochs) must not fill the disk halfway."""
    need = index_map_bytes(n_items, num_epochs, tokens_per_epoch, config.seq_length, doc_epoch)
    where = Path(out_dir)
    while not where.exists() and where != where.parent:
        where = where.parent  # the directory is created when the first map is written
    free = shutil.disk_usage(where).free
    if need > free:
        raise ConfigError(
            f"order {out_dir}: the index maps need {human_bytes(need)} ({num_epochs} epochs of "
            f"{n_items} items for {config.num_samples} samples of {config.seq_length} tokens) but "
            f"only {human_bytes(free)} is free there. Pick a preset or --train-iters that fits the "
            "dataset (e.g. --preset sample for small corpora), or free space."
        )


@holds_dir_locks
def run_order(
    prefix: str | os.PathLike,
    config: OrderConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    reuse: bool = False,
    doc_epoch: bool = True,
    provenance: bool = True,
) -> dict[str, Any]:
    """Build the gpt-neox index maps of dataset `prefix` (needs only its `.idx` sizes).

    Writes the three `.npy` maps (+ `_doc_epoch.npy` unless doc_epoch=False, + the random-access
    provenance table of pipeline.order.provenance when `{prefix}.docs.parquet` exists and
    provenance=True) next to the dataset or in `out_dir`, then the manifest (kind "index-maps", roles doc_idx/sample_idx/shuffle_idx,
    fingerprint = combine(config fingerprint, .idx sha256)); returns the manifest dict. With
    `reuse`, an existing complete manifest with the same fingerprint is returned without rebuilding.
    doc_epoch and sample_idx are streamed to their files: peak memory is doc_idx (4 bytes per
    entry) + the sizes + a few MB; at Pythia scale (211M items, 2 epochs) ~2.6 GB.
    """
    paths = index_map_paths(prefix, config, out_dir)
    ident = dataset_identity(prefix, full=True)
    fp = order_fingerprint(config, ident["idx_sha256"])
    lock_dir(paths["manifest"].parent, "order")  # held until return: one writer per directory
    if reuse and paths["manifest"].exists():
        try:
            m = read_manifest(paths["manifest"])
        except IntegrityError:
            m = None
        if (
            m
            and m.get("config_fingerprint") == fp
            and all((paths["manifest"].parent / f["name"]).exists() for f in m["files"])
        ):
            log.info("index maps for %s already built (%s); reusing", prefix, paths["manifest"])
            return m
    sizes = dataset_sizes(prefix)
    t0 = time.perf_counter()
    tokens_per_epoch = int(np.sum(sizes, dtype=np.int64))
    num_samples = config.num_samples
    num_epochs = num_epochs_for(tokens_per_epoch, config.seq_length, num_samples)
    log.info(
        "order %s: %d items, %d tokens/epoch, %d samples requested -> %d epochs",
        prefix, len(sizes), tokens_per_epoch, num_samples, num_epochs,
    )  # fmt: skip
    if num_epochs > 100:
        log.warning(
            "order %s: %d epochs of a %d-token dataset for %d samples; is this the intended "
            "preset (e.g. --preset sample for the bundled sample)?",
            prefix, num_epochs, tokens_per_epoch, num_samples,
        )  # fmt: skip
    _check_space(
        paths["manifest"].parent, len(sizes), num_epochs, tokens_per_epoch, config, doc_epoch
    )
    if paths["manifest"].exists():
        paths["manifest"].unlink()  # outputs are about to change: no stale completion marker
    rng = np.random.RandomState(seed=config.seed)
    doc_idx = build_doc_idx(len(sizes), num_epochs, rng)
    hashes = {paths["doc_idx"]: mapfiles.save_npy(paths["doc_idx"], doc_idx)}  # hashed as written
    t1 = time.perf_counter()
    files: list[tuple[Path, str]] = [(paths["doc_idx"], "doc_idx")]
    if doc_epoch:  # streamed: only doc_idx is ever whole in memory
        epoch = NpyBlocks(doc_epoch_dtype(len(doc_idx), len(sizes)), (len(doc_idx),),
                          iter_doc_epoch(doc_idx, len(sizes)))  # fmt: skip
        hashes[paths["doc_epoch"]] = mapfiles.save_npy(paths["doc_epoch"], epoch)
        del epoch
    num_total = (num_epochs * tokens_per_epoch - 1) // config.seq_length
    dtype = sample_idx_dtype(num_epochs, tokens_per_epoch, config.seq_length)
    blocks = iter_sample_idx(sizes, doc_idx, config.seq_length, num_epochs, tokens_per_epoch)
    hashes[paths["sample_idx"]] = mapfiles.save_npy(
        paths["sample_idx"], NpyBlocks(dtype, (num_total + 1, 2), blocks)
    )
    del doc_idx, blocks
    sample_dtype = dtype.name
    t2 = time.perf_counter()
    shuffle_idx = build_shuffle_idx(num_total, rng)
    shuffle_dtype = shuffle_idx.dtype.name
    hashes[paths["shuffle_idx"]] = mapfiles.save_npy(paths["shuffle_idx"], shuffle_idx)
    del shuffle_idx
    t3 = time.perf_counter()
    files += [(paths["sample_idx"], "sample_idx"), (paths["shuffle_idx"], "shuffle_idx")]
    if doc_epoch:
        files.append((paths["doc_epoch"], EPOCH_ROLE))
    if provenance:
        table = build_table(prefix, len(sizes), out_dir)
        if table is not None:
            files += [(table[k], EPOCH_ROLE) for k in ("doc_id", "set", "meta")]
    log.info("order: doc_idx %.1fs, sample_idx %.1fs, shuffle_idx %.1fs", t1 - t0, t2 - t1, t3 - t2)
    data_rel = os.path.relpath(Path(str(prefix)), paths["manifest"].parent).replace(os.sep, "/")
    return write_manifest(
        paths["manifest"],
        kind=MANIFEST_KIND,
        config_fingerprint=fp,
        files=files,
        hashes=hashes,
        config={**config.to_dict(), "name": DATASET_NAME, "num_samples": num_samples},
        counts={
            "items": int(len(sizes)),
            "tokens_per_epoch": tokens_per_epoch,
            "num_epochs": num_epochs,
            "num_samples": num_samples,
            "num_total_samples": num_total,
            "train_samples": config.train_samples,
            "steps": config.train_iters,
            "doc_idx_len": int(len(sizes)) * num_epochs,
        },
        extra={
            "dataset": {**ident, "prefix": data_rel},
            "dtypes": {
                "doc_idx": "int32",
                "sample_idx": sample_dtype,
                "shuffle_idx": shuffle_dtype,
            },
            "reference": "gpt-neox v1.0 megatron/data/gpt2_dataset.py _build_index_mappings",
        },
    )


def order_command(prefix, config: OrderConfig, out_dir=None) -> str:
    """The exact `pile order` command that (re)builds the maps of `config` for `prefix`.

    `--preset NAME` when the config equals a preset, else every flag: a flagless `pile order`
    builds the pythia preset, which is the wrong fix for any other config."""
    from pipeline.presets import preset_names

    args = ["pile", "order", shlex.quote(str(prefix))]
    for name in preset_names("order"):
        try:
            same = OrderConfig.from_preset(name) == config
        except ConfigError:  # a broken preset cannot match; the flags below still work
            same = False
        if same:
            args += ["--preset", name]
            break
    else:
        args += [f"--{k.replace('_', '-')} {getattr(config, k)}" for k in ORDER_FIELDS]
    if out_dir is not None:
        args += ["--out-dir", shlex.quote(str(out_dir))]
    return " ".join(args)
