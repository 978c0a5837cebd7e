"""Step 1 of the dedup stage: MinHash signatures and LSH band records of every input file.

One executor task per work unit (pipeline.read.units: a whole file, or a byte or frame range of
a large one; `DedupConfig.unit_bytes`, default input bytes / (2 x workers) like tokenize, and
`unit_cache` to split single-frame compressed files): the worker reads its unit (`iter_unit`),
signs it in batches of ~`batch_chars` characters (shingle + hash + MinHash + band keys,
pipeline.dedup.shingle / .minhash / .lsh) and commits its arrays, then its record, in
`<work>/units/`. Once all units of a file are in, the driver joins them in unit order, cut into
the batches the whole-file reader makes, into `signatures/<i>.npy|.parquet`
(pipeline.dedup.signatures) and the LSH band records in `buckets/<p>/<i>.bin`
(pipeline.dedup.edges): the same bytes for any worker count, unit or batch size.

Resume: one task record per input file in the work directory (see `_record_signatures`) and,
for a file not finished, one record per finished unit (see `_reusable_unit`).
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
from pipeline.read import InputFile, ReadConfig, ReadStats
from pipeline.read.reader import quarantine_kept
from pipeline.read.remote import input_stat
from pipeline.read.units import Unit, iter_unit, merge_quarantine, plan_balanced_units

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


@dataclass(frozen=True)
class _UnitTask:
    unit: Unit
    cfg: DedupConfig
    read_config: ReadConfig
    work: str
    fingerprint: str


UNIT_RECORD_VERSION = 2
# a unit's arrays, one raw little-endian file each, streamed batch by batch (so a worker holds
# one batch, whatever the unit size); "names" are codes into the record's pile_set_names
_UNIT_ARRAYS = {
    "sig": np.dtype("<u4"),
    "n_sh": np.dtype("<i8"),
    "keys": np.dtype("<u8"),
    "ids": np.dtype("<i8"),
    "lines": np.dtype("<i8"),
    "names": np.dtype("<i4"),
    "chars": np.dtype("<i8"),
}


def _unit_key(unit: Unit) -> str:
    return f"{unit.file.index:06d}.part{unit.part:05d}"


def _unit_record(work: Path, unit: Unit) -> Path:
    return work / "units" / f"{_unit_key(unit)}.json"


def _unit_arrays(work: Path, unit: Unit) -> dict[str, Path]:
    return {n: work / "units" / f"{_unit_key(unit)}.{n}" for n in _UNIT_ARRAYS}


def _sign_unit(task: _UnitTask) -> dict[str, Any]:
    """Worker: read one unit, sign its documents batch by batch, commit its arrays and then its
    record (unit, stage fingerprint, size and sha256 of the arrays, counts); returns the counts."""
    unit, cfg = task.unit, task.cfg
    f = unit.file
    work = Path(task.work)
    paths = _unit_arrays(work, unit)
    paths["sig"].parent.mkdir(parents=True, exist_ok=True)
    rstats = ReadStats()
    per: dict[str, int] = {}
    codes: dict[str, int] = {}
    lo, _ = unit.id_range()
    last = lo - 1
    seconds = 0.0
    batch: dict[str, list] = {"texts": [], "ids": [], "lines": [], "names": []}
    batch_chars = 0
    documents = 0
    with ExitStack() as stack:
        out = {n: stack.enter_context(atomic_open(p, "wb")) for n, p in paths.items()}

        def put(name: str, a) -> None:
            out[name].write(np.ascontiguousarray(a, dtype=_UNIT_ARRAYS[name]).tobytes())

        def flush() -> None:
            nonlocal batch, batch_chars, seconds
            texts = batch["texts"]
            sig, n_sh, keys, sec = _signature_batch(
                _SigBatch(texts, cfg.ngram, cfg.num_perm, cfg.seed, cfg.bands, cfg.rows)
            )
            put("sig", sig)
            put("n_sh", n_sh)
            put("keys", keys)
            put("ids", batch["ids"])
            put("lines", batch["lines"])
            put("names", batch["names"])
            put("chars", np.fromiter((len(t) for t in texts), np.int64, len(texts)))
            seconds += sec
            batch = {k: [] for k in batch}
            batch_chars = 0

        for doc in iter_unit(unit, task.read_config, rstats):
            if docid.file_index(doc.doc_id) != f.index or doc.doc_id <= last:
                raise IntegrityError(
                    f"{f.where} line {doc.line}: document id {doc.doc_id} is not in "
                    f"ascending order for input file index {f.index}; the reader must give "
                    "ids file_index << 40 | line-1 in line order."
                )
            last = doc.doc_id
            name = doc.pile_set_name
            batch["texts"].append(doc.text)
            batch["ids"].append(doc.doc_id)
            batch["lines"].append(doc.line)
            batch["names"].append(codes.setdefault(name, len(codes)))
            per[name] = per.get(name, 0) + 1
            documents += 1
            batch_chars += len(doc.text)
            if batch_chars >= cfg.batch_chars or len(batch["texts"]) >= MAX_BATCH_DOCS:
                flush()
        if batch["texts"]:
            flush()
    counts = {
        "documents": documents,
        "per_set": per,  # first-seen order = the codes of "names"
        "seconds": seconds,
        "reader": {
            "lines": rstats.lines,
            "empty": rstats.empty,
            "blank_lines": rstats.blank_lines,
            "rejected": rstats.rejected,
        },
    }
    rec = {
        "version": UNIT_RECORD_VERSION,
        "fingerprint": task.fingerprint,
        "unit": unit.to_dict(),
        "files": {
            n: {"size": p.stat().st_size, "sha256": sha256_file(p)} for n, p in paths.items()
        },
        "counts": counts,
    }
    atomic_write_text(_unit_record(work, unit), json.dumps(rec))
    fsync_dir(paths["sig"].parent)
    return counts


def _reusable_unit(work: Path, unit: Unit, fingerprint: str, read_config) -> dict | None:
    """The counts of a unit a killed run finished (its record and arrays intact), else None."""
    try:
        rec = json.loads(_unit_record(work, unit).read_bytes())
        if not isinstance(rec, dict) or rec.get("version") != UNIT_RECORD_VERSION:
            return None
        if rec.get("fingerprint") != fingerprint or rec.get("unit") != unit.to_dict():
            return None
        files = rec["files"]
        paths = _unit_arrays(work, unit)
        if set(files) != set(paths):
            return None
        for n, p in paths.items():
            meta = files[n]
            if p.stat().st_size != meta["size"] or sha256_file(p) != meta["sha256"]:
                return None
        counts = rec["counts"]
        if read_config.on_error == "skip" and counts["reader"]["rejected"]:
            return None  # its quarantined lines are written by reading it again
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return counts


def _batch_ends(chars: np.ndarray, batch_chars: int) -> list[int]:
    """Where the whole-file reader closed its batches (same rule as `_batches_of`)."""
    ends: list[int] = []
    acc = n = 0
    for i, c in enumerate(chars.tolist()):
        acc += c
        n += 1
        if acc >= batch_chars or n >= MAX_BATCH_DOCS:
            ends.append(i + 1)
            acc = n = 0
    if n:
        ends.append(len(chars))
    return ends


def _load_unit(work: Path, unit: Unit, counts: dict[str, Any], cfg: DedupConfig):
    """The unit's arrays, mapped (not read) from its files; "names" become strings per slice."""
    out: dict[str, Any] = {"set_names": np.asarray(list(counts["per_set"]), dtype=object)}
    for n, p in _unit_arrays(work, unit).items():
        dt = _UNIT_ARRAYS[n]
        a = np.memmap(p, dtype=dt, mode="r") if p.stat().st_size else np.zeros(0, dt)
        if n == "sig":
            a = a.reshape(-1, cfg.num_perm)
        elif n == "keys":
            a = a.reshape(-1, cfg.bands)
        out[n] = a
    out["has"] = np.concatenate([[0], np.cumsum(np.asarray(out["n_sh"]) > 0)])
    return out


