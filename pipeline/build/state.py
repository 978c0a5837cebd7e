"""Completion records: `OUT/_state/<stage>.json`, written last by each stage of a build.

A record holds the stage's key (the fingerprint of its config, its inputs and its upstream stages'
keys) and the name, size and sha256 of every output. A stage is skipped on rerun only when its
record exists, its key matches, and every output is present with the recorded size; otherwise it is
rebuilt from scratch, and so is everything downstream (their keys include this one).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pipeline.config import canonical_json
from pipeline.io import atomic_write_text
from pipeline.manifest import file_entries

STATE_DIR = "_state"


def state_path(out_dir: Path, stage: str) -> Path:
    return Path(out_dir) / STATE_DIR / f"{stage}.json"


def load_record(out_dir: Path, stage: str) -> dict[str, Any] | None:
    p = state_path(out_dir, stage)
    try:
        return json.loads(p.read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def is_complete(out_dir: Path, stage: str, key: str) -> bool:
    rec = load_record(out_dir, stage)
    if rec is None or rec.get("key") != key:
        return False
    for f in rec.get("outputs", []):
        p = Path(out_dir) / f["name"]
        try:
            if p.stat().st_size != f["bytes"]:
                return False
        except FileNotFoundError:
            return False
    return True


def write_record(
    out_dir: Path, stage: str, key: str, outputs: list[Path], info: dict[str, Any] | None = None
) -> dict[str, Any]:
    entries = file_entries(Path(out_dir), sorted(outputs))
    rec = {
        "stage": stage,
        "key": key,
        "outputs": [e.to_dict() for e in entries],
        "info": info or {},
    }
    atomic_write_text(state_path(out_dir, stage), canonical_json(rec) + "\n")
    return rec


def clear_record(out_dir: Path, stage: str) -> None:
    try:
        os.unlink(state_path(out_dir, stage))
    except FileNotFoundError:
        pass
