#!/usr/bin/env python3
"""Reader benchmark: `pile`'s reader vs the real lm_dataformat 0.0.20, end to end, as processes.

    python -m venv /tmp/lmd-venv && /tmp/lmd-venv/bin/pip install lm-dataformat==0.0.20 orjson
    python tools/bench_read.py --lm-dataformat-python /tmp/lmd-venv/bin/python [--repeat 3]

Inputs (written once, seeded, cached under `--workdir`, default /tmp/pile-bench-read), each one
`.jsonl.zst` in the Pile's format (`json.dumps` lines with `meta.pile_set_name`, zstd level 3):
  * novels: the ~141 M characters of public-domain novels in `../shared/corpora/novels`, cut at
    line (paragraph) boundaries into Pile-sized documents (log-normal sizes around the Pile's
    mean document size, 5.91 KiB), labelled with Pile `pile_set_name`s drawn by the Pile's weights;
  * code: source files as Pile `Github` documents (one file = one document, as in the Pile): the
    running Python's standard library `*.py` and `/usr/include/**/*.h`, sorted, up to
    `--code-mb` MB (long whitespace runs, deep indentation, many short lines).

Contenders, each a fresh process reading the whole file on one core, in interleaved order
(`--repeat` rounds), median CPU seconds (user + sys of the child, from wait4) and wall seconds:
  * lm_dataformat: `lm_dataformat.Reader(path).stream_data(get_meta=True)` in the separate venv
    where it is installed as a user has it (0.0.20 with jsonlines, which parses with orjson when
    importable): how gpt-neox's `preprocess_data.py` reads the Pile;
  * pile reader: `pipeline.read.iter_documents([path])` (global ids, source, meta, file, line,
    per-source statistics, error policy);
  * pile stats: the `pile stats PATH --json --workers 1` command;
  * floor:zstd+utf8 (informational): decompression + one UTF-8 decode per line, no JSON parsing:
    the least work that yields each text as `str`.
Printed: per contender CPU s, wall s, documents/s and MB/s of text per CPU second, and the ratios
lm_dataformat CPU / pile CPU. Results were taken on 2 cores shared with other jobs: CPU seconds
are the main figure, wall times move with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
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


def prepare_code(workdir: Path, max_mb: float) -> tuple[Path, dict]:
    """Write (once) the code input: stdlib *.py and /usr/include *.h files as Github documents."""
    roots = [(Path(sysconfig.get_paths()["stdlib"]), "*.py"), (Path("/usr/include"), "*.h")]
    path = workdir / f"code_docs_v{FORMAT_VERSION}_{round(max_mb)}mb.jsonl.zst"
    facts_path = path.with_suffix(".facts.json")
    if path.is_file() and facts_path.is_file():
        return path, json.loads(facts_path.read_text())
    workdir.mkdir(parents=True, exist_ok=True)
    docs = text_bytes = 0
    budget = int(max_mb * 1e6)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        writer = zstandard.ZstdCompressor(level=3).stream_writer(fh, closefd=False)
        for root, pattern in roots:
            for f in sorted(root.rglob(pattern)):
                if text_bytes >= budget:
                    break
                try:
                    raw = f.read_bytes()
                    text = raw.decode("utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                if not text.strip() or len(raw) > MAX_DOC:
                    continue
                line = json.dumps({"text": text, "meta": {"pile_set_name": "Github"}})
                writer.write(line.encode("utf-8") + b"\n")
                docs += 1
                text_bytes += len(raw)
        writer.flush(zstandard.FLUSH_FRAME)
    os.replace(tmp, path)
    with open(path, "rb") as fh:
        jsonl_bytes = sum(len(c) for c in _chunks(fh))
    facts = {"documents": docs, "text_bytes": text_bytes, "jsonl_bytes": jsonl_bytes,
             "zst_bytes": path.stat().st_size}  # fmt: skip
    facts_path.write_text(json.dumps(facts))
    return path, facts


def _chunks(fh) -> Iterator[bytes]:
    reader = zstandard.ZstdDecompressor().stream_reader(fh)
    while chunk := reader.read(1 << 20):
        yield chunk


# ------------------------------------------------------------------------------- contenders
# Each prints the number of documents it read; the parent checks it.
LMD = """
import sys, lm_dataformat
n = 0
for text, meta in lm_dataformat.Reader(sys.argv[1]).stream_data(get_meta=True):
    n += 1
