"""Completion records: `OUT/_state/<stage>.json`, one per stage of a build.

Before a stage runs, its record is replaced by a *running* record: the stage key and `planned`, the
names (relative to OUT, concrete: no globs) of every file the stage may write. When the stage
finishes, the record is rewritten as *complete*, adding the name, size, mtime_ns and sha256 of every
output. Either kind tells a later run exactly which files the stage owns, so an unfinished or
other-config run is cleaned up without touching anything else in OUT.

Records are untrusted input (a hand-edited or planted `_state` file must not delete user files): a
name is used only when it is a concrete relative path inside OUT (no glob, no `..`, not absolute,
no symlinked directory on the way) that matches a pattern of the files its stage writes (`owns`,
from the code, never from the record); anything else is ignored with a warning.

A stage is skipped on rerun only when its record is complete, its key matches and every output is
intact. Intact is checked cheaply: same size and mtime_ns as recorded. A file whose mtime changed
(a copied output directory) is re-hashed and accepted when its sha256 still matches; a changed size
or sha256 means the file is corrupt and the stage is redone. Hashing every output of a no-op rerun
would read hundreds of GB at Pile scale, hence the mtime fast path.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

from pipeline.config import canonical_json
from pipeline.io import atomic_write_text, sha256_file
from pipeline.manifest import file_entries

log = logging.getLogger(__name__)

STATE_DIR = "_state"
RUNNING = "running"
COMPLETE = "complete"
KEY_CHANGED = "config, inputs or an upstream stage changed"


def state_path(out_dir: Path, stage: str) -> Path:
    return Path(out_dir) / STATE_DIR / f"{stage}.json"


def load_record(out_dir: Path, stage: str) -> dict[str, Any] | None:
    p = state_path(out_dir, stage)
    try:
        rec = json.loads(p.read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def check_complete(
    out_dir: Path, stage: str, key: str, *, refresh: bool = False
) -> tuple[bool, str]:
    """(complete?, why not). Outputs whose mtime changed are re-hashed; with `refresh`, the new
    mtimes of files whose hash still matches are written back so the next rerun is fast again."""
    rec = load_record(out_dir, stage)
    if rec is None:
        return False, "no completion record"
    if rec.get("key") != key:
        return False, KEY_CHANGED
    # records written before the running/complete split have no status and are complete
    if rec.get("status", COMPLETE) != COMPLETE:
        return False, "an earlier run did not finish"
    touched = False
    for f in rec.get("outputs", []):
        why = bad_name(f.get("name") if isinstance(f, dict) else None, ["*"])
        if why:  # a hand-edited record: never stat or read what it names
            return False, f"its record is not valid ({f!r} is {why})"
        p = Path(out_dir) / f["name"]
        try:
            st = p.stat()
        except FileNotFoundError:
            log.warning("stage %s: output %s is missing; redoing the stage", stage, p)
            return False, f"{p} is missing"
        if st.st_size != f["bytes"]:
            log.warning(
                "stage %s: output %s has %d bytes, %d recorded; redoing the stage",
                stage, p, st.st_size, f["bytes"],
            )  # fmt: skip
            return False, f"{p} changed size"
        if st.st_mtime_ns == f.get("mtime_ns"):
            continue
        if sha256_file(p) != f["sha256"]:
            log.warning(
                "stage %s: output %s does not match its recorded sha256 (modified or corrupt); "
                "redoing the stage",
                stage, p,
            )  # fmt: skip
            return False, f"{p} does not match its recorded sha256"
        log.info(
            "stage %s: output %s has a new mtime but still matches its recorded sha256", stage, p
        )
        f["mtime_ns"] = st.st_mtime_ns
        touched = True
    if touched and refresh:
        atomic_write_text(state_path(out_dir, stage), canonical_json(rec) + "\n")
    return True, ""


def is_complete(out_dir: Path, stage: str, key: str, *, refresh: bool = False) -> bool:
    return check_complete(out_dir, stage, key, refresh=refresh)[0]


def write_running(out_dir: Path, stage: str, key: str, planned: list[str]) -> dict[str, Any]:
    """Mark the stage as started: what it may write is on disk before it writes anything."""
    rec = {"stage": stage, "key": key, "status": RUNNING, "planned": sorted(planned)}
    atomic_write_text(state_path(out_dir, stage), canonical_json(rec) + "\n")
    return rec


def write_record(
    out_dir: Path,
    stage: str,
    key: str,
    outputs: list[Path],
    info: dict[str, Any] | None = None,
    planned: list[str] | None = None,
    basis: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The complete record. `basis` (what the key was made of) lets a later run name what
    changed when the key no longer matches."""
    entries = []
    for e in file_entries(Path(out_dir), sorted(outputs)):
        d = e.to_dict()
        # stat after hashing: the file is final, so this is the mtime a rerun will see
        d["mtime_ns"] = (Path(out_dir) / e.name).stat().st_mtime_ns
        entries.append(d)
    rec = {
        "stage": stage,
        "key": key,
        "status": COMPLETE,
        "outputs": entries,
        "planned": sorted(planned or []),
        "info": info or {},
    }
    if basis is not None:
        rec["basis"] = basis
    atomic_write_text(state_path(out_dir, stage), canonical_json(rec) + "\n")
    return rec


GLOB_CHARS = frozenset("*?[]")


def bad_name(name: object, owns: list[str]) -> str | None:
    """Why a record's file name must not be used (None when it is fine): see the module doc."""
    if not isinstance(name, str) or not name:
        return "not a file name"
    if GLOB_CHARS & set(name):
        return "a glob, not a file name"
    if name.startswith("/") or "\\" in name or "\0" in name:
        return "not a relative path"
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "not a plain relative path (empty, '.' or '..' part)"
    if parts[0] == STATE_DIR:
        return f"inside {STATE_DIR}/"
    if not any(fnmatch.fnmatchcase(name, pat) for pat in owns):
        return "not a file this stage writes"
    return None


def owned_files(out_dir: Path, rec: dict[str, Any] | None, owns: list[str]) -> list[Path]:
    """Existing files a record (complete or running) says its stage wrote or may have written,
    kept only when they pass `bad_name` and lie in OUT through real directories."""
    if not rec or not isinstance(rec, dict):
        return []
    out = Path(out_dir)
    root = out.resolve()
    outputs = rec.get("outputs", [])
    planned = rec.get("planned", [])
    names = (
        [f.get("name") for f in outputs if isinstance(f, dict)] if isinstance(outputs, list) else []
    )
    names += planned if isinstance(planned, list) else []
    found: set[Path] = set()
    for name in names:
        why = bad_name(name, owns)
        if why:
            log.warning(
                "ignoring %r in the record of stage %s: %s (only files the stage writes are "
                "removed)", name, rec.get("stage", "?"), why,
            )  # fmt: skip
            continue
        p = out / name
        # every directory on the way must be a real one inside OUT (a symlinked stage
        # directory would take the removal elsewhere)
        if p.parent.resolve() != root.joinpath(*name.split("/")[:-1]):
            log.warning("ignoring %s: a directory on its path is a symlink", p)
            continue
        try:
            st = os.lstat(p)
        except OSError:
            continue
        # a regular file, or a symlink pile would replace (unlink removes the link, not its target)
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            found.add(p)
    return sorted(found)


def clear_record(out_dir: Path, stage: str) -> None:
    try:
        os.unlink(state_path(out_dir, stage))
    except FileNotFoundError:
        pass
