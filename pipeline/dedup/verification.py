"""Step 3 of the dedup stage: which candidate pairs are near-duplicates.

Candidate pairs are screened on the full signatures (estimate >= DedupConfig.screen_cut). With
`verify="exact"` (the default), a second pass (one task per input file) re-reads the files and
writes the sorted unique shingle hashes of the documents in the surviving pairs to
`exact/<i>.hashes.npy` + `.offsets.npy` + `.ids.npy`; a pair is kept only when the exact Jaccard
of the two sets is >= threshold.

The exact Jaccard of pairs runs on the executor, never in the driver (`exact_jaccard_tasks`): the
pairs, in their (src, dst) order, are cut into contiguous runs, one task per run (at least
`DedupConfig.partitions` runs when there are enough pairs, at most MAX_PAIRS_PER_TASK pairs each);
each task memory-maps only the shingle files of the input files its pairs touch and returns one
float64 per pair, in the pairs' order, so the driver concatenates the runs in task order and the
result is the same for any worker count or engine. The driver holds the pair arrays and one
float64 per pair (24 bytes per pair), never a shingle set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from pipeline import docid
from pipeline.dedup.config import DedupConfig
from pipeline.dedup.edges import SignatureStore, remove_tree, signature_agreement, verify_edges
from pipeline.dedup.shingle import shingle_hashes
from pipeline.dedup.signatures import npy_header
from pipeline.dedup.signing import MAX_BATCH_DOCS
from pipeline.engine.base import Executor
from pipeline.errors import InputError, IntegrityError
from pipeline.io import atomic_open
from pipeline.read import InputFile, ReadConfig, iter_file
from pipeline.read.lines import iter_lines

TOL = 1e-12  # the cuts are inclusive; a float ratio exactly at the cut passes
ShingleSets = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
MIN_PAIRS_PER_TASK = 2_000  # fewer pairs are not worth a task's start-up
MAX_PAIRS_PER_TASK = 50_000  # bounds a task's result and its share of the shingle files


@dataclass(frozen=True)
class ExactSets:
    """Where the shingle sets of the candidate documents are (`exact/` of `out_dir`): a handle
    small enough to ship to every task; the sets themselves are only opened inside tasks."""

    out_dir: str
    file_indices: tuple[int, ...]
    partitions: int = 1


@dataclass
class Verified:
    """The pairs that passed, where the shingle sets read for them are (verify="exact"), stats.json's
    "verification" record and the steps' wall-clock seconds."""

    src: np.ndarray
    dst: np.ndarray
    sets: ExactSets | None
    info: dict[str, Any]
    timings: dict[str, float]


def verify_pairs(
    src: np.ndarray,
    dst: np.ndarray,
    out: Path,
    files: Sequence[InputFile],
    config: DedupConfig,
    read_config: ReadConfig,
    store: SignatureStore,
    executor: Executor,
) -> Verified:
    """Screen the candidate pairs (src, dst) on their signatures, then (verify="exact") on the
    exact Jaccard of their shingle sets."""
    criterion = config.criterion()
    timings: dict[str, float] = {}
    candidates = int(len(src))
    t0 = time.perf_counter()
    verification: dict[str, Any] = {"enabled": config.verify_candidates}
    if config.verify_candidates and len(src):
        src, dst, _ = verify_edges(src, dst, store, config.screen_cut)
        verification.update(
            cut=round(config.screen_cut, 6),
            candidate_pairs=candidates,
            kept_pairs=int(len(src)),
            dropped_pairs=candidates - int(len(src)),
        )
    verification["mode"] = criterion["check"]
    verification["cluster_rule"] = config.cluster_rule
    timings["verify"] = time.perf_counter() - t0
    sets = None
    if config.verify == "exact" and len(src):
        t0 = time.perf_counter()
        sets, n_read = exact_sets(
            out, files, np.unique(np.concatenate([src, dst])), config, read_config, executor
        )
        keep = exact_jaccard_tasks(src, dst, sets, executor) >= config.threshold - TOL
        verification.update(
            exact_documents=n_read,
            exact_checked_pairs=int(len(src)),
            exact_kept_pairs=int(keep.sum()),
            exact_dropped_pairs=int(len(src) - keep.sum()),
        )
        src, dst = src[keep], dst[keep]
        verification["kept_pairs"] = int(len(src))
        verification["dropped_pairs"] = candidates - int(len(src))
        timings["verify_exact"] = time.perf_counter() - t0
    return Verified(src, dst, sets, verification, timings)


