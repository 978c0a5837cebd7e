#!/usr/bin/env python
"""Fault suite: every way a run can be hurt, tried against the real `pile` CLI, one table out.

    python tools/fault_suite.py                          # every case (about 10 min on 2 cores)
    python tools/fault_suite.py --only input,storage     # some categories
    python tools/fault_suite.py --kills 6 --json out.json

Categories (each case runs `pile` as a subprocess, as a user would):
  crash        SIGKILL / SIGTERM / SIGINT at random points (seeded) spread over every stage of
               `pile build` and over each stage command run alone; then resume; every artifact must
               be byte-identical to a clean build.
  input        bad inputs of every kind, with --on-error raise (exit 3 naming the file and the
               line or offset, no traceback, no hang) and skip (read = kept + empty + rejected,
               every rejected line in quarantine verbatim, no good document lost).
  storage      a flipped, truncated or appended byte in every artifact of a build: `pile verify`
               exits 4 naming the file; `pile inspect` never serves damaged data silently; a
               rerun of `pile build` repairs or refuses naming the file.
  disk         a filesystem that fills up mid-build (a small tmpfs; skipped where it cannot be
               mounted): a clear error, nothing that looks finished, a rerun with space completes
               identically.
  memory       a decompression bomb and a single very long line: refused or processed with
               bounded RSS, never an out-of-memory kill.
  concurrency  two builds on one output, a stage command inside a running build, verify during a
               build.

Totals: `documents lost` and `corruptions undetected` must both be 0 and every case must pass;
the exit code is 0 only then.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import zstandard as zstd

HANG = 300.0  # seconds: a command still running after this counts as hung
INPUT_HANG = 60.0  # the same for the small input cases
CATEGORIES = ("crash", "input", "storage", "disk", "memory", "concurrency")
# local paths and times, not artifacts: the resolved config, records, logs, the lock, timings
UNHASHED = ("_state/", "logs/", "build.toml", ".lock")
UNHASHED_NAMES = ("timings.json", "dedup_timings.json")


@dataclass
class Case:
    category: str
    name: str
    passed: bool
    lost: int = 0  # documents that are in neither the output nor the quarantine
    undetected: int = 0  # damaged data accepted with exit 0 and no warning
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Run:
    code: int | None  # None: hung (killed after HANG seconds)
    out: str
    err: str
    peak_rss: int = 0  # bytes, the whole process tree, sampled

    @property
    def text(self) -> str:
        return self.out + self.err


# ------------------------------------------------------------------------------------------ runs


def _cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli.main", *args]


def _tree_rss(pid: int) -> int:
    try:
        import psutil
    except ImportError:  # psutil is a test extra; without it RSS is not sampled
        return 0
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for q in procs:
        with contextlib.suppress(psutil.Error):
            total += q.memory_info().rss
    return total


def pile(*args: str, env: dict | None = None, timeout: float = HANG, cwd=None) -> Run:
    """Run `pile ARGS` to the end (or until `timeout`), sampling the tree's RSS."""
    p = subprocess.Popen(
        _cmd(list(args)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(p.pid))
            done.wait(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        out, err = p.communicate(timeout=timeout)
        code: int | None = p.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        code = None
    done.set()
    t.join()
    return Run(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), peak[0])


def tree_hashes(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if (
            p.is_file()
            and not p.is_symlink()
            and not rel.startswith(UNHASHED)
            and p.name not in UNHASHED_NAMES
        ):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def diff_hashes(got: dict[str, str], want: dict[str, str]) -> str:
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    changed = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    parts = []
    for what, names in (("missing", missing), ("extra", extra), ("changed", changed)):
        if names:
            parts.append(f"{what}: {', '.join(names[:4])}{' …' if len(names) > 4 else ''}")
    return "; ".join(parts)


def no_traceback(r: Run) -> bool:
    return "Traceback (most recent call last)" not in r.err


def timed(fn: Callable[[], Case]) -> Case:
    t = time.perf_counter()
    c = fn()
    c.seconds = time.perf_counter() - t
    return c


# ------------------------------------------------------------------------------------- corpora


def doc_line(i: int, source: str = "Pile-CC") -> bytes:
    text = f"document {i}: " + " ".join(f"w{(i * 7919 + k) % 1000}" for k in range(40))
    return json.dumps({"text": text, "meta": {"pile_set_name": source}}).encode() + b"\n"


def good_lines(n: int, start: int = 0) -> list[bytes]:
    return [doc_line(i) for i in range(start, start + n)]


def write_zst(path: Path, frames: list[bytes], checksum: bool = True) -> list[int]:
    """One zstd frame per element; returns each frame's start offset in the file."""
    cctx = zstd.ZstdCompressor(level=3, write_checksum=checksum, write_content_size=True)
    starts, buf = [], bytearray()
    for fr in frames:
        starts.append(len(buf))
        buf += cctx.compress(fr)
    path.write_bytes(bytes(buf))
    return starts


def decodable_prefix(data: bytes) -> bytes:
    """What a streaming decoder gets out of `data` before it hits the end or damage."""
    out = io.BytesIO()
    d = zstd.ZstdDecompressor()
    pos = 0
    while pos < len(data):
        obj = d.decompressobj()
        try:
            chunk = obj.decompress(data[pos:])
        except zstd.ZstdError:
            break
        out.write(chunk)
        rest = obj.unused_data
        if not obj.eof or not rest:
            break
        pos = len(data) - len(rest)
    return out.getvalue()


# -------------------------------------------------------------------------------------- crash


def stage_durations(out: Path) -> dict[str, float]:
    log = (out / "logs" / "build.log").read_text("utf-8", "replace")
    return {
        m.group(1): float(m.group(2)) for m in re.finditer(r"stage (\S+): done in ([0-9.]+) s", log)
    }


def wait_for_text(path: Path, needle: str, proc: subprocess.Popen, timeout: float = HANG) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if needle in path.read_text("utf-8", "replace"):
                return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    return False


def kill_and_resume(
    args: list[str],
    out: Path,
    clean: dict[str, str],
    sig: signal.Signals,
    delay: float,
    wait: tuple[Path, str] | None,
    compare: bool = True,
) -> tuple[bool, str]:
    """Start `pile ARGS`, send `sig` `delay` s after `wait`'s text appears (or after start), let
    it end, rerun to completion and (with `compare`) compare the artifacts with `clean`."""
    p = subprocess.Popen(
        _cmd(args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    landed = "before"
    if wait is None or wait_for_text(wait[0], wait[1], p):
        time.sleep(delay)
        if p.poll() is None:
            landed = "inside"
            # SIGKILL hits the main process only (an OOM kill); SIGTERM and SIGINT the whole
            # group, as a terminal's Ctrl-C or a service manager's stop does
            with contextlib.suppress(ProcessLookupError):
                if sig == signal.SIGKILL:
                    os.kill(p.pid, sig)
                else:
                    os.killpg(p.pid, sig)
        else:
            landed = "after the end"
    try:
        _, err = p.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return False, f"did not stop after {sig.name}"
    if sig != signal.SIGKILL and landed == "inside" and p.returncode == 0:
        pass  # a signal that lands during the final write may still let the run finish
    if landed == "inside" and b"Traceback" in err and sig == signal.SIGTERM:
        return False, f"traceback on {sig.name}: {err.decode('utf-8', 'replace')[-300:]}"
    r = pile(*args)
    if r.code != 0:
        return False, f"resume exit {r.code}: {r.err.strip()[-300:]}"
    if not compare:
        return True, f"{sig.name} {landed} +{delay:.2f}s"
    got = tree_hashes(out)
    d = diff_hashes(got, clean)
    tmp = [k for k in got if k.endswith(".tmp")]
    if d or tmp:
        return False, f"after resume ({landed}): {d} {tmp[:3]}"
    return True, f"{sig.name} {landed} +{delay:.2f}s"


def crash_cases(work: Path, rng: random.Random, kills: int) -> Iterator[Case]:
    clean_out = work / "clean"
    r = pile("build", "--out", str(clean_out), "--workers", "2")
    if r.code != 0:
        yield Case("crash", "clean build", False, detail=r.err[-500:])
        return
    clean = tree_hashes(clean_out)
    durations = stage_durations(clean_out)
    stages = list(durations)
    sigs = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
    for i in range(kills):
        stage, sig = stages[i % len(stages)], sigs[(i // len(stages) + i) % 3]
        delay = rng.uniform(0, durations[stage])
        out = work / f"crash{i:02d}"

        def one(out=out, stage=stage, sig=sig, delay=delay) -> Case:
            ok, why = kill_and_resume(
                ["build", "--out", str(out), "--workers", "2"],
                out,
                clean,
                sig,
                delay,
                (out / "logs" / "build.log", f"stage {stage}: running"),
            )
            shutil.rmtree(out, ignore_errors=True)
            return Case("crash", f"build: {sig.name} in {stage}", ok, detail=why)

        yield timed(one)

    # each stage command alone, on the bundled sample
    from pipeline.data import sample_train_files

    inputs = [str(p) for p in sample_train_files()]
    base = work / "stage_clean"
    cmds = {
        "dedup": lambda o: ["dedup", *inputs, "--out", str(o / "dedup"), "--workers", "2"],
        "tokenize": lambda o: [
            "tokenize", *inputs, "--out", str(o / "tok"), "--prefix", "pile", "--workers", "2",
        ],
        "order": lambda o: ["order", str(o / "tok" / "pile_text_document"), "--preset", "sample"],
        "preshuffle": lambda o: [
            "preshuffle", str(o / "tok" / "pile_text_document"),
            "--out-dir", str(o / "tok" / "preshuffled"), "--preset", "sample",
        ],
    }  # fmt: skip
    times: dict[str, float] = {}
    for name, mk in cmds.items():
        t = time.perf_counter()
        r = pile(*mk(base))
        times[name] = time.perf_counter() - t
        if r.code != 0:
            yield Case("crash", f"clean {name}", False, detail=r.err[-500:])
            return
    clean_stage = tree_hashes(base)
    n_alone = max(4, kills // 3)
    names = list(cmds)
    for i in range(n_alone):
        name, sig = names[i % len(names)], sigs[i % 3]
        delay = rng.uniform(0.3, max(0.4, times[name]))  # interpreter start-up is ~0.3 s
        out = work / f"stagekill{i:02d}"

        def one_alone(out=out, name=name, sig=sig, delay=delay) -> Case:
            # the stages before `name` come from the clean run; `name` and after are redone
            shutil.copytree(base, out)
            idx = names.index(name)
            for later in names[idx:]:
                for rel in _stage_outputs(later):
                    target = out / rel
                    if target.is_dir():
                        shutil.rmtree(target)
                    else:  # a name prefix: the index maps and their manifest
                        for f in target.parent.glob(target.name + "*"):
                            f.unlink()
            ok, why = kill_and_resume(
                cmds[name](out), out, clean_stage, sig, delay, None, compare=False
            )
            if ok:
                for later in names[idx + 1 :]:
                    r = pile(*cmds[later](out))
                    if r.code != 0:
                        ok, why = False, f"{later} after resume: exit {r.code}"
                        break
                d = diff_hashes(tree_hashes(out), clean_stage)
                if ok and d:
                    ok, why = False, f"after resume: {d}"
            shutil.rmtree(out, ignore_errors=True)
            return Case("crash", f"pile {name}: {sig.name}", ok, detail=why)

        yield timed(one_alone)


def _stage_outputs(name: str) -> list[str]:
    return {
        "dedup": ["dedup"],
        "tokenize": ["tok"],
        "order": ["tok/pile_text_document_train_0_indexmap"],
        "preshuffle": ["tok/preshuffled"],
    }[name]


# -------------------------------------------------------------------------------------- input


@dataclass
class InputCase:
    name: str
    make: Callable[[Path], None]  # writes the corpus into the given directory
    good: int  # documents that must be kept (documents + empty)
    bad: list[bytes] = field(default_factory=list)  # lines that must be in quarantine verbatim
    must_raise: bool = True  # with --on-error raise: exit 3
    where: str = "line"  # what the raise message must name besides the file: line | offset | -
    stream: bool = False  # damage to a compressed stream: `good` is a lower bound


def _line_case(name: str, bad: bytes, n: int = 50) -> InputCase:
    def make(d: Path) -> None:
        lines = good_lines(n)
        (d / "part.jsonl").write_bytes(b"".join(lines[: n // 2]) + bad + b"".join(lines[n // 2 :]))

    return InputCase(name, make, good=n, bad=[bad.rstrip(b"\n")])


def input_cases(rng: random.Random) -> list[InputCase]:
    cases = [
        _line_case("invalid JSON", b'{"text": "cut here\n'),
        _line_case("invalid UTF-8", b'{"text": "caf\xe9 \xff"}\n'),
        _line_case("text missing", b'{"body": "no text key"}\n'),
        _line_case("text null", b'{"text": null}\n'),
        _line_case("text number", b'{"text": 42}\n'),
        _line_case("text list of numbers", b'{"text": [1, 2]}\n'),
        _line_case("text dict", b'{"text": {"a": "b"}}\n'),
        _line_case("NUL byte", b'{"text": "a\x00b"}\n'),
        _line_case("lone surrogate in text", b'{"text": "a\\ud800b"}\n'),
        _line_case(
            "lone surrogate in pile_set_name",
            b'{"text": "fine", "meta": {"pile_set_name": "x\\udc00"}}\n',
        ),
        _line_case("record nested 5000 deep", b"[" * 5000 + b"]" * 5000 + b"\n"),
        _line_case(
            "meta nested 5000 deep",
            b'{"text": "t", "meta": ' + b"[" * 5000 + b"]" * 5000 + b"}\n",
        ),
    ]

    # a `meta` that is not an object is kept (as lm_dataformat does), its source is "unknown"
    meta7 = _line_case("meta not a dict", b'{"text": "ok text", "meta": 7}\n')
    cases.append(InputCase(meta7.name, meta7.make, good=51, must_raise=False, where="-"))

    # the truncated .jsonl.zst at 10 offsets; a corrupt frame with and without checksums
    lines = good_lines(400)
    frames = [b"".join(lines[i : i + 40]) for i in range(0, 400, 40)]

    def trunc(at: float) -> InputCase:
        def make(d: Path) -> None:
            p = d / "00.jsonl.zst"
            write_zst(p, frames)
            data = p.read_bytes()
            p.write_bytes(data[: max(1, int(len(data) * at))])

        tmp = Path(tempfile.mkdtemp())
        make(tmp)
        prefix = decodable_prefix((tmp / "00.jsonl.zst").read_bytes())
        shutil.rmtree(tmp)
        return InputCase(f"truncated .zst at {at:.0%}", make, good=prefix.count(b"\n"),
                         where="offset", stream=True)  # fmt: skip

    cases += [trunc(a) for a in sorted(rng.uniform(0.02, 0.98) for _ in range(10))]

    def corrupt(checksum: bool) -> InputCase:
        def make(d: Path) -> None:
            p = d / "00.jsonl.zst"
            starts = write_zst(p, frames, checksum=checksum)
            data = bytearray(p.read_bytes())
            mid = (starts[5] + starts[6]) // 2
            data[mid : mid + 16] = bytes(16)  # 16 zero bytes in the middle of frame 5
            p.write_bytes(bytes(data))

        # frames 0-4 decode before the damage: 200 documents must survive
        return InputCase(f"corrupt frame, checksum={checksum}", make, good=200, where="offset",
                         stream=True)  # fmt: skip

    cases += [corrupt(True), corrupt(False)]

    def empty_file(d: Path) -> None:
        (d / "a.jsonl").write_bytes(b"")
        (d / "b.jsonl.zst").write_bytes(b"")
        (d / "c.jsonl").write_bytes(b"".join(good_lines(5)))

    cases.append(InputCase("0-byte files", empty_file, good=5, must_raise=False, where="-"))

    def big_line(d: Path) -> None:
        big = json.dumps({"text": "x" * (100 * 2**20)}).encode() + b"\n"
        (d / "big.jsonl").write_bytes(b"".join(good_lines(3)) + big)

    cases.append(InputCase("100 MB line", big_line, good=4, must_raise=False, where="-"))

    def tiny_docs(d: Path) -> None:
        rows = [json.dumps({"text": chr(97 + i % 26)}).encode() + b"\n" for i in range(10**5)]
        (d / "tiny.jsonl").write_bytes(b"".join(rows))

    cases.append(InputCase("10^5 one-character documents", tiny_docs, good=10**5,
                           must_raise=False, where="-"))  # fmt: skip

    def eot(d: Path) -> None:
        (d / "e.jsonl").write_bytes(b"".join(good_lines(3)) + b'{"text": "<|endoftext|>"}\n')

    cases.append(InputCase("document is <|endoftext|>", eot, good=4, must_raise=False, where="-"))

    def unrelated(d: Path) -> None:
        (d / "c.jsonl").write_bytes(b"".join(good_lines(5)))
        (d / "README.txt").write_text("not data")
        (d / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))

    cases.append(InputCase("unrelated files", unrelated, good=5, must_raise=False, where="-"))

    def loop(d: Path) -> None:
        (d / "c.jsonl").write_bytes(b"".join(good_lines(5)))
        (d / "sub").mkdir()
        os.symlink("..", d / "sub" / "up")  # a directory symlink loop
        os.symlink("self.jsonl", d / "self.jsonl")  # a file symlink to itself

    cases.append(InputCase("symlink loops", loop, good=5, must_raise=False, where="-"))

    def fifo(d: Path) -> None:
        (d / "c.jsonl").write_bytes(b"".join(good_lines(5)))
        os.mkfifo(d / "pipe.jsonl")

    cases.append(InputCase("FIFO in the input directory", fifo, good=5, must_raise=False,
                           where="-"))  # fmt: skip
    return cases


def _quarantined(q: Path) -> list[bytes]:
    lines: list[bytes] = []
    for f in sorted(q.glob("*.rejected.jsonl")):
        data = f.read_bytes()
        lines += data.split(b"\n")[:-1]  # one record a line, an empty partial line too
    return lines


def run_input_case(c: InputCase, work: Path) -> list[Case]:
    d = work / "in"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    c.make(d)
    results = []
    files = sorted(p.name for p in d.iterdir() if p.suffix in (".jsonl", ".zst"))
    # raise
    r = pile("stats", str(d), "--json", timeout=INPUT_HANG)
    ok, why = True, f"exit {r.code}"
    if r.code is None:
        ok, why = False, "hung"
    elif not no_traceback(r):
        ok, why = False, "traceback: " + r.err.strip()[-300:]
    elif c.must_raise:
        if r.code != 3:
            ok, why = False, f"exit {r.code}, expected 3: {r.err.strip()[-200:]}"
        elif not any(f in r.err for f in files):
            ok, why = False, f"message names no file: {r.err.strip()[-200:]}"
        elif c.where == "line" and not re.search(r"line \d+|:\d+", r.err):
            ok, why = False, f"message names no line: {r.err.strip()[-200:]}"
        elif c.where == "offset" and not re.search(r"offset|byte", r.err):
            ok, why = False, f"message names no offset: {r.err.strip()[-200:]}"
    elif r.code not in (0, 3):
        ok, why = False, f"exit {r.code}: {r.err.strip()[-200:]}"
    undetected = 0
    if c.stream and r.code == 0:
        # damage accepted without an error: only a warning that it cannot be detected will do
        if "checksum" not in r.err.lower():
            undetected, ok, why = 1, False, "damaged stream accepted silently"
    results.append(Case("input", f"{c.name} (raise)", ok, undetected=undetected, detail=why))

    # skip
    q = work / "quarantine"
    shutil.rmtree(q, ignore_errors=True)
    r = pile(
        "stats", str(d), "--json", "--on-error", "skip", "--quarantine", str(q), timeout=INPUT_HANG
    )
    ok, why, lost = True, f"exit {r.code}", 0
    if r.code is None:
        ok, why = False, "hung"
    elif not no_traceback(r):
        ok, why = False, "traceback: " + r.err.strip()[-300:]
    elif r.code == 3 and c.good == 0 and "no document could be read" in r.err:
        why = "nothing readable: exit 3"  # every record rejected, all of them in quarantine
    elif r.code != 0:
        ok, why = False, f"exit {r.code}: {r.err.strip()[-200:]}"
    else:
        s = json.loads(r.out)
        kept = s["documents"] + s["empty"]
        lost = max(0, c.good - kept)
        qlines = _quarantined(q) if q.exists() else []
        if lost:
            ok, why = False, f"{lost} of {c.good} good documents lost"
        elif s["lines"] != s["documents"] + s["empty"] + s["rejected"] + s.get("blank_lines", 0):
            ok, why = False, f"counts do not add up: {s}"
        elif s["rejected"] > len(qlines):
            ok, why = False, f"{s['rejected']} rejected, {len(qlines)} in quarantine"
        elif any(b not in qlines for b in c.bad):
            ok, why = False, "a rejected line is not in quarantine verbatim"
        else:
            why = f"kept {kept}, rejected {s['rejected']}"
    results.append(Case("input", f"{c.name} (skip)", ok, lost=lost, detail=why))
    shutil.rmtree(d, ignore_errors=True)
    return results


# ------------------------------------------------------------------------------------ storage


def damage(path: Path, how: str, rng: random.Random) -> bytes:
    """Damage `path` in place; returns the original bytes."""
    data = path.read_bytes()
    if how == "flip":
        b = bytearray(data)
        i = rng.randrange(len(b)) if b else 0
        if b:
            b[i] ^= 0x20
        path.write_bytes(bytes(b) if b else b"\x00")
    elif how == "truncate":
        path.write_bytes(data[: max(0, len(data) - 1 - rng.randrange(max(1, len(data) // 2)))])
    else:
        path.write_bytes(data + b"\x00")
    return data


def storage_cases(work: Path, rng: random.Random) -> Iterator[Case]:
    out = work / "clean"
    if not (out / "report.html").exists():
        r = pile("build", "--out", str(out), "--workers", "2")
        if r.code != 0:
            yield Case("storage", "clean build", False, detail=r.err[-500:])
            return
    files = sorted(tree_hashes(out))
    inspect_help = pile("inspect", "--help").out
    hash_flag = "--verify-hashes" if "--verify-hashes" in inspect_help else None
    datasets = {
        "standard": out / "standard" / "pile_text_document",
        "deduped": out / "deduped" / "pile_0.87_deduped_text_document",
    }
    clean_inspect = {}
    for ds in datasets.values():
        for form in (str(ds), str(ds.parent / "preshuffled")):
            r = pile("inspect", form, "--step", "1", "--format", "json")
            clean_inspect[form] = r.out
    for rel in files:
        for how in ("flip", "truncate", "append"):
            path = out / rel
            st = path.stat()
            orig = damage(path, how, rng)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # bit rot keeps the mtime
            try:
                r = pile("verify", str(out))
                ok = r.code == 4 and Path(rel).name in r.text
                undetected = int(r.code == 0)
                why = f"verify exit {r.code}"
                # every command that reads it: inspect must not serve it silently
                for form, want in clean_inspect.items():
                    if not ok or not rel.startswith(
                        str(Path(form).relative_to(out).parent.as_posix())
                    ):
                        continue
                    args = ["inspect", form, "--step", "1", "--format", "json"]
                    r = pile(*args, *([hash_flag] if hash_flag else []))
                    if r.code == 0 and r.out != want:
                        ok, undetected, why = False, 1, f"inspect served damaged data: {form}"
                yield Case("storage", f"{how} {rel}", ok, undetected=undetected, detail=why)
            finally:
                path.write_bytes(orig)
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    # a rerun of the build on bit rot repairs the file or refuses naming it
    clean = tree_hashes(out)
    for rel in ("standard/pile_text_document.bin", "dedup/removed.parquet", "report.json"):
        path = out / rel
        st = path.stat()
        orig = damage(path, "flip", rng)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        r = pile("build", "--out", str(out), "--workers", "2")
        if r.code == 0:
            d = diff_hashes(tree_hashes(out), clean)
            ok, why = not d, d or "repaired"
        else:
            ok, why = r.code == 4 and Path(rel).name in r.text, f"build exit {r.code}"
        yield Case("storage", f"build rerun on bit rot in {rel}", ok, detail=why)
        path.write_bytes(orig)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        pile("build", "--out", str(out), "--workers", "2")


# --------------------------------------------------------------------------------------- disk


def disk_cases(work: Path) -> Iterator[Case]:
    clean = tree_hashes(work / "clean") if (work / "clean").exists() else None
    if clean is None:
        r = pile("build", "--out", str(work / "clean"), "--workers", "2")
        clean = tree_hashes(work / "clean")
    for size_mb in (2, 6, 12, 20):
        mnt = work / f"tmpfs{size_mb}"
        mnt.mkdir(exist_ok=True)
        m = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mnt)],
            capture_output=True,
            text=True,
        )
        if m.returncode != 0:
            yield Case("disk", f"full at {size_mb} MB", True,
                       detail=f"skipped: cannot mount a tmpfs here ({m.stderr.strip()})")  # fmt: skip
            return
        try:
            out = mnt / "out"
            r = pile("build", "--out", str(out), "--workers", "2")
            if r.code == 0:
                yield Case("disk", f"full at {size_mb} MB", True, detail="fit; nothing to test")
                continue
            last = r.err.strip().splitlines()[-1] if r.err.strip() else ""
            # refused before writing (the plan does not fit: exit 2, the numbers and a fix), or
            # a disk that filled up while writing (exit 1 naming the file)
            refused = r.code == 2 and "free" in r.err
            ok = no_traceback(r) and (refused or (r.code == 1 and str(mnt) in r.err))
            why = f"exit {r.code}: {last[:160]}"
            v = pile("verify", str(out))
            if v.code == 0 and "all OK" in v.out:
                ok, why = False, "a partial build verifies as all OK"
            subprocess.run(["mount", "-o", f"remount,size={size_mb + 100}m", str(mnt)], check=True)
            r = pile("build", "--out", str(out), "--workers", "2")
            d = diff_hashes(tree_hashes(out), clean) if r.code == 0 else f"rerun exit {r.code}"
            if d:
                ok, why = False, f"rerun with space: {d}"
            yield Case("disk", f"full at {size_mb} MB", ok, detail=why)
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True)


# ------------------------------------------------------------------------------------- memory


def bomb(path: Path, size: int, text: bool = True) -> None:
    """A .jsonl.zst holding one line of `size` bytes: tiny on disk, huge when decoded."""
    cctx = zstd.ZstdCompressor(level=1)
    with open(path, "wb") as f, cctx.stream_writer(f) as w:
        if text:
            w.write(b'{"text": "')
        block = b"a" * 2**20
        for _ in range(size // len(block)):
            w.write(block)
        if text:
            w.write(b'"}\n')


def memory_cases(work: Path, big: int) -> Iterator[Case]:
    d = work / "mem"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    bomb(d / "bomb.jsonl.zst", 8 * 2**30)
    size = (d / "bomb.jsonl.zst").stat().st_size
    for mode in ("raise", "skip"):
        extra = ["--on-error", "skip", "--quarantine", str(work / "memq")] if mode == "skip" else []
        r = pile("stats", str(d), *extra, timeout=600)
        ok = r.code in (0, 3) and no_traceback(r) and r.peak_rss < 2 * 2**30
        yield Case("memory", f"8 GiB line in a {size // 1024} KB .zst, stats ({mode})", ok,
                   detail=f"exit {r.code}, peak RSS {r.peak_rss / 2**20:.0f} MiB")  # fmt: skip
        shutil.rmtree(work / "memq", ignore_errors=True)
    (d / "bomb.jsonl.zst").unlink()
    # one long line of real size through every stage that reads text
    bomb(d / "long.jsonl.zst", big)
    for args in (
        ["stats", str(d)],
        ["dedup", str(d), "--out", str(work / "memdedup")],
        ["tokenize", str(d), "--out", str(work / "memtok"), "--prefix", "x"],
    ):
        r = pile(*args, timeout=900)
        ok = r.code in (0, 3) and no_traceback(r) and r.peak_rss < 8 * 2**30
        yield Case("memory", f"{big / 2**30:.2f} GiB line: {args[0]}", ok,
                   detail=f"exit {r.code}, peak RSS {r.peak_rss / 2**20:.0f} MiB: "
                   f"{(r.err.strip().splitlines() or [''])[-1][:160]}")  # fmt: skip
    shutil.rmtree(d, ignore_errors=True)
    for x in ("memdedup", "memtok"):
        shutil.rmtree(work / x, ignore_errors=True)


# -------------------------------------------------------------------------------- concurrency


def concurrency_cases(work: Path) -> Iterator[Case]:
    out = work / "conc"
    shutil.rmtree(out, ignore_errors=True)
    p = subprocess.Popen(
        _cmd(["build", "--out", str(out), "--workers", "1"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        if not wait_for_text(out / "logs" / "build.log", "stage tokenize-standard: running", p):
            yield Case("concurrency", "build reached tokenize", False, detail="build ended early")
            return
        r = pile("build", "--out", str(out))
        yield Case("concurrency", "second build on one output", r.code == 5,
                   detail=f"exit {r.code}")  # fmt: skip
        from pipeline.data import sample_train_files

        r = pile("tokenize", *map(str, sample_train_files()), "--out", str(out / "standard"),
                 "--prefix", "pile")  # fmt: skip
        yield Case("concurrency", "stage command inside a running build", r.code == 5,
                   detail=f"exit {r.code}")  # fmt: skip
        r = pile("verify", str(out))
        ok = "all OK" not in r.out and ("progress" in r.text or r.code != 0)
        yield Case("concurrency", "verify during a build", ok,
                   detail=f"exit {r.code}: {(r.out.strip().splitlines() or [''])[-1][:120]}")  # fmt: skip
    finally:
        p.wait(timeout=HANG)
    r = pile("verify", str(out))
    yield Case("concurrency", "verify after the build", r.code == 0, detail=f"exit {r.code}")


# ----------------------------------------------------------------------------------------- main


def run_suite(
    work: Path,
    only: tuple[str, ...] = CATEGORIES,
    kills: int = 27,
    seed: int = 0,
    big_line: int = 2**30,
    progress: Callable[[Case], None] | None = None,
) -> list[Case]:
    rng = random.Random(seed)
    cases: list[Case] = []

    def add(c: Case) -> None:
        cases.append(c)
        if progress:
            progress(c)

    if "crash" in only:
        for c in crash_cases(work, random.Random(rng.random()), kills):
            add(c)
    if "input" in only:
        for ic in input_cases(random.Random(rng.random())):
            t = time.perf_counter()
            for c in run_input_case(ic, work):
                c.seconds = time.perf_counter() - t
                add(c)
    if "storage" in only:
        for c in storage_cases(work, random.Random(rng.random())):
            add(c)
    if "disk" in only:
        for c in disk_cases(work):
            add(c)
    if "memory" in only:
        for c in memory_cases(work, big_line):
            add(c)
    if "concurrency" in only:
        for c in concurrency_cases(work):
            add(c)
    return cases


def table(cases: list[Case]) -> str:
    rows = [("category", "tried", "passed", "documents lost", "corruptions undetected")]
    for cat in [*CATEGORIES, "total"]:
        cs = cases if cat == "total" else [c for c in cases if c.category == cat]
        if not cs:
            continue
        rows.append((cat, str(len(cs)), str(sum(c.passed for c in cs)),
                     str(sum(c.lost for c in cs)), str(sum(c.undetected for c in cs))))  # fmt: skip
    w = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join([r[0].ljust(w[0]), *(c.rjust(x) for c, x in zip(r[1:], w[1:]))]) for r in rows
    ]
    lines.insert(1, "  ".join("-" * x for x in w))
    lines.insert(len(lines) - 1, "  ".join("-" * x for x in w))
    failed = [c for c in cases if not c.passed]
    if failed:
        lines += ["", f"{len(failed)} failed:"]
        lines += [f"  [{c.category}] {c.name}: {c.detail}" for c in failed]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", default=",".join(CATEGORIES), help="comma-separated categories")
    ap.add_argument("--kills", type=int, default=27, help="kill points over `pile build`")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill points and damage")
    ap.add_argument("--big-line", type=int, default=2**30, help="bytes of the long-line case")
    ap.add_argument("--work", default=None, help="scratch directory (default: a temporary one)")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write every case as JSON")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each case as it ends")
    a = ap.parse_args(argv)
    only = tuple(x.strip() for x in a.only.split(",") if x.strip())
    bad = [x for x in only if x not in CATEGORIES]
    if bad:
        ap.error(f"unknown categories {bad}; allowed: {', '.join(CATEGORIES)}")

    def show(c: Case) -> None:
        if a.verbose:
            mark = "ok  " if c.passed else "FAIL"
            print(f"{mark} [{c.category}] {c.name} ({c.seconds:.1f}s): {c.detail}", flush=True)

    t = time.perf_counter()
    with contextlib.ExitStack() as stack:
        work = Path(a.work) if a.work else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        cases = run_suite(work, only, a.kills, a.seed, a.big_line, show)
    print(table(cases))
    print(f"\n{len(cases)} cases in {time.perf_counter() - t:.0f} s (seed {a.seed})")
    if a.json:
        Path(a.json).write_text(json.dumps([asdict(c) for c in cases], indent=1))
    bad_total = sum(not c.passed for c in cases) + sum(c.lost + c.undetected for c in cases)
    return 0 if bad_total == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
