"""Completion records: `OUT/_state/<stage>.json`, one per stage of a build.

Before a stage runs, its record is replaced by a *running* record: the stage key and `planned`, the
names (relative to OUT, `*`/`?` globs allowed) of every file the stage may write. When the stage
finishes, the record is rewritten as *complete*, adding the name, size, mtime_ns and sha256 of every
output. Either kind tells a later run exactly which files the stage owns, so an unfinished or
other-config run is cleaned up without touching anything else in OUT.

A stage is skipped on rerun only when its record is complete, its key matches and every output is
intact. Intact is checked cheaply: same size and mtime_ns as recorded. A file whose mtime changed
(a copied output directory) is re-hashed and accepted when its sha256 still matches; a changed size
or sha256 means the file is corrupt and the stage is redone. Hashing every output of a no-op rerun
would read hundreds of GB at Pile scale, hence the mtime fast path.
"""

from __future__ import annotations

import json
import logging
import os
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


def owned_files(out_dir: Path, rec: dict[str, Any] | None) -> list[Path]:
    """Existing files a record (complete or running) says its stage wrote or may have written;
    never anything outside OUT or under `_state/`."""
    if not rec:
        return []
    out = Path(out_dir)
    root = out.resolve()
    names = [f["name"] for f in rec.get("outputs", []) if isinstance(f, dict) and "name" in f]
    names += [n for n in rec.get("planned", []) if isinstance(n, str)]
    found: set[Path] = set()
    for name in names:
        cands = out.glob(name) if any(c in name for c in "*?[") else [out / name]
        for p in cands:
            try:
                rel = p.resolve().relative_to(root)
            except ValueError:
                continue  # a hand-edited record must not reach outside OUT
            if rel.parts and rel.parts[0] != STATE_DIR and p.is_file():
                found.add(p)
    return sorted(found)


def clear_record(out_dir: Path, stage: str) -> None:
    try:
        os.unlink(state_path(out_dir, stage))
    except FileNotFoundError:
        pass
