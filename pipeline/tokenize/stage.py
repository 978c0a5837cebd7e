"""Tokenize stage: documents -> Megatron MMIDIDX token dataset + provenance sidecar + manifest.

Semantics follow gpt-neox v1.0 `tools/preprocess_data.py` (the script that built Pythia's data):
one item per document, documents in input order (files in the order given, lines in order), the
token ids of `tokenizer.encode(text).ids` (no BOS) followed by the EOD id (`<|endoftext|>` = 0)
inside the same item when `append_eod`. Documents with empty text produce no item (the reader drops
and counts them; a document that would encode to zero tokens is dropped and counted too). The token
dtype is derived from the vocabulary size (`token_dtype_for_vocab`) and every id is checked against
it.

Outputs in `out_dir` (all written atomically; the manifest last):

    {prefix}_text_document.bin / .idx     MMIDIDX v1 (see pipeline.shards.mmidx)
    {prefix}_text_document.docs.parquet   item i -> doc_id, file, line, pile_set_name, tokens
    {prefix}.manifest.json                counts, tokenizer sha256, dtype, EOD policy, file hashes

Parallelism: the work is split into tasks of about equal bytes (`plan_tasks`: whole files, and
line ranges of the jsonl files larger than a task's share). Each task writes a partial `.bin` and
its sidecar rows (with the item sizes) to the work directory `out_dir/.{prefix}.tokenize.{fp}.tmp/`
(one per config fingerprint), then its record `<task>.task.json` last; the main process appends
them in task order (`MMIDXWriter.append_bin_file`) and rewrites the sidecar rows in fixed-size row
groups, so every output byte is the same for any worker count. The index's doc_idx is written once
from the merged sizes (0, 1, ..., N), never concatenated from partials (gpt-neox's merge forgot to
extend it). Resume: a killed run's work directory is kept, and a rerun with the same fingerprint
reuses every task whose record is valid (same input size, mtime and line range, partial files of
the recorded sizes and sha256) and runs only the others; the directory is removed once the
manifest is written. The temporary space needed is the size of the final `.bin` again.

A line range of a file is read by decompressing and parsing the file from its start (zstd streams
cannot be entered in the middle), so cutting costs one extra parse of the skipped prefix per range
(a reader entry point that skips lines without parsing them would remove it: pipeline/read), and
the task that reads a file to its end reports that file's reader statistics (rejected, empty,
blank lines) and keeps its quarantine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import docid
from pipeline.config import StageConfig, combine_fingerprints
from pipeline.engine.base import Executor, InlineExecutor
from pipeline.errors import ConfigError, InputError, IntegrityError
from pipeline.io import fsync_dir, open_new, sha256_file
from pipeline.lock import holds_dir_locks, lock_dir
from pipeline.manifest import write_manifest
from pipeline.read import InputFile, ReadConfig, ReadStats, iter_file, resolve_inputs
from pipeline.read.reader import quarantine_kept
from pipeline.shards.mmidx import MMIDXWriter, token_dtype_for_vocab
from pipeline.tokenize import sidecar as sidecar_mod
from pipeline.tokenize.config import TokenizeConfig  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_KIND = "token-dataset"
EOD_TOKEN = "<|endoftext|>"
CHUNKABLE_KINDS = ("jsonl", "jsonl.zst", "jsonl.gz")
TASKS_PER_WORKER = 2


def output_names(prefix: str) -> dict[str, str]:
    """File names of a token dataset `prefix` (relative to its directory)."""
    data = f"{prefix}_text_document"
    return {
        "data_prefix": data,
        "bin": f"{data}.bin",
        "idx": f"{data}.idx",
        "sidecar": f"{data}.docs.parquet",
        "manifest": f"{prefix}.manifest.json",
    }


# ----------------------------------------------------------------------------------------------
# exclusion sets


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
        if want is None or not os.path.isfile(f.path):
            continue
        have = os.path.getsize(f.path)
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


# ----------------------------------------------------------------------------------------------
# tasks


@dataclass(frozen=True)
class _Task:
    seq: int
    input: InputFile
    first_line: int  # 1-based, inclusive
    stop_line: int | None  # exclusive; None = to the end of the file
    config: TokenizeConfig
    read_config: ReadConfig
    tmp_dir: str
    exclude: np.ndarray  # sorted doc ids of this task's range
    fingerprint: str = ""  # the stage's config fingerprint (its task records must hold it)

    @property
    def reads_to_end(self) -> bool:
        return self.stop_line is None

    @property
    def key(self) -> str:
        """The task's file names in the work directory: its input and line range, so a rerun
        with another split (worker count) still reuses the ranges it shares."""
        stop = "end" if self.stop_line is None else str(self.stop_line)
        return f"{self.input.index:06d}.{self.first_line}-{stop}"


def count_lines(f: InputFile) -> int:
    """Lines of a jsonl input (a last line without newline counts), for planning line ranges."""
    from pipeline.read.lines import byte_chunks

    n = 0
    last = b"\n"
    for chunk in byte_chunks(f.path, f.kind):
        n += chunk.count(b"\n")
        last = chunk[-1:]
    return n + (1 if last != b"\n" else 0)


def plan_tasks(files: Sequence[InputFile], workers: int) -> list[tuple[InputFile, int, int | None]]:
    """(file, first_line, stop_line) ranges balanced by bytes, not one task per file.

    The per-task target is total bytes / (workers x TASKS_PER_WORKER); a jsonl file larger than
    1.2x the target is cut into ceil(size / target) line ranges of equal line counts (one large
    file otherwise holds one worker for most of the run: a 101 MB file of 37% of the bytes kept
    one of two workers busy for >= 63% of the work). The output is the same for any split (the
    partials are merged in order). A range is read from the file's start (a zstd stream cannot be
    entered in the middle), so cutting costs a line count and the skipped prefixes' reading: a
    file is cut only when that buys balance. Parquet and datasets inputs are never cut.
    """
    if workers <= 1:
        return [(f, 1, None) for f in files]
    sizes = []
    for f in files:
        try:
            sizes.append(max(1, os.path.getsize(f.path)) if f.kind in CHUNKABLE_KINDS else 0)
        except OSError:
            sizes.append(0)
    total = sum(sizes) or 1
    target = total / (workers * TASKS_PER_WORKER)
    plan: list[tuple[InputFile, int, int | None]] = []
    for f, size in zip(files, sizes):
        k = -(-size // max(1, int(target))) if size > 1.2 * target else 1
        if k > 1:
            lines = count_lines(f)
            k = min(k, lines)
        if k <= 1:
            plan.append((f, 1, None))
            continue
        bounds = [1 + (i * lines) // k for i in range(k)]
        for i, b in enumerate(bounds):
            plan.append((f, b, bounds[i + 1] if i + 1 < k else None))
    return plan


def _slice_ids(ids: np.ndarray, file_index: int, first_line: int, stop_line: int | None):
    lo, hi = docid.file_bounds(file_index, first_line, stop_line)
    a, b = np.searchsorted(ids, [lo, hi])
    return ids[a:b]


def _tokenize_task(task: _Task) -> dict[str, Any]:
    """Tokenize one task's documents into partial files; return their paths and counts."""
    from pipeline.tokenize.encoder import load_encoder

    cfg = task.config
    enc = load_encoder(cfg.tokenizer_path, backend=cfg.backend, check_sha256=True)
    dtype = token_dtype_for_vocab(enc.vocab_size)
    eod = int(enc.eod_id)
    vocab = int(enc.vocab_size)
    rc = task.read_config
    if rc.on_error == "skip" and not task.reads_to_end:
        # another task reads this file to its end and keeps the real quarantine and statistics
        rc = dataclasses.replace(rc, quarantine_dir=os.path.join(task.tmp_dir, f"q{task.key}"))
    stats = ReadStats()
    tmp = Path(task.tmp_dir)
    bin_path = tmp / f"{task.key}.bin"

    doc_ids = array("q")
    lines = array("q")
    set_codes = array("i")
    set_names: dict[str, int] = {}
    sizes_parts: list[np.ndarray] = []
    per_source: dict[str, dict[str, int]] = {}
    counts = {
        "documents": 0,
        "tokens": 0,
        "excluded": 0,
        "zero_token": 0,
        "literal_eod": 0,
    }
    excl = task.exclude
    excl_n = int(excl.size)
    excl_pos = 0
    excl_matched = 0

    texts: list[str] = []
    meta: list[tuple[int, int, str]] = []
    nchars = 0

    def src(name: str) -> dict[str, int]:
        d = per_source.get(name)
        if d is None:
            d = per_source[name] = {
                "documents": 0,
                "tokens": 0,
                "excluded": 0,
                "empty": 0,
                "literal_eod": 0,
            }
        return d

    def flush(out) -> None:
        nonlocal texts, meta, nchars
        if not texts:
            return
        flat, sizes = enc.encode_batch_flat(texts)
        sizes = np.asarray(sizes, dtype=np.int64)
        if flat.size:
            hi = int(flat.max())
            if hi >= vocab:
                raise IntegrityError(
                    f"tokenizer produced id {hi} >= vocab_size {vocab}; the encoder is broken."
                )
        keep = sizes > 0
        if append_eod:
            # one pass: the ids are cast into place around the EODs (np.insert + astype +
            # tobytes made three copies of every token)
            sizes = sizes + 1
            ends = np.cumsum(sizes) - 1
            buf = np.empty(int(ends[-1]) + 1 if ends.size else 0, dtype=dtype)
            text_pos = np.ones(buf.size, dtype=bool)
            text_pos[ends] = False
            buf[text_pos] = flat
            buf[ends] = eod
            flat = buf
            keep = np.ones(sizes.size, dtype=bool)  # sizes are >= 1 now
        if not keep.all():
            for j in np.flatnonzero(~keep).tolist():
                counts["zero_token"] += 1
                src(meta[j][2])["empty"] += 1
        out.write(memoryview(np.ascontiguousarray(flat, dtype=dtype)).cast("B"))
        kept = sizes[keep]
        sizes_parts.append(kept.astype(np.int32))
        for j in np.flatnonzero(keep).tolist():
            did, line, name = meta[j]
            doc_ids.append(did)
            lines.append(line)
            code = set_names.get(name)
            if code is None:
                code = set_names[name] = len(set_names)
            set_codes.append(code)
            s = src(name)
            s["documents"] += 1
            s["tokens"] += int(sizes[j])
        counts["documents"] += int(kept.size)
        counts["tokens"] += int(kept.sum())
        texts, meta, nchars = [], [], 0

    append_eod = bool(cfg.append_eod)
    with _committed(bin_path) as out:
        for doc in iter_file(task.input, rc, stats):
            if doc.line < task.first_line:
                continue
            if task.stop_line is not None and doc.line >= task.stop_line:
                break
            did = doc.doc_id
            if excl_pos < excl_n:
                while excl_pos < excl_n and excl[excl_pos] < did:
                    excl_pos += 1
                if excl_pos < excl_n and excl[excl_pos] == did:
                    excl_pos += 1
                    excl_matched += 1
                    counts["excluded"] += 1
                    src(doc.pile_set_name)["excluded"] += 1
                    continue
            text = doc.text
            if EOD_TOKEN in text:
                counts["literal_eod"] += 1
                src(doc.pile_set_name)["literal_eod"] += 1
            texts.append(text)
            meta.append((did, doc.line, doc.pile_set_name))
            nchars += len(text)
            if len(texts) >= cfg.batch_size or nchars >= cfg.batch_chars:
                flush(out)
        flush(out)

    sizes = np.concatenate(sizes_parts) if sizes_parts else np.zeros(0, dtype=np.int32)
    file_name = task.input.label
    sidecar_path = tmp / f"{task.key}.docs.npz"
    with _committed(sidecar_path) as f:
        np.savez(
            f,
            doc_id=np.array(doc_ids, dtype=np.int64),
            line=np.array(lines, dtype=np.int64),
            set_code=np.array(set_codes, dtype=np.int32),
            set_names=np.array(sorted(set_names, key=set_names.get), dtype=np.str_),
            tokens=sizes,
            source_file=np.array(file_name, dtype=np.str_),
            allow_pickle=False,
        )
    return {
        "seq": task.seq,
        "bin": str(bin_path),
        "sizes": sizes,
        "sidecar": str(sidecar_path),
        "file": file_name,
        "counts": counts,
        "per_source": per_source,
        "stats": stats.to_dict() if task.reads_to_end else None,
        "exclude_ids": excl_n,
        "exclude_matched": excl_matched,
    }


