#!/usr/bin/env python3
"""Reader benchmark: `pipeline.read.iter_documents` vs the lm_dataformat way of reading the Pile.

    python tools/bench_read.py                 # prepare the input once (cached), then measure
    python tools/bench_read.py --repeat 5 --json

Input: the ~141 M characters of public-domain novels in `../shared/corpora/novels`, cut at line
boundaries into Pile-sized documents (log-normal sizes around the Pile's mean document size,
5.91 KiB) labelled with Pile `pile_set_name`s drawn by the Pile's weights, written once (seeded,
cached) as one `.jsonl.zst` in the Pile's format (`json.dumps` lines, zstd level 3) under
`--workdir` (default /tmp/pile-bench-read).

Peers, each reading the same file in one process (= one core), best CPU time of `--repeat` runs,
in interleaved order:
  * baseline: `zstandard` stream_reader + `io.TextIOWrapper` + `json.loads` per line, yielding
    (text, meta): how lm_dataformat's `Reader` reads the Pile (it wraps the same stream reader in a
    BufferedReader and parses each line with `json.loads` via jsonlines);
  * baseline+orjson: the same with `orjson.loads` (informational: shows what parsing alone buys);
  * pipeline: `pipeline.read.iter_documents([file])`, which also builds a `Document` (global id,
    source, meta, file, line) and per-source statistics.

Reported per peer: wall and CPU seconds, and per core (= per CPU second, so that other load on the
machine does not distort it): documents/s, MB/s of decompressed JSONL, MB/s of document text
(UTF-8); then the ratio pipeline / baseline (target >= 2x). More peers bound what any reader
can reach: decompression alone (floor:zstd); decompression + one UTF-8 decode per line with no JSON
parsing (floor:zstd+utf8, the least work that yields text as `str`); decompression + binary line
iteration + orjson per line with nothing else (bare:orjson); the same with pysimdjson (bare:simdjson,
only when it is importable; it is not a dependency). With `--lm-dataformat-python` (a venv with
`pip install lm-dataformat==0.0.20`; default /tmp/benchread-venv/bin/python, skipped if absent),
lm_dataformat's own `Reader.stream_data` is measured too, in a subprocess. `--mean-doc-kib` changes
the document size of the generated input (e.g. 1 for PubMed-Abstracts-sized documents);
`--profile` adds a cProfile of one pipeline run (top functions by internal time).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import zstandard

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO.parent / "shared"
NOVELS = ("100_english_novels.jsonl.zst", "eltec_eng_99_novels.jsonl.zst")
SEED = 1234
MEAN_DOC_BYTES = 5.91 * 1024  # the Pile's mean document size (paper, Table 1)
SIGMA = 1.0
MIN_DOC, MAX_DOC = 200, 400_000
FORMAT_VERSION = 1

# Pile weights (%), for labelling documents; manifests/pile_sources.json has the full table.
WEIGHTS = {
    "Pile-CC": 18.11,
    "PubMed Central": 14.40,
    "Books3": 12.07,
    "OpenWebText2": 10.01,
    "ArXiv": 8.96,
    "Github": 7.59,
    "FreeLaw": 6.12,
    "StackExchange": 5.13,
    "USPTO Backgrounds": 3.65,
    "PubMed Abstracts": 3.07,
    "Gutenberg (PG-19)": 2.17,
    "OpenSubtitles": 1.55,
    "Wikipedia (en)": 1.53,
    "DM Mathematics": 1.24,
    "Ubuntu IRC": 0.88,
    "BookCorpus2": 0.75,
    "EuroParl": 0.73,
    "HackerNews": 0.62,
    "YoutubeSubtitles": 0.60,
    "PhilPapers": 0.38,
    "NIH ExPorter": 0.30,
    "Enron Emails": 0.14,
}


# ------------------------------------------------------------------------------- input
def _novel_texts(shared: Path) -> Iterator[str]:
    for name in NOVELS:
        with open(shared / "corpora" / "novels" / name, "rb") as fh:
            data = zstandard.ZstdDecompressor().stream_reader(fh).read()
        for line in data.split(b"\n"):
            if line:
                yield json.loads(line)["text"]


def prepare(
    shared: Path, workdir: Path, mean_doc_bytes: float = MEAN_DOC_BYTES
) -> tuple[Path, dict]:
    """Write (once) the benchmark input; return its path and facts about it."""
    name = f"novels_docs_v{FORMAT_VERSION}_seed{SEED}_mean{round(mean_doc_bytes)}.jsonl.zst"
    path = workdir / name
    facts_path = path.with_suffix(".facts.json")
    if path.is_file() and facts_path.is_file():
        return path, json.loads(facts_path.read_text())
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    names = list(WEIGHTS)
    p = np.array([WEIGHTS[n] for n in names])
    p = p / p.sum()
    mu = np.log(mean_doc_bytes) - SIGMA**2 / 2
    docs = text_bytes = 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        writer = zstandard.ZstdCompressor(level=3).stream_writer(fh, closefd=False)
        for text in _novel_texts(shared):
            pos = 0
            while pos < len(text):
                size = int(np.clip(rng.lognormal(mu, SIGMA), MIN_DOC, MAX_DOC))
                end = text.find("\n", pos + size)
                end = len(text) if end < 0 else end + 1
                chunk = text[pos:end].strip("\n")
                pos = end
                if not chunk.strip():
                    continue
                name = names[int(rng.choice(len(names), p=p))]
                line = json.dumps({"text": chunk, "meta": {"pile_set_name": name}})
                writer.write(line.encode("utf-8") + b"\n")
                docs += 1
                text_bytes += len(chunk.encode("utf-8"))
        writer.flush(zstandard.FLUSH_FRAME)
    os.replace(tmp, path)
    with open(path, "rb") as fh:
        jsonl_bytes = sum(len(c) for c in _chunks(fh))
    facts = {
        "documents": docs,
        "text_bytes": text_bytes,
        "jsonl_bytes": jsonl_bytes,
        "zst_bytes": path.stat().st_size,
    }
    facts_path.write_text(json.dumps(facts))
    return path, facts


def _chunks(fh) -> Iterator[bytes]:
    reader = zstandard.ZstdDecompressor().stream_reader(fh)
    while chunk := reader.read(1 << 20):
        yield chunk


# ------------------------------------------------------------------------------- peers
def baseline(path: Path) -> int:
    """lm_dataformat's way: stream reader, text lines, json.loads per line."""
    n = 0
    with open(path, "rb") as fh:
        lines = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(fh), encoding="utf-8")
        for line in lines:
            ob = json.loads(line)
            text, meta = ob["text"], ob.get("meta", {})
            if text is not None and meta is not None:
                n += 1
    return n


