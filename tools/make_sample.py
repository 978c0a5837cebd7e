#!/usr/bin/env python3
"""Generate the bundled Pile-shaped sample in `pipeline/data/sample/` (deterministically).

    python tools/make_sample.py                    # rewrite pipeline/data/sample/ from ../shared
    python tools/make_sample.py --out /tmp/s       # somewhere else (the tests regenerate and compare)

Output (the Pile's own layout and file format):

    train/00.jsonl.zst .. train/03.jsonl.zst, val.jsonl.zst, test.jsonl.zst, ground_truth.json

Every line is `json.dumps({"text": ..., "meta": {"pile_set_name": ...}}) + "\\n"` (default
separators, `ensure_ascii=True`, exactly like the Pile's lines), and each file is a single zstd frame
written like lm_dataformat's `Archive` (a `ZstdCompressor(level=3).stream_writer`, one `write` per
line, `flush(FLUSH_FRAME)`; single-threaded so the bytes do not depend on the machine). No
timestamps, no dependence on hash seeds or dict order: the same `--seed` and inputs give
byte-identical files (for the same libzstd version; the decompressed bytes are identical always).

Content
-------
* Text: contiguous runs of paragraphs cut from the public-domain novels in
  `../shared/corpora/novels` (never reusing a paragraph), labelled with the 22 Pile
  `pile_set_name` values. Bytes per source follow the Pile paper's weights (Table 1); document
  lengths are log-normal around the paper's mean document size x `SIZE_SCALE`, the mean capped at
  `MEAN_CAP` bytes and every document at `DOC_MAX_BYTES` (~40 KB), with at least
  `MIN_DOCS_PER_SOURCE` documents per source.
* The 3 real Pile documents of `../shared/corpora/pile_real` (Pile-CC, OpenWebText2,
  Wikipedia (en)) are included byte-for-byte (Pile-CC in train, OpenWebText2 in val,
  Wikipedia (en) in test).
* Documents are shuffled over 4 train shards (~90 %), val and test (~5 % each).
* Planted duplicate clusters (see `CLUSTERS`), within a source and across sources, within a shard,
  across shards and across splits (train vs val/test, val vs test), 2 to 6 members:
  - `exact`: byte-identical text (the `meta` may differ: cross-source copies);
  - `near`: word-level edits (substitute / insert / delete a whitespace-separated word) of the
    first member until its 5-gram Jaccard (below) is between 0.90 and 0.99;
  - `normalized`: case / whitespace / Unicode-NFD changes only: different bytes, Jaccard 1.0;
  - `negative`: hard negatives, pairs sharing a long prefix with Jaccard 0.5-0.7 that a dedup at
    threshold 0.87 must NOT merge.
  The generator then checks every pair of documents: no pair outside a planted cluster has a
  Jaccard above `UNPLANNED_MAX` (the maximum found is recorded).

Jaccard (the normalisation used everywhere in the ground truth)
------------------------------------------------------------------
words = `unicodedata.normalize("NFC", text).lower().split()` (Unicode whitespace collapsed,
punctuation kept); shingles = the set of 5 consecutive words (a document with fewer than 5 words
has the single shingle of all its words); Jaccard = |A & B| / |A | B|.

ground_truth.json
-----------------
    {"description": ..., "format_version": 1, "seed": ..., "normalization": {...},
     "doc_id_rule": ..., "files": {"train/00.jsonl.zst": {"split", "file_index", "documents",
        "text_bytes", "bytes", "sha256", "jsonl_sha256"}, ...},
     "sources": {pile_set_name: {"documents", "text_bytes"}}, "totals": {...},
     "clusters": [{"id", "kind", "scope": [...], "min_pairwise_jaccard", "members": [
         {"file", "line", "split", "doc_id", "pile_set_name", "jaccard", "intersection", "union",
          "role", "edits"}]}],
     "unplanned": {"threshold", "max_jaccard", "pairs_checked"}}

Members are listed in reading order (train/00 .. train/03, val, test; then line); `jaccard`,
`intersection` and `union` compare the member's shingle set with the cluster's first member's.
`line` is 1-based; `doc_id = file_index << 40 | (line - 1)` with `file_index` the position of the
file among the sorted train files (train/00..03 -> 0..3), i.e. the id the reader gives when it reads
`train/`; it is null for val/test members (identify those by file and line).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zstandard

import pipeline.sources

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "pipeline" / "data" / "sample"
DEFAULT_SHARED = REPO.parent / "shared"

SEED = 20201231  # the Pile's release date
ZSTD_LEVEL = 3  # lm_dataformat's Archive default
TARGET_TEXT_BYTES = 6_000_000  # the non-duplicate documents; duplicates add a little
SIZE_SCALE = 0.5  # document sizes are the paper's mean size x this ...
MEAN_CAP = 16_000  # ... with the mean capped here (Books3 is 538 KiB in the paper) ...
DOC_MAX_BYTES = 40_000  # ... and no document above this
DOC_MIN_BYTES = 200
LOGNORMAL_SIGMA = 0.8
MIN_DOCS_PER_SOURCE = 5
SPLIT_SHARE = {"val": 0.05, "test": 0.05}  # the rest goes to the 4 train shards
N_TRAIN_SHARDS = 4
SHINGLE = 5
NEAR_RANGE = (0.90, 0.99)
NEGATIVE_RANGE = (0.50, 0.70)
NEAR_MIN_WORDS = 300  # near duplicates / negatives are cut from documents at least this long
UNPLANNED_MAX = 0.30
NOVELS = "100_english_novels.jsonl.zst"

# the 22 sources in the Pile paper's Table 1 order
PILE_SET_NAMES = pipeline.sources.PILE_SET_NAMES
# Table 1 of the Pile paper: weight (%), mean document size (KiB). manifests/pile_sources.json
# holds the full table; repeated here so the script runs without the package installed.
PILE_TABLE = {
    "Pile-CC": (18.11, 4.33),
    "PubMed Central": (14.40, 30.55),
    "Books3": (12.07, 538.36),
    "OpenWebText2": (10.01, 3.85),
    "ArXiv": (8.96, 46.61),
    "Github": (7.59, 5.25),
    "FreeLaw": (6.12, 15.06),
    "StackExchange": (5.13, 2.16),
    "USPTO Backgrounds": (3.65, 4.08),
    "PubMed Abstracts": (3.07, 1.30),
    "Gutenberg (PG-19)": (2.17, 398.73),
    "OpenSubtitles": (1.55, 30.48),
    "Wikipedia (en)": (1.53, 1.11),
    "DM Mathematics": (1.24, 8.00),
    "Ubuntu IRC": (0.88, 545.48),
    "BookCorpus2": (0.75, 369.87),
    "EuroParl": (0.73, 68.87),
    "HackerNews": (0.62, 4.92),
    "YoutubeSubtitles": (0.60, 22.55),
    "PhilPapers": (0.38, 73.37),
    "NIH ExPorter": (0.30, 2.11),
    "Enron Emails": (0.14, 1.78),
}
# line-oriented sources get one paragraph per line, the others blank-line separated paragraphs
LINE_SOURCES = {"OpenSubtitles", "YoutubeSubtitles", "Ubuntu IRC", "DM Mathematics"}

TRAIN_FILES = tuple(f"train/{i:02d}.jsonl.zst" for i in range(N_TRAIN_SHARDS))
ALL_FILES = (*TRAIN_FILES, "val.jsonl.zst", "test.jsonl.zst")
T0, T1, T2, T3 = TRAIN_FILES
VAL, TEST = "val.jsonl.zst", "test.jsonl.zst"
REAL = {  # shared file -> where it goes
    "train_00.jsonl.zst": T0,
    "val.jsonl.zst": VAL,
    "test.jsonl.zst": TEST,
}

# Planted clusters: (kind, files of the members, same source?). The first file receives the
# original document; the others its copies / variants. "real:<set name>" uses the real Pile
# document of that set as the original (its file is fixed by REAL).
CLUSTERS: tuple[tuple[str, tuple[str, ...], bool | str], ...] = (
    ("exact", (T0, T0), True),
    ("exact", (T1, T3), True),
    ("exact", (T0, T2, T3), False),
    ("exact", (T2, VAL), True),
    ("exact", (T1, TEST), False),
    ("exact", (T0, T1, T1, T2), True),
    ("exact", (T0, T1, T2, T3, VAL, TEST), False),
    ("exact", (VAL, TEST), True),
    ("exact", (T0, T2), "real:Pile-CC"),
    ("near", (T0, T0), True),
    ("near", (T1, T2), True),
    ("near", (T0, T3, T3), False),
    ("near", (T3, VAL), True),
    ("near", (T2, TEST), False),
    ("near", (T0, T1, T2, T3, VAL), True),
    ("near", (T0, T0, T1, T2, T3, TEST), False),
    ("near", (VAL, T1), "real:OpenWebText2"),
    ("normalized", (T1, T2), True),
    ("normalized", (T3, VAL), False),
    ("negative", (T0, T2), True),
    ("negative", (T1, T1), True),
    ("negative", (T2, VAL), False),
    ("negative", (T0, T3), True),
)


# ---------------------------------------------------------------- normalisation and Jaccard
def words_of(text: str) -> list[str]:
    return unicodedata.normalize("NFC", text).lower().split()


def shingles_of(text: str, n: int = SHINGLE) -> set[tuple[str, ...]]:
    w = words_of(text)
    if len(w) < n:
        return {tuple(w)} if w else set()
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def jaccard_counts(a: set, b: set) -> tuple[int, int]:
    inter = len(a & b)
    return inter, len(a) + len(b) - inter


def jaccard(a: set, b: set) -> float:
    inter, union = jaccard_counts(a, b)
    return 1.0 if union == 0 else inter / union


# ---------------------------------------------------------------- text pool
def read_jsonl_zst(path: Path) -> list[bytes]:
    with open(path, "rb") as fh:
        data = zstandard.ZstdDecompressor().stream_reader(fh).read()
    return [ln for ln in data.split(b"\n") if ln]


def novel_paragraphs(text: str) -> list[str]:
    """Paragraphs of a novel. Unwrapped text: one paragraph per line. Hard-wrapped text (90 % of
    the lines under 90 characters): blank-line separated blocks with their lines re-joined; a
    hard-wrapped novel without blank lines has no usable paragraphs and is skipped."""
    lines = [ln.strip() for ln in text.split("\n")]
    lengths = sorted(len(ln) for ln in lines if ln)
    if not lengths:
        return []
    if lengths[int(0.9 * (len(lengths) - 1))] < 90:
        if text.count("\n\n") < 50:
            return []
        blocks = re.split(r"\n\s*\n", text)
        paras = [" ".join(ln.strip() for ln in b.split("\n") if ln.strip()) for b in blocks]
    else:
        paras = lines
    # drop headings (tables of contents would be near duplicates of each other)
    return [p for p in paras if p and not (len(p) < 80 and (p.upper() == p or HEADING.match(p)))]


HEADING = re.compile(r"(chapter|book|part|volume|contents)\b", re.IGNORECASE)


class Pool:
    """Paragraphs of all novels; hands out contiguous, never reused paragraph runs."""

    def __init__(self, novels: list[list[str]], rng: np.random.Generator):
        self.novels = novels
        self.used = [np.zeros(len(n), dtype=bool) for n in novels]
        self.rng = rng

    def take(self, target_bytes: int, joiner: str) -> str:
        target_bytes = min(max(target_bytes, DOC_MIN_BYTES), DOC_MAX_BYTES)
        for attempt in range(1000):
            i = int(self.rng.integers(len(self.novels)))
            paras, used = self.novels[i], self.used[i]
            p = int(self.rng.integers(len(paras)))
            q, size = p, 0
            while q < len(paras) and not used[q] and size < target_bytes:
                size += len(paras[q].encode("utf-8")) + len(joiner)
                q += 1
            last = len(paras[q - 1].encode("utf-8")) + len(joiner) if q > p else 0
            if q - p > 1 and abs(size - last - target_bytes) < abs(size - target_bytes):
                q, size = q - 1, size - last  # closer to the target without the last paragraph
            need = 0.6 * target_bytes if attempt < 200 else DOC_MIN_BYTES / 2
            if q == p or size < need:
                continue
            used[p:q] = True
            text = joiner.join(paras[p:q])
            return truncate_bytes(text, DOC_MAX_BYTES)
        raise RuntimeError("text pool exhausted")  # pragma: no cover


def truncate_bytes(text: str, limit: int) -> str:
    if len(text.encode("utf-8")) <= limit:
        return text
    cut = text.encode("utf-8")[:limit].decode("utf-8", "ignore")
    m = re.search(r"\s+\S*$", cut)
    return cut[: m.start()] if m else cut


# ---------------------------------------------------------------- documents and edits
@dataclass
class Doc:
    text: str
    source: str
    file: str = ""
    raw_line: bytes | None = None  # real Pile documents keep their original bytes
    cluster: int | None = None
    role: str = "plain"
    edits: dict | None = None
    key: float = 0.0
    line: int = 0
    shingles: set = field(default_factory=set, repr=False)

    def line_bytes(self) -> bytes:
        if self.raw_line is not None:
            return self.raw_line + b"\n"
        obj = {"text": self.text, "meta": {"pile_set_name": self.source}}
        return json.dumps(obj).encode("utf-8") + b"\n"


def word_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\S+", text)]


def near_variant(text: str, rng: np.random.Generator, target: float) -> tuple[str, dict, float]:
    """Apply random word edits until Jaccard(original, variant) <= target, never going below
    NEAR_RANGE[0]."""
    base = shingles_of(text)
    vocab = words_of(text)
    edits = {"substitute": 0, "insert": 0, "delete": 0}
    cur, cur_j = text, 1.0
    for _ in range(2000):
        if cur_j <= target:
            break
        spans = word_spans(cur)
        k = int(rng.integers(len(spans)))
        op = ("substitute", "insert", "delete")[int(rng.integers(3))]
        s, e = spans[k]
        w = vocab[int(rng.integers(len(vocab)))]
        if op == "substitute":
            if cur[s:e].lower() == w:
                continue
            cand = cur[:s] + w + cur[e:]
        elif op == "insert":
            cand = cur[:e] + " " + w + cur[e:]
        else:
            if len(spans) < 2:
                continue
            nxt = spans[k + 1][0] if k + 1 < len(spans) else len(cur)
            cand = cur[:s] + cur[nxt:] if k + 1 < len(spans) else cur[:s].rstrip()
        j = jaccard(base, shingles_of(cand))
        if j < NEAR_RANGE[0] or j >= 1.0:
            continue
        cur, cur_j = cand, j
        edits[op] += 1
    if not NEAR_RANGE[0] <= cur_j <= NEAR_RANGE[1]:
        raise RuntimeError(f"near variant missed its Jaccard range: {cur_j}")
    return cur, edits, cur_j


def normalized_variant(text: str, rng: np.random.Generator) -> tuple[str, dict]:
    """Change case and whitespace (and compose/decompose accents) without changing the
    normalised word sequence."""
    spans = word_spans(text)
    picks = set(int(i) for i in rng.choice(len(spans), size=min(12, len(spans)), replace=False))
    out, pos = [], 0
    for i, (s, e) in enumerate(spans):
        gap = text[pos:s]
        if i in picks and gap == " ":
            gap = "  "
        w = text[s:e]
        if i in picks:
            changed = w.upper() if i % 2 else w.capitalize()
            if words_of(changed) == words_of(w):
                w = changed
        out.append(gap + unicodedata.normalize("NFD", w))
        pos = e
    out.append(text[pos:] + "\n")
    variant = "".join(out)
    if variant == text or words_of(variant) != words_of(text):
        raise RuntimeError("normalized variant is not a normalisation-only change")
    return variant, {"case_whitespace_nfd": len(picks)}


def negative_variant(text: str, fresh: str, rng: np.random.Generator) -> tuple[str, float]:
    """Keep a prefix of `text` and continue with unrelated `fresh` text so that the Jaccard to the
    original lands in NEGATIVE_RANGE."""
    target = float(rng.uniform(0.55, 0.65))
    base = shingles_of(text)
    spans = word_spans(text)
    fspans = word_spans(fresh)
    n = len(spans)

    def build(m: int) -> str:
        tail_words = max(n - m, SHINGLE)
        tail = fresh[: fspans[min(tail_words, len(fspans)) - 1][1]]
        return text[: spans[m - 1][1]] + "\n\n" + tail

    lo, hi = n // 4, n - 1
    while lo < hi:  # smallest prefix reaching the target (Jaccard grows with the prefix)
        mid = (lo + hi) // 2
        if jaccard(base, shingles_of(build(mid))) >= target:
            hi = mid
        else:
            lo = mid + 1
    variant = build(lo)
    j = jaccard(base, shingles_of(variant))
    if not NEGATIVE_RANGE[0] <= j <= NEGATIVE_RANGE[1]:
        raise RuntimeError(f"negative variant missed its Jaccard range: {j}")
    return variant, j


# ---------------------------------------------------------------- generation
def lognormal_sizes(rng: np.random.Generator, mean: float, n: int) -> np.ndarray:
    mu = math.log(mean) - LOGNORMAL_SIGMA**2 / 2
    sizes = rng.lognormal(mu, LOGNORMAL_SIGMA, size=n)
    return np.clip(sizes, DOC_MIN_BYTES, DOC_MAX_BYTES).astype(np.int64)


def generate(shared: Path, seed: int = SEED) -> tuple[dict[str, list[Doc]], dict]:
    ss = np.random.SeedSequence(seed)
    rng_pool, rng_sizes, rng_split, rng_plant, rng_order = (
        np.random.default_rng(s) for s in ss.spawn(5)
    )

    novels: list[list[str]] = []
    # only one of the two novel collections: they share some novels (e.g. Trollope's The Warden),
    # which would plant unrecorded near duplicates
    for ln in read_jsonl_zst(shared / "corpora" / "novels" / NOVELS):
        paras = novel_paragraphs(json.loads(ln)["text"])
        if paras:
            novels.append(paras)
    pool = Pool(novels, rng_pool)

    # real Pile documents, byte for byte
    real: dict[str, Doc] = {}
    for shared_name, dest in REAL.items():
        (raw,) = read_jsonl_zst(shared / "corpora" / "pile_real" / shared_name)
        obj = json.loads(raw)
        doc = Doc(obj["text"], obj["meta"]["pile_set_name"], file=dest, raw_line=raw, role="real")
        if doc.line_bytes() != raw + b"\n" or raw != json.dumps(obj).encode("utf-8"):
            raise RuntimeError(f"{shared_name} is not in json.dumps form")
        real[doc.source] = doc

    # base documents per source
    docs: list[Doc] = []
    for src in PILE_SET_NAMES:
        weight, mean_kib = PILE_TABLE[src]
        mean = min(mean_kib * 1024 * SIZE_SCALE, MEAN_CAP)
        n = max(MIN_DOCS_PER_SOURCE, round(TARGET_TEXT_BYTES * weight / 100 / mean))
        joiner = "\n" if src in LINE_SOURCES else "\n\n"
        for size in lognormal_sizes(rng_sizes, mean, n):
            docs.append(Doc(pool.take(int(size), joiner), src))

    # splits: ~5 % val, ~5 % test, the rest uniformly over the train shards
    u = rng_split.random(len(docs))
    shard = rng_split.integers(N_TRAIN_SHARDS, size=len(docs))
    for d, x, s in zip(docs, u, shard):
        if x < SPLIT_SHARE["val"]:
            d.file = VAL
        elif x < SPLIT_SHARE["val"] + SPLIT_SHARE["test"]:
            d.file = TEST
        else:
            d.file = TRAIN_FILES[int(s)]
    docs.extend(real.values())

    # planted clusters
    clusters: list[dict] = []
    taken: set[int] = set()
    n_words = [len(d.text.split()) for d in docs]
    for cid, (kind, files, same) in enumerate(CLUSTERS):
        if isinstance(same, str):
            orig = real[same.split(":", 1)[1]]
            same_source = True
        else:
            need = NEAR_MIN_WORDS if kind in ("near", "negative") else 0
            cand = [
                i
                for i, d in enumerate(docs)
                if d.role == "plain" and i not in taken and n_words[i] >= need
            ]
            i = cand[int(rng_plant.integers(len(cand)))]
            taken.add(i)
            orig = docs[i]
            orig.file = files[0]
            same_source = same
        orig.cluster, orig.role = cid, "original" if orig.role != "real" else "original-real"
        others = [s for s in PILE_SET_NAMES if s != orig.source]
        srcs = (
            [orig.source] * (len(files) - 1)
            if same_source
            else [others[int(k)] for k in rng_plant.choice(len(others), len(files) - 1, False)]
        )
        members = [orig]
        for f, src in zip(files[1:], srcs):
            if kind == "exact":
                text, role, edits = orig.text, "copy", None
            elif kind == "near":
                target = float(rng_plant.uniform(0.91, 0.98))
                text, edits, _ = near_variant(orig.text, rng_plant, target)
                role = "variant"
            elif kind == "normalized":
                text, edits = normalized_variant(orig.text, rng_plant)
                role = "variant"
            else:
                fresh = pool.take(len(orig.text.encode("utf-8")), "\n\n")
                text, _ = negative_variant(orig.text, fresh, rng_plant)
                role, edits = "negative", None
            members.append(Doc(text, src, file=f, cluster=cid, role=role, edits=edits))
        docs.extend(members[1:])
        clusters.append({"id": cid, "kind": kind, "docs": members})

    # line order: a seeded shuffle per file; the original precedes its copies in the same file
    by_file: dict[str, list[Doc]] = {f: [] for f in ALL_FILES}
    for d in docs:
        by_file[d.file].append(d)
    for f in ALL_FILES:
        keys = rng_order.random(len(by_file[f]))
        for d, k in zip(by_file[f], keys):
            d.key = float(k)
    for c in clusters:
        for f in ALL_FILES:
            here = [d for d in c["docs"] if d.file == f]
            for d, k in zip(here, sorted(d.key for d in here)):
                d.key = k
    for f in ALL_FILES:
        by_file[f].sort(key=lambda d: d.key)
        for line, d in enumerate(by_file[f], start=1):
            d.line = line

    for d in docs:
        d.shingles = shingles_of(d.text)
    info = {"clusters": clusters, "unplanned": check_unplanned(docs)}
    return by_file, info


def check_unplanned(docs: list[Doc]) -> dict:
    """Every pair of documents outside a common planted cluster must stay below UNPLANNED_MAX."""
    index: dict[tuple, list[int]] = {}
    for i, d in enumerate(docs):
        for sh in d.shingles:
            index.setdefault(sh, []).append(i)
    pair_counts: dict[tuple[int, int], int] = {}
    for ids in index.values():
        if 2 <= len(ids) <= 50:
            for a in range(len(ids)):
                for b in range(a + 1, len(ids)):
                    p = (ids[a], ids[b])
                    pair_counts[p] = pair_counts.get(p, 0) + 1
    worst, checked = 0.0, 0
    for (a, b), shared in sorted(pair_counts.items()):
        da, db = docs[a], docs[b]
        if da.cluster is not None and da.cluster == db.cluster:
            continue
        checked += 1
        # `shared` omits shingles found in more than 50 documents: a lower bound, made exact
        # below for every pair that could come near the threshold
        j = shared / (len(da.shingles) + len(db.shingles) - shared)
        if j >= 0.02:
            j = jaccard(da.shingles, db.shingles)
        worst = max(worst, j)
        if j > UNPLANNED_MAX:
            raise RuntimeError(
                f"unplanned similar pair: {da.file}:{da.line} and {db.file}:{db.line} "
                f"Jaccard {j:.3f} > {UNPLANNED_MAX}; change the seed or exclude the text"
            )
    return {"threshold": UNPLANNED_MAX, "max_jaccard": round(worst, 6), "pairs_checked": checked}


# ---------------------------------------------------------------- writing
def compress_lines(lines: list[bytes]) -> bytes:
    """Like lm_dataformat's Archive: a zstd stream writer, one write per line, one frame."""
    buf = io.BytesIO()
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    writer = cctx.stream_writer(buf, closefd=False)
    for ln in lines:
        writer.write(ln)
    writer.flush(zstandard.FLUSH_FRAME)
    return buf.getvalue()


