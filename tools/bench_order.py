"""Benchmark `pile order` against gpt-neox v1.0's own index-map builder, end to end, as processes.

    git clone https://github.com/EleutherAI/gpt-neox && git -C gpt-neox checkout v1.0
    pip install pybind11          # to compile gpt-neox's helpers.cpp, as its Makefile does
    python tools/bench_order.py --neox gpt-neox [--items 20000000] [--mean-size 981] [--repeats 3]
        [--train-iters N]   # fewer Pythia steps (fewer epochs): a shorter run on a loaded machine

1. Writes a synthetic MMIDIDX `.idx` (sizes uniform in 1..2*mean-1, seed 0) and a sparse `.bin`
   of the matching length (gpt-neox's MMapIndexedDataset maps it; nothing reads it).
2. Compiles the checkout's `megatron/data/helpers.cpp` with pybind11 in a scratch directory, with
   the flags of its `megatron/data/Makefile` (-O3 -std=c++11). No gpt-neox code is copied here.
3. Peer process: gpt-neox's own `indexed_dataset.py` and `gpt2_dataset.py` loaded from the
   checkout, then what `data_utils.build_the_dataset` does for `train_0`: `make_dataset(prefix,
   "mmap", skip_warmup=True)`, documents = arange, `GPT2Dataset(...)` -> `_build_index_mappings`
   (numpy doc_idx + shuffle_idx, `helpers.build_sample_idx`, np.save of the three maps). Only torch
   and megatron's package root are stand-ins (rank 0, world size 1, the barrier a no-op): no torch
   import cost is charged to the peer.
4. Ours: `pile order PREFIX --preset pythia --out-dir DIR` (the console script), which also hashes
   the `.idx`, writes the `doc_epoch` sidecar, fsyncs every file and writes a manifest.
5. Interleaved runs (peer, ours, peer, ours, ...), maps removed before each run; per run the
   child's CPU seconds (user + sys, from wait4), wall seconds and peak RSS (ru_maxrss of the child;
   this includes the ~50 MB of this parent at fork). Medians and ratios are printed, and the three
   maps of both sides are compared byte for byte (sha256).

Defaults reproduce issue 12's scale: 20M items x ~981 tokens, the Pythia preset (147,164,160
samples of 2048 tokens) -> 16 epochs, doc_idx of 320M entries. Needs ~7 GB of RAM for the peer
(its np.mgrid) and ~6 GB of disk in --workdir.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

ROLES = ("doc_idx", "sample_idx", "shuffle_idx")

PEER = r"""
import importlib.util, sys, types
import numpy as np

neox, helpers_dir, prefix, num_samples, seq_length, seed = sys.argv[1:7]

# Stand-ins for what _build_index_mappings touches outside numpy: rank 0 of a world of 1.
torch = types.ModuleType("torch")
dist = types.SimpleNamespace(
    is_initialized=lambda: False, get_rank=lambda: 0,
    get_world_size=lambda group=None: 1, all_reduce=lambda t, group=None: None)
torch.distributed = dist
torch.cuda = types.SimpleNamespace(
    LongTensor=lambda xs: [types.SimpleNamespace(item=lambda v=v: v) for v in xs])
torch.utils = types.ModuleType("torch.utils")
torch.utils.data = types.ModuleType("torch.utils.data")
torch.utils.data.Dataset = object
sys.modules.update({"torch": torch, "torch.utils": torch.utils,
                    "torch.utils.data": torch.utils.data})
megatron = types.ModuleType("megatron")
megatron.__path__ = []
megatron.print_rank_0 = lambda *m: print(*m, flush=True)
megatron.mpu = types.SimpleNamespace(get_io_parallel_group=lambda: None)
data = types.ModuleType("megatron.data")
data.__path__ = [helpers_dir]  # `from megatron.data import helpers` finds the compiled module
megatron.data = data
sys.modules.update({"megatron": megatron, "megatron.data": data})


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


src = neox + "/megatron/data/"
indexed_dataset = load("megatron.data.indexed_dataset", src + "indexed_dataset.py")
gpt2_dataset = load("megatron.data.gpt2_dataset", src + "gpt2_dataset.py")
# data_utils.build_the_dataset for train_0
ds = indexed_dataset.make_dataset(prefix, "mmap", skip_warmup=True)
documents = np.arange(start=0, stop=ds.sizes.shape[0], step=1, dtype=np.int32)
gpt2_dataset.GPT2Dataset("train_0", prefix, documents, ds, int(num_samples), int(seq_length),
                         int(seed), build_index_mappings=True)
"""


def write_synthetic_idx(prefix: Path, n: int, mean: int, seed: int = 0) -> int:
    """MMIDIDX `.idx` with n uniform sizes in 1..2*mean-1 (uint16 tokens) + a sparse `.bin`."""
    from pipeline.shards.mmidx import HEADER, MAGIC, VERSION, dtype_code

    rng = np.random.default_rng(seed)
    chunk = 1 << 24
    sizes = np.concatenate(
        [rng.integers(1, 2 * mean, min(chunk, n - a), dtype=np.int32) for a in range(0, n, chunk)]
    )
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
        f.write(np.arange(n + 1, dtype="<i8").tobytes())
    with open(str(prefix) + ".bin", "wb") as f:
        f.truncate(total * 2)  # sparse: gpt-neox maps it, nothing reads it
    return total


def compile_helpers(neox: Path, scratch: Path) -> Path:
    """helpers.cpp -> scratch/helpers<EXT_SUFFIX> with the flags of gpt-neox's Makefile."""
    src = neox / "megatron" / "data" / "helpers.cpp"
    if not src.exists():
        raise SystemExit(f"{src} not found: --neox must be a gpt-neox checkout (v1.0)")
    inc = subprocess.run(
        [sys.executable, "-m", "pybind11", "--includes"], capture_output=True, text=True
    )
    if inc.returncode:
        raise SystemExit("pybind11 is needed to compile helpers.cpp: pip install pybind11")
    out = scratch / ("helpers" + sysconfig.get_config_var("EXT_SUFFIX"))
    cmd = ["c++", "-O3", "-Wall", "-shared", "-std=c++11", "-fPIC", *inc.stdout.split()]
    subprocess.run([*cmd, str(src), "-o", str(out)], check=True)
    return out


