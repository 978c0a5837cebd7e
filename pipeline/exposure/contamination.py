"""`pile contamination`: which evaluation items are in the training data, and from which step.

Two tests per query document (an evaluation set: jsonl or parquet rows with a text field):

- exact n-gram overlap (n = 13 tokens by default, the usual decontamination test): every n-gram of
  the query's GPT-NeoX tokens is hashed (64-bit, verified against the tokens), and the training
  tokens are scanned once, vectorised: each position's n-gram hash is looked up in the sorted
  query hashes. A hit must lie inside one document. Queries shorter than n tokens are matched
  whole. Cost: ~n multiply-adds per training token (one pass; a few minutes per 10^10 tokens per
  core), independent of the number of queries.
- near-duplicates via the dedup stage's MinHash/LSH (pipeline.dedup: same word shingles,
  signatures and band keys; `--threshold` sets the LSH threshold, a candidate counts when its
  MinHash estimate passes the dedup stage's verification cut): the queries' band keys are kept
  in memory, each training document is decoded, signed and probed.

Each hit carries the first training step that saw it (the matching tokens, or any part of the
near-duplicate document). Output: one parquet row per (query, training document, kind), and a
summary per query set; `--fail-above RATE` turns the contaminated fraction into an exit code.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, InputError
from pipeline.exposure.textindex import MULT, TokenStream

log = logging.getLogger(__name__)

NGRAM = 13
MAX_HITS = 10_000  # matched positions kept per query (boilerplate can match millions of times)
CHUNK_TOKENS = 1 << 24
DOC_BATCH = 2048
EOD = 0


# ----------------------------------------------------------------------------------------------
# queries


def load_queries(path: str | os.PathLike, text_key: str = "text", id_key: str | None = None):
    """(ids, texts) of a jsonl (.jsonl, .jsonl.zst, .jsonl.gz) or parquet evaluation set."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"--queries {p}: file not found")
    ids: list[str] = []
    texts: list[str] = []
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(p)
        if text_key not in t.column_names:
            raise InputError(
                f"{p}: no column {text_key!r} (has {t.column_names}); pass --text-key NAME"
            )
        texts = [str(x) if x is not None else "" for x in t.column(text_key).to_pylist()]
        if id_key is not None and id_key in t.column_names:
            ids = [str(x) for x in t.column(id_key).to_pylist()]
        else:
            ids = [str(i) for i in range(len(texts))]
        return ids, texts
    import orjson

    if p.name.endswith(".zst"):
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(open(p, "rb")).read()  # noqa: SIM115
    elif p.name.endswith(".gz"):
        import gzip

        raw = gzip.open(p, "rb").read()  # noqa: SIM115
    else:
        raw = p.read_bytes()
    for n, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise InputError(f"{p}:{n}: invalid JSON ({e}); fix or drop the line") from None
        text = row.get(text_key) if isinstance(row, dict) else None
        if not isinstance(text, str):
            raise InputError(
                f"{p}:{n}: field {text_key!r} is missing or not a string; pass --text-key NAME"
            )
        texts.append(text)
        ids.append(str(row.get(id_key, n)) if id_key else str(n))
    return ids, texts


# ----------------------------------------------------------------------------------------------
# exact n-gram overlap


def ngram_hashes(tokens: np.ndarray, n: int) -> np.ndarray:
    """uint64 hashes of every n-gram tokens[i:i+n] (i = 0..len-n)."""
    m = tokens.size - n + 1
    h = np.zeros(max(m, 0), dtype=np.uint64)
    if m <= 0:
        return h
    t = tokens.astype(np.uint64) + np.uint64(1)
    with np.errstate(over="ignore"):
        for j in range(n):
            h *= MULT
            h += t[j : j + m]
    return h


