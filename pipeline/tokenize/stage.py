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

(names and manifest: pipeline.tokenize.dataset; exclusion sets: pipeline.tokenize.exclude)

Parallelism: one task per work unit (pipeline.tokenize.plan, pipeline.read.units: whole files,
byte ranges of plain jsonl, frame ranges of multi-frame or re-chunked zstd files, about
`unit_bytes` of text each), run on the executor the caller passes (pipeline.tokenize.worker). Each task writes a partial `.bin` and
its sidecar rows (with the item sizes) to the work directory `out_dir/.{prefix}.tokenize.{fp}.tmp/`
(one per config fingerprint), then its record `<task>.task.json` last (pipeline.tokenize.records); the main process appends
them in task order (`MMIDXWriter.append_bin_file`) and rewrites the sidecar rows in fixed-size row
groups (pipeline.tokenize.merge), so every output byte is the same for any worker count. The index's doc_idx is written once
from the merged sizes (0, 1, ..., N), never concatenated from partials (gpt-neox's merge forgot to
extend it). Resume: a killed run's work directory is kept, and a rerun with the same fingerprint
reuses every task whose record is valid (same input size, mtime and line range, partial files of
the recorded sizes and sha256) and runs only the others; the directory is removed once the
manifest is written. The temporary space needed is the size of the final `.bin` again.

A unit is entered without reading what precedes it; its reader statistics, merged in unit order,
are its file's, and in skip mode its quarantine part is joined into the file's
(`merge_quarantine`) before the manifest is written. The unit plan (fingerprint, unit count) is
logged and recorded in every task record, never in the manifest (same bytes for any unit size).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import docid
from pipeline.config import combine_fingerprints
from pipeline.engine.base import Executor, InlineExecutor
from pipeline.errors import ConfigError, IntegrityError
from pipeline.lock import holds_dir_locks, lock_dir
from pipeline.read import InputFile, ReadConfig, resolve_inputs
from pipeline.read.units import Unit, merge_quarantine
from pipeline.shards.mmidx import MMIDXWriter, token_dtype_for_vocab
from pipeline.tokenize.config import TokenizeConfig
from pipeline.tokenize.dataset import (
    EOD_TOKEN,
    FORMAT_VERSION,
    MANIFEST_KIND,
    output_names,
    write_dataset_manifest,
)
from pipeline.tokenize.exclude import (
    check_exclude_inputs,
    dedup_inputs_of,
    ids_fingerprint,
    load_exclude,
    normalize_ids,
)
from pipeline.tokenize.merge import Merged, merge_tasks
from pipeline.tokenize.plan import TASKS_PER_WORKER, Task, plan_tasks
from pipeline.tokenize.records import work_dir_name
from pipeline.tokenize.sidecar import SidecarWriter

log = logging.getLogger(__name__)

