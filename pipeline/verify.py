"""`pile verify`: re-hash and structurally check artifacts against manifests or checksum lists.

Accepted sources (the format is sniffed from the content):

- a pile manifest (`*.manifest.json` / `manifest.json`): every listed file's size and sha256, the
  manifest's own self-hash (`manifest_sha256`), structure checks by role, cross-checks of its counts
  with the data, and extra files (files next to it that look like artifacts of its prefix but are
  listed by no manifest or `*.shard_hashes.txt` in that directory);
- a directory: every `*manifest.json` and `*.shard_hashes.txt` (what `pile shard` writes) below it,
  recursively; any artifact-looking file below it (`.bin`, `.idx`, `.npy`, `.parquet`, `.json`)
  that none of them lists is reported as extra: it was not verified. `*.tmp` files and `.*.tmp`
  directories (what a killed run leaves) are reported together as one "interrupted" problem. Not
  artifacts: what `pile build` keeps beside its stage directories (`build.toml`, `_state/`,
  `logs/`, `quarantine/`: local paths and times), which no manifest lists (the report has its own,
  `report.manifest.json`), and the files a stage leaves unlisted on purpose
  (`UNLISTED_BY_KIND`);
- a `sha256sum` list (`<hash>  <file>` or `<hash> *<file>`, like the Pile's SHA256SUMS.txt);
- Pythia's list (`<file> <hash>`, utils/shard_hashes.txt).

List entries are resolved relative to the list's directory, or to `root` when given. Hashing streams
each file in reads of up to 8 MiB (OpenSSL sha256 via hashlib, which releases the GIL) and runs
files in parallel threads, small files batched per task. `quick=True` checks sizes and structure
only.

Stale checks (`pipeline.order.checks.MANIFEST_CHECKS[kind]`): index maps whose recorded dataset
`.idx` (bytes, sha256; quick: head/tail hash) differs from the `.idx` next to them, and preshuffled
data whose recorded order fingerprint differs from the index maps it names or from its dataset's
`.idx` now. Each file is hashed at most once.

Structure checks (`check_index`, `check_bin`, ...): `.idx` header and size (pipeline.shards.mmidx),
sizes > 0, pointers = itemsize x exclusive cumsum(sizes), doc_idx starts at 0, is non-decreasing
and ends at N; `.bin` size = tokens x itemsize; sidecar rows = items (and, when hashing, its token
column = sizes); index maps via `pipeline.order.checks.CHECKS[role]`; byte shards `-i-of-last` all
present and, with the `.idx` listed beside them, adding up to tokens x itemsize.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, InputError, IntegrityError
from pipeline.io import sha256_file
from pipeline.manifest import MANIFEST_FORMAT, check_self_hash, read_manifest

log = logging.getLogger(__name__)

CHUNK = 1 << 24  # array elements per step of the structure checks (bounded memory at Pile scale)
SHA256SUM_LINE = re.compile(r"^\\?([0-9a-fA-F]{64}) [ *](.+)$")
PYTHIA_LINE = re.compile(r"^(.+?)\s+([0-9a-fA-F]{64})$")
SHARD_NAME = re.compile(r"^(?P<name>.+)-(?P<i>\d{5})-of-(?P<last>\d{5})\.bin$")
ARTIFACT_SUFFIXES = (".bin", ".idx", ".npy", ".parquet", ".tmp")  # unprefixed manifests
DIR_ARTIFACT_SUFFIXES = ARTIFACT_SUFFIXES + (".json",)  # scan of a directory argument
SOURCE_GLOBS = ("*manifest.json", "*.shard_hashes.txt")  # what a directory is verified against
BUILD_MARKER = "build.toml"
# Beside its stage directories `pile build` keeps files that name local paths or change from run to
# run, so no manifest lists them (README "Output layout"): they are not artifacts.
BUILD_NOT_ARTIFACTS = frozenset({"build.toml", "_state", "logs", "quarantine"})


# task work directories (`.PREFIX.tokenize.FP.tmp`, dedup's `.signatures.FP.tmp`): a killed run's
# finished tasks, reused by its rerun (pipeline/tokenize/stage.py, pipeline/dedup/stage.py)
def _is_task_work(name: str) -> bool:
    return name.startswith(".") and (".tokenize." in name or name.startswith(".signatures."))


# Files and directories a stage writes next to its manifest without listing them, by manifest kind:
# dedup's wall-clock timings.json and its keep_intermediate buckets/ and edges/.
UNLISTED_BY_KIND = {"dedup": frozenset({"timings.json", "buckets", "edges"})}
# `<name>.tmp` is pile's temporary only for names pile writes (a user's notes.tmp is not)
TMP_OF = (".bin", ".idx", ".npy", ".parquet", ".json", ".jsonl", ".html", ".png", ".toml", ".txt")
DEDUP_WORK_DIRS = frozenset({"buckets", "edges", "exact"})  # dedup's temporary folders
INDEX_MAP_ROLES = ("doc_idx", "sample_idx", "shuffle_idx")
RATE_MIN_BYTES = 256 << 20  # hashing throughput is printed from this many bytes on
BATCH_BYTES = 4 << 20  # files hashed by one thread-pool task: at least this many bytes ...
BATCH_FILES = 256  # ... or this many files (small files hashed one per task are slower)


@dataclass(frozen=True)
class Problem:
    path: str  # the file the problem is about
    kind: str  # missing | size | sha256 | structure | stale | extra | manifest | unreadable |
    # interrupted
    message: str
    source: str = ""  # the manifest or list that listed it

    def __str__(self) -> str:
        where = "next to" if self.kind == "extra" else "listed in"
        src = f" ({where} {self.source})" if self.source and self.source != self.path else ""
        return f"{self.kind.upper():9s} {self.path}: {self.message}{src}"


@dataclass
class Entry:
    path: Path
    name: str
    source: str
    sha256: str | None = None
    bytes: int | None = None
    role: str | None = None
    actual_sha256: str | None = None
    actual_bytes: int | None = None
    ok: bool = True
    base: Path | None = None  # the directory its name is relative to (and confined to)
    refused: str | None = None  # why it was not read (outside the root, not a regular file)


@dataclass
class Source:
    path: Path
    kind: str  # manifest | sha256sum | pythia
    entries: list[Entry] = field(default_factory=list)
    manifest: dict[str, Any] | None = None


@dataclass
class VerifyReport:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)  # how to fix what the problems point at
    sources: list[Source] = field(default_factory=list)
    files_checked: int = 0
    bytes_hashed: int = 0
    seconds: float = 0.0  # the whole verify
    hash_seconds: float = 0.0  # reading and hashing the files only

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        head = f"{self.files_checked} file(s) from {len(self.sources)} source(s)"
        if self.bytes_hashed:
            # a rate only for hashing time and enough bytes to mean something: on a few MB it
            # would measure file opens, not hashing
            rate = self.bytes_hashed / self.hash_seconds / 1e6 if self.hash_seconds > 0 else 0.0
            shown = f" ({rate:,.0f} MB/s)" if self.bytes_hashed >= RATE_MIN_BYTES else ""
            head += f", {self.bytes_hashed / 1e6:,.1f} MB hashed in {self.hash_seconds:.2f}s{shown}"
        head += f", {self.seconds:.2f}s in all"
        if self.ok:
            return head + ": all OK"
        kinds: dict[str, int] = {}
        for p in self.problems:
            kinds[p.kind] = kinds.get(p.kind, 0) + 1
        return head + ": " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))


# ----------------------------------------------------------------------------------------------
# parsing sources


def _sniff_and_load(path: Path, root: Path | None) -> tuple[list[Source], list[Problem]]:
    try:
        if not path.is_file():  # a FIFO or device named as a list would hang the read
            return [], [Problem(str(path), "refused", "not a regular file; not read")]
        raw = path.read_bytes()
    except OSError as e:
        return [], [Problem(str(path), "missing", f"cannot read it ({e.strerror})")]
    head = raw.lstrip()[:1]
    if head == b"{" or path.name.endswith(".json"):
        return _load_manifest(path, raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path}: neither a JSON manifest nor a UTF-8 checksum list (bad byte at {e.start}); "
            "pass a *.manifest.json, a directory, a sha256sum list or Pythia's <file> <sha256> list."
        ) from e
    return [_load_list(path, text, root)], []


def _load_manifest(path: Path, raw: bytes) -> tuple[list[Source], list[Problem]]:
    problems: list[Problem] = []
    try:
        doc = read_manifest(path)
    except IntegrityError as e:
        return [], [Problem(str(path), "manifest", str(e).replace(f"{path}: ", ""))]
    self_problem = check_self_hash(raw)
    if self_problem is None and "manifest_sha256" not in doc:
        # every manifest pile writes carries it: a damaged key (a flipped bit in its name) or a
        # hand edit removed it, and nothing else then vouches for the manifest's own bytes
        self_problem = (
            "no manifest_sha256 (every pile manifest has one): the manifest was edited or damaged"
        )
    if self_problem:
        problems.append(Problem(str(path), "manifest", self_problem))
    src = Source(path=path, kind="manifest", manifest=doc)
    base = path.parent
    for f in doc.get("files", []):
        src.entries.append(
            Entry(
                path=base / f["name"],
                name=f["name"],
                source=str(path),
                sha256=str(f["sha256"]).lower(),
                bytes=int(f["bytes"]),
                role=f.get("role"),
                base=base,
            )
        )
    return [src], problems


def _load_list(path: Path, text: str, root: Path | None) -> Source:
    base = root if root is not None else path.parent
    kinds = set()
    src = Source(path=path, kind="sha256sum")
    for lineno, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = SHA256SUM_LINE.match(s)
        if m:
            digest, name = m.group(1), m.group(2)
            kinds.add("sha256sum")
        else:
            m = PYTHIA_LINE.match(s)
            if not m:
                raise InputError(
                    f"{path}:{lineno}: {s[:80]!r} is neither '<sha256>  <file>' (sha256sum) nor "
                    "'<file> <sha256>' (Pythia); fix the line or pass a manifest instead."
                )
            name, digest = m.group(1), m.group(2)
            kinds.add("pythia")
        role = None
        if name.endswith(".idx"):
            role = "idx"
        elif SHARD_NAME.match(os.path.basename(name)):
            role = "bin-shard"
        elif name.endswith(".bin"):
            role = "bin"
        src.entries.append(
            Entry(
                path=base / name,
                name=name,
                source=str(path),
                sha256=digest.lower(),
                role=role,
                base=base,
            )
        )
    if not src.entries:
        raise InputError(f"{path}: no checksum lines found; it is empty or not a checksum list.")
    src.kind = "+".join(sorted(kinds))
    return src


@dataclass
class _Collected:
    sources: list[Source] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)  # directory arguments, scanned for extras
    source_files: set[Path] = field(default_factory=set)  # resolved, loadable or not
    temporaries: set[Path] = field(default_factory=set)  # resolved `*.tmp` of interrupted runs


def _temporaries(d: Path) -> list[Path]:
    """`*.tmp` files and `.*.tmp` directories below `d`: what an interrupted run leaves behind.

    Every stage writes `<name>.tmp` then renames it (pipeline.io), and tokenize and dedup keep
    their finished tasks in a hidden `.{prefix}.tokenize.{fp}.tmp/` / `.signatures.{fp}.tmp/`
    (reused by the rerun); their presence means a run was killed before it finished.
    """
    found: list[Path] = []
    for here, subdirs, files in os.walk(d):
        r = Path(here)
        tmp_dirs = [x for x in subdirs if x.endswith(".tmp")]
        found += [r / x for x in tmp_dirs]
        # not into temp dirs (their content is one leftover) nor other hidden directories
        subdirs[:] = sorted(x for x in subdirs if not x.startswith(".") and x not in tmp_dirs)
        found += [r / f for f in files if f.endswith(".tmp") and f[:-4].endswith(TMP_OF)]
    return sorted(found)


def _live_writer(d: Path) -> str | None:
    """Who is writing in `d` now (a live run's `.lock` in, above or below it), else None: its
    `*.tmp` files are work in progress, not leftovers (pipeline.lock)."""
    from pipeline.lock import _OWN, LOCK_NAME, lock_holder

    candidates = [a / LOCK_NAME for a in [d.resolve(), *d.resolve().parents]]
    candidates += sorted(d.rglob(LOCK_NAME))
    for lock in candidates:
        if lock.parent.resolve() in _OWN:
            continue  # this process's own (the final verify pass of `pile build`)
        holder = lock_holder(lock)
        if holder:
            return f"{holder}, lock {lock}"
    return None


def _progress_line(d: Path) -> str:
    """What a running build has finished, from its completion records (`_state/` in `d` or the
    nearest directory above it that has one): 'finished: dedup, tokenize-standard; running:
    tokenize-deduped'."""
    base = next((a for a in [d.resolve(), *d.resolve().parents] if (a / "_state").is_dir()), None)
    if base is None:
        return "no stage of it has finished yet"
    done, running = [], []
    for rec_path in sorted((base / "_state").glob("*.json")):
        try:
            rec = json.loads(rec_path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict):
            status = rec.get("status", "complete")
            (done if status == "complete" else running).append(rec_path.stem)
    line = f"finished: {', '.join(done) if done else 'nothing yet'}"
    return line + (f"; running: {', '.join(running)}" if running else "")


def _unfinished_stages(d: Path) -> list[str]:
    """Stages of the build in `d` (its `_state/` records) whose record is still *running*: a run
    killed or failed there, so what `d` holds is not a finished build even if every manifest that
    exists checks out."""
    names = []
    for rec_path in sorted((d / "_state").glob("*.json")):
        try:
            rec = json.loads(rec_path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("status", "complete") != "complete":
            names.append(rec_path.stem)
    # the report is every build's last stage: a build that stopped before it (refused or failed
    # between stages) has only complete records, and is still not finished
    if (d / BUILD_MARKER).is_file() and (d / "_state").is_dir():
        if not (d / "_state" / "report.json").is_file():
            names.append("report (and any stage before it that had not started)")
    return names


def _sources_below(d: Path) -> list[Path]:
    """Every manifest and shard hash list below `d`, skipping hidden files and directories."""
    found: set[Path] = set()
    for pattern in SOURCE_GLOBS:
        for q in d.rglob(pattern):
            # hidden relative to d only: d itself may sit below a hidden directory
            if q.is_file() and not any(x.startswith(".") for x in q.relative_to(d).parts):
                found.add(q)
    return sorted(found)


def _collect(paths: Sequence[str | os.PathLike], root: str | os.PathLike | None) -> _Collected:
    out = _Collected()
    rootp = Path(root) if root is not None else None
    if rootp is not None and not rootp.is_dir():
        what = "is not a directory" if rootp.exists() else "does not exist"
        raise ConfigError(
            f"--root {rootp}: the directory {what}; pass the directory that holds the files the "
            "checksum list names."
        )
    for p in paths:
        p = Path(p)
        if p.is_dir():
            live = _live_writer(p)
            if live:
                # between stages a live build's directory looks complete and mid-stage it is
                # full of work files: neither is worth checking file by file
                out.problems.append(
                    Problem(
                        str(p),
                        "in-progress",
                        f"a run is writing here now ({live}); {_progress_line(p)}. Verify again "
                        "when it has finished",
                    )
                )
                continue
            unfinished = _unfinished_stages(p)
            if unfinished:
                out.problems.append(
                    Problem(
                        str(p),
                        "interrupted",
                        f"stage(s) {', '.join(unfinished)} of this build did not finish (the run "
                        "was killed or failed): its outputs are incomplete; rerun `pile build "
                        f"--config {p / BUILD_MARKER}` to finish it",
                    )
                )
            found = _sources_below(p)
            tmps = _temporaries(p)
            if tmps:
                out.temporaries.update(t.resolve() for t in tmps)
                names = ", ".join(str(t) for t in tmps[:10]) + (", ..." if len(tmps) > 10 else "")
                msg = (
                    f"{len(tmps)} temporary file(s) of an interrupted run: {names}; rerun the "
                    "command that writes them (it replaces them; delete them if you abandon "
                    "that run)"
                )
                work = [t for t in tmps if t.is_dir() and _is_task_work(t.name)]
                if work:
                    msg += (
                        f"; {len(work)} of them hold the tasks that run finished (tokenize "
                        "partials, dedup signatures), which the rerun reuses"
                    )
                out.problems.append(Problem(str(p), "interrupted", msg))
            if not found and not tmps:
                raise InputError(
                    f"{p}: directory holds no *manifest.json or *.shard_hashes.txt, so nothing in "
                    "it can be verified; pass a manifest, a checksum list (with --root DIR if its "
                    "files are elsewhere), or the output directory of a pile stage."
                )
            out.dirs.append(p)
        elif not p.exists():
            raise InputError(
                f"{p}: no such file or directory; pass a manifest, a directory or a checksum list."
            )
        else:
            found = [p]
        for q in found:
            # --root is where an explicitly given checksum list's files are; a list found
            # inside a directory names files next to itself
            s, pr = _sniff_and_load(q, rootp if q == p else None)
            out.sources += s
            out.problems += pr
            out.source_files.add(q.resolve())
    return out


def collect_sources(
    paths: Sequence[str | os.PathLike], root: str | os.PathLike | None = None
) -> tuple[list[Source], list[Problem]]:
    """Parse every PATH (manifest, checksum list, or directory of them)."""
    c = _collect(paths, root)
    return c.sources, c.problems


# ----------------------------------------------------------------------------------------------
# structure checks


def check_index(idx_path: str | os.PathLike, one_doc_per_item: bool = False) -> list[str]:
    """Problems of an MMIDIDX `.idx`: header, sizes > 0, pointers, doc_idx (empty list = fine).

    doc_idx must start at 0, never decrease, and end at N, except that [0] alone is accepted
    (Pythia's pre-shuffled `document.idx`: its builder never ended a document). With
    `one_doc_per_item` (a token dataset) it must be exactly 0, 1, ..., N.
    """
    import numpy as np  # here, not at the top: verifying a checksum list needs no numpy

    from pipeline.shards.mmidx import MMIDXIndex

    try:
        idx = MMIDXIndex(idx_path)
    except IntegrityError as e:
        return [str(e)]
    problems = []
    n = len(idx)
    item = idx.dtype.itemsize
    expected = 0  # running pointer, Python int (no overflow)
    for s in range(0, n, CHUNK):
        sz = np.asarray(idx.sizes[s : s + CHUNK], dtype=np.int64)
        if sz.size and int(sz.min()) <= 0:
            j = s + int(np.argmax(sz <= 0))
            problems.append(f"{idx_path}: item {j} has size {int(idx.sizes[j])}; sizes must be > 0")
            break
        ptr = np.asarray(idx.pointers[s : s + CHUNK], dtype=np.int64)
        want = np.empty_like(sz)
        want[0] = expected
        if sz.size > 1:
            np.cumsum(sz[:-1] * item, out=want[1:])
            want[1:] += expected
        bad = np.flatnonzero(ptr != want)
        if bad.size:
            j = s + int(bad[0])
            problems.append(
                f"{idx_path}: pointer of item {j} is {int(idx.pointers[j])}, expected "
                f"{int(want[bad[0]])} (= {item} x tokens before it)"
            )
            break
        expected += int(sz.sum()) * item
    d = idx.doc_idx
    if d.size == 0:
        problems.append(f"{idx_path}: doc_idx is empty (needs at least [0])")
    else:
        if int(d[0]) != 0:
            problems.append(f"{idx_path}: doc_idx starts at {int(d[0])}, expected 0")
        # [0] alone is what a builder that never marks document ends writes (EleutherAI's
        # pre-shuffled document.idx); otherwise the last document ends at N.
        if one_doc_per_item and d.size != n + 1:
            problems.append(
                f"{idx_path}: doc_idx has {d.size} entries; a token dataset with one item per "
                f"document needs N + 1 = {n + 1} (0, 1, ..., N)"
            )
        if int(d[-1]) != n and not (d.size == 1 and n > 0 and not one_doc_per_item):
            problems.append(f"{idx_path}: doc_idx ends at {int(d[-1])}, expected N = {n}")
        prev = None
        for s in range(0, d.size, CHUNK):
            c = np.asarray(d[s : s + CHUNK + 1], dtype=np.int64)
            step = np.diff(c)
            bad = step <= 0 if one_doc_per_item else step < 0
            if c.size > 1 and bool(np.any(bad)):
                j = s + int(np.argmax(bad)) + 1
                what = "does not increase" if one_doc_per_item else "decreases"
                problems.append(f"{idx_path}: doc_idx {what} at position {j}")
                break
            if prev is not None and c.size and int(c[0]) < prev:
                problems.append(f"{idx_path}: doc_idx decreases at position {s}")
                break
            prev = int(c[-1]) if c.size else prev
    return problems


def index_tokens(idx_path: str | os.PathLike) -> tuple[int, int]:
    """(number of items, number of tokens) of a valid `.idx`, summed in int64 chunks."""
    import numpy as np

    from pipeline.shards.mmidx import MMIDXIndex

    idx = MMIDXIndex(idx_path)
    total = 0
    for s in range(0, len(idx), CHUNK):
        total += int(np.asarray(idx.sizes[s : s + CHUNK], dtype=np.int64).sum())
    return len(idx), total


def _off_by(found: int, expected: int) -> str:
    # which way it is off: a longer file is not truncated, it holds bytes that do not belong
    diff = found - expected
    return f"{diff} bytes too many" if diff > 0 else f"{-diff} bytes too few, truncated"


def check_bin(bin_path: str | os.PathLike, idx_path: str | os.PathLike) -> list[str]:
    """`.bin` size must be tokens x itemsize of its `.idx`."""
    from pipeline.shards.mmidx import MMIDXIndex

    try:
        idx = MMIDXIndex(idx_path)
        _, tokens = index_tokens(idx_path)
    except IntegrityError as e:
        return [f"{bin_path}: cannot check against {idx_path}: {e}"]
    want = tokens * idx.dtype.itemsize
    have = Path(bin_path).stat().st_size
    if have != want:
        return [
            f"{bin_path}: {have} bytes, but {idx_path} describes {tokens} tokens x "
            f"{idx.dtype.itemsize} bytes = {want} ({_off_by(have, want)})"
        ]
    return []


def check_sidecar(
    path: str | os.PathLike, idx_path: str | os.PathLike | None, full: bool
) -> list[str]:
    """Sidecar rows = items of the `.idx`; with `full`, its tokens column equals the sizes."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.shards.mmidx import MMIDXIndex

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        return [f"{path}: not a readable parquet sidecar ({e})"]
    if idx_path is None or not Path(idx_path).exists():
        return []
    try:
        idx = MMIDXIndex(idx_path)
    except IntegrityError:
        return []  # reported for the .idx itself
    rows = pf.metadata.num_rows
    if rows != len(idx):
        return [f"{path}: {rows} rows but {idx_path} has {len(idx)} items"]
    if full:
        pos = 0
        try:
            for batch in pf.iter_batches(batch_size=1 << 20, columns=["tokens"]):
                col = batch.column(0).to_numpy(zero_copy_only=False)
                want = np.asarray(idx.sizes[pos : pos + col.size])
                bad = np.flatnonzero(col != want)
                if bad.size:
                    j = pos + int(bad[0])
                    return [
                        f"{path}: row {j} says {int(col[bad[0]])} tokens, {idx_path} item {j} "
                        f"has {int(idx.sizes[j])}"
                    ]
                pos += col.size
        except (pa.ArrowInvalid, OSError, KeyError) as e:
            return [f"{path}: sidecar cannot be read ({e})"]
    return []


def check_npy(path: Path) -> list[str]:
    """A `.npy` that no specific check covers must at least be a readable array."""
    import numpy as np

    try:
        np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        return [f"{path}: not a readable .npy array ({e})"]
    return []


def check_index_map(role: str, path: Path) -> tuple[list[str], str | None]:
    """(problems, warning) of an index map via pipeline.order.checks (imported lazily)."""
    from pipeline.order.checks import CHECKS

    fn = CHECKS.get(role)
    if fn is None:
        return [], None
    return list(fn(path)), None


# ----------------------------------------------------------------------------------------------
# verification


def _size_message(expected: int, found: int) -> str:
    return f"size differs: expected {expected} bytes, found {found} ({_off_by(found, expected)})"


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


def _data_pair(name: str, suffix: str) -> str:
    # string operations, not Path: this runs once per listed file (lists of many small files)
    stem, ext = os.path.splitext(name)
    return stem + suffix if ext else name + suffix


def _structure(src: Source, quick: bool) -> tuple[list[Problem], list[str]]:
    problems: list[Problem] = []
    warnings: list[str] = []
    by_name = {e.name: e for e in src.entries}
    present = {e.name for e in src.entries if e.actual_bytes is not None}
    token_dataset = (src.manifest or {}).get("kind") == "token-dataset"

    def add(e: Entry, msgs: Iterable[str]) -> None:
        for m in msgs:
            problems.append(
                Problem(str(e.path), "structure", m.replace(f"{e.path}: ", ""), e.source)
            )

    for e in src.entries:
        if e.actual_bytes is None:
            continue
        role = e.role
        if role == "idx":
            add(e, check_index(e.path, one_doc_per_item=token_dataset))
        elif role == "bin":
            idx_name = _data_pair(e.name, ".idx")
            idx_path = e.path.with_name(os.path.basename(idx_name))
            if idx_name in by_name and idx_name in present or idx_path.exists():
                add(e, check_bin(e.path, idx_path))
        elif role == "sidecar" and e.name.endswith(".parquet"):
            stem = e.name[: -len(".docs.parquet")] if e.name.endswith(".docs.parquet") else None
            idx_path = e.path.with_name(Path(stem).name + ".idx") if stem else None
            add(e, check_sidecar(e.path, idx_path, full=not quick))
        elif e.name.endswith(".npy") and role not in INDEX_MAP_ROLES:
            add(e, check_npy(e.path))
        elif role in INDEX_MAP_ROLES:
            msgs, warn = check_index_map(role, e.path)
            add(e, msgs)
            if warn:
                warnings.append(warn)
    # byte shards: every index 0..last listed, and (with the .idx listed) sizes adding up
    groups: dict[tuple[str, str], list[tuple[int, int, Entry]]] = {}
    for e in src.entries:
        if e.role not in (None, "bin-shard"):
            continue
        m = SHARD_NAME.match(os.path.basename(e.name))
        if m:
            parent = str(Path(e.name).parent)
            groups.setdefault((parent, m.group("name")), []).append(
                (int(m.group("i")), int(m.group("last")), e)
            )
    for (parent, name), shards in sorted(groups.items()):
        lasts = {last for _, last, _ in shards}
        last = max(lasts)
        have = {i for i, _, _ in shards}
        missing = sorted(set(range(last + 1)) - have)
        first = shards[0][2]
        if len(lasts) > 1 or missing:
            problems.append(
                Problem(
                    str(src.path),
                    "structure",
                    f"shards of {name}: "
                    + (
                        f"indices {missing[:10]} of 0..{last} not listed"
                        if missing
                        else f"mixed -of- values {sorted(lasts)}"
                    ),
                    first.source,
                )
            )
            continue
        idx_name = str(Path(parent) / f"{name}.idx") if parent != "." else f"{name}.idx"
        idx_entry = by_name.get(idx_name)
        if idx_entry is None or idx_entry.actual_bytes is None:
            continue
        if any(e.actual_bytes is None for _, _, e in shards):
            continue
        try:
            _, tokens = index_tokens(idx_entry.path)
            from pipeline.shards.mmidx import MMIDXIndex

            itemsize = MMIDXIndex(idx_entry.path).dtype.itemsize
        except IntegrityError:
            continue
        total = sum(e.actual_bytes for _, _, e in shards)
        if total != tokens * itemsize:
            problems.append(
                Problem(
                    str(first.path.parent / name),
                    "structure",
                    f"the {last + 1} shards hold {total} bytes, but {idx_name} describes "
                    f"{tokens} tokens x {itemsize} = {tokens * itemsize} "
                    f"({_off_by(total, tokens * itemsize)})",
                    first.source,
                )
            )
    return problems, warnings


def _counts_check(src: Source) -> list[Problem]:
    """A token-dataset manifest's counts must agree with its .idx."""
    doc = src.manifest or {}
    if doc.get("kind") != "token-dataset":
        return []
    counts = doc.get("counts", {})
    idx = [e for e in src.entries if e.role == "idx" and e.actual_bytes is not None]
    if len(idx) != 1 or "documents" not in counts:
        return []
    try:
        n, tokens = index_tokens(idx[0].path)
    except IntegrityError:
        return []
    out = []
    if counts.get("documents") != n or counts.get("tokens") != tokens:
        out.append(
            Problem(
                str(src.path),
                "manifest",
                f"counts say {counts.get('documents')} documents / {counts.get('tokens')} tokens, "
                f"{idx[0].name} has {n} items / {tokens} tokens",
            )
        )
    return out


def _manifest_checks(
    sources: list[Source], entries: list[Entry], quick: bool
) -> tuple[list[Problem], list[str]]:
    """Cross-checks of a manifest with the dataset it was built from (index maps, preshuffled).

    Each file is hashed at most once: a file some source listed and verify hashed reuses that
    hash (the tokenize manifest next to index maps lists their `.idx`).
    """
    kinds = {(s.manifest or {}).get("kind") for s in sources}
    if not kinds & {"index-maps", "preshuffled", "inverse-maps", "ngram-index"}:
        return [], []  # nothing to cross-check: do not pay for importing the order stage
    from pipeline.order.checks import MANIFEST_CHECKS

    if kinds & {"inverse-maps", "ngram-index"}:  # pile exposure / find: checked by their owners
        from pipeline.exposure import inverse, textindex

        MANIFEST_CHECKS = {**MANIFEST_CHECKS, inverse.KIND: inverse.check,
                           textindex.KIND: textindex.check}  # fmt: skip

    known: dict[Path, str] = {}

    def sha256_of(path: Path) -> str:
        if not known:  # built on first use: most runs have no such manifest
            known.update(
                (e.path.resolve(), e.actual_sha256) for e in entries if e.actual_sha256 is not None
            )
            known[Path()] = ""  # marks it built even when nothing was hashed
        key = path.resolve()
        if key not in known:
            known[key] = sha256_file(path)
        return known[key]

    problems: list[Problem] = []
    warnings: list[str] = []
    for s in sources:
        fn = MANIFEST_CHECKS.get((s.manifest or {}).get("kind"))
        if fn is None:
            continue
        try:
            found, warns = fn(s.path, s.manifest, sha256_of, quick)
        except OSError as e:
            warnings.append(f"{s.path}: not checked against its dataset ({e})")
            continue
        problems += [Problem(path, "stale", msg) for path, msg in found]
        warnings += warns
    return problems, warnings


def _extras(manifests: list[Source], covered: frozenset[Path] = frozenset()) -> list[Problem]:
    """Files next to a manifest that look like its artifacts but no manifest or list there lists.

    `pile shard` writes its byte shards and their `*.shard_hashes.txt` next to the dataset and
    its manifest; the list (and `covered`, every file some verified source lists) counts too.
    """
    problems: list[Problem] = []
    by_dir: dict[Path, list[Source]] = {}
    for s in manifests:
        by_dir.setdefault(s.path.parent.resolve(), []).append(s)
    for d, srcs in sorted(by_dir.items()):
        listed: set[Path] = set()
        for h in sorted(d.glob("*.shard_hashes.txt")):
            try:
                lst = _load_list(h, h.read_text(encoding="utf-8"), None)
            except (OSError, UnicodeDecodeError, InputError):
                continue
            listed.add(h.resolve())
            listed.update(e.path.resolve() for e in lst.entries)
        all_manifests = sorted(d.glob("*manifest.json"))
        for m in all_manifests:
            listed.add(m.resolve())
            try:
                doc = json.loads(m.read_text(encoding="utf-8"))
                for f in doc.get("files", []):
                    listed.add((d / f["name"]).resolve())
            except (OSError, ValueError, TypeError, KeyError):
                continue
        scan_dirs = {d} | {p.parent for p in listed if p.parent != d and d in p.parents}
        for s in srcs:
            name = s.path.name
            prefix = name[: -len("manifest.json")].rstrip(".") if name != "manifest.json" else ""
            for sd in sorted(scan_dirs):
                try:
                    children = sorted(sd.iterdir())
                except OSError:
                    continue
                for c in children:
                    if not c.is_file() or c.name.startswith("."):
                        continue
                    if c.resolve() in listed or c.resolve() in covered:
                        continue
                    if sd == d and prefix:
                        if not (
                            c.name.startswith(prefix + "_")
                            or c.name.startswith(prefix + ".")
                            or c.name.startswith(prefix + "-")
                        ):
                            continue
                    elif not c.name.endswith(ARTIFACT_SUFFIXES):
                        continue
                    problems.append(
                        Problem(
                            str(c),
                            "extra",
                            "looks like an artifact of this dataset but no manifest lists it",
                            str(s.path),
                        )
                    )
    # one report per file even when several manifests share the directory
    seen: set[str] = set()
    unique = []
    for p in problems:
        if p.path not in seen:
            seen.add(p.path)
            unique.append(p)
    return unique


def _covered(c: _Collected) -> frozenset[Path]:
    """Every file a source lists, and the sources themselves (resolved)."""
    return frozenset(c.source_files) | {e.path.resolve() for s in c.sources for e in s.entries}


def _unlisted(c: _Collected, covered: frozenset[Path]) -> list[Problem]:
    """Artifact-looking files below the directory arguments that no source lists (unverified)."""
    unlisted_here: dict[Path, set[str]] = {}
    for s in c.sources:
        kind = (s.manifest or {}).get("kind")
        if kind in UNLISTED_BY_KIND:
            unlisted_here.setdefault(s.path.parent.resolve(), set()).update(UNLISTED_BY_KIND[kind])
    problems: list[Problem] = []
    seen: set[Path] = set()
    for d in c.dirs:
        for here, subdirs, files in os.walk(d):
            r = Path(here)
            skip = set(unlisted_here.get(r.resolve(), ()))
            if (r / BUILD_MARKER).is_file():
                skip |= BUILD_NOT_ARTIFACTS
            if "signatures" in subdirs:  # a dedup directory: its work folders are one problem each
                for w in sorted(DEDUP_WORK_DIRS & set(subdirs) - skip):
                    n = sum(len(fs) for _, _, fs in os.walk(r / w))
                    problems.append(
                        Problem(
                            str(r / w),
                            "interrupted",
                            f"dedup work folder ({n} file(s)) of an unfinished dedup run; rerun "
                            "the dedup stage (it replaces it), or delete it",
                        )
                    )
                    skip.add(w)
            subdirs[:] = sorted(x for x in subdirs if not x.startswith(".") and x not in skip)
            for f in sorted(files):
                if f.startswith(".") or f in skip or not f.endswith(DIR_ARTIFACT_SUFFIXES):
                    continue
                if f.endswith(".tmp"):  # pile's are reported as interrupted; others are not its
                    continue
                full = (r / f).resolve()
                if full in covered or full in seen:
                    continue
                seen.add(full)
                problems.append(
                    Problem(
                        str(r / f),
                        "extra",
                        f"no manifest or checksum list under {d} lists it, so it was not verified",
                    )
                )
    return problems


def _missing_hints(sources: list[Source], root: str | os.PathLike | None) -> list[str]:
    """A checksum list whose files are mostly missing is likely resolved against the wrong place."""
    hints = []
    for s in sources:
        if s.kind == "manifest" or not s.entries:
            continue
        missing = sum(e.actual_bytes is None and not e.refused for e in s.entries)
        if missing == 0 or 2 * missing < len(s.entries):
            continue
        base = Path(root) if root is not None else s.path.parent
        n = f"all {missing}" if missing == len(s.entries) else f"{missing} of the {len(s.entries)}"
        head = f"{n} files listed in {s.path} are not in {base}"
        if root is None:
            hints.append(
                f"{head} (the list's directory); if they are elsewhere, pass --root DIR naming "
                "the directory that holds them."
            )
        else:
            hints.append(f"{head} (--root); pass a --root DIR that holds them.")
    return hints


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
    collected = _collect(paths, root)
    sources = collected.sources
    report.sources = sources
    report.problems += collected.problems
    entries = [e for s in sources for e in s.entries]
    for e in entries:
        _confine(e, allow_outside_root)
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    # the throughput reported is of this loop only, not of start-up and the structure checks
    t_hash = time.perf_counter()
    if workers <= 1 or len(entries) <= 1:
        for e in sorted(entries, key=lambda e: -(e.bytes or 0)):
            _hash_entry(e, quick)
            if progress:
                progress(e)
    else:
        with ThreadPoolExecutor(max_workers=workers) as ex:
            todo = [e for e in entries if not e.refused]
            for batch in ex.map(lambda b: [_hash_entry(e, quick) for e in b], _batches(todo)):
                for e in batch:
                    if progress:
                        progress(e)
    report.hash_seconds = time.perf_counter() - t_hash
    for e in entries:
        report.files_checked += 1
        if e.refused:
            more = (
                " (pass --allow-outside-root to verify files outside it)"
                if e.refused.startswith(("an absolute", "outside"))
                else ""
            )
            report.problems.append(
                Problem(str(e.path), "refused", f"{e.refused}; not read{more}", e.source)
            )
            e.ok = False
            continue
        if e.actual_bytes is None:
            report.problems.append(Problem(str(e.path), "missing", "file not found", e.source))
            e.ok = False
            continue
        if e.bytes is not None and e.bytes != e.actual_bytes:
            report.problems.append(
                Problem(str(e.path), "size", _size_message(e.bytes, e.actual_bytes), e.source)
            )
            e.ok = False
            continue
        if quick:
            continue
        report.bytes_hashed += e.actual_bytes
        if e.actual_sha256 is None:
            report.problems.append(Problem(str(e.path), "unreadable", "read error", e.source))
            e.ok = False
        elif e.actual_sha256 != e.sha256:
            report.problems.append(
                Problem(
                    str(e.path),
                    "sha256",
                    f"sha256 {e.actual_sha256}, expected {e.sha256}",
                    e.source,
                )
            )
            e.ok = False
    for s in sources:
        pr, warns = _structure(s, quick)
        report.problems += pr
        report.warnings += warns
        report.problems += _counts_check(s)
    pr, warns = _manifest_checks(sources, entries, quick)
    report.problems += pr
    report.warnings += warns
    manifests = [s for s in sources if s.kind == "manifest"]
    if extras and (manifests or collected.dirs):  # lists named as files have no extras to find
        covered = _covered(collected)
        flagged = _extras(manifests, covered)
        known = {Path(p.path).resolve() for p in flagged}
        flagged += [p for p in _unlisted(collected, covered) if Path(p.path).resolve() not in known]
        # reported once above as the leftovers of an interrupted run
        flagged = [p for p in flagged if Path(p.path).resolve() not in collected.temporaries]
        report.problems += flagged
    report.hints += _missing_hints(sources, root)
    for s in sources:
        if s.kind == "manifest":
            raw = s.path.read_bytes()
            if b'"manifest_sha256"' not in raw:
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