# ----------------------------------------------------------------------------------------------
# task records: resume inside the stage
#
# A task's partial files are committed (written under a per-process temporary name, fsynced,
# renamed) and then its record `<key>.task.json`, last: a record names the stage fingerprint, the
# task's identity (input name, index, size, mtime, line range, its exclusion ids) and the size and
# sha256 of each of its files. A rerun with the same fingerprint returns a task's recorded result
# when its record is valid and runs the others; the merge reads the same partial bytes either way,
# so the merged outputs are identical to an uninterrupted run's.

TASK_RECORD_VERSION = 1


@contextlib.contextmanager
def _committed(path: Path):
    """Write `path` through `path.<pid>.tmp` (fsync, rename). The temporary name is per process:
    a straggling worker of a killed run can never rename this run's half-written file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    f = open_new(tmp)
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _task_identity(task: _Task) -> dict[str, Any] | None:
    """What the task read: None when its input cannot be stat'ed (nothing to reuse then)."""
    try:
        st = os.stat(task.input.path)
    except OSError:
        return None
    return {
        "input": task.input.label,
        "index": task.input.index,
        "kind": task.input.kind,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "first_line": task.first_line,
        "stop_line": task.stop_line,
        "exclude_sha256": ids_fingerprint(task.exclude),
    }


