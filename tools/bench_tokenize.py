"""Benchmark `pile tokenize` end to end against the gpt-neox v1.0 method and HF batch encoding.

Every method runs as its own process on the same jsonl.zst files, timed from start to exit (wall
and CPU seconds of the process and its children), and must write the same `.bin` bytes:

  pile      `pile tokenize DIR --workers N` (default backend: auto = gigatoken when installed);
  neox      gpt-neox v1.0 `tools/preprocess_data.py`'s method, re-implemented here: documents
            read in the main process (zstd stream + `json.loads` per line, as lm_dataformat),
            `multiprocessing.Pool(N, initializer).imap(encode, docs, chunksize=25)` with one HF
            `Tokenizer.encode(text).ids` per document + EOD (no pool when N = 1, as gpt-neox),
            items added one by one to an MMIDIDX builder;
  hf-batch  HF `tokenizers` `encode_batch_fast` (rayon pool of N threads) over all texts, read with
            the pile reader, ids + EOD written as the `.bin`;
  stats     `pile stats DIR --workers N`: the reader alone (decompress, parse, count), the floor.

Corpora: the shared novels split into paragraph documents (>= 1,000 characters), and generated
code-like text (long whitespace runs, ever-new identifiers; `tools/bench_encoder.code_like_docs`).
Runs are interleaved (pile, neox, hf-batch, stats, pile, ...) for --rounds rounds and the median
counts, on 1 and 2 cores (--cores); one untimed pile run first (the identity guard runs once per
machine, its verdict is cached). CPU seconds count the processes a method waited for: on > 1 core
pile's pool workers are children of a forkserver and may be missed (compare wall time there).
The gpt-neox peer is a transcription, not the v1.0 script itself: `tools/preprocess_data.py`
imports torch, transformers, sentencepiece, ftfy and deepspeed-era megatron modules at start
(seconds of CPU the transcription does not pay, so it flatters gpt-neox, not pile); its hot loop
(`lmd.Reader(f).stream_data()`, `Pool.imap(encode, docs, chunksize=25)`, `tokenizer.encode(text)
.ids` + eod, `builder.add_item(np.array(ids, dtype))`) is the same. Work files go to
$PILE_BENCH_DIR (default /tmp/bench_tokenize). Printed: MB/s of text (wall) and MB per CPU-second, and the
ratios pile / neox per core (target >= 30x) and pile / stats (target: pile within 1.5x).

    python tools/bench_tokenize.py --limit-mb 20 --rounds 3
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
# PILE_BENCH_DIR: sessions sharing a machine must not share (and overwrite) one work directory
WORK = Path(os.environ.get("PILE_BENCH_DIR", "/tmp/bench_tokenize"))


# ----------------------------------------------------------------------------------------------
# corpus


def prepare(corpus: list[Path], files: int, limit_mb: float | None) -> tuple[Path, int, int]:
    """Write the paragraph corpus once; returns (dir, documents, UTF-8 bytes)."""
    import zstandard

    from pipeline.read import iter_documents

    stamp = {
        "corpus": [str(p) for p in corpus],
        "files": files,
        "limit_mb": limit_mb,
        "version": 2,
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
    sys.path.insert(0, str(REPO / "tools"))
    from bench_encoder import paragraph_docs

    for d in iter_documents(corpus):
        for para in paragraph_docs([d.text]):
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


def prepare_code(limit_mb: float, files: int) -> tuple[Path, int, int]:
    """Generated code-like documents as jsonl.zst files (kept between runs)."""
    import zstandard

    sys.path.insert(0, str(REPO / "tools"))
    from bench_encoder import code_like_docs

    out = WORK / f"code-{limit_mb:g}"
    stamp = out / "stamp.json"
    if stamp.exists():
        d = json.loads(stamp.read_text())
        return out, d["documents"], d["bytes"]
    out.mkdir(parents=True, exist_ok=True)
    lines, total, seed = [], 0, 0
    while total < limit_mb * 1e6:
        for t in code_like_docs(seed, 50):
            lines.append(json.dumps({"text": t, "meta": {"pile_set_name": "Github"}}).encode())
            total += len(t.encode())
        seed += 1
    per = -(-len(lines) // files)
    cctx = zstandard.ZstdCompressor(level=3)
    for i in range(files):
        part = b"\n".join(lines[i * per : (i + 1) * per]) + b"\n"
        (out / f"{i:02d}.jsonl.zst").write_bytes(cctx.compress(part))
    stamp.write_text(json.dumps({"documents": len(lines), "bytes": total}))
    return out, len(lines), total


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
    tokens = 0
    with open(out_bin, "wb") as f:
        for i in range(0, len(texts), 1000):
            for e in tok.encode_batch_fast(texts[i : i + 1000]):
                f.write(np.array(e.ids + [eod], dtype=np.uint16).tobytes())
                tokens += len(e.ids) + 1
    return {"tokens": tokens}


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


def _lmd_texts(corpus_dir: Path):
    """lm_dataformat's jsonl.zst reading: a zstd stream, `json.loads` per line, the text field;
    empty documents filtered out (gpt-neox's `filter(lambda x: x, ...)`)."""
    import io

    import zstandard

    try:  # lm_dataformat parses with orjson when it is installed
        from orjson import loads
    except ImportError:  # pragma: no cover
        loads = json.loads
    for path in sorted(corpus_dir.glob("*.jsonl.zst")):
        with open(path, "rb") as fh:
            reader = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(fh))
            for line in io.TextIOWrapper(reader, encoding="utf-8"):
                text = loads(line)["text"]
                if text:
                    yield text


