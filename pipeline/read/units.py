"""Work units smaller than a file: line ranges that are read without decompressing what precedes.

A unit is a run of whole lines of one input file, entered at a point where reading can start cold:
a byte offset of a plain `.jsonl` file, or the start of a zstd frame (frames decompress
independently). Document ids stay `docid.make(file_index, line)` of the original file, so ids,
dedup sets, provenance and token order do not depend on the unit size: `iter_unit` over the units
of a plan, in order, yields exactly the documents `iter_file` yields for the file (same ids, text,
meta, statistics; in skip mode the same quarantined lines, merged back with `merge_quarantine`).

How a file is split (`plan_units`), by kind:
  * `.jsonl` larger than `unit_bytes`: one sequential newline count (no parsing) finds the first
    line start after every `unit_bytes`; a unit is a byte range.
  * compressed files of more than `unit_bytes // RECHUNK_RATIO` bytes (smaller ones are one
    unit: likely one unit of text, not worth a counting pass):
    - multi-frame `.jsonl.zst` (pzstd, `zstd -B`, our own re-chunked files) are indexed in place:
      the frame headers are walked without decompressing (each block header gives the next
      one's offset), then every frame is decompressed once, one task per frame on `executor`, to
      count its lines; units are frame ranges. A frame that starts inside a line is entered past
      its first newline (that line belongs to the unit before).
    - single-frame `.jsonl.zst` (lm_dataformat writes one frame per file: the Pile's train files
      are single frames of tens of GB) and `.jsonl.gz` have no resumable point: the
      decoder state at a block boundary is the window plus the entropy tables later blocks may
      repeat, which libzstd does not expose (a block cannot be decoded alone, even with the
      window as a dictionary). With `cache_dir` they are re-chunked once: one sequential
      decompression, recompressed at level 3 into frames of ~`frame_bytes` of text cut at line
      ends, content checksum on (a damaged cache is detected), written atomically with its line
      index (compressed offset, text bytes, line count per frame) in `<key>.index.json` next to
      it, last; units are frame ranges of the cache, for any unit size. Without `cache_dir` they
      are one unit.
  * a file found damaged while planning (corrupt or truncated stream), a file that makes one unit,
    parquet and `datasets` inputs: one unit, read by `iter_file` itself, so every error and count
    is the whole-file reader's by construction. A file damaged after planning (same size) gives
    the whole-file reader's error, with the same absolute offsets and line, from the unit that
    meets the damage first (in skip mode that unit's rest is lost, the next units are read).

Measured with `python tools/bench_units.py --repeat 3` (2 single-frame files of 145 MB of text of
novels each, 104.6 MB compressed in all, 8 units per file, 2 workers; 2 cores shared with other
sessions at load average 5-9, so CPU seconds and ratios are the figures, wall seconds move):
  one sequential decompression + newline count of both files:     0.99 CPU s (2.8 s wall)
  plan with re-chunk, level 3, 1 worker (frames of 1/8 unit):       4.52 CPU s = 4.6x that; the
      cache is 1.004x the inputs' size (level 1: ~1.7x faster, +15% size; 4, 16 or 64 MiB frames:
      the same size). With a pool the frames are compressed in parallel and the sequential
      decompression (~1/5 of the work) is the floor; under this load 2 workers did not help.
  plan again (cache and index reused):                             0.02 s
  index the 2 re-chunked files in place (header walk + frame counts, 2 workers): 1.25 s wall
  read every document, per-file (2 tasks) / units (16) / today's tokenize line ranges (16):
      CPU s 1.46 / 1.39 (0.95x) / 6.54 (4.48x: each range parses its file's prefix)
      cores usable (sum / longest task) 2.0 / 12.4 (6.2x) / 9.0
Chosen: multi-frame files are indexed in place (one parallel decompression, no extra disk);
single-frame files are re-chunked into `cache_dir` (opt-in: it needs their compressed size again
on disk). Its one-time cost (~3x one full read of the file) is less than the extra cost of cutting
the file into 8 line ranges once (~3.5x), and every later plan, at any unit size, reuses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from pipeline import docid
from pipeline.errors import ConfigError, InputError
from pipeline.io import atomic_open, atomic_write_text, fsync_dir
from pipeline.read.config import ReadConfig
from pipeline.read.document import Document, InputFile
from pipeline.read.inputs import resolve_inputs
from pipeline.read.lines import (
    _DICT_ID_BYTES,
    _FCS_BYTES,
    _SKIPPABLE_MAGIC,
    _SKIPPABLE_MASK,
    _ZSTD_MAGIC,
    BUFFER_SIZE,
    StreamError,
    _PlainSource,
    _ZstdSource,
    byte_chunks,
    iter_lines,
)
from pipeline.read.stats import ReadStats

log = logging.getLogger(__name__)

PLAN_VERSION = 1
DEFAULT_UNIT_BYTES = 1 << 30  # ~1 GiB of text per unit
DEFAULT_FRAME_BYTES = 16 << 20  # text per frame of a re-chunked file
RECHUNK_LEVEL = 3  # lm_dataformat's level: +0.4% size vs one frame (level 1: +15%)
# a compressed file is re-chunked when it likely holds more than one unit of text (text
# compresses ~3-4x at level 3)
RECHUNK_RATIO = 4
SPLITTABLE = ("jsonl", "jsonl.zst", "jsonl.gz")


@dataclass(frozen=True)
class Unit:
    """Lines first_line .. first_line + lines - 1 of `file`.

    mode: "file" (the whole file, read by `iter_file`), "bytes" (a plain jsonl file entered at
    byte `start`) or "frames" (a zstd file, the input or its re-chunked cache `read_path`, entered
    at the frame starting at compressed byte `start`). `offset` is the decompressed byte offset
    at `start`; `skip` bytes of a line begun in the frame before are dropped first. `part` of
    `parts` is the unit's position among its file's units; the last one reads to the file's end.
    """

    file: InputFile
    part: int
    parts: int
    mode: str
    first_line: int
    lines: int | None  # None: to the end of the file (mode "file")
    read_path: str
    read_size: int
    read_mtime_ns: int
    start: int = 0
    offset: int = 0
    skip: int = 0
    text_bytes: int = 0  # decompressed bytes of its lines (a whole-file unit: the file's size)

    @property
    def last(self) -> bool:
        return self.part == self.parts - 1

    def id_range(self) -> tuple[int, int]:
        """Half-open doc-id range [lo, hi) of the unit's lines."""
        stop = None if self.lines is None or self.last else self.first_line + self.lines
        return docid.file_bounds(self.file.index, self.first_line, stop)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file_index": self.file.index,
            "part": self.part,
            "parts": self.parts,
            "mode": self.mode,
            "first_line": self.first_line,
            "lines": self.lines,
            "start": self.start,
            "offset": self.offset,
            "skip": self.skip,
            "text_bytes": self.text_bytes,
            "read_path": self.read_path,
            "read_size": self.read_size,
            "read_mtime_ns": self.read_mtime_ns,
        }


