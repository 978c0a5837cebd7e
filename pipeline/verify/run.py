"""`verify_paths`: hash every listed file (threads), then dispatch the structure checks.

Hashing streams each file in reads of up to 8 MiB (OpenSSL sha256 via hashlib, which releases the
GIL) and runs files in parallel threads, small files batched per task. `quick=True` checks sizes
and structure only. Listed files outside their list's (or manifest's) directory, or `root`, are
refused unless `allow_outside_root`; files that are not regular (FIFOs, devices) are never opened.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.io import sha256_file
from pipeline.manifest import MANIFEST_FORMAT
from pipeline.verify.directory import collect, covered_by, extra_files, unlisted
from pipeline.verify.lists import missing_hints
from pipeline.verify.report import Entry, Problem, VerifyReport, size_message
from pipeline.verify.structure import counts_check, cross_checks, structure

BATCH_BYTES = 4 << 20  # files hashed by one thread-pool task: at least this many bytes ...
BATCH_FILES = 256  # ... or this many files (small files hashed one per task are slower)


def _confine(e: Entry, allow_outside_root: bool) -> None:
    """Refuse (never read) a listed file outside the directory its list or manifest is
    relative to: a crafted list naming `../../etc/passwd` must not make verify read it."""
    if allow_outside_root or e.base is None:
        return
    if os.path.isabs(e.name):
        e.refused = "an absolute path"
        return
    try:
        e.path.resolve().relative_to(e.base.resolve())
    except ValueError:
        e.refused = f"outside {e.base}"
    except (OSError, RuntimeError):  # a symlink loop
        e.refused = "its path cannot be resolved"


def _hash_entry(e: Entry, quick: bool) -> Entry:
    if e.refused:
        return e
    try:
        st = e.path.stat()
    except OSError:
        e.actual_bytes = None
        return e
    if not stat.S_ISREG(st.st_mode):  # a FIFO or /dev/zero would hang: never opened
        e.refused = "not a regular file"
        return e
    e.actual_bytes = st.st_size
    if quick or (e.bytes is not None and e.bytes != e.actual_bytes):
        return e
    try:
        e.actual_sha256 = sha256_file(e.path)
    except OSError:
        e.actual_sha256 = None
    return e


def _batches(entries: list[Entry]) -> list[list[Entry]]:
    """Entries grouped into thread-pool tasks of about BATCH_BYTES, largest files first.

    One task per small file made the threaded run slower than one thread: task hand-off and
    the GIL (hashlib keeps it for updates under 2 KiB) cost more than hashing a few kB. Sizes a
    checksum list does not give are taken with stat (one call per file, far cheaper than that).
    """

    def size(e: Entry) -> int:
        if e.bytes is not None:
            return e.bytes
        try:
            return e.path.stat().st_size
        except OSError:
            return 0

    sized = sorted(((size(e), i) for i, e in enumerate(entries)), reverse=True)
    batches: list[list[Entry]] = []
    cur: list[Entry] = []
    total = 0
    for n, i in sized:
        cur.append(entries[i])
        total += n
        if total >= BATCH_BYTES or len(cur) >= BATCH_FILES:
            batches.append(cur)
            cur, total = [], 0
    if cur:
        batches.append(cur)
    return batches


def _hash_all(
    entries: list[Entry], quick: bool, workers: int, progress: Callable[[Entry], None] | None
) -> None:
    """Stat and (unless quick) hash every entry, largest first, in `workers` threads."""
    if workers <= 1 or len(entries) <= 1:
        for e in sorted(entries, key=lambda e: -(e.bytes or 0)):
            _hash_entry(e, quick)
            if progress:
                progress(e)
        return
    with ThreadPoolExecutor(max_workers=workers) as ex:
        todo = [e for e in entries if not e.refused]
        for batch in ex.map(lambda b: [_hash_entry(e, quick) for e in b], _batches(todo)):
            for e in batch:
                if progress:
                    progress(e)


def _entry_problem(e: Entry, quick: bool) -> Problem | None:
    """What is wrong with a hashed entry: refused, missing, size, unreadable or sha256."""
    if e.refused:
        more = (
            " (pass --allow-outside-root to verify files outside it)"
            if e.refused.startswith(("an absolute", "outside"))
            else ""
        )
        return Problem(str(e.path), "refused", f"{e.refused}; not read{more}", e.source)
    if e.actual_bytes is None:
        return Problem(str(e.path), "missing", "file not found", e.source)
    if e.bytes is not None and e.bytes != e.actual_bytes:
        return Problem(str(e.path), "size", size_message(e.bytes, e.actual_bytes), e.source)
    if quick:
        return None
    if e.actual_sha256 is None:
        return Problem(str(e.path), "unreadable", "read error", e.source)
    if e.actual_sha256 != e.sha256:
        msg = f"sha256 {e.actual_sha256}, expected {e.sha256}"
        return Problem(str(e.path), "sha256", msg, e.source)
    return None


def verify_paths(
    paths: Sequence[str | os.PathLike],
    *,
    root: str | os.PathLike | None = None,
    quick: bool = False,
    workers: int | None = None,
    extras: bool = True,
    progress: Callable[[Entry], None] | None = None,
    allow_outside_root: bool = False,
) -> VerifyReport:
    """Verify every PATH; the report lists each missing, mismatching, malformed or extra file.

    Listed files outside their list's (or manifest's) directory, or `root`, are refused unless
    `allow_outside_root`; files that are not regular (FIFOs, devices) are never opened.
    """
    t0 = time.perf_counter()
    report = VerifyReport()
    collected = collect(paths, root)
    sources = collected.sources
    report.sources = sources
    report.problems += collected.problems
    entries = [e for s in sources for e in s.entries]
    for e in entries:
        _confine(e, allow_outside_root)
    # the throughput reported is of hashing only, not of start-up and the structure checks
    t_hash = time.perf_counter()
    _hash_all(entries, quick, workers or min(8, 2 * (os.cpu_count() or 1)), progress)
    report.hash_seconds = time.perf_counter() - t_hash
    for e in entries:
        report.files_checked += 1
        if not quick and not e.refused and e.actual_bytes is not None:
            if e.bytes is None or e.bytes == e.actual_bytes:
                report.bytes_hashed += e.actual_bytes
        problem = _entry_problem(e, quick)
        if problem is not None:
            report.problems.append(problem)
            e.ok = False
    # structure: each format's owner (structure.py), then the cross-checks between artifacts
    for s in sources:
        pr, warns = structure(s, quick)
        report.problems += pr
        report.warnings += warns
        report.problems += counts_check(s)
    pr, warns = cross_checks(sources, entries, quick)
    report.problems += pr
    report.warnings += warns
    manifests = [s for s in sources if s.kind == "manifest"]
    if extras and (manifests or collected.dirs):  # lists named as files have no extras to find
        covered = covered_by(collected)
        flagged = extra_files(manifests, covered)
        known = {Path(p.path).resolve() for p in flagged}
        flagged += [p for p in unlisted(collected, covered) if Path(p.path).resolve() not in known]
        # reported once above as the leftovers of an interrupted run
        flagged = [p for p in flagged if Path(p.path).resolve() not in collected.temporaries]
        report.problems += flagged
    report.hints += missing_hints(sources, root)
    for s in sources:
        if s.kind == "manifest" and b'"manifest_sha256"' not in s.path.read_bytes():
            report.warnings.append(
                f"{s.path}: written without a manifest_sha256 self-hash; its own bytes are "
                "not verified"
            )
    report.seconds = time.perf_counter() - t0
    return report


def is_manifest(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.lstrip()[:1] == b"{" and MANIFEST_FORMAT.encode() in head