print(n)
"""
PILE_READER = """
import sys
from pipeline.read import iter_documents
n = 0
for doc in iter_documents([sys.argv[1]]):
    n += 1
print(n)
"""
FLOOR = """
import io, sys, zstandard
n = 0
with open(sys.argv[1], "rb") as fh:
    for raw in io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(fh), 1 << 20):
        raw.decode("utf-8")
        n += 1
print(n)
"""


def contenders(lmd_python: str) -> dict[str, list[str]]:
    py = sys.executable
    pile = str(Path(py).with_name("pile"))
    return {
        "lm_dataformat": [lmd_python, "-c", LMD],
        "pile reader": [py, "-c", PILE_READER],
        "pile stats": [pile, "stats", "--json", "--workers", "1"],
        "floor:zstd+utf8": [py, "-c", FLOOR],
    }


def run_timed(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + sys of the child, from wait4) and stdout of cmd."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if p.returncode:
            raise SystemExit(f"{cmd[:3]} failed:\n{err.read().decode(errors='replace')[-2000:]}")
        return wall, ru.ru_utime + ru.ru_stime, out.read().decode()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the ../shared data")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/pile-bench-read"))
    ap.add_argument("--code-mb", type=float, default=60.0, help="MB of source files (code input)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (median reported)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument(
        "--lm-dataformat-python",
        default="/tmp/lmd-venv/bin/python",
        help="python of a venv with `pip install lm-dataformat==0.0.20 orjson`",
    )
    args = ap.parse_args(argv)
    if not (args.shared / "corpora" / "novels").is_dir():
        print(f"error: {args.shared}/corpora/novels not found; pass --shared", file=sys.stderr)
        return 2
    if not Path(args.lm_dataformat_python).exists():
        print(f"error: {args.lm_dataformat_python} not found: make the lm_dataformat venv first "
              "(see --help)", file=sys.stderr)  # fmt: skip
        return 2
    inputs = {
        "novels": prepare(args.shared, args.workdir),
        "code": prepare_code(args.workdir, args.code_mb),
    }
    cmds = contenders(args.lm_dataformat_python)
    result: dict = {"repeat": args.repeat, "inputs": {}}
    for label, (path, facts) in inputs.items():
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
        for _ in range(args.repeat):
            for name, cmd in cmds.items():
                wall, cpu, out = run_timed([*cmd, str(path)])
                n = json.loads(out)["documents"] if name == "pile stats" else int(out.split()[-1])
                if n != facts["documents"]:
                    print(f"error: {name} read {n} documents of {path}, expected "
                          f"{facts['documents']}")  # fmt: skip
                    return 1
                runs[name].append((wall, cpu))
        rows = {}
        for name, rs in runs.items():
            cpu = statistics.median(c for _, c in rs)
            rows[name] = {
                "seconds": round(statistics.median(w for w, _ in rs), 2),
                "cpu_seconds": round(cpu, 2),
                "docs_per_cpu_s": round(facts["documents"] / cpu),
                "text_mb_per_cpu_s": round(facts["text_bytes"] / 1e6 / cpu, 1),
            }
        lmd = rows["lm_dataformat"]["cpu_seconds"]
        ratios = {k: round(lmd / rows[k]["cpu_seconds"], 2) for k in ("pile reader", "pile stats")}
        result["inputs"][label] = {"facts": facts, "contenders": rows, "speedup_vs_lmd": ratios}
        if not args.json:
            print(f"\n{label}: {path.name}: {facts['documents']} documents, "
                  f"{facts['text_bytes'] / 1e6:.1f} MB text, mean "
                  f"{facts['text_bytes'] / facts['documents'] / 1024:.2f} KiB; median of "
                  f"{args.repeat} interleaved runs")  # fmt: skip
            print(f"  {'contender':16s} {'cpu s':>7s} {'wall s':>7s} {'docs/cpu-s':>10s} "
                  f"{'text MB/cpu-s':>13s}")  # fmt: skip
            for name, r in rows.items():
                print(f"  {name:16s} {r['cpu_seconds']:7.2f} {r['seconds']:7.2f} "
                      f"{r['docs_per_cpu_s']:10d} {r['text_mb_per_cpu_s']:13.1f}")  # fmt: skip
            for k, v in ratios.items():
                print(f"  {k} is {v:.2f}x lm_dataformat 0.0.20 (+orjson) in CPU seconds")
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