def baseline_orjson(path: Path) -> int:
    import orjson

    n = 0
    with open(path, "rb") as fh:
        lines = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(fh), encoding="utf-8")
        for line in lines:
            ob = orjson.loads(line)
            text, meta = ob["text"], ob.get("meta", {})
            if text is not None and meta is not None:
                n += 1
    return n


def floor_zstd(path: Path) -> int:
    """Decompression alone (1 MiB reads, bytes discarded): no reader can beat this on one core."""
    with open(path, "rb") as fh:
        for _ in _chunks(fh):
            pass
    return -1


def floor_zstd_utf8(path: Path) -> int:
    """Decompression + one UTF-8 decode of every line and nothing else (no JSON parsing at all).

    Producing the text as `str` needs at least this much work, so baseline_time / this_time bounds
    the ratio any reader can reach on this machine, whatever its JSON parser."""
    n = 0
    with open(path, "rb") as fh:
        lines = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(fh), 1 << 20)
        for raw in lines:
            raw.decode("utf-8")
            n += 1
    return n


def bare_simdjson(path: Path) -> int:
    """bare:orjson with pysimdjson (informational, only when it is installed: it is not a
    dependency, because it keeps the first of duplicate keys where Python's json keeps the last)."""
    import simdjson

    parser = simdjson.Parser()
    n = 0
    with open(path, "rb") as fh:
        lines = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(fh), 1 << 16)
        for raw in lines:
            ob = parser.parse(raw)
            if ob["text"] is not None:
                n += 1
            del ob  # the parser cannot be reused while a proxy of its last document is alive
    return n