def peer_neox(corpus_dir: Path, out_prefix: Path, workers: int) -> dict:
    import multiprocessing

    import numpy as np

    from pipeline.shards.mmidx import MMIDXWriter

    texts = _lmd_texts(corpus_dir)
    if workers > 1:
        pool = multiprocessing.Pool(workers, initializer=_neox_init)
        encoded = pool.imap(_neox_encode, texts, chunksize=25)
    else:
        _neox_init()
        encoded = (_neox_encode(t) for t in texts)
    w = MMIDXWriter(out_prefix, np.uint16)
    tokens = 0
    for ids, _ in encoded:
        if not ids:
            continue
        w.add_item(np.array(ids, dtype=np.uint16))
        tokens += len(ids)
    w.finalize()
    if workers > 1:
        pool.close()
        pool.join()
    return {"tokens": tokens}


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


def timed_process(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and the children it waited for)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(
        cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-2000:] + r.stderr[-4000:])
        raise SystemExit(f"{cmd[:5]} failed ({r.returncode})")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def methods(corpus_dir: Path, n: int, backend: str | None) -> dict[str, tuple[list[str], dict]]:
    py = sys.executable
    me = str(Path(__file__).resolve())
    pile = [py, "-m", "pipeline.cli.main", "-q", "tokenize", str(corpus_dir)]
    pile += ["--out", str(WORK / "pile_out"), "--prefix", "bench", "--workers", str(n)]
    if backend:
        pile += ["--backend", backend]
    return {
        "pile": (pile, {}),
        "neox": (
            [py, me, "--_peer", "neox", "--_arg", str(corpus_dir), str(WORK / "neox"), str(n)],
            {"TOKENIZERS_PARALLELISM": "false"},
        ),
        "hf-batch": (
            [py, me, "--_peer", "hf-batch", "--_arg", str(corpus_dir), str(WORK / "hf.bin")],
            {"RAYON_NUM_THREADS": str(n), "TOKENIZERS_PARALLELISM": "true"},
        ),
        "stats": (
            [
                py,
                "-m",
                "pipeline.cli.main",
                "-q",
                "stats",
                str(corpus_dir),
                "--json",
                "--workers",
                str(n),
            ],
            {},
        ),  # fmt: skip
    }


PEER_BINS = {"neox": WORK / "neox.bin", "hf-batch": WORK / "hf.bin"}


def check_identity(corpus_dir: Path, ran) -> str:
    pile_bin = WORK / "pile_out" / "bench_text_document.bin"
    want = sha256(pile_bin)
    bad = []
    for name, path in PEER_BINS.items():
        if name in ran and sha256(path) != want:
            bad.append(
                f"{name}: "
                + first_difference(
                    pile_bin, path, WORK / "pile_out" / "bench_text_document", corpus_dir
                )
            )
    return "; ".join(bad)


