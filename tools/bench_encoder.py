"""Benchmark and identity check of the GPT-NeoX tokenizer backends (pipeline.tokenize.encoder).

Corpus: `../shared/corpora/novels/*.jsonl.zst` (or --corpus FILES) split into paragraph-sized
documents: split on blank lines, consecutive paragraphs merged until a document has >= 1 KB
(a single paragraph longer than 5 KB stays whole).

    python tools/bench_encoder.py                   # MB/s per core: gigatoken, fast vs HF
    python tools/bench_encoder.py --check-identity  # fast == HF ids on the whole corpus
    python tools/bench_encoder.py --unicode-sweep   # fast == HF on every code point in contexts
    python tools/bench_encoder.py --rss 1024        # RSS over 1 GB of novels + code-like text,
                                                    # each backend in its own process

Speed is measured on one core: HF's rayon pool is limited to 1 thread (RAYON_NUM_THREADS=1,
set before `tokenizers` is imported) unless --hf-threads is given. Both wall-clock MB/s and MB per
CPU-second of the process are printed; ratios use CPU time (robust to other load on the machine).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEFAULT_CORPUS = SHARED / "corpora" / "novels"


def iter_texts(path: Path):
    """Texts of a .jsonl or .jsonl.zst file (`text` field)."""
    if path.suffix == ".zst":
        import zstandard

        with open(path, "rb") as fh:
            reader = zstandard.ZstdDecompressor().stream_reader(fh)
            for line in io.TextIOWrapper(reader, encoding="utf-8"):
                if line.strip():
                    yield json.loads(line)["text"]
    else:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)["text"]


def corpus_files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(x for x in p.iterdir() if x.name.endswith((".jsonl", ".jsonl.zst")))
        elif p.exists():
            out.append(p)
        else:
            sys.exit(f"corpus {p} does not exist; pass --corpus FILE_OR_DIR")
    if not out:
        sys.exit(f"no .jsonl/.jsonl.zst files in {paths}")
    return out


def paragraph_docs(texts, min_bytes: int = 1024, max_bytes: int = 5120) -> list[str]:
    """Split texts on blank lines and merge consecutive paragraphs into ~1-5 KB documents."""
    docs: list[str] = []
    for text in texts:
        cur: list[str] = []
        size = 0
        for para in re.split(r"\n[ \t]*\n", text):
            if not para.strip():
                continue
            n = len(para.encode("utf-8"))
            if cur and size + n > max_bytes:
                docs.append("\n\n".join(cur))
                cur, size = [], 0
            cur.append(para)
            size += n + 2
            if size >= min_bytes:
                docs.append("\n\n".join(cur))
                cur, size = [], 0
        if cur:
            docs.append("\n\n".join(cur))
    return docs


def load_docs(args) -> list[str]:
    files = corpus_files(args.corpus or [str(DEFAULT_CORPUS)])
    texts = []
    for f in files:
        texts += list(iter_texts(f))
    docs = texts if args.whole_docs else paragraph_docs(texts)
    if args.limit_mb:
        out, total = [], 0
        for d in docs:
            if total >= args.limit_mb * 1e6:
                break
            out.append(d)
            total += len(d.encode("utf-8"))
        docs = out
    return docs


def first_difference(a: list[int], b: list[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def report_difference(i: int, text: str, hf_ids: list[int], fast_ids: list[int], hf) -> None:
    k = first_difference(hf_ids, fast_ids)
    prefix = hf.decode(hf_ids[:k])
    print(f"DIFFERENCE in document #{i} at token {k} (~char {len(prefix)}):", file=sys.stderr)
    print(f"  text near it: {text[max(0, len(prefix) - 40) : len(prefix) + 60]!r}", file=sys.stderr)
    print(f"  hf   ids[{k}:{k + 12}] = {hf_ids[k : k + 12]}", file=sys.stderr)
    print(f"  fast ids[{k}:{k + 12}] = {fast_ids[k : k + 12]}", file=sys.stderr)
    print(f"  lengths hf={len(hf_ids)} fast={len(fast_ids)}", file=sys.stderr)


def check_identity(docs: list[str], fast, hf, batch: int = 2000) -> int:
    t0 = time.perf_counter()
    nbytes = ntok = 0
    for start in range(0, len(docs), batch):
        chunk = docs[start : start + batch]
        a = hf.encode_batch(chunk)
        b = fast.encode_batch(chunk)
        for j, (x, y) in enumerate(zip(a, b)):
            if x != y:
                report_difference(start + j, chunk[j], x, y, hf)
                return 1
            ntok += len(x)
        nbytes += sum(len(d.encode("utf-8")) for d in chunk)
    dt = time.perf_counter() - t0
    print(
        f"identity OK: {len(docs)} documents, {nbytes / 1e6:.1f} MB, {ntok} tokens: fast == hf "
        f"({dt:.1f} s)"
    )
    return 0


SWEEP_CONTEXTS = {
    "c": lambda c: c,
    "' 'c'a'": lambda c: " " + c + "a",
    "'a'c'a'": lambda c: "a" + c + "a",
    "cc' x'": lambda c: c + c + " x",
    "'1'c'1'": lambda c: "1" + c + "1",
    "'.'c'.'": lambda c: "." + c + ".",
    "'\\n'c'\\n '": lambda c: "\n" + c + "\n ",
    "'a'c'\\u0301'": lambda c: "a" + c + "\u0301",
    "'a\\u0345'c": lambda c: "a\u0345" + c,
    "'  'c'  '": lambda c: "  " + c + "  ",
}


def unicode_sweep(fast, hf) -> int:
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    bad = 0
    t0 = time.perf_counter()
    for name, ctx in SWEEP_CONTEXTS.items():
        texts = [ctx(chr(c)) for c in cps]
        a = hf.encode_batch(texts)
        b = fast.encode_batch(texts)
        diffs = [i for i in range(len(texts)) if a[i] != b[i]]
        bad += len(diffs)
        print(f"context {name:16s}: {len(texts)} code points, {len(diffs)} differences")
        for i in diffs[:5]:
            print(f"   U+{cps[i]:04X} {texts[i]!r}: hf={a[i]} fast={b[i]}")
    print(f"unicode sweep: {bad} differences ({time.perf_counter() - t0:.0f} s)")
    return 1 if bad else 0


def timed(fn, reps: int) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds of this process, all threads) over `reps` runs.
    CPU time is what "per core" means here, and it is robust to other load on the machine."""
    best_wall = best_cpu = float("inf")
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best_wall, best_cpu


