"""Streaming document reader: jsonl(.zst/.gz), parquet and `datasets` inputs -> `Document`s.

Constant memory: one decompressed chunk and one record at a time. JSON is parsed with orjson; a line
orjson rejects is re-examined to say precisely what is wrong (invalid UTF-8 with its byte offset,
invalid JSON with line, column and excerpt). Python's json is the arbiter of validity, so exactly the
lines lm_dataformat (the library the Pile was written with) could read are accepted, except text
holding lone surrogates (`"\\ud800"`), which cannot be encoded as UTF-8 and is rejected by name.

Policies (`ReadConfig.on_error`): "raise" stops with an InputError naming file, line and the fix;
"skip" writes each rejected line verbatim to `<quarantine_dir>/<NNNNN>-<file>.rejected.jsonl` and
its reason to `...reasons.jsonl` (same order), counts it, and goes on. Documents whose text is empty
are counted and skipped (gpt-neox drops them too); blank lines are counted.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from pipeline import docid
from pipeline.engine.base import Executor, InlineExecutor
from pipeline.errors import InputError
from pipeline.io import open_new
from pipeline.read.config import ReadConfig
from pipeline.read.document import Document, InputFile
from pipeline.read.inputs import resolve_inputs
from pipeline.read.lines import LongLine, StreamError, iter_lines
from pipeline.read.remote import parquet_source
from pipeline.read.stats import ReadStats

log = logging.getLogger(__name__)

UNKNOWN_SOURCE = "unknown"
_EXCERPT = 80


class RecordError(Exception):
    """One bad record: `kind` is a short reason class, `detail` the human explanation."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def _excerpt(raw: bytes, around: int | None = None) -> str:
    if around is not None:
        start = max(0, around - _EXCERPT // 2)
        piece = raw[start : start + _EXCERPT]
    else:
        piece = raw[:_EXCERPT]
    return repr(piece.decode("utf-8", errors="replace"))


def _diagnose(raw: bytes) -> dict[str, Any]:
    """orjson rejected `raw`: explain why, or accept it when Python's json accepts it."""
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(
            "invalid-utf8",
            f"invalid UTF-8 at byte {e.start} of the line ({e.reason}); near {_excerpt(raw, e.start)}",
        ) from None
    if s[:1] in ("\ufeff", "\x1e"):
        s = s[1:]  # a BOM or record separator before a line: jsonlines (lm_dataformat) skips it
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as e:
        raise RecordError(
            "invalid-json",
            f"invalid JSON: {e.msg} at column {e.colno}; line starts {_excerpt(raw)}",
        ) from None
    except RecursionError:
        # orjson stops at depth 1024 and Python's json at its recursion limit: no stage needs
        # data nested that deep, and a traceback is no answer
        raise RecordError(
            "too-deep",
            f"JSON nested deeper than the parsers allow (1024 levels); line starts {_excerpt(raw)}",
        ) from None
    return obj


def _a(noun: str) -> str:
    """'an int', 'a list', 'null' (JSON's name for None)."""
    if noun == "NoneType":
        return "null"
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _text_of(obj: Any, text_key: str, slow_path: bool) -> str:
    if isinstance(obj, str):
        text = obj  # lm_dataformat's legacy form: the line is the text itself
    elif not isinstance(obj, dict):
        raise RecordError(
            "not-an-object",
            f"record is {_a(type(obj).__name__)}, expected a JSON object with {text_key!r}",
        )
    elif text_key not in obj:
        keys = ", ".join(sorted(map(str, obj))[:10])
        raise RecordError(
            "missing-text",
            f"record has no {text_key!r} key (keys: {keys or 'none'}); pass --text-key to name the text field",
        )
    else:
        text = obj[text_key]
    if isinstance(text, list) and all(isinstance(t, str) for t in text):
        text = "\n\n".join(text)  # lm_dataformat joins list-valued text this way
    elif not isinstance(text, str):
        raise RecordError(
            "text-not-string",
            f"{text_key!r} is {_a(type(text).__name__)}, expected a string or a list of strings",
        )
    if slow_path:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise RecordError(
                "lone-surrogate",
                f"text holds a lone surrogate escape (U+{ord(text[e.start]):04X}) at character "
                f"{e.start}, which is not encodable as UTF-8",
            ) from None
    return text


def _source_of(obj: dict[str, Any], set_name_key: str) -> tuple[str, dict[str, Any]]:
    meta = obj.get("meta")
    if isinstance(meta, str):  # meta serialised as a JSON string (as in some parquet exports)
        try:
            meta = orjson.loads(meta)
        except orjson.JSONDecodeError:
            pass
    if not isinstance(meta, dict):
        meta = {} if meta is None else {"meta": meta}
    name = meta.get(set_name_key)
    if name is None:
        name = obj.get(set_name_key)
    if not isinstance(name, str) or not name:
        name = UNKNOWN_SOURCE
    return name, meta


def _check_name(name: str, set_key: str) -> None:
    """The source name is written to tables and reports as UTF-8: a lone surrogate escape
    (possible only on the slow path, which Python's json parsed) is rejected here, by name."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise RecordError(
            "lone-surrogate",
            f"the source name ({set_key!r}) holds a lone surrogate escape "
            f"(U+{ord(name[e.start]):04X}) at character {e.start}, which is not encodable as UTF-8",
        ) from None


def _printable(s: str) -> str:
    """`s` made encodable as UTF-8 (a path with undecodable bytes holds surrogate escapes)."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _Quarantine:
    """Lazily opened pair of files per input; written as .tmp and renamed when the input ends."""

    def __init__(self, qdir: str, f: InputFile) -> None:
        base = re.sub(
            r"[^A-Za-z0-9._-]+", "_", Path(f.path).name + (f"_{f.split}" if f.split else "")
        )
        stem = Path(qdir) / f"{f.index:05d}-{base}"
        self.raw_path = Path(str(stem) + ".rejected.jsonl")
        self.reason_path = Path(str(stem) + ".reasons.jsonl")
        self._raw = None
        self._reasons = None

    def _open(self) -> None:
        if self._raw is None:
            self.raw_path.parent.mkdir(parents=True, exist_ok=True)
            # never through a planted link: open_new unlinks a leftover and creates O_NOFOLLOW
            self._raw = open_new(str(self.raw_path) + ".tmp")
            self._reasons = open_new(str(self.reason_path) + ".tmp")

    def add(
        self, file: str, line: int, offset: int | None, kind: str, detail: str, raw: bytes
    ) -> None:
        self._open()
        self._raw.write(raw + b"\n")
        self._reason(file, line, offset, kind, detail)

    def add_stream(self, pieces: Iterator[bytes]) -> None:
        """Write a long line verbatim piece by piece (never whole in memory); its reason follows
        with `_reason` once its size is known."""
        self._open()
        for piece in pieces:
            self._raw.write(piece)
        self._raw.write(b"\n")

    def _reason(self, file: str, line: int, offset: int | None, kind: str, detail: str) -> None:
        self._reasons.write(
            orjson.dumps(
                {
                    "file": _printable(file),
                    "line": line,
                    "byte_offset": offset,
                    "reason": kind,
                    "detail": _printable(detail),
                }
            )
            + b"\n"
        )

    def close(self) -> None:
        if self._raw is None:
            return
        for fh, final in ((self._raw, self.raw_path), (self._reasons, self.reason_path)):
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            os.replace(str(final) + ".tmp", final)
        self._raw = self._reasons = None


def quarantine_path(quarantine_dir: str, f: InputFile) -> Path:
    """Where the rejected records of input `f` are kept verbatim in `quarantine_dir`."""
    return _Quarantine(quarantine_dir, f).raw_path


def quarantine_kept(quarantine_dir: str, f: InputFile) -> bool:
    """Whether the quarantine of input `f` (its rejected records, verbatim) is in
    `quarantine_dir`: a stage reusing a finished task that rejected records reads the input again
    when it is gone."""
    return _Quarantine(quarantine_dir, f).raw_path.is_file()


def _long_line(
    f: InputFile,
    config: ReadConfig,
    stats: ReadStats,
    q: _Quarantine | None,
    line: int,
    offset: int,
    ll: LongLine,
) -> None:
    """Reject a line over `max_line_bytes` while streaming it: raise naming its size, or copy it
    verbatim into the quarantine piece by piece (memory stays at one decompressed chunk)."""
    limit = config.max_line_bytes
    if q is None:
        size = ll.drain()  # streamed and dropped, to name the size
        stats.reject("line-too-long")
        raise InputError(
            f"{f.path}:{line} (byte offset {offset}): the line is {size:,} bytes, more than the "
            f"reader's limit of {limit:,} bytes. If the record is genuine, raise the limit "
            "(--max-line-bytes, or max_line_bytes in [read] of build.toml); or rerun with "
            "--on-error skip to quarantine it."
        )
    try:
        q.add_stream(ll.chunks())
    except StreamError as e:
        # damaged before the line ended: its bytes are in quarantine, the damage is its reason
        e.partial = None  # already quarantined
        raise
    stats.reject("line-too-long")
    detail = (
        f"line of {ll.size:,} bytes, more than the reader's limit of {limit:,} bytes "
        "(--max-line-bytes)"
    )
    log.warning("skipped %s:%d (byte offset %d): %s", f.path, line, offset, detail)
    q._reason(f.path, line, offset, "line-too-long", detail)


def _iter_jsonl(
    f: InputFile, config: ReadConfig, stats: ReadStats, q: _Quarantine | None, lines=None
):
    """`lines`: the (line, offset, raw) stream to read instead of the whole file (a work unit,
    pipeline.read.units)."""
    path = f.path
    text_key = config.text_key
    set_key = config.set_name_key
    base_id = docid.base(f.index)
    loads = orjson.loads
    skip = config.on_error == "skip"
    count_bytes = stats.count_bytes
    sources = stats.sources
    line = 0
    offset = 0
    try:
        if lines is None:
            lines = iter_lines(path, f.kind, config.max_line_bytes)
        for line, offset, raw in lines:
            if type(raw) is not bytes:
                _long_line(f, config, stats, q, line, offset, raw)
                continue
            slow = False
            try:
                try:
                    obj = loads(raw)
                except orjson.JSONDecodeError:
                    if not raw.strip():
                        stats.blank_lines += 1
                        continue
                    raw = raw[:-1] if raw.endswith(b"\n") else raw
                    obj = _diagnose(raw)
                    slow = True
                # fast path for the common record; everything else goes through _text_of
                text = obj.get(text_key) if type(obj) is dict else None
                if slow or type(text) is not str:
                    text = _text_of(obj, text_key, slow)
                    if type(obj) is not dict:
                        obj = {}  # a bare string record has no meta
                meta = obj.get("meta")
                name = meta.get(set_key) if type(meta) is dict else None
                if type(name) is not str or not name:
                    name, meta = _source_of(obj, set_key)
                if slow:
                    _check_name(name, set_key)
            except RecordError as e:
                stats.reject(e.kind)
                msg = f"{path}:{line} (byte offset {offset}): {e.detail}"
                if not skip:
                    raise InputError(
                        msg + ". Fix the record, or rerun with --on-error skip to quarantine it."
                    ) from None
                log.warning("skipped %s", msg)
                raw = raw[:-1] if raw.endswith(b"\n") else raw
                q.add(path, line, offset, e.kind, e.detail, raw)  # type: ignore[union-attr]
                continue
            src = sources.get(name) or stats.source(name)
            if not text:
                stats.empty += 1
                src.empty += 1
                continue
            if count_bytes:
                nbytes = len(text) if text.isascii() else len(text.encode("utf-8"))
                stats.bytes += nbytes
                src.bytes += nbytes
            stats.documents += 1
            src.documents += 1
            yield Document(base_id | (line - 1), text, name, meta, path, line)
    except StreamError as e:
        if not skip or e.fatal:
            raise
        # A damaged stream cannot be read past the damage: every line before it was read; keep
        # the unfinished line it cut off (its bytes, possibly none), record the loss and go on.
        # The damaged line counts as read, so lines = documents + empty + blank + rejected.
        line = e.line
        stats.reject("corrupt-stream")
        detail = f"{e.detail}; the rest of the file is lost: re-download it"
        log.error("skipped the rest of %s", detail)
        if e.partial is None:  # a long line, already streamed into the quarantine
            q._reason(path, e.line, e.offset, "corrupt-stream", detail)  # type: ignore[union-attr]
        else:
            partial = e.partial[:-1] if e.partial.endswith(b"\n") else e.partial
            q.add(path, e.line, e.offset, "corrupt-stream", detail, partial)  # type: ignore[union-attr]
    finally:
        stats.lines += line


def iter_rows(f: InputFile) -> Iterator[dict[str, Any]]:
    if f.kind == "parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(parquet_source(f.path))
        except Exception as e:  # pyarrow raises several types for damaged files
            raise InputError(f"{f.path}: not a readable parquet file ({e}).") from e
        for batch in pf.iter_batches(batch_size=1024):
            yield from batch.to_pylist()
        return
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # the pipeline never downloads
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets

    if f.kind == "hf-disk":
        ds = datasets.load_from_disk(f.path)
        if f.split is not None:
            ds = ds[f.split]
        yield from ds.to_iterable_dataset()
    elif f.kind == "hf-hub":
        try:
            ds = datasets.load_dataset(f.path, split=f.split or "train", streaming=True)
        except Exception as e:
            raise InputError(f"{f.path}: cannot load it with datasets.load_dataset ({e}).") from e
        yield from ds
    else:  # pragma: no cover - resolve_inputs only produces known kinds
        raise InputError(f"{f.path}: unknown input kind {f.kind!r}")


def _iter_table(f: InputFile, config: ReadConfig, stats: ReadStats, q: _Quarantine | None):
    base_id = docid.base(f.index)
    skip = config.on_error == "skip"
    where = f.where
    count_bytes = stats.count_bytes
    row_no = 0
    try:
        for row_no, row in enumerate(iter_rows(f), start=1):
            try:
                text = _text_of(row, config.text_key, slow_path=False)
            except RecordError as e:
                stats.reject(e.kind)
                msg = f"{where}: row {row_no}: {e.detail}"
                if not skip:
                    raise InputError(
                        msg + ". Fix the row, or rerun with --on-error skip."
                    ) from None
                raw = json.dumps(row, default=str, ensure_ascii=False).encode("utf-8", "replace")
                q.add(where, row_no, None, e.kind, e.detail, raw)  # type: ignore[union-attr]
                continue
            meta = row.get("meta")
            if isinstance(meta, str):
                try:
                    meta = orjson.loads(meta)
                except orjson.JSONDecodeError:
                    meta = {"meta": meta}
            if not isinstance(meta, dict):
                meta = {k: v for k, v in row.items() if k != config.text_key}
            name = meta.get(config.set_name_key, row.get(config.set_name_key))
            if not isinstance(name, str) or not name:
                name = UNKNOWN_SOURCE
            src = stats.source(name)
            if not text:
                stats.empty += 1
                src.empty += 1
                continue
            nbytes = (
                (len(text) if text.isascii() else len(text.encode("utf-8"))) if count_bytes else 0
            )
            stats.documents += 1
            stats.bytes += nbytes
            src.documents += 1
            src.bytes += nbytes
            yield Document(base_id | (row_no - 1), text, name, meta, where, row_no)
    finally:
        stats.lines += row_no


def iter_file(
    f: InputFile, config: ReadConfig | None = None, stats: ReadStats | None = None
) -> Iterator[Document]:
    """Documents of one resolved input file, in line order."""
    config = config or ReadConfig()
    stats = stats if stats is not None else ReadStats(count_bytes=False)
    q = _Quarantine(config.quarantine_dir, f) if config.on_error == "skip" else None
    stats.files += 1
    try:
        if f.kind in ("jsonl", "jsonl.zst", "jsonl.gz"):
            yield from _iter_jsonl(f, config, stats, q)
        else:
            yield from _iter_table(f, config, stats, q)
    finally:
        if q is not None:
            q.close()


def iter_documents(
    inputs: Iterable[str | os.PathLike | InputFile],
    config: ReadConfig | None = None,
    stats: ReadStats | None = None,
) -> Iterator[Document]:
    """Documents of every input, files in resolved order, lines in order."""
    config = config or ReadConfig()
    for f in resolve_inputs(inputs):
        yield from iter_file(f, config, stats)


def read_file_stats(args: tuple[InputFile, ReadConfig]) -> ReadStats:
    """Task for parallel statistics: read one file fully and return its counts."""
    f, config = args
    stats = ReadStats()
    for _ in iter_file(f, config, stats):
        pass
    return stats


def collect_stats(
    inputs: Iterable[str | os.PathLike | InputFile],
    config: ReadConfig | None = None,
    executor: Executor | None = None,
) -> ReadStats:
    """Merged statistics of every input (one task per file on `executor`, merged in input
    order; default: in this process)."""
    config = config or ReadConfig()
    executor = executor or InlineExecutor()
    total = ReadStats()
    for s in executor.imap(read_file_stats, [(f, config) for f in resolve_inputs(inputs)]):
        total.merge(s)
    return total