def split_of(f: str) -> str:
    return "train" if f.startswith("train/") else f.split(".", 1)[0]


def doc_id_of(f: str, line: int) -> int | None:
    return TRAIN_FILES.index(f) << 40 | (line - 1) if f in TRAIN_FILES else None


def scope_of(members: list[Doc]) -> list[str]:
    files = {d.file for d in members}
    splits = {split_of(f) for f in files}
    scope = ["within-source" if len({d.source for d in members}) == 1 else "cross-source"]
    scope.append("same-file" if len(files) == 1 else "cross-file")
    if len(splits) > 1:
        scope.append("cross-split")
    if any(d.raw_line is not None for d in members):
        scope.append("real-pile-document")
    return scope


DESCRIPTION = (
    "Ground truth of the bundled Pile-shaped sample, generated by tools/make_sample.py (see its "
    "docstring). 'files': per file its split, file_index (train files only, in sorted order), "
    "number of documents (lines), decompressed text bytes, size, sha256 of the .zst and of the "
    "decompressed jsonl. 'clusters': planted duplicate clusters; kind 'exact' = byte-identical "
    "text (meta may differ), 'near' = word edits with Jaccard 0.90-0.99 to the first member, "
    "'normalized' = case/whitespace/NFD changes only (different bytes, Jaccard 1.0), 'negative' "
    "= hard negative pair with Jaccard 0.5-0.7 that must NOT be merged at threshold 0.87. Members "
    "are in reading order (train/00..03, val, test, then line); each has file (relative path), "
    "line (1-based), split, doc_id (= file_index << 40 | (line - 1) for train files, the reader's "
    "id when reading train/; null for val/test), pile_set_name, role (original / copy / variant / "
    "negative; original-real = a real Pile document), edits (for variants), and jaccard, "
    "intersection, union = comparison of the member's 5-word shingle set with the first member's "
    "(words = NFC, lowercase, whitespace split); 'min_pairwise_jaccard' is the smallest Jaccard "
    "between any two members of the cluster. 'unplanned': no pair of documents outside a "
    "common cluster has a Jaccard above 'threshold'; 'max_jaccard' is the largest found."
)