def _record_path(task: _Task) -> Path:
    return Path(task.tmp_dir) / f"{task.key}.task.json"


def _reusable(task: _Task) -> dict[str, Any] | None:
    """The recorded result of a task a previous run finished, when its record matches this task
    and its files are intact (size and sha256), else None."""
    path = _record_path(task)
    try:
        rec = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("version") != TASK_RECORD_VERSION:
        return None
    if rec.get("fingerprint") != task.fingerprint or rec.get("task") != _task_identity(task):
        return None
    tmp = Path(task.tmp_dir)
    files = rec.get("files")
    res = rec.get("result")
    names = {f"{task.key}.bin", f"{task.key}.docs.npz"}
    if not isinstance(files, dict) or set(files) != names or not isinstance(res, dict):
        return None
    for name, want in files.items():
        f = tmp / name
        try:
            if f.stat().st_size != want["size"] or sha256_file(f) != want["sha256"]:
                return None
        except (OSError, KeyError, TypeError):
            return None
    rc = task.read_config
    if task.reads_to_end and rc.on_error == "skip" and (res.get("stats") or {}).get("rejected"):
        if not quarantine_kept(rc.quarantine_dir, task.input):
            return None  # its quarantine was removed since: read the file again
    with np.load(tmp / f"{task.key}.docs.npz", allow_pickle=False) as z:
        sizes = np.asarray(z["tokens"], dtype=np.int32)
    return {
        **res,
        "seq": task.seq,
        "bin": str(tmp / f"{task.key}.bin"),
        "sidecar": str(tmp / f"{task.key}.docs.npz"),
        "sizes": sizes,
        "reused": True,
    }


