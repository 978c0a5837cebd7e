"""Benchmark `pile inspect --step N`: latency per step and memory, both data forms, vs peers.

    /tmp/venv/bin/python tools/bench_inspect.py [--items 2000000] [--mean-size 981]
        [--train-iters 1000] [--global-batch 1024] [--bin random|sparse] [--workdir DIR]

Builds a synthetic document-level dataset (item sizes uniform in 1..2*mean-1, random uint16
tokens; with --bin sparse the .bin is a sparse file, for Pythia-scale indexes that cannot be
written), its index maps (Pythia seq_length/seed) and, for --bin random, the pre-shuffled form and a
docs.parquet sidecar. Then, in a fresh process per measurement:

- ours, document-level: `DocumentData.step(N)` for random steps, cold (files evicted from the page
  cache with posix_fadvise DONTNEED first) and warm; peak RSS growth over the process baseline.
- ours, pre-shuffled: `PreshuffledData.step(N)` (one contiguous byte range).
- ours, provenance of a whole step (sidecar row groups + doc_epoch).
- peer gpt-neox: `GPT2Dataset.__getitem__` (literal port, pipeline.order.reference.get_sample_ref)
  for the global_batch samples of the step, on the same memory-mapped maps.
- peer Pythia batch_viewer.py: `MMapIndexedDataset[N*gb:(N+1)*gb]` = np.frombuffer of the mmap'd
  joined document.bin + reshape + copy (needs the joined .bin: written with --no-shard).
Ratios are ours / peer (lower is better). RSS: VmHWM of the measuring process; "anonymous" is its
own memory (O(batch)), "mapped file pages" are page-cache pages of the memory-mapped index files
that the kernel's fault-around maps in (shared, reclaimable; they grow with the pages touched).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, os, sys, time
import numpy as np
args = json.loads(sys.argv[1])
from pipeline.order.config import OrderConfig

def evict(paths):
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
        except FileNotFoundError:
            continue
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)

def rss(key="VmRSS"):
    # /proc (not ru_maxrss, which survives fork+exec from the parent's larger footprint)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024

cfg = OrderConfig(**args["config"])
mode = args["mode"]
if mode in ("ours-doc", "ours-prov", "neox"):
    from pipeline.order.document import DocumentData
    data = DocumentData(args["prefix"], cfg)
elif mode == "ours-pre":
    from pipeline.order.data import open_data
    data = open_data(args["pre"], cfg)
else:  # batch_viewer
    data = None
steps = args["steps"]
gb = cfg.global_batch
base = rss()
anon_base = rss("RssAnon")
times_cold, times_warm = [], []
for n in steps:
    for cold in (True, False):
        if cold:
            evict(args["evict"])
        t = time.perf_counter()
        if mode in ("ours-doc", "ours-pre"):
            out = data.step(n)
        elif mode == "ours-prov":
            out = data.provenance(np.arange(n * gb, (n + 1) * gb))
        elif mode == "neox":
            from pipeline.order.reference import get_sample_ref
            m = data.maps
            out = np.stack([get_sample_ref(data.ds, m.doc_idx, m.sample_idx, m.shuffle_idx, g)
                            for g in range(n * gb, (n + 1) * gb)])
        else:
            L1 = cfg.seq_length + 1
            mm = np.memmap(args["pre_bin"], mode="r", order="C")
            buf = memoryview(mm)
            ptr = n * gb * L1 * 2
            out = np.frombuffer(buf, dtype=np.uint16, count=gb * L1, offset=ptr).reshape(-1, L1).copy()
            del buf, mm
        (times_cold if cold else times_warm).append(time.perf_counter() - t)
print(json.dumps({"cold": times_cold, "warm": times_warm, "rss_base_mb": base,
                  "rss_peak_mb": rss("VmHWM"),
                  "rss_end_mb": rss(), "anon_base_mb": anon_base, "anon_end_mb": rss("RssAnon"),
                  "file_end_mb": rss("RssFile")}))
"""


