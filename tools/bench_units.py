#!/usr/bin/env python3
"""Work-unit benchmark: a corpus of 2 large single-frame `.jsonl.zst` files read as 8 units each
(pipeline.read.units) vs one task per file (today's stages) vs today's tokenize line ranges (8 per
file, each decompressing and parsing its file from the start).

    python tools/bench_units.py [--mb 150] [--units 8] [--workers 2] [--repeat 3]

Input (written once under `--workdir`, default /tmp/pile-bench-units): 2 files of ~`--mb` MB of
text each, the public-domain novels of `../shared/corpora/novels` repeated (one novel per line,
as in the shared corpus), one zstd frame per file at level 3, as lm_dataformat writes the Pile.

Measured, in this order:
  * decompress: one sequential decompression + newline count of each file (the floor of any pass);
  * plan (re-chunk): `plan_units(files, text/units, cache_dir)` on an empty cache: one
    sequential decompression and a level-3 recompression into frames of text/(8 x units) cut at
    line ends, the frames compressed in process (1 worker) or on the `--workers` pool;
  * plan (cached): the same call again (the cache and its line index are reused);
  * index in place: `plan_units` over the re-chunked (multi-frame) files themselves: frame-header
    walk + one parallel line count per frame, no cache;
  * read: every document of the corpus through the reader, one task per file ("per-file"), per
    unit ("units"), or per line range read from the file's start ("line ranges", today's
    tokenize cut), on a `--workers` process pool; interleaved rounds, medians.
For each read mode: wall seconds, the tasks' CPU seconds summed, the longest task's CPU seconds,
and cores usable = summed / longest (the speedup the plan allows on unlimited cores; per-file is
capped by the number of files). Printed as ratios against per-file. Taken on 2 cores shared with
other jobs: CPU seconds and cores usable are the figures to compare; wall seconds move with load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import zstandard

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.engine.local import LocalExecutor  # noqa: E402
from pipeline.read import ReadConfig, iter_file, resolve_inputs  # noqa: E402
from pipeline.read.lines import byte_chunks  # noqa: E402
from pipeline.read.units import iter_unit, plan_units  # noqa: E402

NOVELS = ("100_english_novels.jsonl.zst", "eltec_eng_99_novels.jsonl.zst")
CONFIG = ReadConfig()


def make_corpus(shared: Path, work: Path, mb: int) -> list[str]:
    work.mkdir(parents=True, exist_ok=True)
    paths = [work / f"big_{i}.jsonl.zst" for i in range(2)]
    stamp = work / "corpus.json"
    if stamp.exists() and json.loads(stamp.read_text()) == {"mb": mb}:
        return [str(p) for p in paths]
    text = b""
    for name in NOVELS:
        with open(shared / "corpora" / "novels" / name, "rb") as fh:
            text += zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read()
    for i, p in enumerate(paths):
        # the two files differ: each starts at another novel
        lines = text.splitlines(keepends=True)
        lines = lines[i * len(lines) // 2 :] + lines[: i * len(lines) // 2]
        body = b"".join(lines)
        data = body * max(1, round(mb * 1e6 / len(body)))
        p.write_bytes(zstandard.ZstdCompressor(level=3).compress(data))
    stamp.write_text(json.dumps({"mb": mb}))
    return [str(p) for p in paths]


def _read_file(f) -> tuple[int, float]:
    t = time.process_time()
    n = sum(1 for _ in iter_file(f, CONFIG))
    return n, time.process_time() - t


def _read_unit(u) -> tuple[int, float]:
    t = time.process_time()
    n = sum(1 for _ in iter_unit(u, CONFIG))
    return n, time.process_time() - t


def _read_range(task) -> tuple[int, float]:
    """Today's tokenize line range: the file read from its start, lines before `first` parsed and
    dropped (plan_tasks' cut)."""
    f, first, stop = task
    t = time.process_time()
    n = 0
    for d in iter_file(f, CONFIG):
        if d.line >= first:
            if stop is not None and d.line >= stop:
                break
            n += 1
    return n, time.process_time() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--mb", type=int, default=150, help="MB of text per file")
    ap.add_argument("--units", type=int, default=8, help="units per file")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pool processes")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (median reported)")
    ap.add_argument("--workdir", default="/tmp/pile-bench-units")
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)

    work = Path(args.workdir)
    paths = make_corpus(Path(args.shared), work, args.mb)
    files = resolve_inputs(paths)
    res: dict = {"workers": args.workers, "units_per_file": args.units, "files": []}

    text = []
    t0 = time.perf_counter()
    c0 = time.process_time()
    for f in files:
        n = lines = 0
        for c in byte_chunks(f.path, f.kind):
            n += len(c)
            lines += c.count(b"\n")
        text.append(n)
        res["files"].append({"compressed": os.path.getsize(f.path), "text": n, "lines": lines})
    res["decompress_s"] = time.perf_counter() - t0
    res["decompress_cpu_s"] = time.process_time() - c0
    unit_bytes = max(text) // args.units
    frame_bytes = max(1, unit_bytes // 8)

    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    t0 = time.perf_counter()
    c0 = time.process_time()
    plan_units(files, unit_bytes, cache, frame_bytes=frame_bytes)
    res["plan_rechunk_1_worker_s"] = time.perf_counter() - t0
    res["plan_rechunk_1_worker_cpu_s"] = time.process_time() - c0
    shutil.rmtree(cache, ignore_errors=True)
    with LocalExecutor(args.workers) as ex:
        t0 = time.perf_counter()
        plan = plan_units(files, unit_bytes, cache, frame_bytes=frame_bytes, executor=ex)
        res["plan_rechunk_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = plan_units(files, unit_bytes, cache, frame_bytes=frame_bytes, executor=ex)
        res["plan_cached_s"] = time.perf_counter() - t0
        assert again.fingerprint == plan.fingerprint
        cached = sorted({u.read_path for u in plan.units})
        res["rechunked_bytes"] = sum(os.path.getsize(p) for p in cached)
        t0 = time.perf_counter()
        inplace = plan_units(resolve_inputs(cached), unit_bytes, executor=ex)
        res["index_in_place_s"] = time.perf_counter() - t0
        res["units"] = len(plan.units)
        res["units_in_place"] = len(inplace.units)

        ranges = []
        for f, info in zip(files, res["files"]):
            k = args.units
            total = info["lines"]
            bounds = [1 + (i * total) // k for i in range(k)]
            ranges += [(f, b, bounds[i + 1] if i + 1 < k else None) for i, b in enumerate(bounds)]
        modes = {
            "per-file": (_read_file, files),
            "units": (_read_unit, list(plan.units)),
            "line ranges": (_read_range, ranges),
        }
        runs: dict[str, list] = {m: [] for m in modes}
        for _ in range(args.repeat):
            for m, (fn, tasks) in modes.items():
                t0 = time.perf_counter()
                out = ex.map(fn, tasks)
                wall = time.perf_counter() - t0
                cpu = [c for _, c in out]
                runs[m].append((wall, sum(cpu), max(cpu), sum(n for n, _ in out)))
    docs = {m: {r[3] for r in rs} for m, rs in runs.items()}
    if len(set().union(*docs.values())) != 1:
        print(f"document counts differ between modes: {docs}", file=sys.stderr)
        return 1
    res["read"] = {}
    for m, rs in runs.items():
        wall = statistics.median(r[0] for r in rs)
        cpu = statistics.median(r[1] for r in rs)
        longest = statistics.median(r[2] for r in rs)
        res["read"][m] = {
            "tasks": len(modes[m][1]),
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "longest_task_cpu_s": round(longest, 2),
            "cores_usable": round(cpu / longest, 2),
        }
    base = res["read"]["per-file"]
    for r in res["read"].values():
        r["wall_vs_per_file"] = round(r["wall_s"] / base["wall_s"], 2)
        r["cpu_vs_per_file"] = round(r["cpu_s"] / base["cpu_s"], 2)
        r["cores_usable_vs_per_file"] = round(r["cores_usable"] / base["cores_usable"], 2)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    tb = sum(text)
    cb = sum(x["compressed"] for x in res["files"])
    print(
        f"corpus: 2 single-frame files, {tb / 1e6:.0f} MB text, {cb / 1e6:.1f} MB compressed; "
        f"{args.units} units per file ({res['units']} units), {args.workers} workers, median of "
        f"{args.repeat} interleaved rounds (2 shared cores, under load from other sessions)"
    )
    d = res["decompress_s"]
    dc = res["decompress_cpu_s"]
    print(
        f"  decompress + count lines, sequential: {d:.2f} s ({tb / 1e6 / d:.0f} MB/s of text), "
        f"{dc:.2f} CPU s"
    )
    rc = res["plan_rechunk_1_worker_cpu_s"]
    print(
        f"  plan with re-chunk, 1 worker:         {res['plan_rechunk_1_worker_s']:.2f} s "
        f"= {res['plan_rechunk_1_worker_s'] / d:.1f}x one decompression; {rc:.2f} CPU s "
        f"= {rc / dc:.1f}x"
    )
    print(
        f"  plan with re-chunk, {args.workers} workers:        {res['plan_rechunk_s']:.2f} s "
        f"= {res['plan_rechunk_s'] / d:.1f}x one decompression; cache "
        f"{res['rechunked_bytes'] / cb:.3f}x the inputs' size"
    )
    print(f"  plan, cache reused:                   {res['plan_cached_s']:.3f} s")
    print(
        f"  index multi-frame files in place:     {res['index_in_place_s']:.2f} s "
        f"= {res['index_in_place_s'] / d:.2f}x one decompression ({res['units_in_place']} units)"
    )
    print("  read every document:")
    for m, r in res["read"].items():
        print(
            f"    {m:12s} {r['tasks']:3d} tasks  wall {r['wall_s']:7.2f} s ({r['wall_vs_per_file']}x)"
            f"  cpu {r['cpu_s']:7.2f} s ({r['cpu_vs_per_file']}x)  cores usable "
            f"{r['cores_usable']:5.2f} ({r['cores_usable_vs_per_file']}x per-file)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