def exact_overlaps(
    stream: TokenStream, queries: list[np.ndarray], n: int = NGRAM, chunk: int = CHUNK_TOKENS
) -> dict[int, list[tuple[int, int]]]:
    """{query: [(token start in stream, length), ...]} of the query's n-grams (whole query when
    shorter than n) found inside one item of the stream."""
    keys, owner, lens = [], [], []
    for qi, q in enumerate(queries):
        w = min(n, q.size)
        if w == 0:
            continue
        h = ngram_hashes(q, w)
        keys.append(h)
        owner.append(np.full(h.size, qi, dtype=np.int64))
        lens.append(np.full(h.size, w, dtype=np.int64))
    out: dict[int, list[tuple[int, int]]] = defaultdict(list)
    if not keys:
        return out
    k = np.concatenate(keys)
    o = np.concatenate(owner)
    ln = np.concatenate(lens)
    order = np.argsort(k, kind="stable")
    k, o, ln = k[order], o[order], ln[order]
    for w in np.unique(ln).tolist():
        sel = ln == w
        kw, ow = k[sel], o[sel]
        for a in range(0, max(0, stream.n_tokens - w + 1), chunk):
            toks = stream.read(a, a + chunk + w - 1)
            h = ngram_hashes(toks, w)
            i = np.searchsorted(kw, h)
            i[i >= kw.size] = 0
            pos = np.flatnonzero(kw[i] == h)
            if not pos.size:
                continue
            t = pos + a
            item = stream.item_of(t)
            inside = t + w <= stream.starts[item] + stream.sizes[item]
            for p, tt in zip(pos[inside].tolist(), t[inside].tolist()):
                lo = int(np.searchsorted(kw, h[p], side="left"))
                hi = int(np.searchsorted(kw, h[p], side="right"))
                for qi in set(ow[lo:hi].tolist()):
                    if len(out[qi]) >= MAX_HITS:
                        continue
                    q = queries[qi]
                    # a 64-bit hash collision must not count: compare the tokens
                    if any(
                        np.array_equal(toks[p : p + w], q[j : j + w]) for j in range(q.size - w + 1)
                    ):
                        out[qi].append((tt, w))
    return out


# ----------------------------------------------------------------------------------------------
# near-duplicates


@dataclass
class NearConfig:
    threshold: float
    num_perm: int
    bands: int
    rows: int
    ngram: int
    seed: int
    cut: float


def near_config(threshold: float | None) -> NearConfig:
    from pipeline.dedup.config import DedupConfig

    base = DedupConfig.from_preset("pythia-0.87")
    if threshold is not None and threshold != base.threshold:
        if not 0.0 < threshold < 1.0:
            raise ConfigError(f"--threshold {threshold} must be in (0, 1)")
        base = DedupConfig(
            threshold=threshold, num_perm=base.num_perm, ngram=base.ngram, seed=base.seed
        )
    return NearConfig(
        base.threshold, base.num_perm, base.bands, base.rows, base.ngram, base.seed, base.verify_cut
    )


def _signatures(texts: list[str], cfg: NearConfig, a: np.ndarray):
    from pipeline.dedup.lsh import band_keys
    from pipeline.dedup.minhash import minhash_signatures
    from pipeline.dedup.shingle import shingle_hashes

    h, counts = shingle_hashes(texts, cfg.ngram)
    sig = minhash_signatures(h, counts, a)
    return sig, band_keys(sig, cfg.bands, cfg.rows), counts > 0


def near_duplicates(
    stream: TokenStream, texts: list[str], cfg: NearConfig, batch: int = DOC_BATCH
) -> list[tuple[int, int, float]]:
    """(query, item, MinHash estimate) of every training item whose LSH bands meet a query's and
    whose estimate is >= the dedup verification cut."""
    from pipeline.dedup.minhash import estimate_jaccard, permutation_params
    from pipeline.tokenize.encoder import load_encoder

    a = permutation_params(cfg.num_perm, cfg.seed)
    qsig, qbands, qok = _signatures(texts, cfg, a)
    band_maps: list[dict[int, list[int]]] = [defaultdict(list) for _ in range(cfg.bands)]
    for qi in np.flatnonzero(qok).tolist():
        for b in range(cfg.bands):
            band_maps[b][int(qbands[qi, b])].append(qi)
    sorted_bands = [np.array(sorted(m), dtype=np.uint64) for m in band_maps]
    enc = load_encoder()
    out = []
    n_items = len(stream.sizes)
    for i0 in range(0, n_items, batch):
        i1 = min(i0 + batch, n_items)
        docs = []
        for i in range(i0, i1):
            s = int(stream.starts[i])
            toks = stream.read(s, s + int(stream.sizes[i]))
            if toks.size and toks[-1] == EOD:
                toks = toks[:-1]
            docs.append(enc.decode(toks.tolist()))
        sig, bands, ok = _signatures(docs, cfg, a)
        pairs = set()
        for b in range(cfg.bands):
            sb = sorted_bands[b]
            if not sb.size:
                continue
            col = bands[:, b]
            j = np.searchsorted(sb, col)
            j[j >= sb.size] = 0
            for d in np.flatnonzero((sb[j] == col) & ok).tolist():
                for qi in band_maps[b][int(col[d])]:
                    pairs.add((qi, d))
        for qi, d in sorted(pairs):
            est = float(estimate_jaccard(sig[d], qsig[qi]))
            if est >= cfg.cut:
                out.append((qi, i0 + d, est))
    return out


