"""Exclusion sets: the doc ids a token dataset leaves out (a dedup run's removed documents),
loaded from a `pile dedup` directory or a `.npy`, normalised, fingerprinted, and checked against
the inputs they were computed over (doc ids are positions in the input list)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, InputError, IntegrityError
from pipeline.read import InputFile
from pipeline.read.remote import input_stat, is_url


def load_exclude(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """(sorted unique int64 doc ids, fingerprint) from a dedup output directory or a `.npy`.

    A directory is read with `pipeline.dedup.load_removed_ids(dir)`; its fingerprint is the dedup
    manifest's config fingerprint when one is found, else the sha256 of the ids. A `.npy` holds a
    1-D integer array of doc ids; its fingerprint is the sha256 of the sorted int64 ids.
    """
    p = Path(path)
    if p.is_dir():
        from pipeline.dedup import load_removed_ids  # lazy: the dedup stage's imports are heavy

        ids = normalize_ids(load_removed_ids(p), str(p))
        fp = None
        for m in sorted(p.glob("*manifest.json")):
            try:
                from pipeline.manifest import read_manifest

                fp = read_manifest(m).get("config_fingerprint")
            except IntegrityError:
                fp = None
            if fp:
                break
        return ids, fp or ids_fingerprint(ids)
    if not p.exists():
        raise ConfigError(
            f"--exclude {p}: no such file or directory; pass a dedup output "
            "directory or a .npy of int64 doc ids."
        )
    if p.suffix != ".npy":
        raise ConfigError(
            f"--exclude {p}: unsupported file type {p.suffix or '(none)'!r}; allowed: a dedup "
            "output directory or a .npy of int64 doc ids."
        )
    try:
        raw = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise InputError(f"--exclude {p}: not a readable .npy array ({e}).") from e
    ids = normalize_ids(raw, str(p))
    return ids, ids_fingerprint(ids)


def dedup_inputs_of(path: str | os.PathLike) -> tuple[list[str], list[int | None] | None] | None:
    """(input names, their sizes in bytes or None) a dedup output directory was computed over;
    None for a `.npy` of ids, which carries no input list."""
    p = Path(path)
    if not p.is_dir():
        return None
    from pipeline.manifest import read_manifest

    m = read_manifest(p / "manifest.json")
    inputs = m.get("inputs")
    if not isinstance(inputs, list):
        return None
    sizes = m.get("input_bytes")
    return list(inputs), (list(sizes) if isinstance(sizes, list) else None)


def check_exclude_inputs(
    where: str,
    dedup_inputs: Sequence[str],
    files: Sequence[InputFile],
    dedup_bytes: Sequence[int | None] | None = None,
) -> None:
    """Doc ids are positions (file index << 40 | line): an exclusion set only means something for
    the very input list it was computed over, in the same order, with the same files (a file
    rewritten under the same name is caught by its size, when the dedup run recorded sizes)."""
    ours = [f.label for f in files]
    if list(dedup_inputs) != ours:
        i = next(
            (k for k, (a, b) in enumerate(zip(dedup_inputs, ours)) if a != b),
            min(len(dedup_inputs), len(ours)),
        )
        theirs_i = dedup_inputs[i] if i < len(dedup_inputs) else "(none)"
        ours_i = ours[i] if i < len(ours) else "(none)"
        raise ConfigError(
            f"--exclude {where}: the dedup set was computed over {len(dedup_inputs)} input "
            f"file(s) but these are {len(ours)}; they first differ at position {i}: {theirs_i!r} "
            f"there, {ours_i!r} here. Document ids are positions in the input list, so the set "
            "would remove the wrong documents: pass the same inputs in the same order as to "
            "`pile dedup`, or rerun dedup on these inputs."
        )
    if dedup_bytes is None or len(dedup_bytes) != len(files):
        return
    for f, want in zip(files, dedup_bytes):
        if want is None or not (is_url(f.path) or os.path.isfile(f.path)):
            continue
        have = input_stat(f.path).st_size
        if have != want:
            raise ConfigError(
                f"--exclude {where}: input {f.where} is {have} bytes but was {want} bytes when "
                "the dedup set was computed: the file changed, so its line numbers (and the "
                "document ids) no longer match. Rerun `pile dedup` on the current inputs."
            )


def normalize_ids(ids: Any, where: str = "exclude ids") -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise InputError(
            f"{where}: expected a 1-D integer array of doc ids, got dtype {arr.dtype} shape "
            f"{arr.shape}."
        )
    arr = arr.astype(np.int64, copy=False)
    if arr.size and int(arr.min()) < 0:
        raise InputError(f"{where}: doc ids must be >= 0, found {int(arr.min())}.")
    if arr.size > 1 and not bool(np.all(arr[1:] > arr[:-1])):
        arr = np.unique(arr)
    return arr


def ids_fingerprint(ids: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(ids, dtype="<i8").tobytes()).hexdigest()