def _run_task(task: _Task) -> dict[str, Any]:
    """A task's result: reused from its valid record, else tokenized and recorded."""
    res = _reusable(task)
    if res is not None:
        return res
    identity = _task_identity(task)
    res = _tokenize_task(task)
    res["reused"] = False
    if identity is None or identity != _task_identity(task):
        return res  # the input changed while it was read: nothing worth recording
    files = {}
    for p in (Path(res["bin"]), Path(res["sidecar"])):
        files[p.name] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    keep = ("file", "counts", "per_source", "stats", "exclude_ids", "exclude_matched")
    rec = {
        "version": TASK_RECORD_VERSION,
        "fingerprint": task.fingerprint,
        "task": identity,
        "files": files,
        "result": {k: res[k] for k in keep},
    }
    with _committed(_record_path(task)) as f:
        # insertion order kept: the merged counts keep the order a fresh run gives
        f.write(json.dumps(rec).encode("utf-8"))
    fsync_dir(Path(task.tmp_dir))
    return res


def work_dir_name(prefix: str, fingerprint: str) -> str:
    """The stage's work directory in its output directory: one per config fingerprint, hidden
    and ending in `.tmp` (what `pile verify` reports, as one line, as an interrupted run)."""
    return f".{prefix}.tokenize.{fingerprint[:16]}.tmp"


