"""Writers for tiny test inputs in the Pile's formats."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import zstandard


def pile_line(text, name="Pile-CC", **meta) -> bytes:
    return json.dumps({"text": text, "meta": {"pile_set_name": name, **meta}}).encode() + b"\n"


def write_zst(path: Path, lines: list[bytes], frames: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(lines)
    cctx = zstandard.ZstdCompressor(level=3)
    if frames == 1:
        path.write_bytes(cctx.compress(data))
    else:
        step = max(1, len(data) // frames)
        parts = [data[i : i + step] for i in range(0, len(data), step)]
        path.write_bytes(b"".join(cctx.compress(p) for p in parts))
    return path


def write_gz(path: Path, lines: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(b"".join(lines))
    return path
