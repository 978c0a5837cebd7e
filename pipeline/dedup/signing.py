"""Step 1 of the dedup stage: MinHash signatures and LSH band records of every input file.

The driver reads each input file with the reader (`iter_file`) and cuts it into batches of
~`batch_chars` characters; each batch is a task (shingle + hash + MinHash + band keys,
pipeline.dedup.shingle / .minhash / .lsh) on the executor, at most 2 x workers in flight, so a
single large file keeps every worker busy. The driver writes the results in batch order:
`signatures/<i>.npy|.parquet` (pipeline.dedup.signatures) and the LSH band records in
`buckets/<p>/<i>.bin` (pipeline.dedup.edges): the same bytes for any worker count or batch size.

Resume: one task record per input file in the work directory (see `record_signatures`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import docid
from pipeline.dedup.config import DedupConfig
from pipeline.dedup.edges import BucketWriter, bucket_path
from pipeline.dedup.lsh import band_keys
from pipeline.dedup.minhash import minhash_signatures, permutation_params
from pipeline.dedup.shingle import shingle_hashes
from pipeline.dedup.signatures import DocsTableWriter, SignatureArrayWriter, signature_paths
from pipeline.engine.base import Executor
from pipeline.errors import IntegrityError
from pipeline.io import atomic_open, atomic_write_text, fsync_dir, sha256_file
from pipeline.read import InputFile, ReadConfig, ReadStats, iter_file
from pipeline.read.reader import quarantine_kept
from pipeline.read.remote import input_stat

log = logging.getLogger(__name__)

MAX_BATCH_DOCS = 8192  # documents per task at most, whatever their size


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


def compute_signatures(
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
        st = input_stat(f.path)
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
