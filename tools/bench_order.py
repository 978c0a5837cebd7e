"""Benchmark `pile order` at Pythia scale on a synthetic size array; check it against a C peer.

    /tmp/venv/bin/python tools/bench_order.py [--items 211000000] [--mean-size 981] [--workdir DIR]

1. Writes a synthetic MMIDIDX `.idx` (sizes uniform in 1..2*mean-1, seed 0; pointers, doc_idx
   streamed) — the index maps need only the sizes, so no `.bin` is needed.
2. Runs `run_order` with the Pythia preset in a fresh process and reports wall time, peak RSS
   (ru_maxrss) and the per-phase times from its log.
3. Peer: the helpers.cpp `build_sample_idx` loop compiled with gcc -O2 (a C transcription, called
   through ctypes) on the saved doc_idx: time ratio and byte equality with our vectorised
   sample_idx at full scale.
4. `pipeline.order.checks.CHECKS` on the three maps (the `pile verify` checks): time.

Defaults reproduce the issue's scale: 211M items x ~981 tokens = ~207B tokens/epoch, 2 epochs,
~202M samples (Pythia-deduped-like). Needs ~12 GB of disk in --workdir.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

C_SOURCE = r"""
#include <stdint.h>
/* helpers.cpp build_sample_idx (gpt-neox v1.0), same statements, writing into `out`. */
int64_t build_sample_idx(const int32_t* sizes, const int32_t* doc_idx, int32_t seq_length,
                         int32_t num_epochs, int64_t tokens_per_epoch, int32_t* out) {
    int64_t num_samples = (num_epochs * tokens_per_epoch - 1) / seq_length;
    int64_t sample_index = 0;
    int64_t doc_idx_index = 0;
    int32_t doc_offset = 0;
    out[2 * sample_index] = doc_idx_index;
    out[2 * sample_index + 1] = doc_offset;
    ++sample_index;
    while (sample_index <= num_samples) {
        int32_t remaining_seq_length = seq_length + 1;
        while (remaining_seq_length != 0) {
            int32_t doc_id = doc_idx[doc_idx_index];
            int32_t doc_length = sizes[doc_id] - doc_offset;
            remaining_seq_length -= doc_length;
            if (remaining_seq_length <= 0) {
                doc_offset += (remaining_seq_length + doc_length - 1);
                remaining_seq_length = 0;
            } else {
                ++doc_idx_index;
                doc_offset = 0;
            }
        }
        out[2 * sample_index] = doc_idx_index;
        out[2 * sample_index + 1] = doc_offset;
        ++sample_index;
    }
    return num_samples;
}
"""

CHILD = r"""
import json, logging, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
from pipeline.order.indexmap import OrderConfig, run_order
t = time.perf_counter()
m = run_order(sys.argv[1], OrderConfig.from_preset("pythia"))
wall = time.perf_counter() - t
# VmHWM (per address space), not ru_maxrss: that one keeps the parent's footprint across fork+exec
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
print(json.dumps({"wall_s": wall, "maxrss_mb": hwm,
                  "counts": m["counts"], "dtypes": m["dtypes"]}))