def _fault_after_merge(merged: int) -> None:
    """Test hook: `PILE_FAULT=tokenize-task:N` SIGKILLs this process once N tasks are merged."""
    if os.environ.get("PILE_FAULT") == f"tokenize-task:{merged}":
        import signal

        log.warning("PILE_FAULT: killing tokenize after %d merged task(s)", merged)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------------------------
# the stage


def _fingerprinted(cfg: StageConfig) -> dict[str, Any]:
    return {k: v for k, v in cfg.to_dict().items() if k not in cfg._not_fingerprinted}


def _add_source(total: dict[str, dict[str, int]], part: dict[str, dict[str, int]]) -> None:
    for name, d in part.items():
        t = total.setdefault(name, {k: 0 for k in d})
        for k, v in d.items():
            t[k] = t.get(k, 0) + v


def write_dataset_manifest(
    manifest_path: Path,
    names: dict[str, str],
    *,
    fingerprint: str,
    config: TokenizeConfig,
    read_config: ReadConfig,
    exclude_fingerprint: str | None,
    counts: dict[str, Any],
    tokenizer: dict[str, Any],
    dtype: str,
    eod_id: int,
    inputs: list[str],
    workers: int,
) -> None:
    """The token dataset's manifest, written last: one writer for tokenizing and for deriving the
    deduped dataset from the standard one (`pipeline.tokenize.derive`), so both give its bytes."""
    out = Path(manifest_path).parent
    write_manifest(
        manifest_path,
        kind=MANIFEST_KIND,
        config_fingerprint=fingerprint,
        files=[
            (out / names["bin"], "bin"),
            (out / names["idx"], "idx"),
            (out / names["sidecar"], "sidecar"),
        ],
        config={
            # only what determines the bytes: backend, batch size, paths and workers do not
            "tokenize": _fingerprinted(config),
            "read": _fingerprinted(read_config),
            "exclude_fingerprint": exclude_fingerprint,
        },
        counts=counts,
        extra={
            "tokenize_format_version": FORMAT_VERSION,
            "data_prefix": names["data_prefix"],
            "tokenizer": tokenizer,
            "dtype": dtype,
            "eod": {"append_eod": bool(config.append_eod), "eod_id": eod_id, "token": EOD_TOKEN},
            "inputs": inputs,
        },
        workers=workers,
    )


