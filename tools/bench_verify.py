"""Benchmark `pile verify` against coreutils `sha256sum` on the same files.

Files: --files N random files of --mb MB each in /tmp/bench_verify (kept between runs), listed in
a `sha256sum`-format list. Each timing is the best of --repeat runs of the whole command (process
start to exit), for:

  1 file      `sha256sum F`            vs `pile verify LIST1`            (per-core speed)
  N files     `sha256sum F1..FN`       vs `pile verify LISTN` (threads)  vs `xargs -P cores sha256sum`
  reference   `cat F1..FN > /dev/null` (read bandwidth of the same files)

Both warm (files in the page cache) and cold (each file's cached pages dropped first with
posix_fadvise(DONTNEED), which touches only these files) runs are printed, with ratios.

    python tools/bench_verify.py                       # 4 x 512 MB
    python tools/bench_verify.py --files 2 --mb 128    # quicker
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

WORK = Path("/tmp/bench_verify")


def make_files(n: int, mb: int) -> list[Path]:
    import numpy as np

    WORK.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        p = WORK / f"blob-{i:02d}-{mb}MB.bin"
        if not p.exists() or p.stat().st_size != mb * 1_000_000:
            rng = np.random.default_rng(i)
            with open(p, "wb") as f:
                left = mb * 1_000_000
                while left:
                    k = min(left, 50_000_000)
                    f.write(rng.bytes(k))
                    left -= k
        files.append(p)
    return files


def drop_cache(files: list[Path]) -> None:
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed(cmd: list[str] | str, files: list[Path], cold: bool, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        if cold:
            drop_cache(files)
        else:
            subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)
        t0 = time.perf_counter()
        r = subprocess.run(
            cmd,
            shell=isinstance(cmd, str),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"{cmd} failed: {r.stderr.decode()[-500:]}")
        best = min(best, dt)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--mb", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    files = make_files(args.files, args.mb)
    # checksum lists written by sha256sum itself (so the peer defines the expected values)
    lst_all = WORK / f"SHA256SUMS-{args.files}x{args.mb}.txt"
    if not lst_all.exists():
        out = subprocess.run(
            ["sha256sum", *[p.name for p in files]],
            cwd=WORK,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        lst_all.write_text(out)
    lines = lst_all.read_text().splitlines()
    lst_one = WORK / f"SHA256SUMS-1x{args.mb}.txt"
    lst_one.write_text(lines[0] + "\n")
    pile = [sys.executable, "-m", "pipeline.cli.main", "-q", "verify"]
    total_mb = args.files * args.mb
    print(f"{args.files} files x {args.mb} MB in {WORK}; {cores} cores; best of {args.repeat}")
    print(f"\n{'case':42s} {'warm s':>8s} {'MB/s':>7s} {'cold s':>8s} {'MB/s':>7s}")
    results = {}
    cases = [
        ("1 file: sha256sum", ["sha256sum", str(files[0])], [files[0]], args.mb),
        ("1 file: pile verify", pile + [str(lst_one)], [files[0]], args.mb),
        (
            f"{args.files} files: sha256sum (sequential)",
            ["sha256sum", *map(str, files)],
            files,
            total_mb,
        ),
        (
            f"{args.files} files: xargs -P {cores} sha256sum",
            f"printf '%s\\n' {' '.join(map(str, files))} | xargs -P {cores} -n 1 sha256sum",
            files,
            total_mb,
        ),
        (f"{args.files} files: pile verify (threads)", pile + [str(lst_all)], files, total_mb),
        (
            f"{args.files} files: cat > /dev/null (read bandwidth)",
            ["cat", *map(str, files)],
            files,
            total_mb,
        ),
    ]
    for name, cmd, fs, mb in cases:
        warm = timed(cmd, fs, False, args.repeat)
        cold = timed(cmd, fs, True, args.repeat)
        results[name] = (warm, cold)
        print(f"{name:42s} {warm:8.2f} {mb / warm:7.0f} {cold:8.2f} {mb / cold:7.0f}")
    # the same check without the interpreter start (~0.5-1 s of imports): hashing speed itself
    from pipeline.verify import verify_paths

    for label, cold in (("warm", False), ("cold", True)):
        best = float("inf")
        for _ in range(args.repeat):
            if cold:
                drop_cache([files[0]])
            t0 = time.perf_counter()
            rep = verify_paths([lst_one])
            best = min(best, time.perf_counter() - t0)
            if not rep.ok:
                raise SystemExit(f"verify failed: {rep.problems}")
        results[f"1 file: verify_paths in-process ({label})"] = best
    inproc = (
        results["1 file: verify_paths in-process (warm)"],
        results["1 file: verify_paths in-process (cold)"],
    )
    print(
        f"{'1 file: verify_paths() in-process':42s} {inproc[0]:8.2f} {args.mb / inproc[0]:7.0f} "
        f"{inproc[1]:8.2f} {args.mb / inproc[1]:7.0f}"
    )
    names = [n for n in results if "in-process" not in n]
    for label, i in (("warm", 0), ("cold", 1)):
        one = results[names[0]][i] / results[names[1]][i]
        seq = results[names[2]][i] / results[names[4]][i]
        par = results[names[3]][i] / results[names[4]][i]
        bw = results[names[5]][i] / results[names[4]][i]
        core = results[names[0]][i] / inproc[i]
        print(
            f"\n{label}: pile verify vs sha256sum, 1 file (per core): {one:.2f}x CLI, {core:.2f}x "
            "without interpreter start (target >= 3x); "
            f"{args.files} files: {seq:.2f}x vs sequential sha256sum, {par:.2f}x vs xargs -P {cores}"
            f"; pile verify runs at {100 * bw:.0f}% of cat's read bandwidth"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