"""


def write_synthetic_idx(prefix: Path, n: int, mean: int, seed: int = 0) -> int:
    from pipeline.shards.mmidx import HEADER, MAGIC, VERSION, dtype_code

    rng = np.random.default_rng(seed)
    chunk = 1 << 24
    total = 0
    sizes_path = Path(str(prefix) + ".sizes.tmp")
    with open(sizes_path, "wb") as f:
        for a in range(0, n, chunk):
            s = rng.integers(1, 2 * mean, min(chunk, n - a), dtype=np.int32)
            total += int(s.sum(dtype=np.int64))
            f.write(s.tobytes())
    sizes = np.memmap(sizes_path, dtype=np.int32, mode="r")
    with open(str(prefix) + ".idx", "wb") as f:
        f.write(HEADER.pack(MAGIC, VERSION, dtype_code(np.uint16), n, n + 1))
        for a in range(0, n, chunk):
            f.write(np.asarray(sizes[a : a + chunk]).tobytes())
        run = 0
        for a in range(0, n, chunk):
            s = np.asarray(sizes[a : a + chunk], dtype=np.int64) * 2
            p = np.cumsum(s) - s + run
            run = int(p[-1] + s[-1])
            f.write(p.astype("<i8").tobytes())
        for a in range(0, n + 1, chunk):
            f.write(np.arange(a, min(a + chunk, n + 1), dtype="<i8").tobytes())
    del sizes
    sizes_path.unlink()
    return total


def c_peer(workdir: Path):
    src = workdir / "build_sample_idx.c"
    lib = workdir / "build_sample_idx.so"
    src.write_text(C_SOURCE)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    so = ctypes.CDLL(str(lib))
    so.build_sample_idx.restype = ctypes.c_int64
    so.build_sample_idx.argtypes = [
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_int64,
        ctypes.c_void_p,
    ]  # fmt: skip
    return so.build_sample_idx


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--items", type=int, default=211_000_000)
    ap.add_argument("--mean-size", type=int, default=981)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_order_"))
    work.mkdir(parents=True, exist_ok=True)
    prefix = work / "synthetic_text_document"
    t = time.perf_counter()
    tokens = write_synthetic_idx(prefix, args.items, args.mean_size)
    print(f"synthetic .idx: {args.items:,} items, {tokens:,} tokens/epoch "
          f"({time.perf_counter() - t:.1f}s to write)", flush=True)  # fmt: skip

    r = subprocess.run([sys.executable, "-c", CHILD, str(prefix)], capture_output=True, text=True)
    if r.returncode:
        print(r.stderr)
        return 1
    res = json.loads(r.stdout.strip().splitlines()[-1])
    for line in r.stderr.splitlines():
        if "order:" in line:
            print("  " + line)
    c = res["counts"]
    print(f"pile order (Pythia preset): {res['wall_s']:.1f}s wall (incl. sha256 of the .idx and "
          f"np.save), peak RSS {res['maxrss_mb']:.0f} MB")  # fmt: skip
    print(f"  {c['num_epochs']} epochs, doc_idx {c['doc_idx_len']:,}, samples {c['num_total_samples']:,} "
          f"(requested {c['num_samples']:,}), dtypes {res['dtypes']}")  # fmt: skip

    from pipeline.order.checks import CHECKS
    from pipeline.order.indexmap import OrderConfig, build_sample_idx, index_map_paths
    from pipeline.shards.mmidx import MMIDXIndex

    cfg = OrderConfig.from_preset("pythia")
    paths = index_map_paths(prefix, cfg)
    sizes = np.ascontiguousarray(MMIDXIndex(str(prefix) + ".idx").sizes)
    doc_idx = np.load(paths["doc_idx"])
    ours = np.load(paths["sample_idx"], mmap_mode="r")
    fn = c_peer(work)
    out = np.empty((c["num_total_samples"] + 1, 2), dtype=np.int32)
    t = time.perf_counter()
    fn(sizes.ctypes.data, doc_idx.ctypes.data, cfg.seq_length, c["num_epochs"],
       c["tokens_per_epoch"], out.ctypes.data)  # fmt: skip
    t_c = time.perf_counter() - t
    t = time.perf_counter()
    mine = build_sample_idx(sizes, doc_idx, cfg.seq_length, c["num_epochs"], c["tokens_per_epoch"])
    t_np = time.perf_counter() - t
    equal = out.dtype == ours.dtype and np.array_equal(out, ours) and np.array_equal(mine, out)
    print(f"sample_idx: vectorised numpy {t_np:.1f}s vs helpers.cpp loop (gcc -O2) {t_c:.1f}s "
          f"-> ratio {t_np / t_c:.2f}x; byte-identical: {equal}")  # fmt: skip
    del out, mine, doc_idx
    for role in ("doc_idx", "sample_idx", "shuffle_idx"):
        t = time.perf_counter()
        problems = CHECKS[role](paths[role])
        print(f"check {role}: {time.perf_counter() - t:.1f}s, problems: {problems or 'none'}")
    if not args.keep:
        for p in work.iterdir():
            p.unlink()
        work.rmdir()
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
