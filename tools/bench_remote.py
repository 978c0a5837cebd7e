#!/usr/bin/env python3
"""Object-storage reads: the same `.jsonl.zst` read by `pile`'s reader from local disk and from
`s3://` (an S3-compatible server on 127.0.0.1: moto's server mode, in its own process), and by
a plain s3fs + zstandard loop (the same fsspec cache and block size, streaming decompression,
newlines counted: what a reader without JSON, ids or error handling does), each a fresh process.

    pip install -e '.[test]'          # s3fs and moto[server]
    python tools/bench_remote.py [--repeat 3] [--input FILE.jsonl.zst]

The input defaults to tools/bench_read.py's novels file (../shared/corpora/novels cut into
Pile-sized documents, ~53 MB compressed). Printed per contender: median client CPU seconds
(user + sys of the child) and wall seconds of the read itself (imports excluded), interleaved
`--repeat` rounds, and the ratios to the local read. The server shares the machine's cores, so
the wall times show the client's overhead plus moto's (a Python server), not a real store's.
Nothing leaves 127.0.0.1: proxies are dropped from the environment and the endpoint is explicit.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUCKET = "bench-bucket"

PILE = (
    "import sys, time; from pipeline.read import iter_documents, ReadConfig, resolve_inputs; "
    "f = resolve_inputs([sys.argv[1]]); t = time.perf_counter(); "
    "n = sum(1 for _ in iter_documents(f, ReadConfig())); print(n, time.perf_counter() - t)"
)
# the floor: bytes through s3fs and zstd, lines counted, no JSON, no ids, no error handling
PLAIN = (
    "import sys, time, fsspec, zstandard; t = time.perf_counter(); n = 0\n"
    "fs, p = fsspec.core.url_to_fs(sys.argv[1])\n"
    "with fs.open(p, 'rb', block_size=4 << 20, cache_type='background',\n"
    "             cache_options={'maxblocks': 2}) as raw:\n"
    "    r = zstandard.ZstdDecompressor().stream_reader(raw)\n"
    "    while chunk := r.read(1 << 20):\n"
    "        n += chunk.count(b'\\n')\n"
    "print(n, time.perf_counter() - t)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode:
        raise SystemExit(f"error: {' '.join(cmd[:3])} failed:\n{out.stderr[-2000:]}")
    n, wall = out.stdout.split()
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return cpu, float(wall), int(n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", type=Path, help="a .jsonl.zst (default: bench_read's novels)")
    ap.add_argument("--shared", type=Path, default=HERE.parent.parent / "shared")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/pile-bench-read"))
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (median reported)")
    args = ap.parse_args(argv)
    path = args.input
    if path is None:
        sys.path.insert(0, str(HERE))
        import bench_read

        if not (args.shared / "corpora" / "novels").is_dir():
            print(f"error: {args.shared}/corpora/novels not found; pass --input", file=sys.stderr)
            return 2
        path, _ = bench_read.prepare(args.shared, args.workdir)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true", AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
    )  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        os.environ.update(env)
        for k in [k for k in os.environ if "proxy" in k.lower()]:
            del os.environ[k]
        import s3fs

        fs = s3fs.S3FileSystem()
        fs.mkdir(BUCKET)
        fs.put_file(str(path), f"{BUCKET}/{path.name}")
        url = f"s3://{BUCKET}/{path.name}"
        contenders = {
            "pile reader, local": [sys.executable, "-c", PILE, str(path)],
            "pile reader, s3://": [sys.executable, "-c", PILE, url],
            "s3fs+zstd lines, s3://": [sys.executable, "-c", PLAIN, url],
        }
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders}
        counts = {}
        for _ in range(args.repeat):
            for name, cmd in contenders.items():
                cpu, wall, n = _timed(cmd, env)
                runs[name].append((cpu, wall))
                counts[name] = n
    finally:
        server.terminate()
        server.wait()
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB compressed), median of {args.repeat}")
    base_cpu = statistics.median(c for c, _ in runs["pile reader, local"])
    base_wall = statistics.median(w for _, w in runs["pile reader, local"])
    for name, rs in runs.items():
        cpu = statistics.median(c for c, _ in rs)
        wall = statistics.median(w for _, w in rs)
        print(
            f"{name:24s} {counts[name]:>8d} docs/lines  client CPU {cpu:6.2f} s "
            f"({cpu / base_cpu:4.2f}x local)  read wall {wall:6.2f} s ({wall / base_wall:4.2f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
