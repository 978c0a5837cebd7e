"""The dedup stage: (inputs, DedupConfig) -> OUT/{signatures/, removed.parquet, clusters.parquet,
stats.json, timings.json, manifest.json}.

Steps and their tasks (each task is a pure function of its arguments; results merged in task
order, so 1 or N workers give byte-identical files):
  1. signatures: the main process reads each input file with the reader (`iter_file`) and cuts it
     into batches of ~`batch_chars` characters; each batch is a task (shingle + hash + MinHash +
     band keys, pipeline.dedup.shingle / .minhash / .lsh) on the engine's process pool, at most
     2 x workers in flight, so a single large file keeps every worker busy. The main process
     writes the results in batch order: `signatures/<i>.npy|.parquet` and the LSH band records in
     `buckets/<p>/<i>.bin` (pipeline.dedup.edges): the same bytes for any worker count or
     batch size.
  2. edges: one task per hash partition p: star edges of every bucket -> `edges/<p>.npy`.
  3. verification (main process): candidate pairs screened on the full signatures (estimate >=
     DedupConfig.screen_cut). With `verify="exact"` (the default), a second pass (one task per
     input file) re-reads the files and writes the sorted unique shingle hashes of the documents
     in the surviving pairs to `exact/<i>.hashes.npy` + `.offsets.npy`; a pair is kept only when
     the exact Jaccard of the two sets is >= threshold. Memory: the candidates' shingles
     (memory-mapped).
  4. clusters (main process): vectorised union-find over the kept pairs, then the cluster rule
     (DedupConfig.cluster_rule): "center" keeps the smallest doc_id of each component and removes
     a member only when it passes the same check against that kept document, resolving the rest
     again among themselves (pipeline.dedup.components.split_by_center); "component" (and
     verify="none") removes every member but the smallest.
  5. tables: removed.parquet (doc_id, cluster_id, kept_id, pile_set_name, file, line,
     minhash_estimate, jaccard, rule: the evidence of each removal against the document kept in
     its place; jaccard is null unless verify="exact") sorted by doc_id; clusters.parquet
     (cluster_id, kept_id, size, pile_set_name, file, line of the kept document) sorted by
     cluster_id; the cluster id is the kept doc_id, a cluster is the kept document and the
     documents removed in its place.
  6. stats.json (deterministic: counts, duplicates per pile_set_name, cluster-size histogram, the
     S-curve and expected recall, verification counts, `criterion`: the rule a removed pair met,
     see DedupConfig.criterion), timings.json (wall-clock seconds per step;
     kept out of stats.json so every listed output is byte-identical across reruns), and
     manifest.json last (kind "dedup", config fingerprint, sha256 of every output).
The manifest also records `inputs` (labels) and `input_bytes` (on-disk size of each input, null
for datasets / hf: directories), so a consumer can tell an input rewritten under the same name.
Intermediate buckets/, edges/ and exact/ are deleted at the end unless `keep_intermediate`.

A document without shingles (only whitespace after normalisation) is never a candidate and is
never removed. Keep policy: the smallest global doc_id in each cluster, which depends only on the
ids, never on worker count or chunking.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import docid
from pipeline.config import combine_fingerprints
from pipeline.dedup.components import connected_components, split_by_center
from pipeline.dedup.config import DedupConfig
from pipeline.dedup.edges import (
    BucketWriter,
    SignatureStore,
    bucket_path,
    read_partition,
    remove_tree,
    signature_agreement,
    star_edges,
    unique_edges,
    verify_edges,
    write_edges,
)
from pipeline.dedup.lsh import band_keys, expected_recall, s_curve
from pipeline.dedup.minhash import minhash_signatures, permutation_params
from pipeline.dedup.shingle import shingle_hashes
from pipeline.dedup.signatures import (
    DocsTableWriter,
    SignatureArrayWriter,
    npy_header,
    table_fingerprint,
    write_table,
)
from pipeline.engine.base import Executor, InlineExecutor
from pipeline.errors import ConfigError, InputError, IntegrityError
from pipeline.io import atomic_open, atomic_write_text, fsync_dir, sha256_file
from pipeline.lock import holds_dir_locks, lock_dir
from pipeline.manifest import read_manifest, write_manifest
from pipeline.read import InputFile, ReadConfig, ReadStats, iter_file, resolve_inputs
from pipeline.read.lines import iter_lines
from pipeline.read.reader import quarantine_kept

log = logging.getLogger(__name__)

MANIFEST_KIND = "dedup"
MAX_BATCH_DOCS = 8192

REMOVED_SCHEMA = pa.schema(
    [
        ("doc_id", pa.int64()),
        ("cluster_id", pa.int64()),
        ("kept_id", pa.int64()),
        ("pile_set_name", pa.string()),
        ("file", pa.string()),
        ("line", pa.int64()),
        # evidence: the MinHash estimate and (verify="exact") the exact Jaccard with kept_id,
        # and the rule the document met (DedupConfig.rule())
        ("minhash_estimate", pa.float64()),
        ("jaccard", pa.float64()),
        ("rule", pa.string()),
    ]
)
CLUSTERS_SCHEMA = pa.schema(
    [
        ("cluster_id", pa.int64()),
        ("kept_id", pa.int64()),
        ("size", pa.int64()),
        ("pile_set_name", pa.string()),
        ("file", pa.string()),
        ("line", pa.int64()),
    ]
)


def signature_paths(out_dir: Path, file_index: int) -> tuple[Path, Path]:
    base = Path(out_dir) / "signatures"
    return base / f"{file_index:06d}.npy", base / f"{file_index:06d}.parquet"


# ----------------------------------------------------------------------------- step 1: signatures
# The main process reads each file and cuts it into batches of ~batch_chars characters; the batches
# (not the files) are the tasks, so a single large file keeps every worker busy. Results come back
# in batch order and the main process writes them, so the files are the same for any worker count
# or batch size (a signature depends only on its document).
@dataclass(frozen=True)
class _SigBatch:
    texts: list[str]
    ngram: int
    num_perm: int
    seed: int
    bands: int
    rows: int


_params_cache: dict[tuple[int, int], np.ndarray] = {}


def _signature_batch(task: _SigBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(signatures uint32 [n, K], shingle counts, band keys of the documents with shingles,
    seconds) of one batch of texts."""
    t0 = time.perf_counter()
    key = (task.num_perm, task.seed)
    a = _params_cache.get(key)
    if a is None:
        a = _params_cache[key] = permutation_params(task.num_perm, task.seed)
    h, n_sh = shingle_hashes(task.texts, task.ngram)
    sig = minhash_signatures(h, n_sh, a)
    keys = band_keys(sig[n_sh > 0], task.bands, task.rows)
    return sig, n_sh, keys, time.perf_counter() - t0


