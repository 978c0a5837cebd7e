"""Per-core rates of every stage of `pile build`, for the projections in docs/SCALE.md.

    python tools/bench_stages.py [--mb 50] [--files 4] [--doc-kb 4] [--workdir DIR]
        [--json results.json] [--keep]

Builds a Pile-shaped corpus from ../shared/corpora/novels (each novel cut at paragraph breaks
into ~--doc-kb KB documents, each with a `pile_set_name` and `meta`, written round-robin into
--files `.jsonl.zst` files; --mb MB of UTF-8 text: the novels hold ~142 MB, beyond that they are
written again, exact duplicates as in the Pile's upsampled components), then
runs each stage the way its stage command does, one process per stage with `--workers 1`:

    read     pile stats INPUTS --json --workers 1            (reader alone: decompress + parse)
    dedup    pile dedup INPUTS --out D --workers 1           (default: pythia-0.87, verify exact)
    tok-std  pile tokenize INPUTS --out S --prefix standard --workers 1
    tok-dd   derive_excluded(S minus D)                      (what `pile build` does for deduped;
                                                               no stage command: run through
                                                               `python -c`, as the runner calls it)
    order    pile order S/standard_text_document --seq-length 2048 --global-batch 1 \
                 --train-iters <one epoch of samples> --seed 1234
    order xE the same over --order-epochs E epochs (default 50), --out-dir elsewhere: the maps'
             cost per sample and per doc_idx entry at a size start-up does not hide
    preshuf  pile preshuffle S/standard_text_document --out-dir P (same order flags)
    verify   pile verify WORKDIR/out --workers 1

Per stage: CPU seconds (user + sys of the stage process and every process it waited for, from
os.wait4), wall seconds, peak RSS (largest single process of the stage, from wait4's ru_maxrss),
input bytes (UTF-8 text; tokens x 2 for order/preshuffle, whose input is the token dataset),
documents, tokens and output bytes (every file the stage wrote). The per-core rate is input text
MB per CPU second (tokens per CPU second for order and preshuffle). The machine these figures come
from is shared with other sessions: wall time depends on their load, CPU time much less, so CPU
time is the figure to project from. Prints a table and writes --json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zstandard

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
NOVELS = SHARED / "corpora" / "novels"
# book-like Pile components: the novels stand in for them
SOURCES = ("Books3", "Gutenberg (PG-19)", "BookCorpus2")
SEQ_LENGTH = 2048
SEED = 1234


def split_novel(text: str, target: int) -> list[str]:
    """Cut at line breaks (the novels hold one paragraph per line) into pieces of about `target`
    bytes (a piece never splits a paragraph; a longer paragraph stays whole)."""
    out: list[str] = []
    cur: list[str] = []
    size = 0
    for para in text.split("\n"):
        cur.append(para)
        size += len(para.encode("utf-8")) + 1
        if size >= target:
            out.append("\n".join(cur))
            cur, size = [], 0
    if cur and "".join(cur).strip():
        out.append("\n".join(cur))
    return out


def build_corpus(dest: Path, mb: float, files: int, doc_kb: float) -> dict:
    """Write dest/train_{i:02d}.jsonl.zst; returns documents and text bytes written."""
    novels = sorted(NOVELS.glob("*.jsonl.zst"))
    if not novels:
        raise SystemExit(f"no corpus: {NOVELS} is absent (needs ../shared/corpora/novels)")
    dest.mkdir(parents=True, exist_ok=True)
    limit = int(mb * 1e6)
    parts: list[list[bytes]] = [[] for _ in range(files)]
    docs = text_bytes = repeats = k = 0
    # past the end of the novels, they are written again: exact duplicates, as the Pile's
    # upsampled components (Wikipedia x3, PG-19 x2.5, ...) hold
    for epoch in range(1_000):
        before = text_bytes
        for path in novels:
            if text_bytes >= limit:
                break
            with zstandard.open(path, "rt", encoding="utf-8") as fh:
                for line in fh:
                    if text_bytes >= limit:
                        break
                    rec = json.loads(line)
                    for piece in split_novel(rec["text"], int(doc_kb * 1024)):
                        if text_bytes >= limit:
                            break
                        src = SOURCES[k % len(SOURCES)]
                        row = {"text": piece, "meta": {"pile_set_name": src}}
                        parts[docs % files].append((json.dumps(row) + "\n").encode("utf-8"))
                        docs += 1
                        repeats += epoch > 0
                        text_bytes += len(piece.encode("utf-8"))
                    k += 1
        if text_bytes >= limit or text_bytes == before:
            break
    # one zstd frame per file with a content checksum, as the Pile's files are written
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True)
    for i, rows in enumerate(parts):
        (dest / f"train_{i:02d}.jsonl.zst").write_bytes(cctx.compress(b"".join(rows)))
    return {"documents": docs, "text_bytes": text_bytes, "repeated_documents": repeats}


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_stage(cmd: list[str], log: Path) -> dict:
    """Run one stage process; CPU (user+sys of it and its waited-for children) and peak RSS of
    its largest process from wait4, wall from the clock."""
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.stderr.write(log.read_text(errors="replace")[-3000:])
        raise SystemExit(f"stage failed (exit {p.returncode}): {' '.join(cmd)}; log {log}")
    return {
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "wall_s": wall,
        "peak_rss_mib": ru.ru_maxrss / 1024,  # Linux: KiB
    }


DERIVE = """
import sys
from pipeline.read import ReadConfig
from pipeline.tokenize.config import TokenizeConfig
from pipeline.tokenize.derive import derive_excluded
from pipeline.tokenize.stage import load_exclude
std, dedup, out = sys.argv[1:4]
ids, fp = load_exclude(dedup)
counts = derive_excluded(std, "standard", out, "deduped", TokenizeConfig.for_tokenizer(None),
                         ReadConfig(), ids, fp)