def write_dataset(prefix: Path, n: int, mean: int, mode: str) -> int:
    from pipeline.shards.mmidx import HEADER, MAGIC, VERSION, dtype_code

    rng = np.random.default_rng(0)
    chunk = 1 << 23
    sizes = np.empty(n, dtype=np.int32)
    for a in range(0, n, chunk):
        sizes[a : a + chunk] = rng.integers(1, 2 * mean, min(chunk, n - a), dtype=np.int32)
    total = int(sizes.sum(dtype=np.int64))
    with open(str(prefix) + ".idx", "wb") as f:
        f.write(HEADER.pack(MAGIC, VERSION, dtype_code(np.uint16), n, n + 1))
        f.write(sizes.tobytes())
        run = 0
        for a in range(0, n, chunk):
            s = sizes[a : a + chunk].astype(np.int64) * 2
            p = np.cumsum(s) - s + run
            run = int(p[-1] + s[-1])
            f.write(p.astype("<i8").tobytes())
        for a in range(0, n + 1, chunk):
            f.write(np.arange(a, min(a + chunk, n + 1), dtype="<i8").tobytes())
    with open(str(prefix) + ".bin", "wb") as f:
        if mode == "sparse":
            f.truncate(total * 2)
        else:
            for a in range(0, total, 1 << 26):
                f.write(rng.integers(0, 50277, min(1 << 26, total - a), dtype=np.uint16).tobytes())
    if mode != "sparse":
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = np.array(["Pile-CC", "ArXiv", "Github", "FreeLaw"])
        with pq.ParquetWriter(str(prefix) + ".docs.parquet", _schema(pa)) as w:
            for a in range(0, n, 1 << 20):
                b = min(n, a + (1 << 20))
                i = np.arange(a, b, dtype=np.int64)
                w.write_table(
                    pa.table(
                        {
                            "doc_id": i,
                            "file": pa.array(["train/00.jsonl.zst"] * (b - a)),
                            "line": i + 1,
                            "pile_set_name": pa.array(names[i % 4].tolist()),
                            "tokens": sizes[a:b].astype(np.int64),
                        },
                        schema=_schema(pa),
                    ),
                    row_group_size=1 << 16,
                )
    return total


def _schema(pa):
    return pa.schema(
        [("doc_id", pa.int64()), ("file", pa.string()), ("line", pa.int64()),
         ("pile_set_name", pa.string()), ("tokens", pa.int64())]
    )  # fmt: skip