# ----------------------------------------------------------------------------------------------
# report


def run_contamination(
    ex, query_sets: list[tuple[str, list[str], list[str]]], *, threshold=None, n: int = NGRAM
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, summaries) for the query sets [(name, ids, texts)] against opened DATA
    (pipeline.exposure.dataset.Exposed)."""
    from pipeline.exposure import find
    from pipeline.exposure.dataset import doc_info
    from pipeline.exposure.textindex import stream_of
    from pipeline.tokenize.encoder import load_encoder

    enc = load_encoder()
    documents = ex.doc is not None
    stream = stream_of(ex.doc if documents else ex.data)
    loc = ex.loc
    gb = ex.data.global_batch
    trained_items = ex.data.num_steps * gb  # pre-shuffled: item g is sample g
    cfg = near_config(threshold)

    def first_step_of(item: int, a: int, length: int) -> int | None:
        if not documents:
            return item // gb if item < trained_items else None
        occ = find.text_occurrences(loc, item, a, length)
        return min((o["step"] for o in occ if o["step"] is not None), default=None)

    rows: list[dict[str, Any]] = []
    summaries = []
    for name, ids, texts in query_sets:
        qtok = [np.asarray(t, dtype=np.int64) for t in enc.encode_batch(texts)]
        exact = exact_overlaps(stream, qtok, n)
        near = near_duplicates(stream, texts, cfg)
        hit_exact, hit_near = set(), set()
        for qi, hits in sorted(exact.items()):
            by_item: dict[int, list[int]] = defaultdict(list)
            for t, _w in hits:
                by_item[int(stream.item_of(np.array([t]))[0])].append(t)
            grams = max(1, qtok[qi].size - min(n, qtok[qi].size) + 1)
            for item, ts in sorted(by_item.items()):
                w = min(n, qtok[qi].size)
                steps = [first_step_of(item, t - int(stream.starts[item]), w) for t in ts]
                steps = [s for s in steps if s is not None]
                first = min(steps, default=None)
                if first is not None:
                    hit_exact.add(qi)
                rows.append(
                    _row(ex, name, ids[qi], qi, "exact", item, documents, doc_info)
                    | {
                        "ngrams": len(set(ts)),
                        "ngram_fraction": min(1.0, len(set(ts)) / grams),
                        "jaccard": None,
                        "first_step": first,
                    }  # fmt: skip
                )
        for qi, item, est in near:
            first = first_step_of(item, 0, int(stream.sizes[item]))
            if first is not None:
                hit_near.add(qi)
            rows.append(
                _row(ex, name, ids[qi], qi, "near", item, documents, doc_info)
                | {"ngrams": None, "ngram_fraction": None, "jaccard": est, "first_step": first}
            )
        hit = hit_exact | hit_near
        nq = len(texts)
        summaries.append(
            {
                "query_set": name,
                "queries": nq,
                "exact": len(hit_exact),
                "near": len(hit_near),
                "contaminated": len(hit),
                "rate": (len(hit) / nq) if nq else 0.0,
                "shorter_than_ngram": sum(1 for q in qtok if q.size < n),
                "ngram": n,
                "threshold": cfg.threshold,
                "estimate_cut": round(cfg.cut, 6),
            }
        )
    for r in rows:
        r["first_checkpoint"] = None if r["first_step"] is None else r["first_step"] + 1
    return rows, summaries


def _row(ex, name, qid, qi, kind, item, documents, doc_info) -> dict[str, Any]:
    d = {"query_set": name, "query_id": qid, "query_index": qi, "kind": kind, "item": item}
    info = doc_info(ex, item) if documents else {}
    for k in ("doc_id", "pile_set_name", "file", "line"):
        d[k] = info.get(k)
    return d


def write_parquet(rows: list[dict[str, Any]], path: str | os.PathLike) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.io import atomic_open

    schema = pa.schema(
        [
            ("query_set", pa.string()),
            ("query_id", pa.string()),
            ("query_index", pa.int64()),
            ("kind", pa.string()),
            ("item", pa.int64()),
            ("doc_id", pa.int64()),
            ("pile_set_name", pa.string()),
            ("file", pa.string()),
            ("line", pa.int64()),
            ("ngrams", pa.int64()),
            ("ngram_fraction", pa.float64()),
            ("jaccard", pa.float64()),
            ("first_step", pa.int64()),
            ("first_checkpoint", pa.int64()),
        ]
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_open(path, "wb") as f:
        pq.write_table(table, f)
