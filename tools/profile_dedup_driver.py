"""Where `pile dedup` spends the driver's CPU and memory after the signatures.

Writes a corpus with planted near-duplicate clusters (N clusters of M copies of a 200-word text,
one word replaced in each copy, 4 files), runs the dedup stage on the local engine with
--workers W and prints the driver's (this process's) CPU seconds and its peak RSS in each
post-signature step (VmHWM is reset before each step: Linux only). Task work runs in the pool's
processes when W >= 2, so the figures are the driver's own. Run under load they vary; compare
runs taken back to back.

    python tools/profile_dedup_driver.py --clusters 2500 --copies 8 --workers 2
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
from pathlib import Path

import orjson

import pipeline.dedup.stage as stage
from pipeline.dedup import DedupConfig, run_dedup
from pipeline.engine import make_executor

STEPS = ("candidate_pairs", "verify_pairs", "cluster", "write_tables")


def _rss() -> tuple[int, int]:
    """(VmHWM, VmRSS) of this process in MiB."""
    vals = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmHWM", "VmRSS")):
            vals[line[:5]] = int(line.split()[1]) // 1024
    return vals["VmHWM"], vals["VmRSS"]


def _write_corpus(root: Path, clusters: int, copies: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    files: list[list[bytes]] = [[] for _ in range(4)]
    for c in range(clusters):
        base = [f"c{c}w{i}x{rng.randint(0, 99)}" for i in range(200)]
        for _ in range(copies):
            words = list(base)
            words[rng.randrange(len(words))] = f"m{rng.randint(0, 10**9)}"
            rec = {"text": " ".join(words), "meta": {"pile_set_name": "Pile-CC"}}
            files[rng.randrange(4)].append(orjson.dumps(rec) + b"\n")
    paths = []
    for k, lines in enumerate(files):
        p = root / f"in{k}.jsonl"
        p.write_bytes(b"".join(lines))
        paths.append(str(p))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clusters", type=int, default=2500)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    peaks: dict[str, int] = {}
    current = ["signatures"]

    def wrap(name: str):
        fn = getattr(stage, name)

        def step(*a, **k):
            peaks[current[0]] = _rss()[0]
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM
            current[0] = name
            return fn(*a, **k)

        setattr(stage, name, step)

    for name in STEPS:
        wrap(name)
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write_corpus(Path(tmp), args.clusters, args.copies, args.seed)
        cfg = DedupConfig.from_preset("pythia-0.87", partitions=8)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        with make_executor("local", args.workers) as ex:
            stats = run_dedup(paths, Path(tmp) / "out", cfg, executor=ex)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        peaks[current[0]] = _rss()[0]
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    c = stats["counts"]
    print(
        f"documents {c['documents']}, candidate pairs {c['candidate_pairs']}, "
        f"removed {c['removed']}, workers {args.workers}"
    )
    print(f"driver CPU s (whole stage): {cpu:.2f}")
    print("driver peak RSS MiB by step (from its start to the next):")
    for name, mib in peaks.items():
        print(f"  {name:16s} {mib}")
    print("wall s by step:", {k: round(v, 2) for k, v in stats["timings"].items()})


if __name__ == "__main__":
    main()
