"""Benchmark `pile tokenize` end to end against HF batch encoding and the gpt-neox method.

Corpus: `../shared/corpora/novels/*.jsonl.zst` (or --corpus FILES) split into paragraph-sized
documents (paragraphs = blank-line separated, merged until a document has >= 1,000 characters),
written as Pile-style jsonl.zst files to /tmp/bench_tokenize/corpus/ (kept between runs).

Measured in the same run, on the same number of cores (--workers, default: all):

  pile      `pile tokenize CORPUS --workers N` as a subprocess: reading, tokenizing, writing
            .bin/.idx/sidecar/manifest (wall time, start to exit);
  hf-batch  HF `tokenizers` `encode_batch_fast` on the same texts already in memory, its rayon
            pool set to N threads (RAYON_NUM_THREADS), batches of 1,000 documents;
  neox      gpt-neox v1.0 `tools/preprocess_data.py`'s method: documents read in the main
            process, `multiprocessing.Pool(N).imap(encode, docs, chunksize=25)` with one HF
            `encode` per document (+ EOD), items written one by one to an MMIDIDX builder.

Identity: the `.bin` written by `pile tokenize` (fast path) must equal, byte for byte, the HF ids
(+ EOD) of every document and the gpt-neox method's `.bin`; on a difference the run fails naming
the first differing document.

    python tools/bench_tokenize.py                 # whole novels corpus (~140 M characters)
    python tools/bench_tokenize.py --limit-mb 20   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WORK = Path("/tmp/bench_tokenize")


# ----------------------------------------------------------------------------------------------
# corpus


def paragraphs(text: str, min_chars: int = 1000):
    buf: list[str] = []
    n = 0
    for p in text.split("\n\n"):
        p = p.strip("\n")
        if not p.strip():
            continue
        buf.append(p)
        n += len(p)
        if n >= min_chars:
            yield "\n\n".join(buf)
            buf, n = [], 0
    if buf:
        yield "\n\n".join(buf)


def prepare(corpus: list[Path], files: int, limit_mb: float | None) -> tuple[Path, int, int]:
    """Write the paragraph corpus once; returns (dir, documents, UTF-8 bytes)."""
    import zstandard

    from pipeline.read import iter_documents

    stamp = {
        "corpus": [str(p) for p in corpus],
        "files": files,
        "limit_mb": limit_mb,
        "version": 1,
    }
    out = WORK / "corpus"
    stamp_path = WORK / "corpus.json"
    if stamp_path.exists():
        old = json.loads(stamp_path.read_text())
        if old.get("stamp") == stamp:
            return out, old["documents"], old["bytes"]
    out.mkdir(parents=True, exist_ok=True)
    for p in out.glob("*.jsonl.zst"):
        p.unlink()
    docs: list[bytes] = []
    total = 0
    limit = int(limit_mb * 1e6) if limit_mb else None
    for d in iter_documents(corpus):
        for para in paragraphs(d.text):
            line = json.dumps(
                {"text": para, "meta": {"pile_set_name": d.pile_set_name}}, ensure_ascii=False
            ).encode()
            docs.append(line + b"\n")
            total += len(para.encode())
            if limit and total >= limit:
                break
        if limit and total >= limit:
            break
    per = -(-len(docs) // files)
    cctx = zstandard.ZstdCompressor(level=3)
    for i in range(files):
        part = b"".join(docs[i * per : (i + 1) * per])
        (out / f"{i:02d}.jsonl.zst").write_bytes(cctx.compress(part))
    stamp_path.write_text(json.dumps({"stamp": stamp, "documents": len(docs), "bytes": total}))
    return out, len(docs), total


def load_texts(corpus_dir: Path) -> list[str]:
    from pipeline.read import iter_documents

    return [d.text for d in iter_documents([corpus_dir])]


# ----------------------------------------------------------------------------------------------
# peers (each runs in its own subprocess so thread/process settings are clean)


def peer_hf_batch(corpus_dir: Path, out_bin: Path) -> dict:
    import numpy as np
    from tokenizers import Tokenizer

    from pipeline.data import TOKENIZER_PATH

    texts = load_texts(corpus_dir)
    tok = Tokenizer.from_file(str(TOKENIZER_PATH))
    eod = tok.token_to_id("<|endoftext|>")
    t0 = time.perf_counter()
    encs = []
    for i in range(0, len(texts), 1000):
        encs.extend(tok.encode_batch_fast(texts[i : i + 1000]))
    seconds = time.perf_counter() - t0
    with open(out_bin, "wb") as f:
        for e in encs:
            f.write(np.array(e.ids + [eod], dtype=np.uint16).tobytes())
    return {"seconds": seconds, "tokens": sum(len(e.ids) + 1 for e in encs)}


_TOK = None


def _neox_init() -> None:
    global _TOK
    from tokenizers import Tokenizer

    from pipeline.data import TOKENIZER_PATH

    _TOK = Tokenizer.from_file(str(TOKENIZER_PATH))


def _neox_encode(text: str) -> tuple[list[int], int]:
    ids = _TOK.encode(text).ids
    if ids:
        ids.append(0)
    return ids, len(text)


def peer_neox(corpus_dir: Path, out_prefix: Path, workers: int) -> dict:
    import multiprocessing

    import numpy as np

    from pipeline.read import iter_documents
    from pipeline.shards.mmidx import MMIDXWriter

    t0 = time.perf_counter()
    texts = (d.text for d in iter_documents([corpus_dir]))
    pool = multiprocessing.Pool(workers, initializer=_neox_init)
    encoded = pool.imap(_neox_encode, texts, 25)
    w = MMIDXWriter(out_prefix, np.uint16)
    tokens = 0
    for ids, _ in encoded:
        if not ids:
            continue
        w.add_item(np.array(ids, dtype=np.uint16))
        tokens += len(ids)
    w.finalize()
    pool.close()
    pool.join()
    return {"seconds": time.perf_counter() - t0, "tokens": tokens}


# ----------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    from pipeline.io import sha256_file

    return sha256_file(path)


def first_difference(a: Path, b: Path, idx_prefix: Path, corpus_dir: Path) -> str:
    import numpy as np

    from pipeline.shards.mmidx import MMIDXDataset

    x = np.fromfile(a, dtype=np.uint16)
    y = np.fromfile(b, dtype=np.uint16)
    n = min(x.size, y.size)
    diff = np.flatnonzero(x[:n] != y[:n])
    pos = int(diff[0]) if diff.size else n
    ds = MMIDXDataset(idx_prefix)
    ptr = np.asarray(ds.index.pointers) // 2
    item = int(np.searchsorted(ptr, pos, side="right") - 1)
    import pyarrow.parquet as pq

    side = pq.read_table(str(idx_prefix) + ".docs.parquet").slice(item, 1).to_pylist()[0]
    return (
        f"first difference at token {pos} (lengths {x.size} vs {y.size}), item {item}: "
        f"{side['file']}:{side['line']} (doc_id {side['doc_id']})"
    )


def run_peer(args: list[str], env: dict | None = None) -> dict:
    r = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise SystemExit(f"peer {args[:2]} failed ({r.returncode})")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--corpus", nargs="*", type=Path, help="jsonl.zst files (default: novels)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--files", type=int, default=4, help="corpus files to write")
    ap.add_argument("--limit-mb", type=float, default=None, help="use only this many MB of text")
    ap.add_argument("--skip-neox", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; the best time of each counts")
    ap.add_argument("--_peer", help=argparse.SUPPRESS)
    ap.add_argument("--_arg", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._peer == "hf-batch":
        print(json.dumps(peer_hf_batch(Path(args._arg[0]), Path(args._arg[1]))))
        return 0
    if args._peer == "neox":
        print(json.dumps(peer_neox(Path(args._arg[0]), Path(args._arg[1]), int(args._arg[2]))))
        return 0

    corpus = args.corpus or sorted((SHARED / "corpora" / "novels").glob("*.jsonl.zst"))
    if not corpus:
        raise SystemExit("no corpus: pass --corpus FILES (../shared/corpora/novels is absent)")
    n = args.workers
    corpus_dir, ndocs, nbytes = prepare(corpus, args.files, args.limit_mb)
    print(
        f"corpus: {ndocs:,} documents, {nbytes / 1e6:,.1f} MB of text in {args.files} "
        f"jsonl.zst files ({corpus_dir}); {n} worker(s)/thread(s) for every method"
    )

    out = WORK / "pile_out"
    hf_bin = WORK / "hf_batch.bin"
    pile_cmd = [sys.executable, "-m", "pipeline.cli.main", "-q", "tokenize", str(corpus_dir)]
    pile_cmd += ["--out", str(out), "--prefix", "bench", "--workers", str(n)]
    best: dict[str, float] = {}
    neox = hf = None
    # methods alternate in each round and the best round counts: the machine may be shared
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        subprocess.run(pile_cmd, check=True)
        best["pile"] = min(best.get("pile", float("inf")), time.perf_counter() - t0)
        hf = run_peer(
            ["--_peer", "hf-batch", "--_arg", str(corpus_dir), str(hf_bin)],
            {"RAYON_NUM_THREADS": str(n), "TOKENIZERS_PARALLELISM": "true"},
        )
        best["hf"] = min(best.get("hf", float("inf")), hf["seconds"])
        if not args.skip_neox:
            neox = run_peer(
                [
                    "--_peer",
                    "neox",
                    "--_arg",
                    str(corpus_dir),
                    str(WORK / "neox_text_document"),
                    str(n),
                ],
                {"TOKENIZERS_PARALLELISM": "false"},
            )
            best["neox"] = min(best.get("neox", float("inf")), neox["seconds"])
    manifest = json.loads((out / "bench.manifest.json").read_text())
    tokens = manifest["counts"]["tokens"]
    pile_bin = out / "bench_text_document.bin"
    pile_s = best["pile"]
    rows = [
        ("pile tokenize (end to end)", pile_s, tokens),
        ("HF encode_batch_fast (in memory)", best["hf"], hf["tokens"]),
    ]
    if neox:
        rows.append(
            ("gpt-neox method (Pool, encode/doc, chunksize 25)", best["neox"], neox["tokens"])
        )
    load = os.getloadavg()[0]
    print(f"best of {args.repeat} round(s); load average now {load:.1f} on {os.cpu_count()} cores")

    print(f"\n{'method':50s} {'seconds':>8s} {'MB/s':>7s} {'Mtok/s':>7s}")
    for name, s, t in rows:
        print(f"{name:50s} {s:8.2f} {nbytes / s / 1e6:7.2f} {t / s / 1e6:7.3f}")
    print(f"\nratio pile / HF encode_batch_fast: {best['hf'] / pile_s:.2f}x (target >= 1.5x)")
    if neox:
        print(f"ratio pile / gpt-neox method:     {best['neox'] / pile_s:.2f}x (target >= 3x)")

    ok = True
    pile_sha = sha256(pile_bin)
    if sha256(hf_bin) != pile_sha:
        ok = False
        print(
            "IDENTITY FAILED vs HF: "
            + first_difference(pile_bin, hf_bin, out / "bench_text_document", corpus_dir)
        )
    if neox and sha256(WORK / "neox_text_document.bin") != pile_sha:
        ok = False
        print(
            "IDENTITY FAILED vs gpt-neox method: "
            + first_difference(
                pile_bin, WORK / "neox_text_document.bin", out / "bench_text_document", corpus_dir
            )
        )
    if ok:
        print(
            "identity: pile .bin == HF ids + EOD"
            + (" == gpt-neox method .bin" if neox else "")
            + f" on all {ndocs:,} documents ({tokens:,} tokens, sha256 {pile_sha[:16]}...)"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