if counts is None:
    sys.exit("not derived (see log)")
print(counts["documents"], counts["tokens"])
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=50.0, help="MB of text (default 50)")
    ap.add_argument("--files", type=int, default=4, help="input .jsonl.zst files (default 4)")
    ap.add_argument("--doc-kb", type=float, default=4.0, help="document size in KB (default 4)")
    ap.add_argument("--workdir", type=Path, help="default: a temp dir, removed unless --keep")
    ap.add_argument("--keep", action="store_true", help="keep the corpus and outputs")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="a --json of a smaller run: also print marginal rates (the difference of the two "
        "runs: the fixed start-up cost of each stage process cancels out)",
    )
    ap.add_argument(
        "--order-epochs",
        type=int,
        default=50,
        help="also time `pile order` over this many epochs (1 = skip)",
    )
    ap.add_argument("--make-corpus", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.make_corpus:
        print(json.dumps(build_corpus(args.make_corpus, args.mb, args.files, args.doc_kb)))
        return 0

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_stages_"))
    if work.exists() and any(work.iterdir()):
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    pile = [sys.executable, "-m", "pipeline.cli.main"]
    try:
        corpus = work / "corpus"
        t0 = time.perf_counter()
        # in a child process: a forked stage process's ru_maxrss starts from its parent's RSS,
        # so this process must never hold the corpus
        made = subprocess.run(
            [sys.executable, __file__, "--make-corpus", str(corpus), "--mb", str(args.mb)]
            + ["--files", str(args.files), "--doc-kb", str(args.doc_kb)],
            check=True,
            capture_output=True,
            text=True,
        )
        c = json.loads(made.stdout)
        inputs = [str(p) for p in sorted(corpus.glob("*.jsonl.zst"))]
        zst_bytes = tree_bytes(corpus)
        print(
            f"corpus: {c['documents']:,} documents, {c['text_bytes'] / 1e6:.1f} MB text, "
            f"{zst_bytes / 1e6:.1f} MB .zst in {args.files} files, "
            f"{c['repeated_documents']:,} documents repeated ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        out = work / "out"
        std, dd, dedup = out / "standard", out / "deduped", out / "dedup"
        logs = work / "logs"
        logs.mkdir()
        rows: list[dict] = []

        def stage(name: str, cmd: list[str], **facts) -> dict:
            r = {"stage": name, "command": " ".join(cmd), **run_stage(cmd, logs / f"{name}.log")}
            r.update(facts)
            rows.append(r)
            print(f"  {name}: {r['cpu_s']:.1f} CPU s, {r['wall_s']:.1f} s wall", flush=True)
            return r

        text = c["text_bytes"]
        ndocs = c["documents"]
        r = stage("read", [*pile, "stats", *inputs, "--json", "--workers", "1"])
        r.update(input_bytes=text, documents=ndocs, output_bytes=0)

        r = stage("dedup", [*pile, "dedup", *inputs, "--out", str(dedup), "--workers", "1"])
        dm = json.loads((dedup / "manifest.json").read_text())
        r.update(input_bytes=text, documents=ndocs, output_bytes=tree_bytes(dedup))
        r["removed"] = dm.get("counts", {}).get("removed", dm.get("removed"))
        # phase wall seconds and graph sizes: what the projection of the driver-side phases needs
        r["phases_wall_s"] = json.loads((dedup / "timings.json").read_text())
        dc = json.loads((dedup / "stats.json").read_text())["counts"]
        r["graph"] = {k: dc.get(k) for k in ("band_records", "candidate_pairs", "edges")}
        r["graph"].update({k: dc.get(k) for k in ("documents_in_clusters", "shingles")})

        pre = [*pile, "tokenize", *inputs, "--out", str(std), "--prefix", "standard"]
        r = stage("tokenize-standard", [*pre, "--workers", "1"])
        tokens = (std / "standard_text_document.bin").stat().st_size // 2  # uint16 ids
        r.update(input_bytes=text, documents=ndocs, tokens=tokens, output_bytes=tree_bytes(std))

        cmd = [sys.executable, "-c", DERIVE, str(std), str(dedup), str(dd)]
        r = stage("tokenize-deduped (derived)", cmd)
        line = (logs / "tokenize-deduped (derived).log").read_text().split()
        r.update(
            input_bytes=tree_bytes(std / "standard_text_document.bin"),
            documents=int(line[-2]),
            tokens=int(line[-1]),
            output_bytes=tree_bytes(dd),
        )

        # one epoch of the standard tokens in samples of 2049 (global batch 1: the maps' size
        # depends on the sample count, not on how samples are grouped into steps)
        samples = max(1, tokens // (SEQ_LENGTH + 1))
        oflags = ["--seq-length", str(SEQ_LENGTH), "--global-batch", "1"]
        oflags += ["--train-iters", str(samples), "--seed", str(SEED)]
        prefix = str(std / "standard_text_document")
        before = tree_bytes(std)
        r = stage("order", [*pile, "order", prefix, *oflags])
        r.update(input_bytes=tokens * 2, tokens=tokens, output_bytes=tree_bytes(std) - before)
        r["samples"] = samples

        # the maps grow with samples and doc_idx entries (documents x epochs): a second order run
        # over --order-epochs epochs measures them at a size where start-up does not dominate
        if args.order_epochs > 1:
            n = samples * args.order_epochs
            big = [*oflags[:4], "--train-iters", str(n), "--seed", str(SEED)]
            mdir = work / "maps_epochs"
            r = stage(
                f"order x{args.order_epochs} epochs",
                [*pile, "order", prefix, *big, "--out-dir", str(mdir)],
            )
            r.update(input_bytes=tokens * 2, tokens=n * (SEQ_LENGTH + 1))
            r.update(output_bytes=tree_bytes(mdir), samples=n)
            r["doc_idx_entries"] = int(
                np.load(next(mdir.glob("*_doc_idx.npy")), mmap_mode="r").size
            )

        pdir = out / "preshuffled"
        r = stage("preshuffle", [*pile, "preshuffle", prefix, "--out-dir", str(pdir), *oflags])
        r.update(input_bytes=tokens * 2, tokens=samples * (SEQ_LENGTH + 1))
        r["output_bytes"] = tree_bytes(pdir)

        r = stage("verify", [*pile, "verify", str(out), "--workers", "1", "--no-extra"])
        r.update(input_bytes=tree_bytes(out), output_bytes=0)

        for r in rows:
            if r["stage"].startswith("tokenize-deduped"):
                r["rate"] = r["input_bytes"] / r["cpu_s"] / 1e6
                r["rate_unit"] = "MB standard .bin/CPU-s"
            elif r["stage"].startswith(("order", "preshuffle")):
                r["rate"] = r["tokens"] / r["cpu_s"] / 1e6
                r["rate_unit"] = "M tokens/CPU-s"
            elif r["stage"] == "verify":
                r["rate"] = r["input_bytes"] / r["cpu_s"] / 1e6
                r["rate_unit"] = "MB artifacts/CPU-s"
            else:
                r["rate"] = r["input_bytes"] / r["cpu_s"] / 1e6
                r["rate_unit"] = "MB text/CPU-s"
        hdr = (
            f"{'stage':<27}{'CPU s':>8}{'wall s':>8}{'RSS MiB':>9}{'in MB':>8}{'docs':>9}"
            f"{'tokens':>15}{'out MB':>8}  rate"
        )
        print(f"\n{hdr}")
        for r in rows:
            print(
                f"{r['stage']:<27}{r['cpu_s']:>8.1f}{r['wall_s']:>8.1f}{r['peak_rss_mib']:>9.0f}"
                f"{r['input_bytes'] / 1e6:>8.1f}{r.get('documents', 0):>9,}{r.get('tokens', 0):>15,}"
                f"{r['output_bytes'] / 1e6:>8.1f}  {r['rate']:.2f} {r['rate_unit']}"
            )
        load = os.getloadavg()
        print(
            f"\nload average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} "
            "cores (shared machine: CPU seconds are the figure to project from, wall is not)"
        )
        if args.baseline:
            print_marginal(json.loads(args.baseline.read_text()), rows, c)
        result = {
            "corpus": {**c, "zst_bytes": zst_bytes, "files": args.files, "doc_kb": args.doc_kb},
            "stages": rows,
            "machine": {
                "cpus": os.cpu_count(),
                "cpu": _cpu_model(),
                "python": platform.python_version(),
                "loadavg_end": load,
            },
            "argv": sys.argv,
        }
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
            print(f"wrote {args.json}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def print_marginal(base: dict, rows: list[dict], corpus: dict) -> None:
    """Rates from the difference of this run and a smaller one (same stage, more input)."""
    by = {r["stage"]: r for r in base["stages"]}
    mb = (corpus["text_bytes"] - base["corpus"]["text_bytes"]) / 1e6
    print(
        f"\nmarginal rates against {mb:.0f} MB less text (CPU and RSS of the larger run minus the"
    )
    print("smaller's; input in the stage's own unit):")
    for r in rows:
        b = by.get(r["stage"])
        if b is None:
            continue
        key = "tokens" if r["stage"].startswith(("order", "preshuffle")) else "input_bytes"
        d_in = (r.get(key) or 0) - (b.get(key) or 0)
        d_cpu = r["cpu_s"] - b["cpu_s"]
        rate = f"{d_in / d_cpu / 1e6:.1f}" if d_cpu > 0.05 else "n/a (below timer noise)"
        r["marginal_rate"] = d_in / d_cpu / 1e6 if d_cpu > 0.05 else None
        unit = "M tokens" if key == "tokens" else "MB"
        print(
            f"  {r['stage']:<27} +{d_cpu:6.1f} CPU s for +{d_in / 1e6:8.1f} {unit}: {rate} "
            f"{unit}/CPU-s; RSS {b['peak_rss_mib']:.0f} -> {r['peak_rss_mib']:.0f} MiB"
        )


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