def _batches_of(f: InputFile, cfg: DedupConfig, read_config: ReadConfig, rstats, counts):
    """(texts, ids, lines, names) batches of one file, counting documents per pile_set_name."""
    texts: list[str] = []
    ids: list[int] = []
    lines: list[int] = []
    names: list[str] = []
    batch_chars = 0
    last = -1
    per = counts["per_set"]
    for doc in iter_file(f, read_config, rstats):
        if docid.file_index(doc.doc_id) != f.index or doc.doc_id <= last:
            raise IntegrityError(
                f"{f.where} line {doc.line}: document id {doc.doc_id} is not in "
                f"ascending order for input file index {f.index}; the reader must give "
                "ids file_index << 40 | line-1 in line order."
            )
        last = doc.doc_id
        texts.append(doc.text)
        ids.append(doc.doc_id)
        lines.append(doc.line)
        names.append(doc.pile_set_name)
        per[doc.pile_set_name] = per.get(doc.pile_set_name, 0) + 1
        batch_chars += len(doc.text)
        if batch_chars >= cfg.batch_chars or len(texts) >= MAX_BATCH_DOCS:
            yield texts, ids, lines, names
            texts, ids, lines, names, batch_chars = [], [], [], [], 0
    if texts:
        yield texts, ids, lines, names