def bare_orjson(path: Path) -> int:
    """A bare-minimum reader: binary line iteration over a BufferedReader (splits on b"\\n" only)
    + orjson.loads, nothing else (no ids, checks or statistics). The fastest such loop found."""
    import orjson

    n = 0
    with open(path, "rb") as fh:
        lines = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(fh), 1 << 16)
        for raw in lines:
            ob = orjson.loads(raw)
            if ob["text"] is not None:
                n += 1
    return n


LMD_SCRIPT = """
import sys, time, gc, json
import lm_dataformat
path, repeat = sys.argv[1], int(sys.argv[2])
best = None
for _ in range(repeat):
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for text, meta in lm_dataformat.Reader(path).stream_data(get_meta=True):
        n += 1
    t = (time.perf_counter() - w0, time.process_time() - c0)
    best = t if best is None or t[1] < best[1] else best
print(json.dumps({"seconds": best[0], "cpu_seconds": best[1], "documents": n}))
"""


def run_lm_dataformat(python: str, path: Path, repeat: int) -> tuple[float, float, int]:
    """lm_dataformat's own Reader, in the separate venv that has it installed."""
    import subprocess

    out = subprocess.run(
        [python, "-c", LMD_SCRIPT, str(path), str(repeat)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return r["seconds"], r["cpu_seconds"], r["documents"]


def pipeline_reader(path: Path) -> int:
    from pipeline.read import iter_documents

    n = 0
    for _doc in iter_documents([path]):
        n += 1
    return n


PEERS: dict[str, Callable[[Path], int]] = {
    "baseline": baseline,
    "baseline+orjson": baseline_orjson,
    "floor:zstd": floor_zstd,
    "floor:zstd+utf8": floor_zstd_utf8,
    "bare:orjson": bare_orjson,
    "bare:simdjson": bare_simdjson,
    "pipeline": pipeline_reader,
}


def measure(fn: Callable[[Path], int], path: Path) -> tuple[float, float, int]:
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    n = fn(path)
    return time.perf_counter() - w0, time.process_time() - c0, n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the ../shared data")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/pile-bench-read"))
    ap.add_argument(
        "--mean-doc-kib",
        type=float,
        default=MEAN_DOC_BYTES / 1024,
        help="mean document size of the generated input (the Pile's: 5.91 KiB)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs per peer (best is reported)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--profile", action="store_true", help="cProfile one pipeline run")
    ap.add_argument(
        "--lm-dataformat-python",
        default="/tmp/benchread-venv/bin/python",
        help="python of a venv with lm-dataformat installed (pip install lm-dataformat==0.0.20); "
        "the peer is skipped when it does not exist",
    )
    args = ap.parse_args(argv)
    if not (args.shared / "corpora" / "novels").is_dir():
        print(f"error: {args.shared}/corpora/novels not found; pass --shared", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    path, facts = prepare(args.shared, args.workdir, args.mean_doc_kib * 1024)
    prep = time.perf_counter() - t0
    if not args.json:
        print(
            f"input: {path} ({facts['documents']} documents, {facts['text_bytes'] / 1e6:.1f} MB "
            f"text, {facts['jsonl_bytes'] / 1e6:.1f} MB jsonl, {facts['zst_bytes'] / 1e6:.1f} MB "
            f"zst, mean document {facts['text_bytes'] / facts['documents'] / 1024:.2f} KiB; "
            f"ready in {prep:.1f} s)"
        )

    peers = dict(PEERS)
    try:
        import simdjson  # noqa: F401
    except ImportError:
        del peers["bare:simdjson"]
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):
        for name, fn in peers.items():
            wall, cpu, n = measure(fn, path)
            if n != facts["documents"] and n != -1:
                print(f"error: {name} read {n} documents, expected {facts['documents']}")
                return 1
            if name not in best or cpu < best[name][1]:
                best[name] = (wall, cpu)

    lmd = args.lm_dataformat_python
    if lmd and Path(lmd).exists():
        wall, cpu, n = run_lm_dataformat(lmd, path, args.repeat)
        if n != facts["documents"]:
            print(f"error: lm_dataformat read {n} documents, expected {facts['documents']}")
            return 1
        best["lm_dataformat"] = (wall, cpu)

    rows = {}
    for name, (wall, cpu) in best.items():
        rows[name] = {
            "seconds": round(wall, 3),
            "cpu_seconds": round(cpu, 3),
            "docs_per_s": round(facts["documents"] / cpu),
            "jsonl_mb_per_s": round(facts["jsonl_bytes"] / 1e6 / cpu, 1),
            "text_mb_per_s": round(facts["text_bytes"] / 1e6 / cpu, 1),
        }

    def rel(a: str, b: str) -> float:
        return round(best[b][1] / best[a][1], 2)

    ratio = rel("pipeline", "baseline")
    result = {
        "input": facts,
        "repeat": args.repeat,
        "peers": rows,
        "ratio_pipeline_vs_baseline": ratio,
        "ratio_orjson_baseline_vs_baseline": rel("baseline+orjson", "baseline"),
        "bare_reader_ratio_vs_baseline": rel("bare:orjson", "baseline"),
        "bound_ratio_vs_baseline": rel("floor:zstd+utf8", "baseline"),
        "bare_simdjson_ratio_vs_baseline": (
            rel("bare:simdjson", "baseline") if "bare:simdjson" in best else None
        ),
        "ratio_pipeline_vs_lm_dataformat": (
            rel("pipeline", "lm_dataformat") if "lm_dataformat" in best else None
        ),
        "target_ratio": 2.0,
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(
            f"{'peer':16s} {'s':>7s} {'cpu s':>7s} {'docs/s':>9s} {'jsonl MB/s':>11s} {'text MB/s':>10s}"
        )
        for name, r in rows.items():
            print(
                f"{name:16s} {r['seconds']:7.2f} {r['cpu_seconds']:7.2f} {r['docs_per_s']:9d} "
                f"{r['jsonl_mb_per_s']:11.1f} {r['text_mb_per_s']:10.1f}"
            )
        verdict = "meets" if ratio >= 2.0 else "BELOW"
        print(f"pipeline / baseline: {ratio:.2f}x ({verdict} the 2x target; one core each)")
        print(
            f"baseline+orjson / baseline: {result['ratio_orjson_baseline_vs_baseline']:.2f}x "
            "(parsing alone)"
        )
        print(
            f"bare:orjson / baseline: {result['bare_reader_ratio_vs_baseline']:.2f}x (about the "
            "ceiling for a reader that decompresses and parses every line; floor:zstd is "
            "decompression alone)"
        )
        if result["bare_simdjson_ratio_vs_baseline"] is not None:
            print(
                f"bare:simdjson / baseline: {result['bare_simdjson_ratio_vs_baseline']:.2f}x "
                "(the fastest JSON parser on PyPI, same bare loop)"
            )
        print(
            f"floor:zstd+utf8 / baseline: {result['bound_ratio_vs_baseline']:.2f}x (upper bound "
            "for any reader that yields the text as str: decompression plus one UTF-8 decode, "
            "with zero JSON parsing)"
        )
        if result["ratio_pipeline_vs_lm_dataformat"] is not None:
            print(
                f"pipeline / lm_dataformat: {result['ratio_pipeline_vs_lm_dataformat']:.2f}x "
                "(lm_dataformat 0.0.20's Reader.stream_data, as gpt-neox's preprocess_data uses it)"
            )

    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(pipeline_reader, path)
        stats = pstats.Stats(prof, stream=sys.stderr if args.json else sys.stdout)
        stats.sort_stats("tottime").print_stats(12)
    return 0


if __name__ == "__main__":
    sys.exit(main())
