"""Task records: resume inside the tokenize stage.

A task's partial files are committed (written under a per-process temporary name, fsynced,
renamed) and then its record `<key>.task.json`, last: a record names the stage fingerprint, the
task's identity (input name, index, size, mtime, its unit's line range and the size and mtime
of the file it reads, its exclusion ids; the unit plan's fingerprint is recorded too) and the size and
sha256 of each of its files. A rerun with the same fingerprint returns a task's recorded result
when its record is valid and runs the others; the merge reads the same partial bytes either way,
so the merged outputs are identical to an uninterrupted run's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io import fsync_dir, sha256_file
from pipeline.read.reader import quarantine_kept, quarantine_path
from pipeline.read.remote import input_stat
from pipeline.read.units import part_path
from pipeline.tokenize.exclude import ids_fingerprint
from pipeline.tokenize.plan import Task
from pipeline.tokenize.worker import committed, tokenize_task

TASK_RECORD_VERSION = 2  # 2: tasks are work units


def task_identity(task: Task) -> dict[str, Any] | None:
    """What the task read: None when its input cannot be stat'ed (nothing to reuse then)."""
    try:
        st = input_stat(task.input.path)
    except OSError:
        return None
    u = task.unit
    return {
        "input": task.input.label,
        "index": task.input.index,
        "kind": task.input.kind,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "first_line": task.first_line,
        "stop_line": task.stop_line,
        "unit": [u.part, u.parts, u.mode, u.start, u.offset, u.skip, u.lines],
        "read_size": u.read_size,
        "read_mtime_ns": u.read_mtime_ns,
        "exclude_sha256": ids_fingerprint(task.exclude),
    }


def record_path(task: Task) -> Path:
    return Path(task.tmp_dir) / f"{task.key}.task.json"


def reusable(task: Task) -> dict[str, Any] | None:
    """The recorded result of a task a previous run finished, when its record matches this task
    and its files are intact (size and sha256), else None."""
    path = record_path(task)
    try:
        rec = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("version") != TASK_RECORD_VERSION:
        return None
    if rec.get("fingerprint") != task.fingerprint or rec.get("task") != task_identity(task):
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
    if rc.on_error == "skip" and (res.get("stats") or {}).get("rejected"):
        if not _quarantine_kept(rc.quarantine_dir, task):
            return None  # its quarantine was removed (or merged) since: read the unit again
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


def _quarantine_kept(quarantine_dir: str, task: Task) -> bool:
    """Whether the unit's rejected records are in the quarantine: the file's own pair for a
    one-unit file, else the unit's part (merged into the file's and removed before the manifest
    is written: a run killed after that reads the rejecting units again)."""
    u = task.unit
    if u.parts < 2 or u.mode == "file":
        return quarantine_kept(quarantine_dir, task.input)
    raw = quarantine_path(quarantine_dir, task.input)
    return part_path(raw, u).is_file()


def run_task(task: Task) -> dict[str, Any]:
    """A task's result: reused from its valid record, else tokenized and recorded."""
    res = reusable(task)
    if res is not None:
        return res
    identity = task_identity(task)
    res = tokenize_task(task)
    res["reused"] = False
    if identity is None or identity != task_identity(task):
        return res  # the input changed while it was read: nothing worth recording
    files = {}
    for p in (Path(res["bin"]), Path(res["sidecar"])):
        files[p.name] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    keep = ("file", "counts", "per_source", "stats", "exclude_ids", "exclude_matched")
    rec = {
        "version": TASK_RECORD_VERSION,
        "fingerprint": task.fingerprint,
        "task": identity,
        # which plan made it; not compared: the unit's own entry and the size and mtime of the
        # file it reads say what it read (a plan of another input list reuses the same units)
        "plan": task.plan_fingerprint,
        "files": files,
        "result": {k: res[k] for k in keep},
    }
    with committed(record_path(task)) as f:
        # insertion order kept: the merged counts keep the order a fresh run gives
        f.write(json.dumps(rec).encode("utf-8"))
    fsync_dir(Path(task.tmp_dir))
    return res


def work_dir_name(prefix: str, fingerprint: str) -> str:
    """The stage's work directory in its output directory: one per config fingerprint, hidden
    and ending in `.tmp` (what `pile verify` reports, as one line, as an interrupted run)."""
    return f".{prefix}.tokenize.{fingerprint[:16]}.tmp"
