"""The deduped token dataset derived from the standard one, without reading or tokenizing again.

Tokenizing with an exclusion set writes exactly the standard dataset's items minus the excluded
documents, in the same order (an item is a function of its document alone). So the deduped
`.bin` is the kept items' byte ranges of the standard `.bin` copied in order, its `.idx` their
sizes, its sidecar the kept rows, and its manifest the same fields `run_tokenize(...,
exclude_ids=...)` writes: same config fingerprint, counts recomputed from the sidecar (per source,
per file) and the standard manifest (reader statistics, which do not depend on the exclusion);
the documents holding a literal `<|endoftext|>` are the items with an EOD id before their last
token (the id is only ever produced by that literal). The result is byte-identical to tokenizing
the deduped inputs (tests/tokenize/test_derive.py checks it both ways).

It is refused (`derive_excluded` returns None and the caller tokenizes) when the standard dataset
was made with another config or dropped zero-token documents (then an excluded id could point at a
document the standard dataset does not hold, and the counts could not be recomputed exactly).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.config import combine_fingerprints
from pipeline.errors import IntegrityError
from pipeline.manifest import read_manifest
from pipeline.read import ReadConfig
from pipeline.shards.mmidx import MMIDXDataset, MMIDXWriter
from pipeline.tokenize import sidecar as sidecar_mod
from pipeline.tokenize.dataset import FORMAT_VERSION, output_names, write_dataset_manifest
from pipeline.tokenize.exclude import normalize_ids

log = logging.getLogger(__name__)

COPY_TOKENS = 16 << 20  # tokens per copied piece (bounded memory)


def derive_excluded(
    std_dir: str | os.PathLike,
    std_prefix: str,
    out_dir: str | os.PathLike,
    prefix: str,
    config,
    read_config: ReadConfig,
    exclude_ids: np.ndarray,
    exclude_fingerprint: str,
) -> dict[str, Any] | None:
    """Write `out_dir/{prefix}_text_document.*` + manifest from the standard dataset minus
    `exclude_ids`; returns the counts (as `run_tokenize`), or None when it cannot be derived."""

    t0 = time.perf_counter()
    std_dir, out = Path(std_dir), Path(out_dir)
    sn, names = output_names(std_prefix), output_names(prefix)
    try:
        std = read_manifest(std_dir / sn["manifest"])
    except IntegrityError as e:
        log.info("deduped tokens not derived: %s", e)
        return None
    want_std = combine_fingerprints(config.fingerprint(), read_config.fingerprint(), "no-exclude")
    c = std.get("counts", {})
    if std.get("config_fingerprint") != want_std or c.get("zero_token_dropped", 1) != 0:
        log.info("deduped tokens not derived: the standard dataset has another config")
        return None
    exclude_ids = normalize_ids(exclude_ids)
    fingerprint = combine_fingerprints(
        config.fingerprint(), read_config.fingerprint(), exclude_fingerprint
    )
    eod = int(std["eod"]["eod_id"])
    append_eod = bool(std["eod"]["append_eod"])

    ds = MMIDXDataset(std_dir / sn["data_prefix"])
    # string columns as dictionaries: 211M documents must not become 211M Python strings
    side = sidecar_mod.read_sidecar(std_dir / sn["sidecar"], dictionary=True)
    doc_id = side.column("doc_id").to_numpy()
    pos = np.searchsorted(exclude_ids, doc_id)
    pos[pos >= exclude_ids.size] = 0
    excluded = exclude_ids[pos] == doc_id if exclude_ids.size else np.zeros(doc_id.size, bool)
    keep = ~excluded
    sizes = np.asarray(ds.sizes, dtype=np.int64)
    pointers = np.asarray(ds.index.pointers, dtype=np.int64) // ds.dtype.itemsize

    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / names["manifest"]
    if manifest_path.exists():
        manifest_path.unlink()
    literal = np.zeros(doc_id.size, dtype=bool)
    kept_idx = np.flatnonzero(keep)
    with (
        MMIDXWriter(out / names["data_prefix"], ds.dtype) as writer,
        sidecar_mod.SidecarWriter(
            out / names["sidecar"],
            metadata={
                "pile.config_fingerprint": fingerprint,
                "pile.tokenizer_sha256": std["tokenizer"]["sha256"],
                "pile.data_prefix": names["data_prefix"],
                "pile.format_version": str(FORMAT_VERSION),
            },
        ) as sw,
    ):
        # runs of consecutive kept items are contiguous in the standard .bin: copy them in pieces
        i = 0
        while i < kept_idx.size:
            j = i + 1
            start = kept_idx[i]
            tok = sizes[start]
            while j < kept_idx.size and kept_idx[j] == kept_idx[j - 1] + 1 and tok < COPY_TOKENS:
                tok += sizes[kept_idx[j]]
                j += 1
            items = kept_idx[i:j]
            lo = pointers[items[0]]
            flat = ds.bin[lo : lo + tok]
            writer.add_items(flat, sizes[items])
            z = np.flatnonzero(flat == eod)
            if z.size:
                ends = np.cumsum(sizes[items])
                item_of = np.searchsorted(ends, z, side="right")
                if append_eod:  # the appended EOD (last token) is not a literal
                    item_of = item_of[z != ends[item_of] - 1]
                literal[items[np.unique(item_of)]] = True
            i = j
        for lo in range(0, side.num_rows, sidecar_mod.ROW_GROUP_ROWS):  # bounded memory
            hi = lo + sidecar_mod.ROW_GROUP_ROWS
            sw.append_table(side.slice(lo, hi - lo).filter(pa.array(keep[lo:hi])))
        if sw.rows != writer.num_items:
            raise IntegrityError("derived sidecar and dataset differ in length; internal error")
        sw.finalize()
        writer.finalize()

    # counts, as run_tokenize computes them
    set_codes, set_dict = _codes(side.column("pile_set_name"))
    file_codes, file_dict = _codes(side.column("file"))
    tokens = side.column("tokens").to_numpy().astype(np.int64)
    per_source = {}
    for name, d in std["counts"]["per_source"].items():
        m = set_codes == set_dict.get(name, -1)
        k = m & keep
        per_source[name] = {
            "documents": int(k.sum()),
            "tokens": int(tokens[k].sum()),
            "excluded": int((m & excluded).sum()),
            "empty": int(d.get("empty", 0)),
            "literal_eod": int((k & literal).sum()),
        }
    per_file = {}
    for name in std["counts"]["per_file"]:
        k = (file_codes == file_dict.get(name, -1)) & keep
        per_file[name] = {"documents": int(k.sum()), "tokens": int(tokens[k].sum())}
    n_files = int(c["input_files"])
    from pipeline import docid

    n_beyond = int(exclude_ids.size - np.searchsorted(exclude_ids, docid.base(n_files)))
    matched = int(excluded.sum())
    counts = {
        "documents": int(keep.sum()),
        "tokens": int(tokens[keep].sum()),
        "items": int(keep.sum()),
        "empty_dropped": c["empty_dropped"],
        "zero_token_dropped": 0,
        "excluded": matched,
        "exclude_ids": int(exclude_ids.size),
        "exclude_ids_unmatched": int(exclude_ids.size) - matched,
        "exclude_ids_beyond_inputs": n_beyond,
        "documents_with_literal_eod": int((keep & literal).sum()),
        "rejected": c["rejected"],
        "rejected_by_reason": c["rejected_by_reason"],
        "blank_lines": c["blank_lines"],
        "lines": c["lines"],
        "input_files": n_files,
        "per_source": {k: per_source[k] for k in sorted(per_source)},
        "per_file": per_file,
    }
    write_dataset_manifest(
        manifest_path,
        names,
        fingerprint=fingerprint,
        config=config,
        read_config=read_config,
        exclude_fingerprint=exclude_fingerprint,
        counts=counts,
        tokenizer=std["tokenizer"],  # the backend that made the standard ids made these
        dtype=std["dtype"],
        eod_id=eod,
        inputs=std["inputs"],
        workers=3,
    )
    log.info(
        "derived %s from %s minus %d excluded documents in %.1fs (no re-tokenizing)",
        out / names["bin"],
        std_dir / sn["bin"],
        matched,
        time.perf_counter() - t0,
    )
    return counts


def _codes(col: pa.ChunkedArray) -> tuple[np.ndarray, dict[str, int]]:
    """(one int code per row, {value: code}) of a dictionary-read string column."""
    if not pa.types.is_dictionary(col.type):
        col = col.dictionary_encode()
    arr = col.unify_dictionaries().combine_chunks() if col.num_chunks else col.combine_chunks()
    if isinstance(arr, pa.ChunkedArray):  # pragma: no cover - older pyarrow
        arr = arr.combine_chunks()
    codes = arr.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, {v: i for i, v in enumerate(arr.dictionary.to_pylist())}