def batched(fn, docs: list[str], batch: int):
    """Run fn on consecutive batches of `batch` documents (as the tokenize stage does)."""

    def run():
        for i in range(0, len(docs), batch):
            fn(docs[i : i + batch])

    return run


def bench(docs: list[str], fast, hf, reps: int, per_doc_mb: float, batch: int) -> int:
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    hf_tok = hf._hf
    fn_fast = getattr(hf_tok, "encode_batch_fast", None)
    hf_batch_name = "encode_batch_fast" if fn_fast else "encode_batch"
    fn_fast = fn_fast or hf_tok.encode_batch
    # per-document HF encode (the gpt-neox method, one process) on a prefix: it is slow
    sub, total = [], 0
    for d in docs:
        if total >= per_doc_mb * 1e6:
            break
        sub.append(d)
        total += len(d.encode("utf-8"))
    sub_mb = total / 1e6

    runs = {}
    try:
        from pipeline.tokenize.encoder import load_encoder

        giga = load_encoder(backend="gigatoken")
        runs["gigatoken encode_batch_flat"] = (
            mb,
            batched(giga.encode_batch_flat, docs, batch),
            reps,
        )
    except Exception as e:  # noqa: BLE001 - not installed or not identical: say so, go on
        print(f"gigatoken backend not measured: {e}")
    runs |= {
        "fast encode_batch_flat": (mb, batched(fast.encode_batch_flat, docs, batch), reps),
        "fast encode_batch": (mb, batched(fast.encode_batch, docs, batch), reps),
        f"hf {hf_batch_name}": (mb, batched(fn_fast, docs, batch), reps),
        "hf encode_batch_flat": (mb, batched(hf.encode_batch_flat, docs, batch), reps),
        "hf encode per doc": (sub_mb, lambda: [hf_tok.encode(d).ids for d in sub], 1),
    }
    results = {}
    for name, (size, fn, r) in runs.items():
        wall, cpu = timed(fn, r)
        results[name] = (size / wall, size / cpu)

    threads = os.environ.get("RAYON_NUM_THREADS", "?")
    print(
        f"corpus: {len(docs)} documents, {mb:.1f} MB (per-doc HF on {sub_mb:.1f} MB); "
        f"batches of {batch} documents; HF rayon threads={threads}; best of {reps}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    ref = results[f"hf {hf_batch_name}"][1]
    per_doc = results["hf encode per doc"][1]
    print(f"  {'':24s} {'MB/s wall':>10s} {'MB/cpu-s':>9s}  ratios on MB/cpu-s")
    for name, (w, c) in results.items():
        print(
            f"  {name:24s} {w:10.2f} {c:9.2f}  x{c / ref:5.2f} vs hf {hf_batch_name}   "
            f"x{c / per_doc:5.2f} vs hf per-doc encode"
        )
    return 0


def code_like_docs(seed: int, n: int) -> list[str]:
    """Generated C/Python-like source with long whitespace runs and ever-new identifiers, hex
    constants and numbers (a long-tailed pretoken stream: what makes pretoken caches grow).
    Random draws are made per document in arrays (scalar draws would make this the bottleneck)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(40, 120))
        hexes = rng.bytes(6 * k).hex()
        kinds = rng.random(k).tolist()
        pads = rng.integers(1, 60, k).tolist()
        nums = rng.integers(0, 10**9, k).tolist()
        tabs = (rng.random(k) < 0.3).tolist()
        lines = []
        depth = 0
        for i in range(k):
            ind = ("\t" if tabs[i] else "    ") * depth
            ident = "v" + hexes[12 * i : 12 * i + 12]
            kind = kinds[i]
            if kind < 0.15:
                lines.append(f"{ind}def {ident}(x, y=0x{hexes[12 * i + 3 : 12 * i + 11]}):")
                depth = min(depth + 1, 12)
            elif kind < 0.25 and depth:
                depth -= 1
                lines.append(f"{ind}return {ident} + {nums[i]}")
            elif kind < 0.35:
                lines.append(ind + " " * pads[i] + f"/* {ident} */")
            else:
                lines.append(f"{ind}{ident} = {ident}[{nums[i] % 999}] * 3.{nums[i]}")
        out.append("\n".join(lines) + "\n")
    return out


def rss_run(backend: str, total_mb: int, reset_chars: int | None) -> int:
    """Encode `total_mb` of alternating novels paragraphs and code-like text with one backend;
    print RSS after every tenth. Run in a fresh process per backend (RSS is per process)."""
    import psutil

    from pipeline.tokenize.encoder import load_encoder

    if reset_chars is not None:
        os.environ["PILE_GIGATOKEN_RESET_CHARS"] = str(reset_chars)
    enc = load_encoder(backend=backend)
    novels = paragraph_docs(t for f in corpus_files([str(DEFAULT_CORPUS)]) for t in iter_texts(f))
    import numpy as np

    # a pool of code, made new for every batch by permuting its hex digits (each permutation turns
    # every identifier and constant into unseen pretokens; generating fresh code is too slow)
    pool = code_like_docs(0, 120)
    digits = "0123456789abcdef"
    rng = np.random.default_rng(1)
    proc = psutil.Process()
    done = 0
    step = total_mb * 1_000_000 // 10
    mark = step
    seed = 0
    ni = 0
    t0 = time.perf_counter()
    print(
        f"{backend} reset_chars={reset_chars}: start RSS {proc.memory_info().rss / 2**20:.0f} MiB"
    )
    while done < total_mb * 1_000_000:
        # novels repeat (their pretokens are cached after the first pass); code is always new
        batch = novels[ni : ni + 500] or novels[:500]
        ni = ni + 500 if ni + 500 < len(novels) else 0
        perm = "".join(rng.permutation(list(digits)).tolist())
        table = str.maketrans(digits, perm)
        j = (seed * 60) % len(pool)
        batch = batch + [d.translate(table) for d in pool[j : j + 60]]
        seed += 1
        enc.encode_batch_flat(batch)
        done += sum(len(t.encode("utf-8")) for t in batch)
        if done >= mark:
            rss = proc.memory_info().rss / 2**20
            mb = done / 1e6
            print(
                f"  {mb:8.0f} MB encoded  RSS {rss:7.0f} MiB  {mb / (time.perf_counter() - t0):.1f} MB/s",
                flush=True,
            )
            mark += step
    return 0


def rss_main(total_mb: int) -> int:
    """Each backend (and gigatoken without the cache bound) in its own process."""
    import subprocess

    rc = 0
    for backend, reset in (("gigatoken", None), ("gigatoken", 1 << 40), ("fast", None)):
        cmd = [sys.executable, __file__, "--rss-child", backend, "--rss", str(total_mb)]
        if reset is not None:
            cmd += ["--reset-chars", str(reset)]
        rc |= subprocess.call(cmd)
    return rc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--corpus", action="append", help="jsonl(.zst) file or directory (repeatable)")
    ap.add_argument("--whole-docs", action="store_true", help="do not split into paragraphs")
    ap.add_argument("--limit-mb", type=float, default=0.0, help="use only the first N MB (0 = all)")
    ap.add_argument("--check-identity", action="store_true", help="fast == hf on the whole corpus")
    ap.add_argument("--unicode-sweep", action="store_true", help="fast == hf on all code points")
    ap.add_argument("--reps", type=int, default=1, help="repetitions (best time is reported)")
    ap.add_argument("--per-doc-mb", type=float, default=8.0, help="MB for per-document HF encode")
    ap.add_argument("--batch-docs", type=int, default=1000, help="documents per encode batch")
    ap.add_argument("--hf-threads", type=int, default=1, help="HF rayon threads (speed mode)")
    ap.add_argument("--rss", type=int, default=0, help="RSS over N MB per backend (0 = off)")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    ap.add_argument("--reset-chars", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.rss:
        sys.path.insert(0, str(REPO))
        if args.rss_child:
            return rss_run(args.rss_child, args.rss, args.reset_chars)
        return rss_main(args.rss)
    if args.check_identity or args.unicode_sweep:
        os.environ.pop("RAYON_NUM_THREADS", None)  # identity checks use every core for HF
    else:
        os.environ["RAYON_NUM_THREADS"] = str(args.hf_threads)
    sys.path.insert(0, str(REPO))
    from pipeline.tokenize.encoder import load_encoder

    fast = load_encoder(backend="fast")
    hf = load_encoder(backend="hf")
    rc = 0
    if args.unicode_sweep:
        rc |= unicode_sweep(fast, hf)
    if args.check_identity:
        t0 = time.perf_counter()
        docs = load_docs(args)
        print(f"loaded {len(docs)} documents in {time.perf_counter() - t0:.1f} s")
        rc |= check_identity(docs, fast, hf)
    if not (args.check_identity or args.unicode_sweep):
        docs = load_docs(args)
        rc |= bench(docs, fast, hf, args.reps, args.per_doc_mb, args.batch_docs)
    return rc


if __name__ == "__main__":
    sys.exit(main())