@holds_dir_locks
def run_tokenize(
    inputs: Iterable[str | os.PathLike | InputFile],
    out_dir: str | os.PathLike,
    prefix: str,
    config: TokenizeConfig | None = None,
    read_config: ReadConfig | None = None,
    exclude_ids: np.ndarray | None = None,
    exclude_fingerprint: str | None = None,
    executor: Executor | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    exclude_inputs: Sequence[str] | None = None,
    exclude: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Tokenize `inputs` into `out_dir/{prefix}_text_document.{bin,idx}` + sidecar + manifest.

    `exclude_ids` (sorted int64 doc ids, e.g. a dedup set's removed documents) are skipped and
    counted; `exclude_fingerprint` identifies that set in the config fingerprint (default: the
    sha256 of the ids); `exclude_inputs`, the input names the set was computed over (a dedup
    manifest's "inputs"), must equal these inputs' names, else ConfigError. `exclude` is the safe
    form: a `pile dedup` output directory (or a `.npy` of ids) whose ids, fingerprint, input names
    and sizes are loaded and checked against these inputs. `progress(result)` is called after each task is merged. Returns the
    manifest's counts.
    """
    config = config or TokenizeConfig()
    read_config = read_config or ReadConfig()
    if not prefix or "/" in prefix or prefix.startswith("."):
        raise ConfigError(
            f"prefix {prefix!r} must be a plain file name prefix (no '/', not starting with '.'), "
            "e.g. pile or pile_0.87_deduped."
        )
    if prefix.endswith("_text_document"):
        raise ConfigError(
            f"prefix {prefix!r}: '_text_document' is appended to the prefix (gpt-neox's naming), "
            f"so this would write {prefix}_text_document.bin; pass --prefix "
            f"{prefix[: -len('_text_document')] or 'pile'}."
        )
    executor = executor or InlineExecutor()
    out = Path(out_dir)
    names = output_names(prefix)
    t0 = time.perf_counter()

    from pipeline.tokenize.encoder import load_encoder

    enc = load_encoder(config.tokenizer_path, backend=config.backend, check_sha256=True)
    if enc.sha256 != config.tokenizer_sha256:
        raise ConfigError(
            f"tokenizer {enc.path} has sha256 {enc.sha256}, but the config expects "
            f"{config.tokenizer_sha256}; build the config with TokenizeConfig.for_tokenizer(path)."
        )
    dtype = token_dtype_for_vocab(enc.vocab_size)

    exclude_bytes = None
    if exclude is not None:
        if exclude_ids is not None:
            raise ConfigError("pass either exclude (a dedup directory or .npy) or exclude_ids.")
        exclude_ids, exclude_fingerprint = load_exclude(exclude)
        recorded = dedup_inputs_of(exclude)
        if recorded is not None:
            exclude_inputs, exclude_bytes = recorded
    if exclude_ids is not None:
        exclude_ids = normalize_ids(exclude_ids)
        exclude_fingerprint = exclude_fingerprint or ids_fingerprint(exclude_ids)
    else:
        exclude_ids = np.zeros(0, dtype=np.int64)
        exclude_fingerprint = None
    fingerprint = combine_fingerprints(
        config.fingerprint(), read_config.fingerprint(), exclude_fingerprint or "no-exclude"
    )

    files = resolve_inputs(inputs)
    if not files:
        raise ConfigError("no input files given; pass one or more INPUT files or directories.")
    if exclude_inputs is not None:
        where = str(exclude) if exclude is not None else "(exclude_inputs)"
        check_exclude_inputs(where, exclude_inputs, files, exclude_bytes)
    n_beyond = int(exclude_ids.size - np.searchsorted(exclude_ids, docid.base(len(files))))

    lock_dir(out, "tokenize")  # held until return: one writer per directory
    manifest_path = out / names["manifest"]
    if manifest_path.exists():
        manifest_path.unlink()  # the outputs are about to change: no stale "complete" marker
    # the work directory of this fingerprint is kept (its finished tasks are reused); those of
    # other configs are removed (the lock means no live run owns one)
    tmp_dir = out / work_dir_name(prefix, fingerprint)
    for stale in out.glob(f".{prefix}.tokenize.*tmp"):
        if stale != tmp_dir:
            shutil.rmtree(stale, ignore_errors=True)
    tmp_dir.mkdir(exist_ok=True)

    plan = plan_tasks(files, executor.workers)
    tasks = [
        _Task(
            seq=i,
            input=f,
            first_line=a,
            stop_line=b,
            config=config,
            read_config=read_config,
            tmp_dir=str(tmp_dir),
            exclude=_slice_ids(exclude_ids, f.index, a, b),
            fingerprint=fingerprint,
        )
        for i, (f, a, b) in enumerate(plan)
    ]
    log.info(
        "tokenizing %d input file(s) as %d task(s) on the %s, tokenizer %s (%s), dtype %s",
        len(files),
        len(tasks),
        executor.describe(),
        enc.name,
        enc.backend,
        dtype.name,
    )

    data_prefix = out / names["data_prefix"]
    sidecar_path = out / names["sidecar"]
    counts = {"documents": 0, "tokens": 0, "excluded": 0, "zero_token": 0, "literal_eod": 0}
    per_source: dict[str, dict[str, int]] = {}
    per_file: dict[str, dict[str, int]] = {}
    read_stats = ReadStats()
    exclude_matched = 0
    reused = 0
    try:
        with (
            MMIDXWriter(data_prefix, dtype) as writer,
            sidecar_mod.SidecarWriter(
                sidecar_path,
                metadata={
                    "pile.config_fingerprint": fingerprint,
                    "pile.tokenizer_sha256": enc.sha256,
                    "pile.data_prefix": names["data_prefix"],
                    "pile.format_version": str(FORMAT_VERSION),
                },
            ) as side,
        ):
            for res in executor.imap(_run_task, tasks):
                # partials stay until the merge is complete: a run killed while merging
                # resumes from them
                writer.append_bin_file(Path(res["bin"]), res["sizes"])
                side.append_npz(Path(res["sidecar"]))
                reused += bool(res.get("reused"))
                for k in counts:
                    counts[k] += res["counts"][k]
                _add_source(per_source, res["per_source"])
                pf = per_file.setdefault(res["file"], {"documents": 0, "tokens": 0})
                pf["documents"] += res["counts"]["documents"]
                pf["tokens"] += res["counts"]["tokens"]
                exclude_matched += res["exclude_matched"]
                if res["stats"] is not None:
                    read_stats.merge(ReadStats.from_dict(res["stats"]))
                if progress is not None:
                    progress(res)
                _fault_after_merge(res["seq"] + 1)
            if side.rows != writer.num_items:
                raise IntegrityError(
                    f"sidecar has {side.rows} rows but the dataset {writer.num_items} items; "
                    "internal error, rerun."
                )
            side.finalize()
            writer.finalize()
    except BaseException:
        # finished tasks stay for the rerun (their records say so); a run that finished none
        # leaves nothing behind
        if not any(tmp_dir.glob("*.task.json")):
            shutil.rmtree(tmp_dir, ignore_errors=True)
        else:
            log.warning("tokenize stopped; the finished tasks in %s are reused by a rerun", tmp_dir)
        raise
    log.info(
        "tokenize: ran %d of %d task(s), reused %d finished by an interrupted run",
        len(tasks) - reused,
        len(tasks),
        reused,
    )

    for name, s in read_stats.sources.items():
        d = per_source.setdefault(
            name, {"documents": 0, "tokens": 0, "excluded": 0, "empty": 0, "literal_eod": 0}
        )
        d["empty"] = d.get("empty", 0) + s.empty
    empty = read_stats.empty + counts["zero_token"]
    unmatched = int(exclude_ids.size) - exclude_matched
    result_counts: dict[str, Any] = {
        "documents": counts["documents"],
        "tokens": counts["tokens"],
        "items": counts["documents"],
        "empty_dropped": empty,
        "zero_token_dropped": counts["zero_token"],
        "excluded": counts["excluded"],
        "exclude_ids": int(exclude_ids.size),
        "exclude_ids_unmatched": unmatched,
        "exclude_ids_beyond_inputs": n_beyond,
        "documents_with_literal_eod": counts["literal_eod"],
        "rejected": read_stats.rejected,
        "rejected_by_reason": dict(sorted(read_stats.rejected_by_reason.items())),
        "blank_lines": read_stats.blank_lines,
        "lines": read_stats.lines,
        "input_files": len(files),
        "per_source": {k: per_source[k] for k in sorted(per_source)},
        "per_file": per_file,
    }
    if unmatched:
        log.warning(
            "%d of %d exclude ids matched no document of these inputs (%d point past the last "
            "input file); check that the dedup set was built from the same input list",
            unmatched,
            exclude_ids.size,
            n_beyond,
        )
    if counts["literal_eod"]:
        log.warning(
            "%d document(s) contain the literal string %s, which encodes as the EOD id %d",
            counts["literal_eod"],
            EOD_TOKEN,
            enc.eod_id,
        )
    write_dataset_manifest(
        manifest_path,
        names,
        fingerprint=fingerprint,
        config=config,
        read_config=read_config,
        exclude_fingerprint=exclude_fingerprint,
        counts=result_counts,
        tokenizer={
            "sha256": enc.sha256,
            "vocab_size": int(enc.vocab_size),
            "eod_id": int(enc.eod_id),
            # which encoder made the ids (all give identical ids; the guard checked it)
            "backend": enc.backend_label,
        },
        dtype=dtype.name,
        eod_id=int(enc.eod_id),
        inputs=[f.label for f in files],
        workers=min(3, executor.workers + 1),
    )
    # only now: a run killed before the manifest was written reuses every task
    shutil.rmtree(tmp_dir, ignore_errors=True)
    log.info(
        "wrote %s: %d documents, %d tokens in %.1fs",
        out / names["bin"],
        counts["documents"],
        counts["tokens"],
        time.perf_counter() - t0,
    )
    return result_counts
