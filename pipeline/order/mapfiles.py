"""The gpt-neox index-map files of a dataset: names, manifest, reading, writing, structural check.

Files (gpt-neox names, `np.save` of exactly these arrays), next to the dataset or in a maps dir:

    {prefix}_train_0_indexmap_{num_samples}ns_{seq_length}sl_{seed}s_doc_idx.npy
    {prefix}_train_0_indexmap_{num_samples}ns_{seq_length}sl_{seed}s_sample_idx.npy
    {prefix}_train_0_indexmap_{num_samples}ns_{seq_length}sl_{seed}s_shuffle_idx.npy
    {prefix}_train_0_indexmap_{num_samples}ns_{seq_length}sl_{seed}s_doc_epoch.npy   (ours)
    {prefix}_train_0_indexmap_{num_samples}ns_{seq_length}sl_{seed}s.manifest.json   (ours, last)

`{ns}ns_{sl}sl_{seed}s` is the config's map tag (`OrderConfig.map_tag`). The manifest (kind
"index-maps") lists the maps by role (doc_idx, sample_idx, shuffle_idx; doc_epoch and the
provenance table as "sidecar"), the config, the identity of the dataset `.idx` the maps were built
from (bytes, head/tail hash, sha256) and the fingerprint combine(config fingerprint, .idx sha256).
`doc_epoch[k]` (uint8; uint16/uint32 beyond 256 epochs) is which repetition of item doc_idx[k]
position k is (0 = its first occurrence in doc_idx); `pile inspect --provenance` reads it to
report the epoch copy in O(batch).

The one place that spells these names and finds a dataset's index-map files (`index_map_paths`,
`map_tags`, `find_manifests`, `manifests_for`, `owned_globs`). `save_npy` writes a map,
`load_order` opens a set for reading (checked against the dataset), `check` / `CHECKS[role]`
check their structure for `pile verify`, `check_maps_dataset` that their dataset did not change.
The maps are computed in pipeline.order.indexmap and written by the `pile order` stage
(pipeline.order.stage).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import combine_fingerprints
from pipeline.errors import ConfigError, InputError, IntegrityError
from pipeline.io import atomic_open, sha256_file
from pipeline.manifest import read_manifest
from pipeline.order.config import OrderConfig

log = logging.getLogger(__name__)

DATASET_NAME = "train_0"  # gpt-neox: name=f"train_{i}" for the first of train-data-paths
MANIFEST_KIND = "index-maps"
ROLES = ("doc_idx", "sample_idx", "shuffle_idx")
EPOCH_ROLE = "sidecar"
QUICK_BYTES = 1 << 20  # head and tail bytes hashed for the quick dataset identity check
ORDER_FIELDS = ("seq_length", "global_batch", "train_iters", "seed")
MANIFEST_SUFFIX = ".manifest.json"
MAP_SUFFIXES = ("_doc_idx.npy", "_sample_idx.npy", "_shuffle_idx.npy", "_doc_epoch.npy",
                MANIFEST_SUFFIX)  # fmt: skip
TAG_RE = r"\d+ns_\d+sl_\d+s"  # OrderConfig.map_tag
CHECK_CHUNK = 1 << 24  # elements per chunk of the structural checks: bounded memory at any scale
MAX_REPORTED = 5


# ----------------------------------------------------------------------------------------------
# names


def _tag_base(prefix: str | os.PathLike, tag: str, out_dir=None) -> Path:
    p = Path(prefix)
    d = Path(out_dir) if out_dir is not None else p.parent
    return d / f"{p.name}_{DATASET_NAME}_indexmap_{tag}"


def index_map_base(prefix: str | os.PathLike, config: OrderConfig, out_dir=None) -> Path:
    """`{dir}/{basename(prefix)}_train_0_indexmap_{ns}ns_{sl}sl_{seed}s` (no suffix)."""
    return _tag_base(prefix, config.map_tag, out_dir)


def index_map_paths(prefix, config: OrderConfig, out_dir=None) -> dict[str, Path]:
    """Paths of the three gpt-neox maps, the epoch-copy sidecar and the manifest."""
    base = str(index_map_base(prefix, config, out_dir))
    return {
        "doc_idx": Path(base + "_doc_idx.npy"),
        "sample_idx": Path(base + "_sample_idx.npy"),
        "shuffle_idx": Path(base + "_shuffle_idx.npy"),
        "doc_epoch": Path(base + "_doc_epoch.npy"),
        "manifest": Path(base + MANIFEST_SUFFIX),
    }


def owned_globs(dataset_glob: str) -> list[str]:
    """Glob patterns of the index-map files of any config of the datasets `dataset_glob` (a glob
    of dataset prefixes): what a rerun of the order stage may replace."""
    return [f"{dataset_glob}_train_*_indexmap_*{e}" for e in ("_idx.npy", "_doc_epoch.npy",
                                                              MANIFEST_SUFFIX)]  # fmt: skip


def _scan(prefix: str | os.PathLike, maps_dir=None) -> list[tuple[str, str, Path]]:
    """(tag, suffix, path) of every index-map file (any role or manifest) of dataset `prefix` in
    `maps_dir` (None: next to the dataset), sorted."""
    p = Path(prefix)
    d = Path(maps_dir) if maps_dir is not None else p.parent
    if not d.is_dir():
        return []
    suffixes = "|".join(re.escape(s) for s in MAP_SUFFIXES)
    pat = re.compile(
        rf"^{re.escape(p.name)}_{DATASET_NAME}_indexmap_(?P<tag>{TAG_RE})(?P<suffix>{suffixes})$"
    )
    found = []
    for q in d.iterdir():
        m = pat.match(q.name)
        if m:
            found.append((m.group("tag"), m.group("suffix"), q))
    return sorted(found)


def map_tags(prefix: str | os.PathLike, maps_dir=None) -> set[str]:
    """Tags `{ns}ns_{sl}sl_{seed}s` of every index-map file (any role or manifest) of `prefix`."""
    return {tag for tag, _, _ in _scan(prefix, maps_dir)}


def find_manifests(
    prefix: str | os.PathLike, maps_dir: str | os.PathLike | None = None
) -> list[tuple[str, Path]]:
    """(tag, path) of every `{name}_train_0_indexmap_{tag}.manifest.json` of dataset `prefix`
    in `maps_dir` (None: next to the dataset), sorted by tag."""
    return [
        (tag, q)
        for tag, suffix, q in _scan(prefix, maps_dir)
        if suffix == MANIFEST_SUFFIX and q.is_file()
    ]


def manifests_for(prefix: Path, maps_dir: Path, cfg: dict) -> list[tuple[Path, dict]]:
    """Readable index-map manifests in `maps_dir` built from dataset `prefix` with the order
    settings `cfg` (a recorded config dict), with their contents."""
    out = []
    for _, m in find_manifests(prefix, maps_dir):
        try:
            doc = read_manifest(m)
        except (IntegrityError, OSError, ValueError):
            continue
        ds = doc.get("dataset") or {}
        if doc.get("kind") != MANIFEST_KIND or not isinstance(ds.get("prefix"), str):
            continue
        if (m.parent / ds["prefix"]).resolve() != Path(prefix).resolve():
            continue
        mc = doc.get("config") or {}
        if all(mc.get(k) == cfg.get(k) for k in ORDER_FIELDS):
            out.append((m, doc))
    return out


def other_maps(prefix, out_dir, config: OrderConfig) -> list[str]:
    """Tags of the maps of `prefix` built for configs other than `config`, each with the flags
    that select it when its manifest records them."""
    out = []
    for tag in sorted(map_tags(prefix, out_dir) - {config.map_tag}):
        manifest = Path(str(_tag_base(prefix, tag, out_dir)) + MANIFEST_SUFFIX)
        flags = ""
        try:
            c = read_manifest(manifest).get("config", {})
            flags = " (" + " ".join(f"--{k.replace('_', '-')} {c[k]}" for k in ORDER_FIELDS) + ")"
        except (IntegrityError, OSError, KeyError, AttributeError, TypeError):
            pass  # no or damaged manifest: the tag alone still says which config it is
        out.append(tag + flags)
    return out


def manifest_config(cfg: dict) -> OrderConfig | None:
    """The OrderConfig a manifest records, or None when its config is not a valid one."""
    try:
        return OrderConfig(**{k: cfg[k] for k in ORDER_FIELDS})
    except (KeyError, TypeError, ConfigError):
        return None


def rebuild_command(prefix: Path, maps_dir: Path, cfg: dict) -> str:
    """The `pile order` command that rebuilds the maps of `cfg` for `prefix` in `maps_dir`."""
    from pipeline.order.stage import order_command  # the stage writes these files

    config = manifest_config(cfg)
    if config is None:
        return f"pile order {prefix} with the settings it was built with"
    out_dir = maps_dir if maps_dir.resolve() != prefix.parent.resolve() else None
    return order_command(prefix, config, out_dir)


# ----------------------------------------------------------------------------------------------
# the dataset the maps are built from


def dataset_identity(prefix: str | os.PathLike, full: bool = True) -> dict[str, Any]:
    """Identity of the `.idx` the maps are built from: bytes, quick hash, and (if full) sha256."""
    idx = Path(str(prefix) + ".idx")
    try:
        size = idx.stat().st_size
    except FileNotFoundError:
        raise InputError(
            f"{idx}: token dataset index not found; pass the dataset prefix without .idx/.bin "
            "(e.g. out/standard/pile_text_document) or run `pile tokenize` first."
        ) from None
    h = hashlib.sha256(str(size).encode())
    with open(idx, "rb") as f:
        h.update(f.read(QUICK_BYTES))
        if size > 2 * QUICK_BYTES:
            f.seek(size - QUICK_BYTES)
            h.update(f.read(QUICK_BYTES))
        elif size > QUICK_BYTES:
            h.update(f.read())
    d: dict[str, Any] = {"idx": idx.name, "idx_bytes": size, "idx_quick_sha256": h.hexdigest()}
    if full:
        d["idx_sha256"] = sha256_file(idx)
    return d


def order_fingerprint(config: OrderConfig, idx_sha256: str) -> str:
    return combine_fingerprints(config.fingerprint(), idx_sha256)


def dataset_sizes(prefix) -> np.ndarray:
    """The item sizes of dataset `prefix` (its `.idx`, memory-mapped)."""
    from pipeline.shards.mmidx import MMIDXIndex

    idx = Path(str(prefix) + ".idx")
    if not idx.exists():
        raise InputError(
            f"{idx}: token dataset index not found; pass the dataset prefix without .idx/.bin "
            "(e.g. out/standard/pile_text_document) or run `pile tokenize` first."
        )
    return MMIDXIndex(idx).sizes


# ----------------------------------------------------------------------------------------------
# writing and reading


@dataclass
class NpyBlocks:
    """An array written block by block (never whole in memory): its dtype, shape and blocks."""

    dtype: np.dtype
    shape: tuple[int, ...]
    blocks: Iterator[np.ndarray]


def save_npy(path: Path, arr: np.ndarray | NpyBlocks) -> str:
    """np.save of `arr`, or the same bytes from the blocks of an NpyBlocks, via *.tmp + rename.

    Returns the sha256 of the bytes written, hashed from memory as they go out: the manifest
    needs no second read of maps that are GBs at Pile scale."""
    h = hashlib.sha256()
    with atomic_open(path, "wb") as f:
        if isinstance(arr, np.ndarray):
            header = np.lib.format.header_data_from_array_1_0(arr)
            # np.save's layout: a Fortran-ordered array goes out as its C-ordered transpose
            blocks: Iterable[np.ndarray] = (arr.T if header["fortran_order"] else arr,)
            dtype, shape = arr.dtype, arr.shape
        else:
            dtype, shape, blocks = np.dtype(arr.dtype), tuple(arr.shape), arr.blocks
            header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                      "shape": shape}  # fmt: skip
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(head, header)
        f.write(head.getbuffer())
        h.update(head.getbuffer())
        want = math.prod(shape) * dtype.itemsize
        wrote = 0
        for block in blocks:
            if block.dtype != dtype:  # pragma: no cover - a bug in a block builder
                raise IntegrityError(f"{path}: block dtype {block.dtype}, expected {dtype}")
            data = memoryview(np.ascontiguousarray(block)).cast("B")
            f.write(data)
            h.update(data)
            wrote += block.nbytes
        if wrote != want:
            raise IntegrityError(f"{path}: wrote {wrote} bytes of array data, expected {want}")
    return h.hexdigest()


def load_npy(path: Path, fix: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise IntegrityError(
            f"{path}: not a readable .npy index map ({e}); rebuild with `{fix}`."
        ) from e


@dataclass
class OrderMaps:
    """Memory-mapped index maps of one dataset + config, checked against the dataset."""

    prefix: str
    config: OrderConfig
    doc_idx: np.ndarray
    sample_idx: np.ndarray
    shuffle_idx: np.ndarray
    doc_epoch: np.ndarray | None
    manifest: dict[str, Any] | None
    paths: dict[str, Path]

    @property
    def num_total(self) -> int:
        return int(self.sample_idx.shape[0] - 1)

    @property
    def num_epochs(self) -> int:
        n = int(self.manifest["counts"]["items"]) if self.manifest else None
        if n:
            return len(self.doc_idx) // n
        return 0


def load_order(
    prefix: str | os.PathLike,
    config: OrderConfig,
    maps_dir: str | os.PathLike | None = None,
    *,
    check_dataset: str = "quick",
) -> OrderMaps:
    """Open the index maps of `prefix` for `config` (memory-mapped).

    Raises InputError when the maps are missing, ConfigError when only maps for other settings
    exist, IntegrityError when some files of this config are missing (an incomplete set) or the
    maps were built from another dataset (the `.idx` changed; checked
    from the manifest: "quick" = size + head/tail hash, "full" = sha256, "none"). Maps without our
    manifest (e.g. built by gpt-neox itself) are accepted after a shape check against the sizes.
    """
    from pipeline.order.stage import order_command  # the stage writes these files

    if check_dataset not in ("quick", "full", "none"):
        raise ConfigError(f"check_dataset {check_dataset!r} not in quick, full, none")
    paths = index_map_paths(prefix, config, maps_dir)
    fix = order_command(prefix, config, maps_dir)
    missing = [r for r in ROLES if not paths[r].exists()]
    if missing:
        where = paths["doc_idx"].parent
        present = [k for k in (*ROLES, "doc_epoch", "manifest") if paths[k].exists()]
        if present:
            # some files of THIS config exist: the set is damaged, not built for another config
            raise IntegrityError(
                f"index maps {config.map_tag} of {prefix} are incomplete: "
                f"{', '.join(paths[r].name for r in missing)} missing in {where} (present: "
                f"{', '.join(present)}). Rebuild them with `{fix}`."
            )
        others = other_maps(prefix, maps_dir, config)
        if others:
            raise ConfigError(
                f"no index maps for {config.map_tag} (seq_length={config.seq_length}, "
                f"train_iters={config.train_iters} x global_batch={config.global_batch} -> "
                f"num_samples={config.num_samples}, seed={config.seed}) next to {prefix} in "
                f"{where}; found maps built with a different config: {'; '.join(others)}. Pass "
                f"the matching --seq-length/--train-iters/--global-batch/--seed, or build these "
                f"with `{fix}`."
            )
        raise InputError(
            f"index maps for {prefix} not found: {paths[missing[0]]} is missing. Build them with "
            f"`{fix}`."
        )
    manifest = None
    if paths["manifest"].exists():
        manifest = read_manifest(paths["manifest"])
        if manifest.get("kind") != MANIFEST_KIND:
            raise IntegrityError(
                f"{paths['manifest']}: kind {manifest.get('kind')!r}, expected {MANIFEST_KIND!r}"
            )
        mc = manifest.get("config", {})
        for k in ("seq_length", "seed"):
            if mc.get(k) != getattr(config, k):
                raise ConfigError(
                    f"{paths['manifest']}: maps were built with {k}={mc.get(k)}, requested "
                    f"{getattr(config, k)}; rebuild with `{fix}`."
                )
        if mc.get("num_samples", config.num_samples) != config.num_samples:
            raise ConfigError(
                f"{paths['manifest']}: maps were built for num_samples={mc.get('num_samples')}, "
                f"requested {config.num_samples}; rebuild with `{fix}`."
            )
        ds = manifest.get("dataset", {})
        if check_dataset != "none":
            ident = dataset_identity(prefix, full=check_dataset == "full")
            keys = ("idx_bytes", "idx_quick_sha256") + (
                ("idx_sha256",) if check_dataset == "full" else ()
            )
            for k in keys:
                if ds.get(k) != ident[k]:
                    raise IntegrityError(
                        f"index maps {paths['manifest'].name} were built from a different dataset: "
                        f"{ident['idx']} {k} is {ident[k]}, the maps record {ds.get(k)}. Rebuild "
                        f"them with `{fix}`."
                    )
    else:
        log.warning("%s: no manifest; using maps without dataset identity check", paths["manifest"])
    doc_idx = load_npy(paths["doc_idx"], fix)
    sample_idx = load_npy(paths["sample_idx"], fix)
    shuffle_idx = load_npy(paths["shuffle_idx"], fix)
    if (
        sample_idx.ndim != 2
        or sample_idx.shape[1] != 2
        or shuffle_idx.ndim != 1
        or doc_idx.ndim != 1
    ):
        raise IntegrityError(
            f"index maps {config.map_tag} in {paths['doc_idx'].parent}: unexpected shapes "
            f"(doc_idx {doc_idx.shape}, sample_idx {sample_idx.shape}, shuffle_idx "
            f"{shuffle_idx.shape}); rebuild them with `{fix}`."
        )
    if shuffle_idx.shape[0] != sample_idx.shape[0] - 1:
        raise IntegrityError(
            f"{paths['shuffle_idx'].name}: {shuffle_idx.shape[0]} entries but sample_idx has "
            f"{sample_idx.shape[0] - 1} samples; the maps are from different builds. Rebuild "
            f"them with `{fix}`."
        )
    if manifest is None:
        sizes = dataset_sizes(prefix)
        n = len(sizes)
        if n == 0 or len(doc_idx) % n:
            raise IntegrityError(
                f"{paths['doc_idx'].name}: length {len(doc_idx)} is not a multiple of the "
                f"{n} items of {prefix}; the maps belong to another dataset."
            )
        e = len(doc_idx) // n
        tpe = int(np.sum(sizes, dtype=np.int64))
        if (e * tpe - 1) // config.seq_length != sample_idx.shape[0] - 1:
            raise IntegrityError(
                f"{paths['sample_idx'].name}: {sample_idx.shape[0] - 1} samples, but {e} epochs of "
                f"{tpe} tokens give {(e * tpe - 1) // config.seq_length}; maps belong to another dataset."
            )
    epoch = load_npy(paths["doc_epoch"], fix) if paths["doc_epoch"].exists() else None
    if epoch is not None and epoch.shape != doc_idx.shape:
        epoch = None
    if config.train_samples > shuffle_idx.shape[0]:
        raise IntegrityError(
            f"maps hold {shuffle_idx.shape[0]} samples, fewer than train_iters x global_batch = "
            f"{config.train_samples}; rebuild them with `{fix}`."
        )
    return OrderMaps(str(prefix), config, doc_idx, sample_idx, shuffle_idx, epoch, manifest, paths)


# ----------------------------------------------------------------------------------------------
# structural checks (`pile verify`)


def _load_map(path: Path) -> tuple[np.ndarray | None, list[str]]:
    try:
        arr = np.load(Path(path), mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        return None, [f"{path}: file not found"]
    except (ValueError, OSError) as e:
        return None, [f"{path}: not a readable .npy array ({e})"]
    return arr, []


def check_doc_idx(path: Path) -> list[str]:
    arr, problems = _load_map(path)
    if arr is None:
        return problems
    if arr.ndim != 1:
        return [f"{path}: doc_idx must be 1-D, got shape {arr.shape}"]
    if arr.dtype != np.int32:
        problems.append(f"{path}: doc_idx dtype is {arr.dtype}, gpt-neox writes int32")
    if arr.size == 0:
        return problems + [f"{path}: doc_idx is empty"]
    # sorted copy (4 bytes per entry): must be 0,0,...,1,1,...: every item `epochs` times
    srt = np.sort(np.asarray(arr))
    lo, hi = int(srt[0]), int(srt[-1])
    if lo < 0:
        return problems + [f"{path}: doc_idx has negative item index {lo}"]
    n_items = hi + 1
    epochs = arr.size // n_items
    bad_at = None
    if epochs * n_items != arr.size:
        bad_at = -1
    else:
        for s in range(0, arr.size, CHECK_CHUNK):
            c = srt[s : s + CHECK_CHUNK]
            want = np.arange(s, s + c.size, dtype=np.int64) // epochs
            diff = np.flatnonzero(c != want)
            if diff.size:
                bad_at = s + int(diff[0])
                break
    if bad_at is not None:
        counts = np.bincount(srt, minlength=n_items)
        first = int(counts[0])
        bad = np.flatnonzero(counts != first)
        ex = ", ".join(f"item {int(i)} x{int(counts[i])}" for i in bad[:MAX_REPORTED])
        problems.append(
            f"{path}: doc_idx must hold every item index 0..{hi} the same number of times "
            f"(item 0 appears {first} times) but {bad.size} items differ: {ex}"
        )
    return problems


def check_sample_idx(path: Path) -> list[str]:
    arr, problems = _load_map(path)
    if arr is None:
        return problems
    if arr.ndim != 2 or arr.shape[1] != 2:
        return [f"{path}: sample_idx must have shape (num_samples + 1, 2), got {arr.shape}"]
    if arr.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        problems.append(f"{path}: sample_idx dtype is {arr.dtype}, expected int32 or int64")
    if arr.shape[0] < 2:
        return problems + [f"{path}: sample_idx has {arr.shape[0]} rows; at least 2 are needed"]
    if int(arr[0, 0]) != 0 or int(arr[0, 1]) != 0:
        problems.append(f"{path}: sample_idx[0] is {arr[0].tolist()}, must be [0, 0]")
    n = arr.shape[0]
    for s in range(0, n, CHECK_CHUNK):
        c = np.asarray(arr[s : min(n, s + CHECK_CHUNK + 1)], dtype=np.int64)  # one row of overlap
        d, o = c[:, 0], c[:, 1]
        if (d < 0).any() or (o < 0).any():
            r = s + int(np.flatnonzero((d < 0) | (o < 0))[0])
            problems.append(f"{path}: sample_idx row {r} has a negative value {arr[r].tolist()}")
            break
        dd = np.diff(d)
        back = np.flatnonzero(dd < 0)
        if back.size:
            r = s + int(back[0]) + 1
            problems.append(
                f"{path}: sample_idx is not monotone: row {r} doc index {int(arr[r, 0])} < "
                f"row {r - 1} doc index {int(arr[r - 1, 0])}"
            )
            break
        same = dd == 0
        stuck = np.flatnonzero(same & (np.diff(o) <= 0))
        if stuck.size:
            r = s + int(stuck[0]) + 1
            problems.append(
                f"{path}: sample_idx is not monotone: row {r} {arr[r].tolist()} does not advance "
                f"past row {r - 1} {arr[r - 1].tolist()} in the same document"
            )
            break
    return problems


def check_shuffle_idx(path: Path) -> list[str]:
    arr, problems = _load_map(path)
    if arr is None:
        return problems
    if arr.ndim != 1:
        return [f"{path}: shuffle_idx must be 1-D, got shape {arr.shape}"]
    if arr.dtype not in (np.dtype(np.uint32), np.dtype(np.int64)):
        problems.append(f"{path}: shuffle_idx dtype is {arr.dtype}, gpt-neox writes uint32/int64")
    n = arr.size
    # a permutation of arange(n) sorts to arange(n) (sorted copy: one array's worth of memory)
    srt = np.sort(np.asarray(arr))
    if n and (int(srt[0]) < 0 or int(srt[-1]) >= n):
        v = int(srt[0]) if int(srt[0]) < 0 else int(srt[-1])
        i = int(np.flatnonzero(np.asarray(arr) == v)[0])
        return problems + [
            f"{path}: shuffle_idx[{i}] = {v} is outside 0..{n - 1}; not a permutation"
        ]
    for s in range(0, n, CHECK_CHUNK):
        c = srt[s : s + CHECK_CHUNK]
        if (c != np.arange(s, s + c.size, dtype=c.dtype)).any():
            break
    else:
        return problems
    dup = int((srt[1:] == srt[:-1]).sum())
    first_dup = int(srt[1:][srt[1:] == srt[:-1]][0])
    missing = dup  # all values are in range: each repeat displaces one value
    zeros = int(np.searchsorted(srt, 1) - np.searchsorted(srt, 0))
    problems.append(
        f"{path}: shuffle_idx is not a permutation of arange({n}): {dup} repeated values "
        f"(first {first_dup}), {missing} values missing, {100.0 * zeros / n:.1f}% zeros"
    )
    return problems


def check_against_sizes(
    doc_idx: np.ndarray, sample_idx: np.ndarray, sizes: np.ndarray, seq_length: int
) -> list[str]:
    """Deep check: sample j spans exactly seq_length + 1 tokens of the doc_idx-ordered stream."""
    problems: list[str] = []
    sizes = np.asarray(sizes, dtype=np.int64)
    n_docs = len(doc_idx)
    for s in range(0, sample_idx.shape[0], CHECK_CHUNK):
        c = np.asarray(sample_idx[s : s + CHECK_CHUNK], dtype=np.int64)
        d, o = c[:, 0], c[:, 1]
        if (d >= n_docs).any():
            r = s + int(np.flatnonzero(d >= n_docs)[0])
            return [f"sample_idx row {r} doc index {int(d[r - s])} >= len(doc_idx) {n_docs}"]
        dsz = sizes[np.asarray(doc_idx[d], dtype=np.int64)]
        # an offset may equal the size only when a sample ends exactly at a document end
        bad = np.flatnonzero(o > dsz)
        if bad.size:
            r = s + int(bad[0])
            return [
                f"sample_idx row {r} offset {int(o[bad[0]])} is beyond the end of its document "
                f"({int(dsz[bad[0]])} tokens)"
            ]
    # positions in the flat stream: start of doc_idx[k] + offset
    starts = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(sizes[np.asarray(doc_idx, dtype=np.int64)], out=starts[1:])
    pos = starts[np.asarray(sample_idx[:, 0], dtype=np.int64)] + np.asarray(
        sample_idx[:, 1], dtype=np.int64
    )
    expected = np.arange(pos.size, dtype=np.int64) * seq_length
    bad = np.flatnonzero(pos != expected)
    if bad.size:
        r = int(bad[0])
        problems.append(
            f"sample_idx row {r} points at flat token {int(pos[r])}, expected {int(expected[r])} "
            f"(= row x seq_length {seq_length}); samples do not tile the stream"
        )
    return problems


CHECKS: dict[str, Callable[[Path], list[str]]] = {
    "doc_idx": check_doc_idx,
    "sample_idx": check_sample_idx,
    "shuffle_idx": check_shuffle_idx,
}


def check(manifest_path: str | os.PathLike) -> list[str]:
    """Problems of the index-map set of `manifest_path` (empty if fine), each naming its file.

    The manifest readable and of kind "index-maps"; each of doc_idx, sample_idx, shuffle_idx
    listed, present and sound on its own (`CHECKS[role]`); and the three consistent with each
    other and with the manifest's counts: shuffle_idx one entry per sample_idx row but the last,
    sample_idx pointing inside doc_idx, doc_idx of the recorded length (items x epochs), a
    doc_epoch sidecar as long as doc_idx. Needs only the files (no dataset)."""
    path = Path(manifest_path)
    try:
        doc = read_manifest(path)
    except IntegrityError as e:
        return [str(e)]
    if doc.get("kind") != MANIFEST_KIND:
        return [f"{path}: kind {doc.get('kind')!r}, expected {MANIFEST_KIND!r}"]
    listed = {f.get("role"): path.parent / str(f["name"]) for f in doc.get("files", [])}
    problems = []
    for role in ROLES:
        if role not in listed:
            problems.append(f"{path}: lists no {role} file; the set is incomplete")
        else:
            problems += CHECKS[role](listed[role])
    if problems:
        return problems
    doc_idx, sample_idx, shuffle_idx = (
        np.load(listed[r], mmap_mode="r", allow_pickle=False) for r in ROLES
    )
    if shuffle_idx.shape[0] != sample_idx.shape[0] - 1:
        problems.append(
            f"{listed['shuffle_idx']}: {shuffle_idx.shape[0]} entries but "
            f"{listed['sample_idx'].name} has {sample_idx.shape[0] - 1} samples; the maps are from "
            "different builds"
        )
    last = int(sample_idx[-1, 0])
    if last >= doc_idx.shape[0]:
        problems.append(
            f"{listed['sample_idx']}: its last row points at doc_idx position {last}, but "
            f"{listed['doc_idx'].name} has {doc_idx.shape[0]} entries; the maps are from "
            "different builds"
        )
    want = (doc.get("counts") or {}).get("doc_idx_len")
    if isinstance(want, int) and doc_idx.shape[0] != want:
        problems.append(
            f"{listed['doc_idx']}: {doc_idx.shape[0]} entries, but {path.name} records {want}"
        )
    epoch = Path(str(path)[: -len(MANIFEST_SUFFIX)] + "_doc_epoch.npy")
    if epoch.name in {str(f["name"]) for f in doc.get("files", [])}:
        arr, msgs = _load_map(epoch)
        if arr is None:
            problems += msgs
        elif arr.shape != doc_idx.shape:
            problems.append(
                f"{epoch}: shape {arr.shape}, but doc_idx has shape {doc_idx.shape}; rebuild the maps"
            )
    return problems


HashOf = Callable[[Path], str]  # sha256 of a file; verify passes one that reuses hashes it has


def check_maps_dataset(
    manifest_path: Path, doc: dict, sha256_of: HashOf, quick: bool = False
) -> tuple[list[tuple[str, str]], list[str]]:
    """(problems as (path, message), warnings) of index maps whose dataset `.idx` changed.

    The index-map manifest records the `.idx` identity (bytes, head/tail hash, sha256) of the
    dataset next to `dataset.prefix`; `load_order` refuses maps whose dataset differs, so verify
    must not call them OK. `quick` compares bytes and the head/tail hash only (no full hash).
    """
    ds = doc.get("dataset")
    if not isinstance(ds, dict) or not isinstance(ds.get("prefix"), str):
        return [], []
    prefix = Path(os.path.normpath(manifest_path.parent / ds["prefix"]))
    idx = Path(str(prefix) + ".idx")
    if not idx.is_file():
        return [], [
            f"{manifest_path}: its dataset {idx} is not there, so the index maps were not checked "
            "against it"
        ]
    keys = ["idx_bytes"] + (["idx_quick_sha256"] if quick else ["idx_sha256"])
    found = {"idx_bytes": idx.stat().st_size}
    if found["idx_bytes"] == ds.get("idx_bytes"):
        if quick:
            found.update(dataset_identity(prefix, full=False))
        else:
            found["idx_sha256"] = sha256_of(idx)
    for k in keys:
        if k in ds and k in found and ds[k] != found[k]:
            return [
                (
                    str(manifest_path),
                    f"index maps were built from a different dataset: {idx} {k} is {found[k]}, "
                    f"the maps record {ds[k]}; rebuild them with "
                    f"`{rebuild_command(prefix, manifest_path.parent, doc.get('config', {}))}`",
                )
            ], []
    return [], []