def measure(mode: str, args: dict) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps({**args, "mode": mode})],
        capture_output=True,
        text=True,
    )
    if r.returncode:
        raise SystemExit(f"{mode} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def fmt(res: dict) -> str:
    c = np.array(res["cold"]) * 1e3
    w = np.array(res["warm"]) * 1e3
    return (
        f"cold median {np.median(c):7.2f} ms (max {c.max():7.2f}), warm median {np.median(w):7.2f} ms; "
        f"RSS {res['rss_base_mb']:.0f} MB -> peak {res['rss_peak_mb']:.0f} MB (anonymous "
        f"{res['anon_base_mb']:.0f} -> {res['anon_end_mb']:.0f} MB, mapped file pages "
        f"{res['file_end_mb']:.0f} MB)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--items", type=int, default=2_000_000)
    ap.add_argument("--mean-size", type=int, default=981)
    ap.add_argument("--train-iters", type=int, default=1000)
    ap.add_argument("--global-batch", type=int, default=1024)
    ap.add_argument("--bin", choices=("random", "sparse"), default="random")
    ap.add_argument("--steps", type=int, default=10, help="random steps measured")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()

    from pipeline.order.config import OrderConfig
    from pipeline.order.mapfiles import index_map_paths
    from pipeline.order.preshuffle import run_preshuffle
    from pipeline.order.stage import run_order

    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_inspect_"))
    work.mkdir(parents=True, exist_ok=True)
    prefix = work / "synthetic_text_document"
    cfg = OrderConfig(
        seq_length=2048, global_batch=a.global_batch, train_iters=a.train_iters, seed=1234
    )
    t = time.perf_counter()
    if not Path(str(prefix) + ".idx").exists():
        tokens = write_dataset(prefix, a.items, a.mean_size, a.bin)
        print(f"dataset: {a.items:,} items, {tokens:,} tokens ({a.bin} .bin), "
              f"{time.perf_counter() - t:.0f}s")  # fmt: skip
    if not Path(str(prefix) + ".bin").exists() and a.bin == "sparse":
        # e.g. reusing tools/bench_order.py --keep output (an .idx only)
        from pipeline.shards.mmidx import MMIDXIndex

        ix = MMIDXIndex(str(prefix) + ".idx")
        with open(str(prefix) + ".bin", "wb") as f:
            f.truncate(int(ix.pointers[-1]) + int(ix.sizes[-1]) * ix.dtype.itemsize)
    paths = index_map_paths(prefix, cfg)
    if not paths["manifest"].exists():
        t = time.perf_counter()
        m = run_order(prefix, cfg)
        print(f"index maps: {m['counts']['num_epochs']} epochs, "
              f"{m['counts']['num_total_samples']:,} samples, {time.perf_counter() - t:.0f}s")  # fmt: skip
    pre = work / "pre"
    if a.bin == "random" and not (pre / "document.manifest.json").exists():
        t = time.perf_counter()
        run_preshuffle(prefix, cfg, pre, shard_size=None)
        print(f"pre-shuffled (joined document.bin): {time.perf_counter() - t:.0f}s")

    rng = np.random.default_rng(1)
    steps = sorted(int(s) for s in rng.choice(cfg.train_iters, a.steps, replace=False))
    evict = [str(prefix) + ".bin", str(prefix) + ".idx", str(prefix) + ".docs.parquet"] + [
        str(paths[r]) for r in ("doc_idx", "sample_idx", "shuffle_idx", "doc_epoch")
    ]
    evict += [str(pre / "document.bin"), str(pre / "document.idx")]
    common = {
        "config": cfg.to_dict(),
        "prefix": str(prefix),
        "pre": str(pre),
        "pre_bin": str(pre / "document.bin"),
        "steps": steps,
        "evict": evict,
    }
    batch_mb = cfg.global_batch * (cfg.seq_length + 1) * 2 / 2**20
    print(f"step = {cfg.global_batch} x {cfg.seq_length + 1} uint16 = {batch_mb:.1f} MB; "
          f"{len(steps)} random steps, cold = after posix_fadvise(DONTNEED) of every file")  # fmt: skip
    res = {"ours-doc": measure("ours-doc", common)}
    print(f"ours  document-level + maps : {fmt(res['ours-doc'])}")
    res["neox"] = measure("neox", {**common, "steps": steps[:3]})
    print(f"peer  gpt-neox __getitem__  : {fmt(res['neox'])}")
    if a.bin == "random":
        res["ours-prov"] = measure("ours-prov", {**common, "steps": steps[:5]})
        print(f"ours  provenance of a step  : {fmt(res['ours-prov'])}")
        res["ours-pre"] = measure("ours-pre", common)
        print(f"ours  pre-shuffled          : {fmt(res['ours-pre'])}")
        res["viewer"] = measure("viewer", common)
        print(f"peer  Pythia batch_viewer   : {fmt(res['viewer'])}")

    def med(k, kind):
        return float(np.median(res[k][kind]))

    for kind in ("cold", "warm"):
        line = f"ratio ours/gpt-neox (document-level, {kind}): {med('ours-doc', kind) / med('neox', kind):.3f}"
        if a.bin == "random":
            line += f"; ours/batch_viewer (pre-shuffled, {kind}): {med('ours-pre', kind) / med('viewer', kind):.2f}"
        print(line)
    if not a.keep:
        for p in sorted(work.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        work.rmdir()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