# the public names of the stage, whichever module owns them
__all__ = [
    "EOD_TOKEN",
    "FORMAT_VERSION",
    "MANIFEST_KIND",
    "TASKS_PER_WORKER",
    "TokenizeConfig",
    "check_exclude_inputs",
    "load_exclude",
    "normalize_ids",
    "output_names",
    "plan_tasks",
    "run_tokenize",
    "work_dir_name",
    "write_dataset_manifest",
]


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
    _check_prefix(prefix)
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
    exclude_ids, exclude_fingerprint = _exclusion(exclude_ids, exclude_fingerprint)
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

    tmp_dir = _prepare(out, prefix, names, fingerprint)  # locks `out` until return

    plan = plan_tasks(
        files, executor.workers, config.unit_bytes, config.unit_cache, executor=executor
    )
    tasks = [
        Task(
            seq=i,
            unit=u,
            config=config,
            read_config=read_config,
            tmp_dir=str(tmp_dir),
            exclude=_unit_ids(exclude_ids, u),
            fingerprint=fingerprint,
            plan_fingerprint=plan.fingerprint,
        )
        for i, u in enumerate(plan.units)
    ]
    # the unit plan goes to the log and the task records, never to the manifest: the dataset's
    # bytes are the same for any unit size
    log.info(
        "tokenizing %d input file(s) as %d task(s) (unit plan %s, %s bytes of text per unit) on "
        "the %s, tokenizer %s (%s), dtype %s",
        len(files),
        len(tasks),
        plan.fingerprint[:16],
        plan.unit_bytes,
        executor.describe(),
        enc.name,
        enc.backend,
        dtype.name,
    )

    try:
        merged = _merge(tasks, out, names, fingerprint, enc, dtype, executor, progress)
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
        len(tasks) - merged.reused,
        len(tasks),
        merged.reused,
    )
    result_counts = _result_counts(merged, exclude_ids, n_beyond, len(files))
    counts = merged.counts
    unmatched = result_counts["exclude_ids_unmatched"]
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
    if read_config.on_error == "skip" and read_config.quarantine_dir:
        # the units' quarantine parts joined into each file's pair, before the manifest
        merge_quarantine(plan, read_config.quarantine_dir)
    write_dataset_manifest(
        out / names["manifest"],
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


def _merge(
    tasks: Sequence[Task],
    out: Path,
    names: dict[str, str],
    fingerprint: str,
    enc,
    dtype: np.dtype,
    executor: Executor,
    progress: Callable[[dict[str, Any]], None] | None,
) -> Merged:
    """Run the tasks and merge them into the dataset's .bin/.idx and sidecar."""
    with (
        MMIDXWriter(out / names["data_prefix"], dtype) as writer,
        SidecarWriter(
            out / names["sidecar"],
            metadata={
                "pile.config_fingerprint": fingerprint,
                "pile.tokenizer_sha256": enc.sha256,
                "pile.data_prefix": names["data_prefix"],
                "pile.format_version": str(FORMAT_VERSION),
            },
        ) as side,
    ):
        merged = merge_tasks(executor, tasks, writer, side, progress)
        if side.rows != writer.num_items:
            raise IntegrityError(
                f"sidecar has {side.rows} rows but the dataset {writer.num_items} items; "
                "internal error, rerun."
            )
        side.finalize()
        writer.finalize()
    return merged


def _unit_ids(ids: np.ndarray, unit: Unit) -> np.ndarray:
    """The sorted ids of `ids` in the unit's lines."""
    lo, hi = unit.id_range()
    a, b = np.searchsorted(ids, [lo, hi])
    return ids[a:b]


def _check_prefix(prefix: str) -> None:
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


def _exclusion(ids: Any, fingerprint: str | None) -> tuple[np.ndarray, str | None]:
    """(sorted unique ids, fingerprint: the given one or the ids' sha256); no ids: (empty, None)."""
    if ids is None:
        return np.zeros(0, dtype=np.int64), None
    ids = normalize_ids(ids)
    return ids, fingerprint or ids_fingerprint(ids)


def _prepare(out: Path, prefix: str, names: dict[str, str], fingerprint: str) -> Path:
    """Lock `out`, drop the stale manifest and other configs' work directories; the work
    directory of this fingerprint (kept: its finished tasks are reused)."""
    lock_dir(out, "tokenize")  # held until run_tokenize returns: one writer per directory
    manifest_path = out / names["manifest"]
    if manifest_path.exists():
        manifest_path.unlink()  # the outputs are about to change: no stale "complete" marker
    # those of other configs are removed (the lock means no live run owns one)
    tmp_dir = out / work_dir_name(prefix, fingerprint)
    for stale in out.glob(f".{prefix}.tokenize.*tmp"):
        if stale != tmp_dir:
            shutil.rmtree(stale, ignore_errors=True)
    tmp_dir.mkdir(exist_ok=True)
    return tmp_dir


def _result_counts(
    merged: Merged, exclude_ids: np.ndarray, n_beyond: int, input_files: int
) -> dict[str, Any]:
    """The manifest's counts from the merged task results."""
    counts, per_source, per_file = merged.counts, merged.per_source, merged.per_file
    read_stats = merged.read_stats
    for name, s in read_stats.sources.items():
        d = per_source.setdefault(
            name, {"documents": 0, "tokens": 0, "excluded": 0, "empty": 0, "literal_eod": 0}
        )
        d["empty"] = d.get("empty", 0) + s.empty
    return {
        "documents": counts["documents"],
        "tokens": counts["tokens"],
        "items": counts["documents"],
        "empty_dropped": read_stats.empty + counts["zero_token"],
        "zero_token_dropped": counts["zero_token"],
        "excluded": counts["excluded"],
        "exclude_ids": int(exclude_ids.size),
        "exclude_ids_unmatched": int(exclude_ids.size) - merged.exclude_matched,
        "exclude_ids_beyond_inputs": n_beyond,
        "documents_with_literal_eod": counts["literal_eod"],
        "rejected": read_stats.rejected,
        "rejected_by_reason": dict(sorted(read_stats.rejected_by_reason.items())),
        "blank_lines": read_stats.blank_lines,
        "lines": read_stats.lines,
        "input_files": input_files,
        "per_source": {k: per_source[k] for k in sorted(per_source)},
        "per_file": per_file,
    }