def write_sample(out: Path, shared: Path, seed: int = SEED) -> dict:
    by_file, info = generate(shared, seed)
    files_meta: dict[str, dict] = {}
    for f in ALL_FILES:
        lines = [d.line_bytes() for d in by_file[f]]
        raw = b"".join(lines)
        comp = compress_lines(lines)
        path = out / f
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, comp)
        files_meta[f] = {
            "split": split_of(f),
            "file_index": TRAIN_FILES.index(f) if f in TRAIN_FILES else None,
            "documents": len(lines),
            "text_bytes": sum(len(d.text.encode("utf-8")) for d in by_file[f]),
            "bytes": len(comp),
            "sha256": hashlib.sha256(comp).hexdigest(),
            "jsonl_sha256": hashlib.sha256(raw).hexdigest(),
        }

    sources = {s: {"documents": 0, "text_bytes": 0} for s in PILE_SET_NAMES}
    for f in ALL_FILES:
        for d in by_file[f]:
            sources[d.source]["documents"] += 1
            sources[d.source]["text_bytes"] += len(d.text.encode("utf-8"))

    clusters = []
    file_rank = {f: i for i, f in enumerate(ALL_FILES)}
    for c in info["clusters"]:
        members = sorted(c["docs"], key=lambda d: (file_rank[d.file], d.line))
        first = members[0]
        rows = []
        for d in members:
            inter, union = jaccard_counts(first.shingles, d.shingles)
            rows.append(
                {
                    "file": d.file,
                    "line": d.line,
                    "split": split_of(d.file),
                    "doc_id": doc_id_of(d.file, d.line),
                    "pile_set_name": d.source,
                    "role": d.role,
                    "edits": d.edits,
                    "jaccard": round(inter / union, 6),
                    "intersection": inter,
                    "union": union,
                }
            )
        pairwise = min(
            jaccard(a.shingles, b.shingles) for i, a in enumerate(members) for b in members[i + 1 :]
        )
        clusters.append(
            {
                "id": c["id"],
                "kind": c["kind"],
                "scope": scope_of(members),
                "min_pairwise_jaccard": round(pairwise, 6),
                "members": rows,
            }
        )

    gt = {
        "description": DESCRIPTION,
        "format_version": 1,
        "generator": "tools/make_sample.py",
        "seed": seed,
        "zstd": {"level": ZSTD_LEVEL, "libzstd": ".".join(map(str, zstandard.ZSTD_VERSION))},
        "normalization": {
            "unicode": "NFC",
            "lowercase": True,
            "words": "str.split() on the normalised text (Unicode whitespace collapsed, punctuation kept)",
            "shingle_words": SHINGLE,
            "short_documents": f"fewer than {SHINGLE} words: one shingle of all words",
            "jaccard": "|A & B| / |A | B| of the shingle sets",
        },
        "doc_id_rule": "file_index << 40 | (line - 1); file_index = position among the sorted train files; null for val/test",
        "files": files_meta,
        "sources": sources,
        "totals": {
            "documents": sum(m["documents"] for m in files_meta.values()),
            "text_bytes": sum(m["text_bytes"] for m in files_meta.values()),
            "jsonl_bytes": None,
            "compressed_bytes": sum(m["bytes"] for m in files_meta.values()),
        },
        "clusters": clusters,
        "unplanned": info["unplanned"],
    }
    gt["totals"]["jsonl_bytes"] = sum(
        sum(len(d.line_bytes()) for d in by_file[f]) for f in ALL_FILES
    )
    _atomic_write(out / "ground_truth.json", (json.dumps(gt, indent=1) + "\n").encode("utf-8"))
    return gt


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the ../shared data")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    if not (args.shared / "corpora" / "novels").is_dir():
        print(f"error: {args.shared}/corpora/novels not found; pass --shared", file=sys.stderr)
        return 2
    gt = write_sample(args.out, args.shared, args.seed)
    t = gt["totals"]
    print(
        f"wrote {args.out}: {t['documents']} documents, {t['text_bytes'] / 1e6:.2f} MB text, "
        f"{t['compressed_bytes'] / 1e6:.2f} MB compressed, {len(gt['clusters'])} clusters, "
        f"max unplanned Jaccard {gt['unplanned']['max_jaccard']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