@dataclass(frozen=True)
class UnitPlan:
    """The units of every input, in file order then line order."""

    unit_bytes: int
    frame_bytes: int
    files: tuple[InputFile, ...]
    units: tuple[Unit, ...]

    def units_of(self, file_index: int) -> list[Unit]:
        return [u for u in self.units if u.file.index == file_index]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "unit_bytes": self.unit_bytes,
            "frame_bytes": self.frame_bytes,
            "files": [dataclasses.asdict(f) for f in self.files],
            "units": [u.to_dict() for u in self.units],
            "fingerprint": self.fingerprint,
        }

    @property
    def fingerprint(self) -> str:
        """sha256 of what decides the units (labels, line ranges, entry points), not of where
        the files or the cache are: the same inputs, unit and frame size give the same
        fingerprint (with the same libzstd: a cache's frame offsets are its output)."""
        body = {
            "version": PLAN_VERSION,
            "unit_bytes": self.unit_bytes,
            "frame_bytes": self.frame_bytes,
            "files": [[f.index, f.label, f.kind] for f in self.files],
            "units": [
                {k: v for k, v in u.to_dict().items() if k not in ("read_path", "read_mtime_ns")}
                for u in self.units
            ],
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def manifest_entry(self) -> dict[str, Any]:
        """What a stage's manifest records: the fingerprint and the line ranges, by input label
        (never a local path, so the same inputs elsewhere give the same bytes)."""
        return {
            "fingerprint": self.fingerprint,
            "unit_bytes": self.unit_bytes,
            "units": [
                [u.file.label, u.first_line, u.lines, u.mode, u.text_bytes] for u in self.units
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UnitPlan:
        if d.get("version") != PLAN_VERSION:
            raise ConfigError(
                f"unit plan version {d.get('version')!r} is not {PLAN_VERSION}; plan the units "
                "again (plan_units)."
            )
        try:
            files = tuple(InputFile(**f) for f in d["files"])
            by_index = {f.index: f for f in files}
            units = []
            for u in d["units"]:
                u = dict(u)
                units.append(Unit(file=by_index[u.pop("file_index")], **u))
            plan = cls(d["unit_bytes"], d["frame_bytes"], files, tuple(units))
        except (KeyError, TypeError, AttributeError) as e:
            raise ConfigError(
                f"unit plan is malformed ({type(e).__name__}: {e}); plan the units again."
            ) from None
        if "fingerprint" in d and d["fingerprint"] != plan.fingerprint:
            raise ConfigError(
                f"unit plan fingerprint {d['fingerprint'][:16]}... does not match its units "
                f"({plan.fingerprint[:16]}...): the plan file was edited or damaged; plan again."
            )
        return plan

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> UnitPlan:
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: not a readable unit plan ({e}); plan again.") from e
        return cls.from_dict(d)


# ---------------------------------------------------------------------------------------------
# zstd frames without decompressing


@dataclass(frozen=True)
class _Frame:
    start: int  # compressed offset
    size: int  # compressed bytes (header, blocks, checksum)


def zstd_frames(path: str) -> tuple[list[_Frame], bool]:
    """The frames of a zstd file from their headers alone (each block header gives the size to
    seek over), and whether the file ends cleanly (False: truncated, or not zstd after a frame)."""
    frames: list[_Frame] = []
    with open(path, "rb") as f:
        end = os.fstat(f.fileno()).st_size
        pos = 0
        while pos < end:
            f.seek(pos)
            head = f.read(14)
            if len(head) < 4:
                return frames, False
            m = int.from_bytes(head[:4], "little")
            if m & _SKIPPABLE_MASK == _SKIPPABLE_MAGIC:
                if len(head) < 8:
                    return frames, False
                pos += 8 + int.from_bytes(head[4:8], "little")
                continue
            if m != _ZSTD_MAGIC or len(head) < 5:
                return frames, False
            fhd = head[4]
            single = (fhd >> 5) & 1
            n = (0 if single else 1) + _DICT_ID_BYTES[fhd & 3]
            n += _FCS_BYTES[fhd >> 6] or (1 if single else 0)
            p = pos + 5 + n
            while True:
                f.seek(p)
                bh = f.read(3)
                if len(bh) < 3:
                    return frames, False
                h = int.from_bytes(bh, "little")
                p += 3 + (1 if (h >> 1) & 3 == 1 else h >> 3)
                if h & 1:
                    break
            p += 4 if (fhd >> 2) & 1 else 0
            if p > end:
                return frames, False
            frames.append(_Frame(pos, p - pos))
            pos = p
    return frames, True


@dataclass(frozen=True)
class _FrameCount:
    text: int  # decompressed bytes
    newlines: int
    first_nl: int  # offset of the first b"\n" in the frame, -1 if none
    ends_nl: bool
    error: str | None = None


class _Bounded:
    """The next `size` bytes of an open file, as a readable object."""

    def __init__(self, fh, size: int) -> None:
        self._fh = fh
        self._left = size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._fh.read(n)
        self._left -= len(data)
        return data


def _count_frame(task: tuple[str, int, int]) -> _FrameCount:
    """Decompress one frame (task: path, start, size) and count its lines: one planning task.
    Memory stays at a chunk whatever the frame's size or compression ratio."""
    path, start, size = task
    text = newlines = 0
    first_nl = -1
    last = b""
    with open(path, "rb") as fh:
        fh.seek(start)
        # the frame's bytes only (the stream reader goes on into the next frame otherwise)
        reader = zstandard.ZstdDecompressor().stream_reader(_Bounded(fh, size))
        try:
            while piece := reader.read(BUFFER_SIZE):
                if first_nl < 0:
                    j = piece.find(b"\n")
                    if j >= 0:
                        first_nl = text + j
                newlines += piece.count(b"\n")
                text += len(piece)
                last = piece[-1:]
        except zstandard.ZstdError as e:
            return _FrameCount(text, newlines, first_nl, False, str(e))
    return _FrameCount(text, newlines, first_nl, last == b"\n")


# ---------------------------------------------------------------------------------------------
# planning


def _identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _whole(f: InputFile) -> list[Unit]:
    size = mtime = 0
    if f.kind in SPLITTABLE and "://" not in f.path:
        size, mtime = _identity(f.path)
    return [Unit(f, 0, 1, "file", 1, None, f.path, size, mtime, text_bytes=size)]


def _group(
    f: InputFile,
    mode: str,
    read_path: str,
    entries: list[tuple[int, int, int, int, int]],
    total_lines: int,
    unit_bytes: int,
) -> list[Unit]:
    """Units from entry points (start, offset, skip, first_line, text bytes up to the next entry),
    cut after at least `unit_bytes` of text, only where a line starts."""
    size, mtime = _identity(read_path)
    cuts: list[tuple[int, int, int, int, int]] = []  # (start, offset, skip, first_line, text)
    acc = 0
    for start, offset, skip, first_line, text in entries:
        if not cuts or (
            acc >= unit_bytes and first_line > cuts[-1][3] and first_line <= total_lines
        ):
            if cuts:
                cuts[-1] = (*cuts[-1][:4], acc)
            cuts.append((start, offset, skip, first_line, 0))
            acc = 0
        acc += text
    cuts[-1] = (*cuts[-1][:4], acc)
    if len(cuts) == 1:
        return _whole(f)  # read by iter_file itself
    units = []
    for i, (start, offset, skip, first_line, text) in enumerate(cuts):
        stop = cuts[i + 1][3] if i + 1 < len(cuts) else total_lines + 1
        units.append(
            Unit(f, i, len(cuts), mode, first_line, stop - first_line, read_path, size, mtime,
                 start, offset, skip, text)
        )  # fmt: skip
    return units


def _plan_plain(f: InputFile, unit_bytes: int) -> list[Unit]:
    """Units of a plain jsonl file: the first line start at or after every `unit_bytes`, found
    by one sequential newline count (no parsing)."""
    starts: list[tuple[int, int]] = []  # (byte offset, line number)
    pos = newlines = want = 0
    last = b"\n"
    with open(f.path, "rb", buffering=0) as fh:
        while data := fh.read(BUFFER_SIZE):
            while True:
                if want <= pos and last == b"\n":
                    s = 0  # a line starts at this buffer's first byte
                else:
                    j = data.find(b"\n", max(want - pos - 1, 0))
                    if j < 0 or j + 1 == len(data):
                        break  # the next line starts in a later buffer
                    s = j + 1
                starts.append((pos + s, newlines + data.count(b"\n", 0, s) + 1))
                want = pos + s + unit_bytes
                if want - pos >= len(data):
                    break
            newlines += data.count(b"\n")
            last = data[-1:]
            pos += len(data)
    total = newlines + (1 if pos and last != b"\n" else 0)
    entries = [
        (start, start, 0, line, (starts[k + 1][0] if k + 1 < len(starts) else pos) - start)
        for k, (start, line) in enumerate(starts)
    ]
    return _group(f, "bytes", f.path, entries, total, unit_bytes)


def _plan_frames(
    f: InputFile, read_path: str, frames: list[_Frame], counts: list[_FrameCount], unit_bytes: int
) -> list[Unit]:
    entries = []
    offset = 0
    newlines = 0  # before the frame
    at_line_start = True
    for fr, c in zip(frames, counts):
        if at_line_start:
            entries.append((fr.start, offset, 0, newlines + 1, c.text))
        elif c.first_nl >= 0 and c.first_nl + 1 < c.text:
            # entered past the end of the line begun before (a frame that only ends that line
            # is no entry: the next line starts in a later frame)
            entries.append((fr.start, offset, c.first_nl + 1, newlines + 2, c.text))
        elif entries:
            entries[-1] = (*entries[-1][:4], entries[-1][4] + c.text)
        offset += c.text
        newlines += c.newlines
        if c.text:
            at_line_start = c.ends_nl
    total = newlines + (0 if at_line_start else 1)
    if not entries:
        entries = [(0, 0, 0, 1, offset)]
    return _group(f, "frames", read_path, entries, total, unit_bytes)


def _cache_key(f: InputFile, frame_bytes: int) -> str:
    size, mtime = _identity(f.path)
    ident = [PLAN_VERSION, os.path.realpath(f.path), size, mtime, frame_bytes, RECHUNK_LEVEL]
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:24]


def _frame_texts(f: InputFile, frame_bytes: int) -> Iterator[bytes]:
    """The decompressed text of `f` cut at the first line end after every `frame_bytes`."""
    parts: list[bytes] = []
    n = 0
    for chunk in byte_chunks(f.path, f.kind):
        while chunk:
            room = frame_bytes - n
            cut = chunk.find(b"\n", max(0, room - 1)) if room <= len(chunk) else -1
            if cut < 0:
                parts.append(chunk)
                n += len(chunk)
                break
            parts.append(chunk[: cut + 1])
            yield b"".join(parts)
            parts, n = [], 0
            chunk = chunk[cut + 1 :]
    if parts:
        yield b"".join(parts)


def _compress_frame(text: bytes) -> tuple[bytes, _FrameCount]:
    """One frame of a re-chunked file (level RECHUNK_LEVEL, content size and checksum in its
    header) and its line counts: one re-chunking task."""
    data = zstandard.ZstdCompressor(level=RECHUNK_LEVEL, write_checksum=True).compress(text)
    return data, _FrameCount(len(text), text.count(b"\n"), text.find(b"\n"), text[-1:] == b"\n")


def rechunk(
    f: InputFile,
    cache_dir: str | os.PathLike,
    frame_bytes: int = DEFAULT_FRAME_BYTES,
    executor=None,
):
    """Re-chunk a compressed jsonl input into `<cache_dir>/<key>.jsonl.zst`: frames of at least
    `frame_bytes` of text, each ending at a line end, content checksums on; returns (path,
    frames, counts), reusing a finished cache (its index is written last). None when the input is
    damaged (it is then read whole, with the whole-file reader's errors)."""
    cache = Path(cache_dir)
    key = _cache_key(f, frame_bytes)
    out = cache / f"{key}.jsonl.zst"
    index_path = cache / f"{key}.index.json"
    try:
        idx = json.loads(index_path.read_text(encoding="utf-8"))
        if out.stat().st_size == idx["size"]:
            frames = [_Frame(s, n) for s, n in idx["frames"]]
            return str(out), frames, [_FrameCount(*c) for c in idx["counts"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    frames: list[_Frame] = []
    counts: list[_FrameCount] = []
    texts = _frame_texts(f, frame_bytes)
    # decompression is sequential (here), the frames are compressed on the executor: its
    # results come back in order, so the bytes are the same for any worker count
    if executor is not None:
        compressed = executor.imap(_compress_frame, texts)
    else:
        compressed = map(_compress_frame, texts)
    try:
        with atomic_open(out, "wb") as w:
            pos = 0
            for data, count in compressed:
                w.write(data)
                frames.append(_Frame(pos, len(data)))
                counts.append(count)
                pos += len(data)
    except StreamError as e:
        log.warning("%s is damaged (%s): it is read whole, not in units", f.where, e.detail)
        return None
    idx = {
        "input": f.label,
        "size": out.stat().st_size,
        "frame_bytes": frame_bytes,
        "frames": [[fr.start, fr.size] for fr in frames],
        "counts": [dataclasses.astuple(c) for c in counts],
    }
    # the index is written last: a cache without it is unfinished and written again
    atomic_write_text(index_path, json.dumps(idx) + "\n")
    return str(out), frames, counts


def plan_units(
    files: Sequence[InputFile | str | os.PathLike],
    unit_bytes: int = DEFAULT_UNIT_BYTES,
    cache_dir: str | os.PathLike | None = None,
    *,
    frame_bytes: int = DEFAULT_FRAME_BYTES,
    executor=None,
) -> UnitPlan:
    """Split every input into units of about `unit_bytes` of text (see the module docstring).

    Deterministic: the same inputs, unit size and frame size give the same plan. `executor`
    (pipeline.engine) runs the per-frame line counts of multi-frame zstd files and the frame
    compression of re-chunking in parallel.
    `cache_dir` enables re-chunking single-frame zstd and gzip inputs."""
    if isinstance(unit_bytes, bool) or not isinstance(unit_bytes, int) or unit_bytes < 1:
        raise ConfigError(
            f"unit_bytes={unit_bytes!r}: must be a positive number of bytes of text "
            f"(default {DEFAULT_UNIT_BYTES}); pass --unit-size N."
        )
    if isinstance(frame_bytes, bool) or not isinstance(frame_bytes, int) or frame_bytes < 1:
        raise ConfigError(
            f"frame_bytes={frame_bytes!r}: must be a positive number of bytes "
            f"(default {DEFAULT_FRAME_BYTES})."
        )
    resolved = resolve_inputs(files)
    units: list[Unit] = []
    for f in resolved:
        units.extend(_plan_file(f, unit_bytes, cache_dir, frame_bytes, executor))
    return UnitPlan(unit_bytes, frame_bytes, tuple(resolved), tuple(units))


def _plan_file(f, unit_bytes, cache_dir, frame_bytes, executor) -> list[Unit]:
    if f.kind not in SPLITTABLE or "://" in f.path:
        # object-storage URLs are read whole (entering them at an offset is a ranged read, not
        # done here yet)
        return _whole(f)
    size = os.stat(f.path).st_size
    if f.kind == "jsonl":
        return _whole(f) if size <= unit_bytes else _plan_plain(f, unit_bytes)
    if size * RECHUNK_RATIO <= unit_bytes:
        return _whole(f)  # likely one unit of text: not worth a counting pass
    frames: list[_Frame] = []
    clean = False
    if f.kind == "jsonl.zst":
        frames, clean = zstd_frames(f.path)
    if clean and len(frames) > 1:
        tasks = [(f.path, fr.start, fr.size) for fr in frames]
        counts = (
            executor.map(_count_frame, tasks)
            if executor is not None
            else [_count_frame(t) for t in tasks]
        )
        bad = next((c.error for c in counts if c.error), None)
        if bad is None:
            return _plan_frames(f, f.path, frames, counts, unit_bytes)
        log.warning("%s is damaged (%s): it is read whole, not in units", f.where, bad)
        return _whole(f)
    if cache_dir is None:
        return _whole(f)
    got = rechunk(f, cache_dir, frame_bytes, executor)
    if got is None:
        return _whole(f)
    path, frames, counts = got
    return _plan_frames(f, path, frames, counts, unit_bytes)


# ---------------------------------------------------------------------------------------------
# reading


class _ZstdEntry(_ZstdSource):
    """The frames of `path` from compressed byte `start` (decompressed byte `offset`) on, with
    the whole-file reader's error messages and offsets; the first `skip` bytes are dropped."""

    def __init__(self, path: str, start: int, offset: int, skip: int) -> None:
        super().__init__(path)
        self._f.seek(start)
        self._start = start
        self.decoded = offset
        self._skip = skip

    def _units(self):
        for pos, data, what in super()._units():
            yield pos + self._start, data, what

    def chunks(self) -> Iterator[bytes]:
        skip = self._skip
        for piece in super().chunks():
            if skip:
                if len(piece) <= skip:
                    skip -= len(piece)
                    continue
                piece = piece[skip:]
                skip = 0
            yield piece


class _PlainEntry(_PlainSource):
    def __init__(self, path: str, start: int) -> None:
        super().__init__(path)
        self._f.seek(start)


def _check_identity(unit: Unit) -> None:
    try:
        size, mtime = _identity(unit.read_path)
    except OSError as e:
        raise InputError(
            f"{unit.read_path}: cannot read it ({e.strerror}); the unit plan names it for lines "
            f"{unit.first_line}.. of {unit.file.where}. Plan the units again."
        ) from e
    if (size, mtime) != (unit.read_size, unit.read_mtime_ns):
        raise InputError(
            f"{unit.read_path}: {size} bytes modified at {mtime} ns, but the unit plan recorded "
            f"{unit.read_size} bytes at {unit.read_mtime_ns} ns: the file changed since the units "
            "were planned. Plan the units again (plan_units)."
        )


def _take(lines: Iterator, n: int | None, unit: Unit) -> Iterator:
    """The first `n` lines (all with None); fewer means the file changed since planning."""
    got = 0
    try:
        for item in lines:
            yield item
            got += 1
            if n is not None and got == n:
                return
        if n is not None and got < n:
            raise InputError(
                f"{unit.file.where}: lines {unit.first_line}-{unit.first_line + n - 1} were "
                f"planned, the file ends after line {unit.first_line + got - 1}: it changed "
                "since the units were planned. Plan the units again (plan_units)."
            )
    finally:
        lines.close()


def part_path(final: Path, unit: Unit) -> Path:
    """The quarantine file of one unit of a file of several: `<NNNNN>-<file>.partPPPPP` before
    the `.rejected.jsonl` / `.reasons.jsonl` suffix of the file's own."""
    for suffix in (".rejected.jsonl", ".reasons.jsonl"):
        if final.name.endswith(suffix):
            stem = final.name[: -len(suffix)]
            return final.with_name(f"{stem}.part{unit.part:05d}{suffix}")
    raise ValueError(f"not a quarantine file name: {final}")


def iter_unit(
    unit: Unit, read_config: ReadConfig | None = None, stats: ReadStats | None = None
) -> Iterator[Document]:
    """The documents of one unit: exactly those `iter_file` yields for its lines, with the same
    ids, errors and statistics (`stats` of every unit of a file, merged, are the file's). In skip
    mode a file of several units quarantines into one pair of files per unit
    (`<NNNNN>-<file>.partPPPPP.rejected.jsonl`); `merge_quarantine` joins them afterwards."""
    from pipeline.read import reader

    config = read_config or ReadConfig()
    stats = stats if stats is not None else ReadStats(count_bytes=False)
    f = unit.file
    if unit.mode == "file":
        yield from reader.iter_file(f, config, stats)
        return
    _check_identity(unit)
    q = None
    if config.on_error == "skip":
        q = reader._Quarantine(config.quarantine_dir, f)
        if unit.parts > 1:
            q.raw_path = part_path(q.raw_path, unit)
            q.reason_path = part_path(q.reason_path, unit)
            # the unit is read anew: a part left by an earlier run must not be merged
            for stale in (q.raw_path, q.reason_path):
                stale.unlink(missing_ok=True)
    if unit.mode == "frames":
        src = _ZstdEntry(unit.read_path, unit.start, unit.offset, unit.skip)
    else:
        src = _PlainEntry(unit.read_path, unit.start)
    first_offset = unit.offset + unit.skip
    lines = iter_lines(
        unit.read_path,
        "jsonl.zst" if unit.mode == "frames" else "jsonl",
        config.max_line_bytes,
        source=src,
        first_line=unit.first_line,
        offset=first_offset,
    )
    if unit.part == 0:
        stats.files += 1
    before = stats.lines
    # the last unit reads to the end: whatever follows its planned lines is the file's own
    take = _take(lines, None if unit.last else unit.lines, unit)
    try:
        yield from reader._iter_jsonl(f, config, stats, q, lines=take)
    finally:
        src.close()
        if stats.lines > before:  # the reader adds the last (absolute) line number
            stats.lines -= unit.first_line - 1
        if q is not None:
            q.close()


def merge_quarantine(plan: UnitPlan, quarantine_dir: str | os.PathLike) -> None:
    """Join the per-unit quarantine files of each file of several units, in unit order, into the
    file's own pair (what `iter_file` writes), then remove the parts."""
    from pipeline.read import reader

    qdir = Path(quarantine_dir)
    for f in plan.files:
        units = plan.units_of(f.index)
        if len(units) < 2:
            continue
        q = reader._Quarantine(str(qdir), f)
        for final in (q.raw_path, q.reason_path):
            parts = [part_path(final, u) for u in units]
            present = [p for p in parts if p.exists()]
            if not present:
                continue
            with atomic_open(final, "wb") as out:
                for p in present:
                    with open(p, "rb") as fh:
                        while data := fh.read(BUFFER_SIZE):
                            out.write(data)
            for p in present:
                p.unlink()
        fsync_dir(qdir)


def iter_plan(
    plan: UnitPlan, read_config: ReadConfig | None = None, stats: ReadStats | None = None
) -> Iterator[Document]:
    """Every unit's documents in plan order (= `iter_documents` over the inputs), quarantine
    merged at the end."""
    config = read_config or ReadConfig()
    for u in plan.units:
        yield from iter_unit(u, config, stats)
    if config.on_error == "skip":
        merge_quarantine(plan, config.quarantine_dir)


def read_unit_stats(args: tuple[Unit, ReadConfig]) -> ReadStats:
    """Task for parallel statistics: read one unit fully and return its counts (merged in unit
    order they are the files' counts, as `read_file_stats` gives them per file)."""
    unit, config = args
    stats = ReadStats()
    for _ in iter_unit(unit, config, stats):
        pass
    return stats


# The default split, shared by every stage that plans units (tokenize, dedup's signatures).
TASKS_PER_WORKER = 2
WHOLE_FILES = 1 << 62  # one unit per file: larger than any file's text
MIN_FRAME_BYTES = 1 << 10


def balanced_unit_bytes(files: Sequence[InputFile], workers: int) -> int:
    """The default unit size: total input bytes / (workers x TASKS_PER_WORKER), so no unit
    holds one worker for most of the run (a 101 MB file of 37% of the bytes kept one of two
    workers busy for >= 63% of the work); with one worker, one unit per file."""
    if workers <= 1:
        return WHOLE_FILES
    total = 0
    for f in files:
        if f.kind in SPLITTABLE and "://" not in f.path:
            try:
                total += max(1, os.path.getsize(f.path))
            except OSError:
                pass
    return max(1, int((total or 1) / (workers * TASKS_PER_WORKER)))


def frame_bytes_for(unit_bytes: int) -> int:
    """Frames of a re-chunked file: ~4 per unit (units are frame ranges), between 1 KiB and
    16 MiB (a 1 GiB unit: the default 16 MiB; one cache per frame size)."""
    return max(MIN_FRAME_BYTES, min(DEFAULT_FRAME_BYTES, unit_bytes // 4))


def plan_balanced_units(
    files: Sequence[InputFile],
    workers: int,
    unit_bytes: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    executor=None,
) -> UnitPlan:
    """`plan_units` with `unit_bytes` (None: `balanced_unit_bytes` for `workers`) and frames of
    re-chunked files sized for it (`frame_bytes_for`)."""
    if unit_bytes is None:
        unit_bytes = balanced_unit_bytes(files, workers)
    return plan_units(
        files, unit_bytes, cache_dir, frame_bytes=frame_bytes_for(unit_bytes), executor=executor
    )
