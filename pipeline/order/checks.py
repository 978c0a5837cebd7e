"""Structural checks of gpt-neox index maps, used by `pile verify` (one function per manifest role).

`CHECKS[role](path) -> list[str]`: the problems found in the `.npy` file at `path` (empty if fine).
They need only the file itself (no dataset, no config), read memory-mapped; doc_idx and shuffle_idx
are checked on one sorted copy (Pythia scale: 1.7 GB and 0.8 GB), sample_idx in chunks:

- "doc_idx":     1-D int32, values >= 0, every item index 0..n-1 appears the same number of times
                 (= the number of epochs), so len(doc_idx) = epochs * n (checked on a sorted copy).
- "sample_idx":  shape (k, 2), int32 or int64; row 0 is (0, 0); the doc_idx index column is
                 non-decreasing; offsets are >= 0; within one document offsets strictly increase.
- "shuffle_idx": 1-D uint32 or int64, a permutation of arange(len), i.e. it sorts to arange(len)
                 (Pythia users once found a published shuffle_idx that was 92% zeros).

`check_against_sizes(doc_idx, sample_idx, sizes, seq_length)` is the deeper check when the item
sizes and seq_length are known (offsets within the document, every sample seq_length + 1 tokens).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

CHUNK = 1 << 24  # elements per chunk (16M): bounded memory at any scale
MAX_REPORTED = 5


def _load(path: Path) -> tuple[np.ndarray | None, list[str]]:
    try:
        arr = np.load(Path(path), mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        return None, [f"{path}: file not found"]
    except (ValueError, OSError) as e:
        return None, [f"{path}: not a readable .npy array ({e})"]
    return arr, []


def check_doc_idx(path: Path) -> list[str]:
    arr, problems = _load(path)
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
        for s in range(0, arr.size, CHUNK):
            c = srt[s : s + CHUNK]
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
    arr, problems = _load(path)
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
    for s in range(0, n, CHUNK):
        c = np.asarray(arr[s : min(n, s + CHUNK + 1)], dtype=np.int64)  # one row of overlap
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
    arr, problems = _load(path)
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
    for s in range(0, n, CHUNK):
        c = srt[s : s + CHUNK]
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
    for s in range(0, sample_idx.shape[0], CHUNK):
        c = np.asarray(sample_idx[s : s + CHUNK], dtype=np.int64)
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


# ----------------------------------------------------------------------------------------------
# cross-checks of a manifest with the dataset it was built from (`MANIFEST_CHECKS[kind]`)

HashOf = Callable[[Path], str]  # sha256 of a file; verify passes one that reuses hashes it has


def _order_config(cfg: dict):
    """The OrderConfig a manifest records, or None when its config is not a valid one."""
    from pipeline.errors import ConfigError
    from pipeline.order.indexmap import ORDER_FIELDS, OrderConfig

    try:
        return OrderConfig(**{k: cfg[k] for k in ORDER_FIELDS})
    except (KeyError, TypeError, ConfigError):
        return None


def _rebuild_maps(prefix: Path, maps_dir: Path, cfg: dict) -> str:
    """The `pile order` command that rebuilds the maps of `cfg` for `prefix` in `maps_dir`."""
    from pipeline.order.indexmap import order_command

    config = _order_config(cfg)
    if config is None:
        return f"pile order {prefix} with the settings it was built with"
    out_dir = maps_dir if maps_dir.resolve() != prefix.parent.resolve() else None
    return order_command(prefix, config, out_dir)


def check_maps_dataset(
    manifest_path: Path, doc: dict, sha256_of: HashOf, quick: bool = False
) -> tuple[list[tuple[str, str]], list[str]]:
    """(problems as (path, message), warnings) of index maps whose dataset `.idx` changed.

    The index-map manifest records the `.idx` identity (bytes, head/tail hash, sha256) of the
    dataset next to `dataset.prefix`; `load_order` refuses maps whose dataset differs, so verify
    must not call them OK. `quick` compares bytes and the head/tail hash only (no full hash).
    """
    from pipeline.order.indexmap import dataset_identity

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
                    f"`{_rebuild_maps(prefix, manifest_path.parent, doc.get('config', {}))}`",
                )
            ], []
    return [], []


def _maps_of(prefix: Path, maps_dir: Path, cfg: dict) -> list[tuple[Path, dict]]:
    """Index-map manifests in `maps_dir` built for `prefix` with the order settings `cfg`."""
    from pipeline.errors import IntegrityError
    from pipeline.manifest import read_manifest
    from pipeline.order.indexmap import MANIFEST_KIND, ORDER_FIELDS

    out = []
    for m in sorted(maps_dir.glob(f"{prefix.name}_*indexmap_*.manifest.json")):
        try:
            doc = read_manifest(m)
        except (IntegrityError, OSError, ValueError):
            continue
        ds = doc.get("dataset") or {}
        if doc.get("kind") != MANIFEST_KIND or not isinstance(ds.get("prefix"), str):
            continue
        if (m.parent / ds["prefix"]).resolve() != prefix.resolve():
            continue
        mc = doc.get("config") or {}
        if all(mc.get(k) == cfg.get(k) for k in ORDER_FIELDS):
            out.append((m, doc))
    return out


def _preshuffle_command(prefix: Path, maps_dir: Path, out_dir: Path, cfg: dict) -> str:
    """The `pile preshuffle` command that rewrites `out_dir` with the settings `cfg` records."""
    from pipeline.order.preshuffle import PYTHIA_SHARD_SIZE

    args = [_rebuild_maps(prefix, prefix.parent, cfg).replace("pile order", "pile preshuffle", 1)]
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


def check_preshuffled_source(
    manifest_path: Path, doc: dict, sha256_of: HashOf, quick: bool = False
) -> tuple[list[tuple[str, str]], list[str]]:
    """Preshuffled data whose recorded order differs from the index maps (or dataset) it names.

    `source.order_fingerprint` is the index-map manifest's config_fingerprint at preshuffle time
    (config + the dataset `.idx` sha256); maps rebuilt since, or a re-tokenized dataset, change
    it, and then the preshuffled samples are not those the maps (or the dataset) give.
    """
    from pipeline.config import combine_fingerprints

    src = doc.get("source")
    cfg = doc.get("config") or {}
    if not isinstance(src, dict) or not isinstance(src.get("prefix"), str):
        return [], []
    recorded = src.get("order_fingerprint")
    prefix = Path(os.path.normpath(manifest_path.parent / src["prefix"]))
    maps_dir = (
        Path(os.path.normpath(manifest_path.parent / src["maps_dir"]))
        if isinstance(src.get("maps_dir"), str)
        else prefix.parent
    )
    fix = f"then re-run `{_preshuffle_command(prefix, maps_dir, manifest_path.parent, cfg)}`"
    for m, mdoc in _maps_of(prefix, maps_dir, cfg):
        if "idx_sha256" not in (mdoc.get("dataset") or {}):
            continue  # preshuffle then records the bare config fingerprint: nothing to compare
        if mdoc.get("config_fingerprint") != recorded:
            return [
                (
                    str(manifest_path),
                    f"preshuffled from another order than the index maps {m} (order fingerprint "
                    f"{recorded}, the maps have {mdoc.get('config_fingerprint')}); {fix}",
                )
            ], []
    config = _order_config(cfg)
    idx = Path(str(prefix) + ".idx")
    if quick or config is None or not idx.is_file() or not recorded:
        return [], []
    current = combine_fingerprints(config.fingerprint(), sha256_of(idx))
    if current != recorded and recorded != config.fingerprint():
        return [
            (
                str(manifest_path),
                f"preshuffled from a different dataset: {idx} changed since (order fingerprint "
                f"now {current}, recorded {recorded}); rebuild the index maps with "
                f"`{_rebuild_maps(prefix, maps_dir, cfg)}`, {fix}",
            )
        ], []
    return [], []


MANIFEST_CHECKS: dict[
    str, Callable[[Path, dict, HashOf, bool], tuple[list[tuple[str, str]], list[str]]]
] = {
    "index-maps": check_maps_dataset,
    "preshuffled": check_preshuffled_source,
}