class _FileSignatures:
    """Writers of one input file's signatures/<i>.npy|.parquet and bucket records; results are
    written in batch order as they come back from the pool."""

    def __init__(self, f: InputFile, out: Path, cfg: DedupConfig) -> None:
        self.file = f
        self.identity: dict[str, Any] | None = None
        npy_path, docs_path = signature_paths(out, f.index)
        self.rstats = ReadStats()
        self.counts: dict[str, Any] = {
            "documents": 0,
            "no_shingles": 0,
            "shingles": 0,
            "chars": 0,
            "per_set": {},
            "seconds": 0.0,
        }
        self._stack = ExitStack()
        self.docs = DocsTableWriter(docs_path, cfg.fingerprint())
        try:
            fsig = self._stack.enter_context(atomic_open(npy_path, "wb"))
            self.buckets = self._stack.enter_context(
                BucketWriter(out / "buckets", f.index, cfg.partitions)
            )
        except BaseException as e:
            self.abort(e)
            raise
        self.sigw = SignatureArrayWriter(fsig, cfg.num_perm)

    def write(self, meta, result) -> None:
        ids, lines, names, chars = meta
        sig, n_sh, keys, seconds = result
        doc_ids = np.asarray(ids, dtype=np.int64)
        self.sigw.add(docid.row(doc_ids), sig)
        has = n_sh > 0
        self.buckets.add(keys, doc_ids[has])
        self.docs.add(doc_ids, lines, names, chars, n_sh)
        c = self.counts
        c["documents"] += len(ids)
        c["no_shingles"] += int((~has).sum())
        c["shingles"] += int(n_sh.sum())
        c["chars"] += int(chars.sum())
        c["seconds"] += seconds

    def finish(self) -> dict[str, Any]:
        self.sigw.finish()
        self.counts["records"] = self.buckets.records
        self._stack.close()
        self.docs.close()
        r = self.rstats
        self.counts["rows"] = self.sigw.rows
        self.counts["reader"] = {
            "lines": r.lines,
            "empty": r.empty,
            "blank_lines": r.blank_lines,
            "rejected": r.rejected,
        }
        return self.counts

    def abort(self, e: BaseException) -> None:
        try:
            self._stack.__exit__(type(e), e, e.__traceback__)
        finally:
            self.docs.close(e)


def _signatures(
    files: Sequence[InputFile],
    work: Path,
    cfg: DedupConfig,
    read_config: ReadConfig,
    executor: Executor,
    progress: Callable[[dict[str, Any]], None] | None,
    fingerprint: str = "",
) -> list[dict[str, Any]]:
    """Signatures and bucket records of every file in `work` (the work directory), in file order.
    A file whose task record is valid (a killed run finished it) is not read again.

    The batches of every file form one ordered task stream; `tags` holds, in stream order, the
    (file, batch metadata) of each task and a (file, None) mark at each file's end, so the
    driver writes each result into its file and closes the file once its last batch is in."""
    results: list[dict[str, Any] | None] = [None] * len(files)
    open_files: list[_FileSignatures] = []
    tags: deque[tuple[_FileSignatures, Any]] = deque()
    pos = {f.index: i for i, f in enumerate(files)}

    def finish(sink: _FileSignatures) -> None:
        open_files.remove(sink)
        r = sink.finish()
        _record_signatures(work, sink.file, cfg, read_config, fingerprint, r, sink.identity)
        results[pos[sink.file.index]] = r
        if progress is not None:
            progress({"phase": "signatures", "counts": {"documents": r["documents"]}})
        _fault_after(sum(x is not None for x in results))

    def finish_marked() -> None:
        while tags and tags[0][1] is None:
            finish(tags.popleft()[0])

    def stream() -> Iterator[_SigBatch]:
        for f in files:
            old = _reusable_signatures(work, f, cfg, read_config, fingerprint)
            if old is not None:
                results[pos[f.index]] = old
                if progress is not None:
                    progress(
                        {
                            "phase": "signatures",
                            "counts": {"documents": old["documents"]},
                            "reused": True,
                        }
                    )
                continue
            sink = _FileSignatures(f, work, cfg)
            sink.identity = _input_identity(f)
            open_files.append(sink)
            for texts, ids, lines, names in _batches_of(
                f, cfg, read_config, sink.rstats, sink.counts
            ):
                chars = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
                tags.append((sink, (ids, lines, names, chars)))
                yield _SigBatch(texts, cfg.ngram, cfg.num_perm, cfg.seed, cfg.bands, cfg.rows)
            tags.append((sink, None))

    try:
        for result in executor.imap(_signature_batch, stream()):
            finish_marked()  # files whose last batch came before this one
            sink, meta = tags.popleft()
            sink.write(meta, result)
        finish_marked()
    except BaseException as e:
        for sink in open_files:
            sink.abort(e)
        raise
    reused = sum(bool(r.get("reused")) for r in results if r is not None)
    log.info(
        "dedup signatures: read %d of %d file(s), reused %d finished by an interrupted run",
        len(files) - reused,
        len(files),
        reused,
    )
    return [r for r in results if r is not None]


