"""The tokenize task: one work unit (pipeline.read.units) -> a partial `.bin` of token ids and its sidecar
rows (`<key>.docs.npz`, with the item sizes) in the work directory, each committed atomically under
a per-process temporary name (`committed`)."""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import IntegrityError
from pipeline.io import atomic_open
from pipeline.read import ReadStats
from pipeline.read.units import iter_unit
from pipeline.shards.mmidx import token_dtype_for_vocab
from pipeline.tokenize.dataset import EOD_TOKEN
from pipeline.tokenize.plan import Task


def committed(path: Path):
    """Write `path` through `path.<pid>.tmp` (fsync, rename): a straggling worker of a killed run
    can never rename this run's half-written file."""
    return atomic_open(path, "wb", per_process=True)


def tokenize_task(task: Task) -> dict[str, Any]:
    """Tokenize one task's documents into partial files; return their paths and counts."""
    from pipeline.tokenize.encoder import load_encoder

    cfg = task.config
    enc = load_encoder(cfg.tokenizer_path, backend=cfg.backend, check_sha256=True)
    dtype = token_dtype_for_vocab(enc.vocab_size)
    eod = int(enc.eod_id)
    vocab = int(enc.vocab_size)
    rc = task.read_config
    # a unit's statistics, merged in unit order, are its file's (pipeline.read.units)
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
    with committed(bin_path) as out:
        for doc in iter_unit(task.unit, rc, stats):
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
    with committed(sidecar_path) as f:
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
        "stats": stats.to_dict(),
        "exclude_ids": excl_n,
        "exclude_matched": excl_matched,
    }
