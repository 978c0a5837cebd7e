"""The `pile preshuffle` stage: write a dataset's training order as the pre-shuffled layout.

`run_preshuffle(prefix, config, out_dir, shard_size=30e9)` reads the samples of steps
0..train_iters-1 in training order (pipeline.order.document, its index maps must exist) and writes
them as `document.idx` + `document-000NN-of-000MM.bin` (or one `document.bin`), then the manifest
`document.manifest.json` (kind "preshuffled"), which records the source dataset and index maps for
provenance. The layout (names, index bytes, reader, check) is pipeline.order.shuffled;
`preshuffle_command` is the command line that rewrites a directory, quoted in errors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import combine_fingerprints
from pipeline.errors import ConfigError, PipelineError
from pipeline.io import fsync_dir, human_bytes, open_new, tmp_path
from pipeline.lock import holds_dir_locks, lock_dir
from pipeline.manifest import write_manifest
from pipeline.order.config import OrderConfig
from pipeline.order.document import DocumentData
from pipeline.order.mapfiles import order_fingerprint, rebuild_command
from pipeline.order.shuffled import (  # noqa: F401 (shard_names re-exported: the plan lists them)
    PRESHUFFLED_KIND,
    PRESHUFFLED_MANIFEST,
    PRESHUFFLED_NAME,
    check_doc_idx_form,
    is_bin_name,
    preshuffled_bytes,
    preshuffled_index_chunks,
    shard_names,
)

log = logging.getLogger(__name__)

PYTHIA_SHARD_SIZE = 30_000_000_000  # bytes per shard of EleutherAI/pile-*-pythia-preshuffled

BLOCK_SAMPLES = 1024  # samples gathered per write


class _ShardWriter:
    """Writes one byte stream into consecutive files of `shard_size` bytes, each tmp + rename."""

    def __init__(self, out_dir: Path, names: list[str], shard_size: int | None) -> None:
        self.out_dir = out_dir
        self.names = names
        self.shard_size = shard_size
        self.i = -1
        self.f = None
        self.left = 0
        self.done: list[Path] = []
        self._open_next()

    def _open_next(self) -> None:
        self._close_current()
        self.i += 1
        path = self.out_dir / self.names[self.i]
        self.f = open_new(tmp_path(path))  # never through a planted link
        self.left = self.shard_size if self.shard_size is not None else -1

    def _close_current(self) -> None:
        if self.f is None:
            return
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        path = self.out_dir / self.names[self.i]
        os.replace(tmp_path(path), path)
        self.done.append(path)
        self.f = None

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            if self.left == 0:
                self._open_next()
            n = len(view) if self.left < 0 else min(self.left, len(view))
            self.f.write(view[:n])
            view = view[n:]
            if self.left > 0:
                self.left -= n

    def close(self) -> list[Path]:
        # Pythia's naming makes an exact multiple of shard_size end with an empty last shard
        while self.i < len(self.names) - 1:
            self._open_next()
        self._close_current()
        fsync_dir(self.out_dir)
        return self.done

    def abort(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None
        for name in self.names:
            with contextlib.suppress(FileNotFoundError):
                tmp_path(self.out_dir / name).unlink()


@holds_dir_locks
def run_preshuffle(
    prefix: str | os.PathLike,
    config: OrderConfig,
    out_dir: str | os.PathLike,
    shard_size: int | None = PYTHIA_SHARD_SIZE,
    *,
    maps_dir: str | os.PathLike | None = None,
    block: int = BLOCK_SAMPLES,
    doc_idx: str = "pythia",
) -> dict[str, Any]:
    """Write the pre-shuffled `document` dataset of `prefix` (its index maps must exist).

    `doc_idx`: "pythia" ([0], byte-identical to EleutherAI's document.idx; gpt-neox and Pythia's
    batch_viewer read it, Megatron-LM's IndexedDataset only with fast_cache_load=True) or "full"
    (0..N, read by all of them); the manifest records "full" (absent means "pythia").
    Returns the manifest dict. Memory is O(block x seq_length); the index maps are memory-mapped.
    """
    check_doc_idx_form(doc_idx)
    if shard_size is not None and (isinstance(shard_size, bool) or int(shard_size) < 1):
        raise ConfigError(f"shard_size {shard_size!r} must be a positive number of bytes (or None)")
    if block < 1:
        raise ConfigError(f"block {block} must be >= 1")
    out = Path(out_dir)
    # the inputs first: a refused call creates no directory
    data = DocumentData(prefix, config, maps_dir, check_dataset="full")
    lock_dir(out, "preshuffle")  # held until return: one writer per directory
    n = config.train_samples
    L1 = config.seq_length + 1
    dtype = data.dtype
    total_bytes, idx_bytes = preshuffled_bytes(config, dtype.itemsize, doc_idx)
    names = shard_names(total_bytes, shard_size)
    # refuse up front rather than fill the disk halfway (the Pythia preset is ~600 GB whatever
    # the dataset); files about to be replaced count as free
    need = total_bytes + idx_bytes
    replaced = [*names, PRESHUFFLED_NAME + ".idx"]
    reclaim = sum((out / name).stat().st_size for name in replaced if (out / name).is_file())
    free = shutil.disk_usage(out).free + reclaim
    if need > free:
        raise ConfigError(
            f"preshuffle {out}: {n} samples of {L1} tokens need {human_bytes(need)} but only "
            f"{human_bytes(free)} is free there. Pick a preset or --train-iters that fits "
            "(e.g. --preset sample for small corpora), or free space."
        )
    manifest_path = out / PRESHUFFLED_MANIFEST
    # no manifest and no index while shards are rewritten: a killed run must leave nothing that
    # `inspect` could read as a mix of the old and the new order
    for stale in (manifest_path, out / (PRESHUFFLED_NAME + ".idx")):
        stale.unlink(missing_ok=True)
    # stale outputs of an earlier run with another shard count would confuse readers
    for q in out.glob(PRESHUFFLED_NAME + "*.bin"):
        if is_bin_name(q.name) and q.name not in names:
            q.unlink()
    t0 = time.perf_counter()
    writer = _ShardWriter(out, names, shard_size)
    try:
        for g0 in range(0, n, block):
            arr = data.samples(np.arange(g0, min(n, g0 + block), dtype=np.int64))
            writer.write(np.ascontiguousarray(arr).astype(dtype.newbyteorder("<"), copy=False).data)
        bins = writer.close()
    except BaseException:
        writer.abort()
        raise
    idx_path = out / (PRESHUFFLED_NAME + ".idx")
    tmp = tmp_path(idx_path)
    try:
        with open_new(tmp) as f:
            for chunk in preshuffled_index_chunks(n, L1, dtype, doc_idx=doc_idx):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, idx_path)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise PipelineError(f"writing {idx_path} failed: {e}") from e
    log.info("preshuffle: %d samples, %d bytes in %d file(s), %.1fs", n, total_bytes, len(bins),
             time.perf_counter() - t0)  # fmt: skip
    order_fp = (
        order_fingerprint(config, data.maps.manifest["dataset"]["idx_sha256"])
        if (data.maps.manifest and "idx_sha256" in data.maps.manifest.get("dataset", {}))
        else config.fingerprint()
    )
    # the default form keeps the fingerprint and manifest of every earlier (pythia-form) run
    full = {"doc_idx": doc_idx} if doc_idx != "pythia" else {}
    fp = combine_fingerprints(
        order_fp, f"preshuffle shard_size={shard_size}" + (f" doc_idx={doc_idx}" if full else "")
    )
    role = "bin-shard" if shard_size is not None else "bin"
    src_rel = os.path.relpath(Path(data.prefix).resolve(), out.resolve()).replace(os.sep, "/")
    maps_rel = (
        os.path.relpath(Path(maps_dir).resolve(), out.resolve()).replace(os.sep, "/")
        if maps_dir is not None
        else None
    )
    return write_manifest(
        manifest_path,
        kind=PRESHUFFLED_KIND,
        config_fingerprint=fp,
        files=[(idx_path, "idx")] + [(b, role) for b in bins],
        config={**config.to_dict(), "shard_size": shard_size, **full},
        counts={
            "samples": n,
            "steps": config.train_iters,
            "sample_tokens": L1,
            "tokens": n * L1,
            "bytes": total_bytes,
            "shards": len(bins),
            "step_bytes": config.global_batch * L1 * dtype.itemsize,
        },
        extra={
            "dtype": dtype.name,
            "source": {"prefix": src_rel, "maps_dir": maps_rel, "order_fingerprint": order_fp},
        },
    )


def preshuffle_command(prefix: Path, maps_dir: Path, out_dir: Path, cfg: dict) -> str:
    """The `pile preshuffle` command that rewrites `out_dir` with the settings `cfg` records."""
    args = [rebuild_command(prefix, prefix.parent, cfg).replace("pile order", "pile preshuffle", 1)]
    if maps_dir.resolve() != prefix.parent.resolve():
        args.append(f"--maps-dir {maps_dir}")
    shard_size = cfg.get("shard_size", PYTHIA_SHARD_SIZE)
    if shard_size is None:
        args.append("--no-shard")
    elif shard_size != PYTHIA_SHARD_SIZE:
        args.append(f"--shard-size {shard_size}")
    if cfg.get("doc_idx", "pythia") != "pythia":
        args.append(f"--doc-idx {cfg['doc_idx']}")
    return " ".join(args + [f"--out-dir {out_dir}"])