def run_timed(cmd: list[str], env=None) -> dict:
    """Run cmd, return wall, CPU (user + sys) and peak RSS of the child from wait4."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed ({p.returncode}):\n{err[-3000:]}")
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}


def map_files(d: Path, name: str, cfg) -> dict[str, Path]:
    from pipeline.order.mapfiles import index_map_paths  # gpt-neox's names, spelled once

    paths = index_map_paths(d / name, cfg)
    return {r: paths[r] for r in ROLES}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--neox", required=True, help="path of a gpt-neox checkout (tag v1.0)")
    ap.add_argument("--items", type=int, default=20_000_000)
    ap.add_argument("--mean-size", type=int, default=981)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--train-iters",
        type=int,
        default=None,
        help="override the Pythia preset's train_iters (a smaller run on a loaded machine)",
    )
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    from pipeline.io import sha256_file
    from pipeline.order.config import OrderConfig

    cfg = OrderConfig.from_preset("pythia")
    if args.train_iters is not None:
        cfg = dataclasses.replace(cfg, train_iters=args.train_iters)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_order_"))
    (work / "neox").mkdir(parents=True, exist_ok=True)
    (work / "ours").mkdir(exist_ok=True)
    helpers_dir = work / "helpers"
    helpers_dir.mkdir(exist_ok=True)
    name = "synthetic_text_document"
    prefix = work / "neox" / name  # gpt-neox writes its maps next to the dataset
    t = time.perf_counter()
    tokens = write_synthetic_idx(prefix, args.items, args.mean_size)
    print(f"synthetic .idx: {args.items:,} items, {tokens:,} tokens/epoch "
          f"({time.perf_counter() - t:.1f}s to write)", flush=True)  # fmt: skip
    compile_helpers(Path(args.neox), helpers_dir)
    neox_head = subprocess.run(
        ["git", "-C", args.neox, "describe", "--tags", "--always"], capture_output=True, text=True
    ).stdout.strip()
    print(f"gpt-neox checkout {args.neox} ({neox_head or 'not a git checkout'}), helpers.cpp "
          f"compiled with pybind11 -O3", flush=True)  # fmt: skip

    peer_cmd = [sys.executable, "-c", PEER, str(Path(args.neox).resolve()), str(helpers_dir),
                str(prefix), str(cfg.num_samples), str(cfg.seq_length), str(cfg.seed)]  # fmt: skip
    pile = shutil.which("pile", path=os.path.dirname(sys.executable)) or "pile"
    ours_cmd = [pile, "order", str(prefix), "--preset", "pythia", "--out-dir", str(work / "ours")]
    if args.train_iters is not None:
        ours_cmd += ["--train-iters", str(args.train_iters)]
    sides = {"gpt-neox": (peer_cmd, work / "neox"), "pile order": (ours_cmd, work / "ours")}
    results: dict[str, list[dict]] = {k: [] for k in sides}
    for i in range(args.repeats):
        for side, (cmd, out) in sides.items():
            for p in out.glob(f"{name}_train_0_indexmap_*"):
                p.unlink()
            r = run_timed(cmd)
            results[side].append(r)
            print(f"  run {i + 1} {side:10s}: CPU {r['cpu']:6.1f}s  wall {r['wall']:6.1f}s  "
                  f"peak RSS {r['rss_mb']:6.0f} MB", flush=True)  # fmt: skip

    med = {s: {k: statistics.median(r[k] for r in rs) for k in ("cpu", "wall", "rss_mb")}
           for s, rs in results.items()}  # fmt: skip
    print(f"\nmedian of {args.repeats} interleaved runs (2 shared cores, other sessions running):")
    for s, m in med.items():
        print(f"  {s:10s}: CPU {m['cpu']:6.1f}s  wall {m['wall']:6.1f}s  "
              f"peak RSS {m['rss_mb']:6.0f} MB")  # fmt: skip
    ours, peer = med["pile order"], med["gpt-neox"]
    print(
        f"  ratio pile/gpt-neox: CPU {ours['cpu'] / peer['cpu']:.2f}x, wall "
        f"{ours['wall'] / peer['wall']:.2f}x, peak RSS {ours['rss_mb'] / peer['rss_mb']:.2f}x"
    )

    a = map_files(work / "neox", name, cfg)
    b = map_files(work / "ours", name, cfg)
    same = True
    for r in ROLES:
        ha, hb = sha256_file(a[r]), sha256_file(b[r])
        same &= ha == hb
        print(f"  {r}: {'identical' if ha == hb else 'DIFFERENT'} ({a[r].stat().st_size:,} bytes, "
              f"sha256 {ha[:16]}...)")  # fmt: skip
    if not args.keep:
        shutil.rmtree(work)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