# Resume: one task record per input file in the work directory (`<i>.task.json`, written after
# the file's signatures, docs table and bucket files are committed): the stage fingerprint, the
# input's identity (name, index, size, mtime) and the size and sha256 of each file. A rerun with
# the same fingerprint reuses a file whose record is valid; the later phases rerun from the
# signatures and buckets, so the outputs are identical to an uninterrupted run's.
SIG_RECORD_VERSION = 1


def _fault_after(done: int) -> None:
    """Test hook: `PILE_FAULT=dedup-signatures:N` SIGKILLs this process once N files are done."""
    if os.environ.get("PILE_FAULT") == f"dedup-signatures:{done}":
        import signal

        log.warning("PILE_FAULT: killing dedup after %d signature file(s)", done)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


def work_dir_name(fingerprint: str) -> str:
    """Hidden and ending in `.tmp`: `pile verify` reports it (one line) as an interrupted run."""
    return f".signatures.{fingerprint[:16]}.tmp"


def _input_identity(f: InputFile) -> dict[str, Any] | None:
    try:
        st = os.stat(f.path)
    except OSError:
        return None
    return {
        "input": f.label,
        "index": f.index,
        "kind": f.kind,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
    }


def _signature_files(work: Path, f: InputFile, cfg: DedupConfig) -> list[Path]:
    return [
        *signature_paths(work, f.index),
        *(bucket_path(work / "buckets", p, f.index) for p in range(cfg.partitions)),
    ]


def _sig_record_path(work: Path, f: InputFile) -> Path:
    return work / f"{f.index:06d}.task.json"


def _record_signatures(work, f, cfg, read_config, fingerprint, counts, identity) -> None:
    if identity is None or identity != _input_identity(f):
        return  # the input changed while it was read: nothing worth recording
    files = {
        p.relative_to(work).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in _signature_files(work, f, cfg)
    }
    rec = {
        "version": SIG_RECORD_VERSION,
        "fingerprint": fingerprint,
        "task": identity,
        "files": files,
        "counts": counts,
    }
    atomic_write_text(_sig_record_path(work, f), json.dumps(rec))
    fsync_dir(work)


