"""Benchmark the Ray engine against the local engine: what running on Ray costs on one machine.

Two measurements, on 1 and 2 CPUs (--cores), on the same generated corpus (--mb MB of text in
--files jsonl.zst files, cut from ../shared/corpora/novels, or the bundled sample when absent):

  executor  the same real per-file task (read every document with the pile reader and encode it
            with the NeoX encoder, returning counts and a digest of the ids) mapped over the files
            by `LocalExecutor(N)` and by `RayExecutor(N)` (a private local Ray with N CPUs), both
            kept warm across rounds; the start of each (pool / `ray.init` + the first map) is
            reported apart. Digests must be equal.
  cli       `pile tokenize CORPUS --workers N --engine local|ray` as processes, timed from start
            to exit (a private Ray is started and stopped by each ray run); `.bin` bytes must be
            equal. A stage that does not take its executor from the command yet (before the
            stage-contract change) runs locally whatever --engine says: the row says so.

Runs are interleaved (local, ray, local, ...) for --rounds rounds; the median counts. Printed:
seconds, MB of text per second and the ratio ray / local (> 1: Ray is slower). On a shared machine
the absolute numbers move with the load: compare ratios from the same run.

    python tools/bench_engine.py                 # 8 MB, 3 rounds, 1 and 2 CPUs
    python tools/bench_engine.py --mb 300 --rounds 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOLS = Path(__file__).resolve().parent
SHARED = REPO.parent / "shared"
WORK = Path(tempfile.gettempdir()) / "bench_engine"
DOC_CHARS = 8000  # documents cut at paragraph ends near this size (Pile-like: mean ~5-6 KiB)


# ----------------------------------------------------------------------------------------------
# corpus


def _source_texts() -> tuple[str, list[str]]:
    from pipeline.data import sample_train_files
    from pipeline.read import iter_documents

    novels = sorted((SHARED / "corpora" / "novels").glob("*.jsonl.zst"))
    files = novels or sample_train_files()
    name = "novels" if novels else "bundled sample"
    texts = []
    for doc in iter_documents([str(p) for p in files]):
        text = doc.text
        while len(text) > 2 * DOC_CHARS:  # books into document-sized parts
            cut = text.find("\n\n", DOC_CHARS)
            if cut < 0:
                break
            texts.append(text[:cut])
            text = text[cut + 2 :]
        texts.append(text)
    return name, texts


def prepare(mb: float, files: int) -> tuple[Path, int, str]:
    """Write (once per size) `files` jsonl.zst files holding ~mb MB of UTF-8 text."""
    import orjson
    import zstandard

    out = WORK / f"corpus_{mb:g}mb_{files}f_v2"
    stamp = out / "stamp.json"
    if stamp.exists():
        info = json.loads(stamp.read_text())
        return out, info["bytes"], info["source"]
    name, texts = _source_texts()
    out.mkdir(parents=True, exist_ok=True)
    target = int(mb * 1e6)
    writers = [
        zstandard.ZstdCompressor(level=3, write_checksum=True).stream_writer(
            open(out / f"{i:02d}.jsonl.zst", "wb")
        )
        for i in range(files)
    ]
    total = n = 0
    while total < target:  # round-robin over the files, the source repeated as needed
        t = texts[n % len(texts)]
        writers[n % files].write(orjson.dumps({"text": t, "meta": {"pile_set_name": name}}) + b"\n")
        total += len(t.encode("utf-8"))
        n += 1
    for w in writers:
        w.close()
    stamp.write_text(json.dumps({"bytes": total, "documents": n, "source": name}))
    return out, total, name


# ----------------------------------------------------------------------------------------------
# the task (module-level: local pool workers and Ray workers import it by name from tools/)


def tokenize_file(path: str) -> tuple[int, int, str]:
    """Read one file and encode every document: (documents, tokens, sha256 of the ids)."""
    from pipeline.read import iter_documents
    from pipeline.tokenize.encoder import load_encoder

    enc = load_encoder()
    h = hashlib.sha256()
    docs = tokens = 0
    batch: list[str] = []

    def flush() -> None:
        nonlocal tokens
        ids, sizes = enc.encode_batch_flat(batch)
        h.update(ids.tobytes())
        h.update(sizes.tobytes())
        tokens += int(ids.size)
        batch.clear()

    for doc in iter_documents([path]):
        batch.append(doc.text)
        docs += 1
        if len(batch) == 1024:
            flush()
    if batch:
        flush()
    return docs, tokens, h.hexdigest()


# ----------------------------------------------------------------------------------------------
# runs


def bench_executor(files: list[str], cores: int, rounds: int) -> dict:
    import bench_engine  # this file, by its importable name (see main)

    from pipeline.engine.local import LocalExecutor
    from pipeline.engine.ray import RayExecutor

    task = bench_engine.tokenize_file
    t0 = time.perf_counter()
    local = LocalExecutor(cores)
    first_local = local.map(task, files)
    local_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    ray_ex = RayExecutor(cores)  # a private local Ray with `cores` CPUs
    init = time.perf_counter() - t0
    first_ray = ray_ex.map(task, files)
    ray_start = time.perf_counter() - t0
    if first_ray != first_local:
        raise SystemExit(f"different results: local {first_local} ray {first_ray}")
    times: dict[str, list[float]] = {"local": [], "ray": []}
    for _ in range(rounds):
        for name, ex in (("local", local), ("ray", ray_ex)):
            t = time.perf_counter()
            got = ex.map(task, files)
            times[name].append(time.perf_counter() - t)
            if got != first_local:
                raise SystemExit(f"{name}: results differ from the first run")
    local.close()
    ray_ex.close()
    return {
        "local_start": local_start,
        "ray_init": init,
        "ray_start": ray_start,
        "local": statistics.median(times["local"]),
        "ray": statistics.median(times["ray"]),
        "tokens": sum(r[1] for r in first_local),
    }


def _pile_tokenize(corpus: Path, out: Path, cores: int, engine: str) -> tuple[float, bool, str]:
    cmd = [sys.executable, "-m", "pipeline.cli.main", "-v", "tokenize", str(corpus)]
    cmd += ["--out", str(out), "--prefix", "b", "--workers", str(cores), "--engine", engine]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {res.returncode}:\n{res.stderr[-3000:]}")
    on_ray = "engine: ray" in res.stderr
    digest = hashlib.sha256((out / "b_text_document.bin").read_bytes()).hexdigest()
    return wall, on_ray, digest


def bench_cli(corpus: Path, cores: int, rounds: int) -> dict:
    times: dict[str, list[float]] = {"local": [], "ray": []}
    digests, on_ray = set(), True
    with tempfile.TemporaryDirectory(prefix="bench_engine_") as tmp:
        for r in range(rounds):
            for engine in ("local", "ray"):
                out = Path(tmp) / f"{engine}{r}"
                wall, used, digest = _pile_tokenize(corpus, out, cores, engine)
                times[engine].append(wall)
                digests.add(digest)
                if engine == "ray":
                    on_ray = on_ray and used
    if len(digests) != 1:
        raise SystemExit(f".bin differs between runs: {sorted(digests)}")
    return {
        "local": statistics.median(times["local"]),
        "ray": statistics.median(times["ray"]),
        "on_ray": on_ray,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mb", type=float, default=8, help="MB of text in the corpus (default 8)")
    ap.add_argument("--files", type=int, default=4, help="input files (tasks) (default 4)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--cores", default="1,2", help="CPU counts to run on (default 1,2)")
    ap.add_argument("--mode", default="executor,cli", help="executor, cli or both (default)")
    args = ap.parse_args(argv)
    try:
        import ray  # noqa: F401
    except ImportError:
        raise SystemExit("needs Ray: pip install -e '.[ray]'") from None
    # the task must be importable by name in pool workers and Ray workers: put tools/ on the path
    # of this process (pool workers inherit sys.path) and in PYTHONPATH (Ray workers inherit the
    # environment of the Ray this process starts)
    sys.path.insert(0, str(TOOLS))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(TOOLS), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    logging.getLogger("pipeline").setLevel(logging.ERROR)  # the novels' no-checksum warning
    corpus, nbytes, source = prepare(args.mb, args.files)
    files = [str(p) for p in sorted(corpus.glob("*.jsonl.zst"))]
    mb = nbytes / 1e6
    cores = [int(c) for c in args.cores.split(",")]
    modes = args.mode.split(",")
    print(
        f"corpus: {mb:.1f} MB of text from the {source} in {len(files)} files; "
        f"{args.rounds} interleaved rounds, median; load average {os.getloadavg()[0]:.1f}"
    )
    if "executor" in modes:
        print("\nexecutor: the same read+encode task per file, warm executors")
        print(
            f"{'cpus':>4} {'local s':>8} {'ray s':>8} {'local MB/s':>10} {'ray MB/s':>9} "
            f"{'ray/local':>9}   start: pool+1st map, ray.init, ray.init+1st map"
        )
        for c in cores:
            r = bench_executor(files, c, args.rounds)
            print(
                f"{c:>4} {r['local']:>8.2f} {r['ray']:>8.2f} {mb / r['local']:>10.1f} "
                f"{mb / r['ray']:>9.1f} {r['ray'] / r['local']:>8.2f}x   "
                f"{r['local_start']:.1f} s, {r['ray_init']:.1f} s, {r['ray_start']:.1f} s"
            )
    if "cli" in modes:
        print(
            "\ncli: pile tokenize --workers N --engine E, whole process (ray: private Ray each run)"
        )
        print(f"{'cpus':>4} {'local s':>8} {'ray s':>8} {'ray/local':>9}")
        for c in cores:
            r = bench_cli(corpus, c, args.rounds)
            note = "" if r["on_ray"] else "   (tokenize did not use the executor: ran locally)"
            print(
                f"{c:>4} {r['local']:>8.2f} {r['ray']:>8.2f} {r['ray'] / r['local']:>8.2f}x{note}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