def main() -> int:
    import statistics

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--corpus", nargs="*", type=Path, help="jsonl.zst files (default: novels)")
    ap.add_argument("--cores", default="1,2", help="worker counts to measure, e.g. 1,2")
    ap.add_argument("--files", type=int, default=4, help="corpus files to write")
    ap.add_argument("--limit-mb", type=float, default=20, help="MB of text per corpus")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median counts)")
    ap.add_argument("--backend", help="pile --backend (default: auto)")
    ap.add_argument("--skip", nargs="*", default=[], help="methods to skip (neox, hf-batch, ...)")
    ap.add_argument("--_peer", help=argparse.SUPPRESS)
    ap.add_argument("--_arg", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    if args._peer == "hf-batch":
        print(json.dumps(peer_hf_batch(Path(args._arg[0]), Path(args._arg[1]))))
        return 0
    if args._peer == "neox":
        print(json.dumps(peer_neox(Path(args._arg[0]), Path(args._arg[1]), int(args._arg[2]))))
        return 0

    corpus = args.corpus or sorted((SHARED / "corpora" / "novels").glob("*.jsonl.zst"))
    if not corpus:
        raise SystemExit("no corpus: pass --corpus FILES (../shared/corpora/novels is absent)")
    # an installed package has its bytecode compiled; PYTHONDONTWRITEBYTECODE (set in some
    # environments) would otherwise make every pile process compile its modules (~0.1 CPU-s)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "pipeline")], check=True)
    novels = prepare(corpus, args.files, args.limit_mb)
    code = prepare_code(args.limit_mb, args.files)
    load = os.getloadavg()
    print(
        f"load average {load[0]:.1f} on {os.cpu_count()} cores before the run (other sessions "
        "share the machine: absolute figures move with load, ratios within a round less so)"
    )
    ok = True
    for label, (cdir, ndocs, nbytes) in (("novels", novels), ("code-like", code)):
        print(f"\n== {label}: {ndocs:,} documents, {nbytes / 1e6:,.1f} MB of text ({cdir})")
        for n in [int(x) for x in args.cores.split(",")]:
            ms = {k: v for k, v in methods(cdir, n, args.backend).items() if k not in args.skip}
            res: dict[str, list[tuple[float, float]]] = {k: [] for k in ms}
            for p in PEER_BINS.values():  # no stale output of an earlier run is compared
                p.unlink(missing_ok=True)
            if "pile" in ms:  # untimed: the identity guard's verdict is cached once per machine
                timed_process(*ms["pile"])
            for _ in range(args.rounds):
                for k, (cmd, env) in ms.items():
                    res[k].append(timed_process(cmd, env))
            bad = check_identity(cdir, ms)
            if bad:
                ok = False
                print("IDENTITY FAILED " + bad)
            med = {
                k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
                for k, v in res.items()
            }
            print(f"-- {n} core(s), median of {args.rounds} interleaved rounds")
            print(f"{'method':10s} {'wall s':>8s} {'CPU s':>8s} {'MB/s':>8s} {'MB/CPU-s':>9s}")
            for k, (w, c) in med.items():
                print(f"{k:10s} {w:8.2f} {c:8.2f} {nbytes / w / 1e6:8.2f} {nbytes / c / 1e6:9.2f}")
            pw, pc = med["pile"]
            if "neox" in med:
                print(
                    f"pile vs gpt-neox method: {med['neox'][0] / pw:.1f}x wall, "
                    f"{med['neox'][1] / pc:.1f}x CPU (target >= 30x per core)"
                )
            if "hf-batch" in med:
                print(f"pile vs HF encode_batch_fast: {med['hf-batch'][0] / pw:.1f}x wall")
            if "stats" in med:
                print(
                    f"pile / reader alone (pile stats): {pw / med['stats'][0]:.2f}x wall, "
                    f"{pc / med['stats'][1]:.2f}x CPU (target <= 1.5x)"
                )
    if ok:
        print("\nidentity: every method's .bin is byte-identical to pile's")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