def similarity_check(
    config: DedupConfig, store: SignatureStore, sets: ExactSets | None, executor: Executor
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The pair test of the "center" cluster rule: the exact Jaccard (on the executor) when the
    sets were read, else the signatures' agreement, against the cut a joined pair had to meet."""
    if sets is not None:
        return lambda x, c: exact_jaccard_tasks(x, c, sets, executor) >= config.threshold - TOL
    return lambda x, c: signature_agreement(x, c, store) >= config.verify_cut - TOL


@dataclass(frozen=True)
class ShingleTask:
    file: InputFile
    out_dir: str
    doc_ids: np.ndarray  # sorted candidate doc ids of this file
    config: DedupConfig
    read_config: ReadConfig


def exact_paths(out_dir: Path, file_index: int) -> tuple[Path, Path]:
    base = Path(out_dir) / "exact"
    return base / f"{file_index:06d}.hashes.npy", base / f"{file_index:06d}.offsets.npy"


def exact_ids_path(out_dir: Path, file_index: int) -> Path:
    return Path(out_dir) / "exact" / f"{file_index:06d}.ids.npy"


def candidate_docs(
    f: InputFile, wanted: list[int], read_config: ReadConfig
) -> Iterator[tuple[int, str]]:
    """(doc_id, text) of the file's documents, at least the `wanted` ones, in order. A jsonl
    input's other lines are skipped undecoded and only the wanted lines are parsed, exactly as
    the reader's fast path does (orjson, a string under text_key); from a wanted line that
    needs more (a damaged stream, invalid JSON, a list of strings, ...) on, the reader itself
    takes over, so the text is always the reader's."""
    last = -1
    if f.kind in ("jsonl", "jsonl.zst", "jsonl.gz") and wanted:
        lines = [docid.row(d) + 1 for d in wanted]
        key = read_config.text_key
        k = 0
        try:
            for line_no, _, raw in iter_lines(f.path, f.kind, read_config.max_line_bytes):
                if line_no < lines[k]:
                    continue
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    break
                text = obj.get(key) if type(obj) is dict else None
                if type(text) is not str or not text or line_no != lines[k]:
                    break
                yield wanted[k], text
                last = wanted[k]
                k += 1
                if k == len(wanted):
                    return
        except InputError:
            pass  # a damaged stream: the reader applies the error policy below
    for doc in iter_file(f, read_config):
        if doc.doc_id > last:
            yield doc.doc_id, doc.text


def shingle_task(task: ShingleTask) -> dict[str, Any]:
    """Sorted unique shingle hashes of the file's candidate documents, back to back (uint64
    [total, 1]); offsets[i] is where doc_ids[i]'s set starts (len(doc_ids) + 1 entries)."""
    t0 = time.perf_counter()
    cfg = task.config
    want = task.doc_ids
    hashes_path, offsets_path = exact_paths(Path(task.out_dir), task.file.index)
    offsets = np.zeros(len(want) + 1, dtype=np.int64)
    found = 0
    texts: list[str] = []
    batch_chars = 0
    with atomic_open(hashes_path, "wb") as fh:
        fh.write(npy_header(0, 1, "<u8"))  # rewritten with the final length below
        total = 0

        def flush() -> None:
            nonlocal texts, batch_chars, total
            if not texts:
                return
            h, n_sh = shingle_hashes(texts, cfg.ngram)
            starts = np.concatenate([[0], np.cumsum(n_sh)])
            for k in range(len(texts)):
                u = np.unique(h[starts[k] : starts[k + 1]]).astype("<u8")
                fh.write(u.tobytes())
                total += len(u)
                offsets[found - len(texts) + k + 1] = total
            texts, batch_chars = [], 0

        wanted = want.tolist()
        if wanted:
            for doc_id, text in candidate_docs(task.file, wanted, task.read_config):
                if found >= len(wanted):
                    break
                if doc_id < wanted[found]:
                    continue
                if doc_id != wanted[found]:
                    break  # a candidate the reader no longer yields: reported below
                texts.append(text)
                found += 1
                batch_chars += len(text)
                if batch_chars >= cfg.batch_chars or len(texts) >= MAX_BATCH_DOCS:
                    flush()
            flush()
        if found != len(want):
            missing = int(want[found])
            raise IntegrityError(
                f"{task.file.where} line {docid.row(missing) + 1}: candidate document "
                f"{missing} was not found on the second read; the input changed during "
                "`pile dedup`. Rerun it on unchanged inputs."
            )
        fh.seek(0)
        fh.write(npy_header(total, 1, "<u8"))  # shape (total, 1): the header has a fixed size
        fh.seek(0, 2)
    with atomic_open(offsets_path, "wb") as fo:
        np.save(fo, offsets, allow_pickle=False)
    # written last: its presence says the file's sets are complete (each file is atomic)
    with atomic_open(exact_ids_path(Path(task.out_dir), task.file.index), "wb") as fi:
        np.save(fi, np.asarray(want, dtype=np.int64), allow_pickle=False)
    return {"documents": found, "shingles": int(offsets[-1]), "seconds": time.perf_counter() - t0}


def exact_jaccard(src: np.ndarray, dst: np.ndarray, sets: ShingleSets) -> np.ndarray:
    """Exact Jaccard of each pair's shingle-hash sets; `sets[file_index]` = (sorted doc ids,
    offsets, hashes) as written by the shingle tasks (runs inside a task, see
    `exact_jaccard_tasks`)."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    # where each endpoint's set starts and ends, looked up once per file (vectorised)
    spans = []
    for ends in (src, dst):
        lo = np.zeros(len(ends), dtype=np.int64)
        hi = np.zeros(len(ends), dtype=np.int64)
        fi = docid.file_index(ends)
        for f in np.unique(fi).tolist():
            ids, offsets, _ = sets[f]
            sel = np.flatnonzero(fi == f)
            pos = np.searchsorted(ids, ends[sel])
            lo[sel] = offsets[pos]
            hi[sel] = offsets[pos + 1]
        spans.append((fi.tolist(), lo.tolist(), hi.tolist()))
    (fa, la, ha), (fb, lb, hb) = spans
    hashes = {f: h for f, (_, _, h) in sets.items()}
    out = np.empty(len(src), dtype=np.float64)
    for k in range(len(src)):
        a = hashes[fa[k]][la[k] : ha[k]]
        b = hashes[fb[k]][lb[k] : hb[k]]
        if len(a) > len(b):
            a, b = b, a
        if not len(a):
            out[k] = 0.0
            continue
        pos = np.minimum(np.searchsorted(b, a), len(b) - 1)
        inter = int(np.count_nonzero(b[pos] == a))
        out[k] = inter / (len(a) + len(b) - inter)
    return out


@dataclass(frozen=True)
class JaccardTask:
    sets: ExactSets
    src: np.ndarray
    dst: np.ndarray


def _open_sets(sets: ExactSets, file_indices: Iterable[int]) -> ShingleSets:
    """Memory-map the shingle sets of `file_indices` (plain ndarray views: slicing a np.memmap
    costs a Python-level __array_finalize__ per slice)."""
    out: ShingleSets = {}
    for f in file_indices:
        h, o = exact_paths(Path(sets.out_dir), f)
        ids = exact_ids_path(Path(sets.out_dir), f)
        out[f] = (
            np.load(ids, mmap_mode="r", allow_pickle=False).view(np.ndarray),
            np.load(o, mmap_mode="r", allow_pickle=False).view(np.ndarray),
            np.load(h, mmap_mode="r", allow_pickle=False)[:, 0].view(np.ndarray),
        )
    return out


def jaccard_task(task: JaccardTask) -> np.ndarray:
    """The exact Jaccard of the task's pairs, in their order."""
    files = np.unique(np.concatenate([docid.file_index(task.src), docid.file_index(task.dst)]))
    return exact_jaccard(task.src, task.dst, _open_sets(task.sets, files.tolist()))


def pair_runs(n: int, partitions: int) -> list[tuple[int, int]]:
    """[start, stop) of the contiguous runs the n pairs are cut into: a function of n and the
    partition count only, never of the worker count."""
    if n == 0:
        return []
    tasks = max(min(partitions, -(-n // MIN_PAIRS_PER_TASK)), -(-n // MAX_PAIRS_PER_TASK), 1)
    cuts = [n * k // tasks for k in range(tasks + 1)]
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def exact_jaccard_tasks(
    src: np.ndarray, dst: np.ndarray, sets: ExactSets, executor: Executor
) -> np.ndarray:
    """Exact Jaccard of the pairs (src[k], dst[k]) computed by executor tasks (`pair_runs`),
    concatenated in the pairs' order."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    runs = pair_runs(len(src), sets.partitions)
    if not runs:
        return np.empty(0, dtype=np.float64)
    tasks = [JaccardTask(sets, src[a:b].copy(), dst[a:b].copy()) for a, b in runs]
    return np.concatenate(executor.map(jaccard_task, tasks))


def exact_sets(
    out: Path,
    files: Sequence[InputFile],
    docs: np.ndarray,
    config: DedupConfig,
    read_config: ReadConfig,
    executor: Executor,
) -> tuple[ExactSets, int]:
    """Write the shingle-hash sets of the sorted candidate documents `docs` (second read, one
    task per file) to `out/exact/`; (their handle for `exact_jaccard_tasks`, the number of
    documents read)."""
    fi = docid.file_index(docs)
    remove_tree(out / "exact")
    (out / "exact").mkdir(parents=True)
    tasks = [ShingleTask(f, str(out), docs[fi == f.index], config, read_config) for f in files]
    tasks = [t for t in tasks if len(t.doc_ids)]
    results = executor.map(shingle_task, tasks)
    handle = ExactSets(str(out), tuple(t.file.index for t in tasks), config.partitions)
    return handle, sum(r["documents"] for r in results)