def _slice(a: dict[str, Any], lo: int, hi: int) -> dict[str, np.ndarray]:
    has = a["has"]  # documents with shingles before each one: rows of "keys"
    out = {n: np.array(a[n][lo:hi]) for n in ("sig", "n_sh", "ids", "lines", "chars")}
    out["keys"] = np.array(a["keys"][has[lo] : has[hi]])
    out["names"] = a["set_names"][np.asarray(a["names"][lo:hi], dtype=np.int64)]
    return out


def _cat(pieces: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(pieces) == 1:
        return pieces[0]
    return {n: np.concatenate([p[n] for p in pieces]) for n in pieces[0]}


class _FileUnits:
    """The units of one input file as they finish; once all are in, the file's signatures,
    docs table and bucket records are written from the units' arrays in unit order, cut into
    the batches the whole-file reader made (the bucket records are written per batch)."""

    def __init__(self, f: InputFile, units: list[Unit]) -> None:
        self.file = f
        self.units = units
        self.counts: list[dict[str, Any]] = []
        self.identity = _input_identity(f)

    def assemble(self, work: Path, cfg: DedupConfig) -> _FileSignatures:
        chars = np.concatenate(
            [
                np.array(_load_unit(work, u, c, cfg)["chars"])
                for u, c in zip(self.units, self.counts)
            ]
            or [np.zeros(0, np.int64)]
        )
        ends = _batch_ends(chars, cfg.batch_chars)
        sink = _FileSignatures(self.file, work, cfg)
        try:
            pos = 0  # documents of the file before the current unit
            carry: list[dict[str, np.ndarray]] = []
            e = 0
            for u, uc in zip(self.units, self.counts):
                a = _load_unit(work, u, uc, cfg)
                n = len(a["ids"])
                lo = 0
                while e < len(ends) and ends[e] <= pos + n:
                    hi = ends[e] - pos
                    b = _cat([*carry, _slice(a, lo, hi)])
                    carry = []
                    meta = (b["ids"], b["lines"].tolist(), b["names"].tolist(), b["chars"])
                    sink.write(meta, (b["sig"], b["n_sh"], b["keys"], 0.0))
                    lo = hi
                    e += 1
                if lo < n:
                    carry.append(_slice(a, lo, n))
                pos += n
            c = sink.counts
            per = c["per_set"]
            for uc in self.counts:
                for name, v in uc["per_set"].items():
                    per[name] = per.get(name, 0) + v
                c["seconds"] += uc["seconds"]
                r = uc["reader"]
                sink.rstats.lines += r["lines"]
                sink.rstats.empty += r["empty"]
                sink.rstats.blank_lines += r["blank_lines"]
                sink.rstats.rejected += r["rejected"]
        except BaseException as err:
            sink.abort(err)
            raise
        return sink


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
    A file whose task record is valid (a killed run finished it) is not read again; of the
    other files, each work unit (pipeline.read.units) is one task, and a unit whose record is
    valid is not read again either.

    `pending` holds, in plan order, every unit of the files to sign with its reused counts (or
    None: its task is in the executor's ordered stream), so each result is matched to its unit
    and a file is written once its last unit is in."""
    results: list[dict[str, Any] | None] = [None] * len(files)
    pos = {f.index: i for i, f in enumerate(files)}
    todo: list[InputFile] = []
    for f in files:
        old = _reusable_signatures(work, f, cfg, read_config, fingerprint)
        if old is None:
            todo.append(f)
            continue
        results[pos[f.index]] = old
        if progress is not None:
            progress(
                {"phase": "signatures", "counts": {"documents": old["documents"]}, "reused": True}
            )
    plan = plan_balanced_units(todo, executor.workers, cfg.unit_bytes, cfg.unit_cache, executor)
    pending: deque[tuple[_FileUnits, Unit, dict[str, Any] | None]] = deque()
    done = {"signed": 0, "reused": 0}

    def finish_unit(fu: _FileUnits, counts: dict[str, Any]) -> None:
        fu.counts.append(counts)
        if len(fu.counts) < len(fu.units):
            return
        sink = fu.assemble(work, cfg)
        r = sink.finish()
        _record_signatures(work, fu.file, cfg, read_config, fingerprint, r, fu.identity)
        for u in fu.units:
            for p in (_unit_record(work, u), *_unit_arrays(work, u).values()):
                p.unlink(missing_ok=True)
        results[pos[fu.file.index]] = r
        if progress is not None:
            progress({"phase": "signatures", "counts": {"documents": r["documents"]}})
        _fault_after(sum(x is not None for x in results))

    def drain_reused() -> None:
        while pending and pending[0][2] is not None:
            fu, _, counts = pending.popleft()
            done["reused"] += 1
            finish_unit(fu, counts)

    def stream() -> Iterator[_UnitTask]:
        for f in plan.files:
            fu = _FileUnits(f, plan.units_of(f.index))
            for u in fu.units:
                old = _reusable_unit(work, u, fingerprint, read_config)
                pending.append((fu, u, old))
                if old is None:
                    yield _UnitTask(u, cfg, read_config, str(work), fingerprint)

    for counts in executor.imap(_sign_unit, stream()):
        drain_reused()
        fu, _, _ = pending.popleft()
        done["signed"] += 1
        _fault_after_units(done["signed"])
        finish_unit(fu, counts)
    drain_reused()
    if read_config.on_error == "skip":
        merge_quarantine(plan, read_config.quarantine_dir)
    reused = sum(bool(r.get("reused")) for r in results if r is not None)
    log.info(
        "dedup signatures: read %d of %d file(s), reused %d finished by an interrupted run; "
        "%d unit(s) signed, %d unit(s) reused",
        len(files) - reused,
        len(files),
        reused,
        done["signed"],
        done["reused"],
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


def _fault_after_units(done: int) -> None:
    """Test hook: `PILE_FAULT=dedup-units:N` SIGKILLs this process once N units are signed."""
    if os.environ.get("PILE_FAULT") == f"dedup-units:{done}":
        import signal

        log.warning("PILE_FAULT: killing dedup after %d signature unit(s)", done)
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