def _reusable_signatures(work, f, cfg, read_config, fingerprint) -> dict[str, Any] | None:
    try:
        rec = json.loads(_sig_record_path(work, f).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("version") != SIG_RECORD_VERSION:
        return None
    if rec.get("fingerprint") != fingerprint or rec.get("task") != _input_identity(f):
        return None
    files = rec.get("files")
    want = {p.relative_to(work).as_posix() for p in _signature_files(work, f, cfg)}
    if not isinstance(files, dict) or set(files) != want:
        return None
    for name, meta in files.items():
        try:
            p = work / name
            if p.stat().st_size != meta["size"] or sha256_file(p) != meta["sha256"]:
                return None
        except (OSError, KeyError, TypeError):
            return None
    counts = rec.get("counts")
    if not isinstance(counts, dict):
        return None
    if read_config.on_error == "skip" and (counts.get("reader") or {}).get("rejected"):
        if not quarantine_kept(read_config.quarantine_dir, f):
            return None  # its quarantine was removed since: read the file again
    return {**counts, "reused": True}


# ----------------------------------------------------------------------------- step 2: edges
@dataclass(frozen=True)
class _EdgeTask:
    out_dir: str
    partition: int
    file_indices: tuple[int, ...]
    buckets_dir: str = ""  # default: out_dir/buckets


def _edge_task(task: _EdgeTask) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = Path(task.out_dir)
    buckets = Path(task.buckets_dir) if task.buckets_dir else out / "buckets"
    rec = read_partition(buckets, task.partition, list(task.file_indices))
    keys = rec["key"]
    src, dst, largest = star_edges(keys, rec["doc"])
    write_edges(out / "edges" / f"{task.partition:05d}.npy", src, dst)
    return {
        "records": int(len(rec)),
        "edges": int(len(src)),
        "largest_bucket": largest,
        "seconds": time.perf_counter() - t0,
    }


# ----------------------------------------------------------------------------- step 3b: exact
@dataclass(frozen=True)
class _ShingleTask:
    file: InputFile
    out_dir: str
    doc_ids: np.ndarray  # sorted candidate doc ids of this file
    config: DedupConfig
    read_config: ReadConfig


def exact_paths(out_dir: Path, file_index: int) -> tuple[Path, Path]:
    base = Path(out_dir) / "exact"
    return base / f"{file_index:06d}.hashes.npy", base / f"{file_index:06d}.offsets.npy"


def _candidate_docs(
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


def _shingle_task(task: _ShingleTask) -> dict[str, Any]:
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
            for doc_id, text in _candidate_docs(task.file, wanted, task.read_config):
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
    return {"documents": found, "shingles": int(offsets[-1]), "seconds": time.perf_counter() - t0}


def exact_jaccard(
    src: np.ndarray, dst: np.ndarray, sets: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Exact Jaccard of each pair's shingle-hash sets; `sets[file_index]` = (sorted doc ids,
    offsets, hashes) as written by the shingle tasks."""

    def get(doc: int) -> np.ndarray:
        ids, offsets, hashes = sets[docid.file_index(doc)]
        i = int(np.searchsorted(ids, doc))
        return hashes[offsets[i] : offsets[i + 1]]

    out = np.empty(len(src), dtype=np.float64)
    for k, (u, v) in enumerate(zip(src.tolist(), dst.tolist())):
        a, b = get(u), get(v)
        if len(a) > len(b):
            a, b = b, a
        if not len(a):
            out[k] = 0.0
            continue
        pos = np.minimum(np.searchsorted(b, a), len(b) - 1)
        inter = int(np.count_nonzero(b[pos] == a))
        out[k] = inter / (len(a) + len(b) - inter)
    return out


def _exact_sets(
    out: Path,
    files: Sequence[InputFile],
    docs: np.ndarray,
    config: DedupConfig,
    read_config: ReadConfig,
    executor: Executor,
) -> tuple[dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]], int]:
    """Shingle-hash sets of the sorted candidate documents `docs` (second read, one task per
    file), as `exact_jaccard` takes them, and the number of documents read."""
    fi = docid.file_index(docs)
    remove_tree(out / "exact")
    (out / "exact").mkdir(parents=True)
    tasks = [_ShingleTask(f, str(out), docs[fi == f.index], config, read_config) for f in files]
    tasks = [t for t in tasks if len(t.doc_ids)]
    results = executor.map(_shingle_task, tasks)
    sets = {}
    for t in tasks:
        h, o = exact_paths(out, t.file.index)
        sets[t.file.index] = (
            t.doc_ids,
            np.load(o, allow_pickle=False),
            np.load(h, mmap_mode="r", allow_pickle=False)[:, 0],
        )
    return sets, sum(r["documents"] for r in results)


def _input_bytes(f: InputFile) -> int | None:
    """On-disk size of a file input; None for directory inputs (datasets, hf:)."""
    if f.kind in ("hf-disk", "hf-hub"):
        return None
    return os.stat(f.path).st_size


# ----------------------------------------------------------------------------- helpers
def _doc_meta(
    out_dir: Path, files: Sequence[InputFile], ids: np.ndarray
) -> tuple[list[str], list[str], np.ndarray]:
    """(pile_set_name, file, line) of sorted unique doc ids, from the per-file docs tables."""
    names: list[str] = []
    paths: list[str] = []
    line_out = np.empty(len(ids), dtype=np.int64)
    fi = docid.file_index(ids)
    pos = 0
    for f in files:
        sel = ids[fi == f.index]
        if not len(sel):
            continue
        t = pq.read_table(
            signature_paths(out_dir, f.index)[1], columns=["doc_id", "line", "pile_set_name"]
        )
        doc_id = t.column("doc_id").to_numpy()
        where = np.searchsorted(doc_id, sel)
        if np.any(where >= len(doc_id)) or np.any(
            doc_id[np.minimum(where, len(doc_id) - 1)] != sel
        ):
            raise IntegrityError(
                f"{signature_paths(out_dir, f.index)[1]}: a duplicate document is missing from the "
                "docs table; the dedup directory is inconsistent. Rerun `pile dedup`."
            )
        idx = pa.array(where)
        names.extend(t.column("pile_set_name").take(idx).to_pylist())
        line_out[pos : pos + len(sel)] = t.column("line").to_numpy()[where]
        paths.extend([f.label] * len(sel))
        pos += len(sel)
    return names, paths, line_out


def _histogram(sizes: np.ndarray) -> list[list[int]]:
    if not len(sizes):
        return []
    vals, cnt = np.unique(sizes, return_counts=True)
    return [[int(v), int(c)] for v, c in zip(vals, cnt)]


def _check_inputs(files: Sequence[InputFile]) -> None:
    for f in files:
        if f.index >= docid.MAX_FILES:
            raise ConfigError(
                f"too many input files ({len(files)}); at most {1 << 23} are supported."
            )


# ----------------------------------------------------------------------------- the stage
@holds_dir_locks
def run_dedup(
    inputs: Iterable[Any],
    out_dir: str | Path,
    config: DedupConfig | None = None,
    read_config: ReadConfig | None = None,
    executor: Executor | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the dedup stage on `executor` (default: in this process); returns the stats: stats.json's content plus "timings" and top-level
    copies of counts' documents, removed, kept and clusters. `progress(info)` is called after each
    input file's signatures are written (for progress bars)."""
    config = config or DedupConfig()
    read_config = read_config or ReadConfig()
    executor = executor or InlineExecutor()
    out = Path(out_dir)
    files = resolve_inputs(inputs)
    _check_inputs(files)
    fingerprint = config.fingerprint()
    # held until return; the lock also makes buckets/, edges/, exact/ below this run's alone
    lock_dir(out, "dedup")
    stale = out / "manifest.json"
    if stale.exists():
        stale.unlink()  # this directory is not a complete result again until the new manifest
    for d in ("buckets", "edges", "exact"):
        remove_tree(out / d)
    # signatures and buckets are made in a work directory of this config, kept when a run is
    # killed so that the rerun reuses the files it finished; those of other configs go
    work_fp = combine_fingerprints(
        fingerprint, read_config.fingerprint(), f"partitions={config.partitions}"
    )
    work = out / work_dir_name(work_fp)
    if out.is_dir():
        for old in out.glob(".signatures.*.tmp"):
            if old != work:
                remove_tree(old)
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    criterion = config.criterion()
    log.info(
        "dedup: %d input file(s), K=%d, bands %d x rows %d, %d-word shingles; near-duplicates: %s",
        len(files),
        config.num_perm,
        config.bands,
        config.rows,
        config.ngram,
        criterion["summary"],
    )
    curve = s_curve(config.bands, config.rows)
    recall = expected_recall(
        config.threshold,
        config.bands,
        config.rows,
        config.num_perm if config.verify_candidates else None,
        config.screen_cut if config.verify_candidates else None,
    )
    log.info(
        "S-curve P(candidate|J): %s; expected recall at J=%.2f: %.3f (mean over J>=t: %.3f)",
        ", ".join(f"{j:.2f}:{p:.3f}" for j, p in curve),
        config.threshold,
        recall["at_threshold"],
        recall["mean_above_threshold"],
    )

    t0 = time.perf_counter()
    sig_results = _signatures(files, work, config, read_config, executor, progress, work_fp)
    timings["signatures"] = time.perf_counter() - t0
    timings["signatures_task_seconds_sum"] = sum(r["seconds"] for r in sig_results)

    t0 = time.perf_counter()
    file_indices = tuple(f.index for f in files)
    edge_tasks = [
        _EdgeTask(str(out), p, file_indices, str(work / "buckets"))
        for p in range(config.partitions)
    ]
    edge_results = executor.map(_edge_task, edge_tasks)
    parts = [np.load(out / "edges" / f"{p:05d}.npy") for p in range(config.partitions)]
    all_edges = np.concatenate(parts) if parts else np.empty((0, 2), np.int64)
    src, dst = unique_edges(all_edges[:, 0].copy(), all_edges[:, 1].copy())
    del parts, all_edges
    timings["edges"] = time.perf_counter() - t0
    candidates = int(len(src))

    t0 = time.perf_counter()
    verification: dict[str, Any] = {"enabled": config.verify_candidates}
    store = SignatureStore({f.index: signature_paths(work, f.index)[0] for f in files})
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
    tol = 1e-12  # the cuts are inclusive; a float ratio exactly at the cut passes
    if config.verify == "exact" and len(src):
        t0 = time.perf_counter()
        sets, n_read = _exact_sets(
            out, files, np.unique(np.concatenate([src, dst])), config, read_config, executor
        )
        keep = exact_jaccard(src, dst, sets) >= config.threshold - tol
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

    t0 = time.perf_counter()
    nodes, root = connected_components(src, dst)
    if config.cluster_rule == "center":
        if sets is not None:

            def check(x: np.ndarray, c: np.ndarray) -> np.ndarray:
                return exact_jaccard(x, c, sets) >= config.threshold - tol

        else:

            def check(x: np.ndarray, c: np.ndarray) -> np.ndarray:
                return signature_agreement(x, c, store) >= config.verify_cut - tol

        kept_of = split_by_center(nodes, root, check)
    else:
        kept_of = root
    removed_mask = nodes != kept_of
    removed_ids = nodes[removed_mask]
    removed_root = kept_of[removed_mask]
    # evidence per removed document: its similarity to the document kept in its place
    removed_est = signature_agreement(removed_ids, removed_root, store)
    removed_jac = exact_jaccard(removed_ids, removed_root, sets) if sets is not None else None
    store.close()
    sets = None  # release the memory-mapped shingle sets before exact/ is removed
    cluster_ids, removed_per_cluster = np.unique(removed_root, return_counts=True)
    cluster_sizes = removed_per_cluster + 1
    verification["kept_by_cluster_rule"] = int(
        np.count_nonzero((kept_of == nodes) & (nodes != root))
    )
    timings["components"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    r_names, r_files, r_lines = _doc_meta(work, files, removed_ids)
    c_names, c_files, c_lines = _doc_meta(work, files, cluster_ids)
    removed_table = pa.Table.from_arrays(
        [
            pa.array(removed_ids, pa.int64()),
            pa.array(removed_root, pa.int64()),
            pa.array(removed_root, pa.int64()),
            pa.array(r_names, pa.string()),
            pa.array(r_files, pa.string()),
            pa.array(r_lines, pa.int64()),
            pa.array(np.round(removed_est, 6), pa.float64()),
            pa.array(
                np.round(removed_jac, 6) if removed_jac is not None else [None] * len(removed_ids),
                pa.float64(),
            ),
            pa.array([config.rule()] * len(removed_ids), pa.string()),
        ],
        schema=REMOVED_SCHEMA,
    )
    clusters_table = pa.Table.from_arrays(
        [
            pa.array(cluster_ids, pa.int64()),
            pa.array(cluster_ids, pa.int64()),
            pa.array(cluster_sizes.astype(np.int64), pa.int64()),
            pa.array(c_names, pa.string()),
            pa.array(c_files, pa.string()),
            pa.array(c_lines, pa.int64()),
        ],
        schema=CLUSTERS_SCHEMA,
    )
    write_table(out / "removed.parquet", removed_table, fingerprint, "dedup-removed")
    write_table(out / "clusters.parquet", clusters_table, fingerprint, "dedup-clusters")

    # statistics
    docs_per_set: dict[str, int] = {}
    for r in sig_results:
        for k, v in r["per_set"].items():
            docs_per_set[k] = docs_per_set.get(k, 0) + v
    removed_per_set: dict[str, int] = {}
    for name in r_names:
        removed_per_set[name] = removed_per_set.get(name, 0) + 1
    kept_name = dict(zip(cluster_ids.tolist(), c_names))
    cross: dict[str, dict[str, int]] = {}
    for name, rid in zip(r_names, removed_root.tolist()):
        row = cross.setdefault(name, {})
        kn = kept_name[rid]
        row[kn] = row.get(kn, 0) + 1
    per_set = {
        name: {
            "documents": docs_per_set.get(name, 0),
            "removed": removed_per_set.get(name, 0),
            "removed_fraction": round(removed_per_set.get(name, 0) / docs_per_set[name], 6)
            if docs_per_set.get(name)
            else 0.0,
            "kept_in": dict(sorted(cross.get(name, {}).items())),
        }
        for name in sorted(set(docs_per_set) | set(removed_per_set))
    }
    total_docs = sum(r["documents"] for r in sig_results)
    counts = {
        "input_files": len(files),
        "documents": total_docs,
        "documents_without_shingles": sum(r["no_shingles"] for r in sig_results),
        "shingles": sum(r["shingles"] for r in sig_results),
        "chars": sum(r["chars"] for r in sig_results),
        "band_records": sum(r["records"] for r in sig_results),
        "largest_bucket": max((r["largest_bucket"] for r in edge_results), default=0),
        "candidate_pairs": candidates,
        "edges": int(len(src)),
        "clusters": int(len(cluster_ids)),
        "documents_in_clusters": int(len(removed_ids) + len(cluster_ids)),
        "removed": int(len(removed_ids)),
        "kept": total_docs - int(len(removed_ids)),
        # the similarity a joined pair reached (see criterion.check for which similarity)
        "jaccard_cut": criterion["jaccard_cut"],
    }
    fingerprinted = {
        k: v for k, v in config.to_dict().items() if k not in config._not_fingerprinted
    }
    stats: dict[str, Any] = {
        "config": fingerprinted,
        "config_fingerprint": fingerprint,
        "counts": counts,
        "per_pile_set_name": per_set,
        "cluster_size_histogram": _histogram(cluster_sizes),
        "s_curve": curve,
        "expected_recall": recall,
        "verification": verification,
        "criterion": criterion,
        "reader": {
            k: sum(r["reader"][k] for r in sig_results)
            for k in ("lines", "empty", "blank_lines", "rejected")
        },
    }
    atomic_write_text(
        out / "stats.json", json.dumps(stats, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    )
    timings["tables"] = time.perf_counter() - t0
    if not config.keep_intermediate:
        remove_tree(out / "edges")
        remove_tree(out / "exact")
    else:
        os.replace(work / "buckets", out / "buckets")
    # the signatures move to their place only now: until here a killed run reuses them
    (out / "signatures").mkdir(exist_ok=True)
    for f in files:
        for src_p, dst_p in zip(signature_paths(work, f.index), signature_paths(out, f.index)):
            os.replace(src_p, dst_p)
    fsync_dir(out / "signatures")

    t0 = time.perf_counter()
    manifest_files: list[tuple[Path, str]] = []
    for f in files:
        npy, docs = signature_paths(out, f.index)
        manifest_files += [(npy, "signatures"), (docs, "table")]
    manifest_files += [
        (out / "removed.parquet", "table"),
        (out / "clusters.parquet", "table"),
        (out / "stats.json", "stats"),
    ]
    write_manifest(
        out / "manifest.json",
        kind=MANIFEST_KIND,
        config_fingerprint=fingerprint,
        files=manifest_files,
        config=fingerprinted,
        counts=counts,
        extra={
            "inputs": [f.label for f in files],
            "input_bytes": [_input_bytes(f) for f in files],
            "read_config": read_config.to_dict(),
            "criterion": criterion,
        },
    )
    timings["manifest"] = time.perf_counter() - t0
    timings["total"] = sum(
        v for k, v in timings.items() if k not in ("signatures_task_seconds_sum",)
    )
    if counts["shingles"] and timings["signatures_task_seconds_sum"] > 0:
        timings["shingles_per_second_per_core"] = (
            counts["shingles"] / timings["signatures_task_seconds_sum"]
        )
    atomic_write_text(out / "timings.json", json.dumps(timings, indent=1, sort_keys=True) + "\n")
    remove_tree(work)
    log.info(
        "dedup: %d documents, %d candidate pairs, %d clusters, %d removed (%.2f%%)",
        total_docs,
        candidates,
        counts["clusters"],
        counts["removed"],
        100.0 * counts["removed"] / max(total_docs, 1),
    )
    # convenience copies of the headline counts for callers (not part of stats.json)
    headline = {k: counts[k] for k in ("documents", "removed", "kept", "clusters")}
    return {**stats, **headline, "timings": timings}


def load_removed_ids(out_dir: str | Path, expected_fingerprint: str | None = None) -> np.ndarray:
    """Sorted int64 doc ids removed by a finished dedup run in `out_dir`.

    Checks that the run finished (manifest present, kind "dedup") and, when given, that its config
    fingerprint is `expected_fingerprint`; raises IntegrityError otherwise.
    """
    out = Path(out_dir)
    manifest = read_manifest(out / "manifest.json")
    if manifest.get("kind") != MANIFEST_KIND:
        raise IntegrityError(
            f"{out / 'manifest.json'}: kind {manifest.get('kind')!r}, expected {MANIFEST_KIND!r}; "
            "point to the output directory of `pile dedup`."
        )
    fp = manifest.get("config_fingerprint")
    if expected_fingerprint is not None and fp != expected_fingerprint:
        raise IntegrityError(
            f"{out}: dedup set was built with config fingerprint {fp}, expected "
            f"{expected_fingerprint}; rerun `pile dedup` with the intended settings."
        )
    path = out / "removed.parquet"
    if not path.exists():
        raise IntegrityError(f"{path}: missing although the manifest lists it. Rerun `pile dedup`.")
    if table_fingerprint(path) != fp:
        raise IntegrityError(
            f"{path}: fingerprint {table_fingerprint(path)} does not match the manifest's {fp}; "
            "the directory mixes two runs. Rerun `pile dedup`."
        )
    ids = pq.read_table(path, columns=["doc_id"]).column("doc_id").to_numpy().astype(np.int64)
    if len(ids) > 1 and np.any(np.diff(ids) <= 0):
        raise IntegrityError(f"{path}: doc_id column is not strictly ascending; file is corrupt.")
    return ids
