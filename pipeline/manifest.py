"""sha256 manifests: written last, read by `pile verify`.

Layout (JSON, UTF-8, sorted keys, 1 file per artifact directory or dataset prefix):

    {
      "format": "pile-manifest",
      "format_version": 1,
      "kind": "<what the files are, e.g. token-dataset, index-maps, preshuffled, dedup>",
      "config_fingerprint": "<sha256 of the producing stage's config>",
      "config": {...},                 # resolved config, for humans and for `build --dry-run`
      "counts": {...},                 # documents, tokens, per-source counts, ...
      "files": [{"name": "<path relative to the manifest's directory>",
                 "bytes": <int>, "sha256": "<hex>", "role": "<optional: idx|bin|sidecar|...>"}],
      "manifest_sha256": "<sha256 of this file's bytes with these 64 digits set to 0>"
    }

The manifest itself is written with tmp + fsync + rename after every file it lists is in place, so
its presence means the set is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import IntegrityError
from pipeline.io import atomic_write_text, sha256_file

MANIFEST_FORMAT = "pile-manifest"
MANIFEST_VERSION = 1
SELF_HASH_KEY = "manifest_sha256"
_ZERO_HASH = "0" * 64


@dataclass(frozen=True)
class FileEntry:
    name: str
    bytes: int
    sha256: str
    role: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "bytes": self.bytes, "sha256": self.sha256}
        if self.role is not None:
            d["role"] = self.role
        return d


def hash_files(paths: Iterable[Path], workers: int | None = None) -> list[str]:
    """sha256 of several files, in parallel threads (hashlib releases the GIL)."""
    paths = list(paths)
    workers = workers or min(8, os.cpu_count() or 1)
    if len(paths) <= 1 or workers <= 1:
        return [sha256_file(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(sha256_file, paths))


def file_entries(
    base_dir: Path,
    files: Iterable[Path | tuple[Path, str]],
    workers: int | None = None,
    hashes: Mapping[Path, str] | None = None,
) -> list[FileEntry]:
    """Entries of `files`; `hashes` gives the sha256 of files the caller hashed while writing."""
    items: list[tuple[Path, str | None]] = []
    for f in files:
        if isinstance(f, tuple):
            items.append((Path(f[0]), f[1]))
        else:
            items.append((Path(f), None))
    known = {Path(p): h for p, h in (hashes or {}).items()}
    todo = [p for p, _ in items if p not in known]
    known.update(zip(todo, hash_files(todo, workers)))
    out = []
    for p, role in items:
        h = known[p]
        rel = os.path.relpath(p, base_dir).replace(os.sep, "/")
        out.append(FileEntry(name=rel, bytes=p.stat().st_size, sha256=h, role=role))
    return out


def write_manifest(
    path: Path,
    *,
    kind: str,
    config_fingerprint: str,
    files: Iterable[Path | tuple[Path, str]],
    config: Mapping[str, Any] | None = None,
    counts: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    workers: int | None = None,
    hashes: Mapping[Path, str] | None = None,
) -> dict[str, Any]:
    """Hash `files` (paths, or (path, role) pairs; `hashes`: sha256 already known, by path) and
    write the manifest at `path` atomically."""
    path = Path(path)
    entries = file_entries(path.parent, files, workers, hashes)
    doc: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "kind": kind,
        "config_fingerprint": config_fingerprint,
        "config": dict(config or {}),
        "counts": dict(counts or {}),
        "files": [e.to_dict() for e in entries],
    }
    if extra:
        doc.update(extra)
    doc[SELF_HASH_KEY] = _ZERO_HASH
    text = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    doc[SELF_HASH_KEY] = digest
    text = text.replace(_self_hash_field(_ZERO_HASH), _self_hash_field(digest), 1)
    atomic_write_text(path, text)
    return doc


def _self_hash_field(value: str) -> str:
    return f'"{SELF_HASH_KEY}": "{value}"'


def check_self_hash(raw: bytes) -> str | None:
    """Problem with a manifest's own bytes, or None when they match its `manifest_sha256`.

    The self-hash is the sha256 of the file's exact bytes with its own 64 hex digits replaced by
    zeros, so any changed byte outside that field (and any change inside it) is detected. Manifests
    written before the field existed return None here; callers report them as unchecked.
    """
    pattern = re.compile(rb'"' + SELF_HASH_KEY.encode() + rb'": "([0-9a-f]{64})"')
    found = pattern.findall(raw)
    if not found:
        if b'"' + SELF_HASH_KEY.encode() + b'"' in raw:  # the field is there, its value damaged
            return (
                f"{SELF_HASH_KEY} is not 64 lowercase hex digits; the manifest was modified or "
                "corrupted"
            )
        return None
    if len(found) > 1:
        return f"{SELF_HASH_KEY} appears {len(found)} times; the manifest was edited"
    stored = found[0].decode()
    blanked = pattern.sub(_self_hash_field(_ZERO_HASH).encode(), raw, count=1)
    actual = hashlib.sha256(blanked).hexdigest()
    if actual != stored:
        return (
            f"manifest bytes do not match its {SELF_HASH_KEY} (stored {stored[:16]}..., "
            f"computed {actual[:16]}...); the manifest was modified or corrupted"
        )
    return None


def read_manifest(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise IntegrityError(
            f"{path}: manifest not found. Rebuild the stage that writes it."
        ) from e
    return parse_manifest(raw, path)


def parse_manifest(raw: bytes, path: str | os.PathLike) -> dict[str, Any]:
    """The manifest in `raw` (the bytes of `path`); IntegrityError when it is not one pile reads."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IntegrityError(f"{path}: manifest is not valid JSON ({e}); it is corrupt.") from e
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise IntegrityError(
            f"{path}: not a pile manifest (format={doc.get('format') if isinstance(doc, dict) else None!r},"
            f" expected {MANIFEST_FORMAT!r})."
        )
    if doc.get("format_version") != MANIFEST_VERSION:
        raise IntegrityError(
            f"{path}: manifest format_version {doc.get('format_version')!r} is not supported "
            f"(this version reads {MANIFEST_VERSION})."
        )
    for i, f in enumerate(doc.get("files", [])):
        if not isinstance(f, dict) or not {"name", "bytes", "sha256"} <= f.keys():
            raise IntegrityError(
                f"{path}: files[{i}] lacks name/bytes/sha256; manifest is corrupt."
            )
    return doc


_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def entry_problems(doc: Mapping[str, Any]) -> list[str]:
    """Problems of the values of a parsed manifest's `files` entries (their keys are checked by
    `parse_manifest`): a name that is not a non-empty string, bytes that are not a non-negative
    integer, a sha256 that is not 64 hex digits, a name listed twice."""
    problems = []
    seen: set[str] = set()
    for i, f in enumerate(doc.get("files", [])):
        name, size, digest = f["name"], f["bytes"], f["sha256"]
        if not isinstance(name, str) or not name:
            problems.append(f"files[{i}].name {name!r} is not a file name; the manifest is corrupt")
        elif name in seen:
            problems.append(f"files[{i}].name {name!r} is listed twice; the manifest was edited")
        else:
            seen.add(name)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            problems.append(
                f"files[{i}].bytes {size!r} is not a non-negative integer; the manifest is corrupt"
            )
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            problems.append(
                f"files[{i}].sha256 {str(digest)[:70]!r} is not 64 hex digits; the manifest is "
                "corrupt"
            )
    return problems


def load_checked(path: str | os.PathLike, raw: bytes) -> tuple[dict[str, Any] | None, list[str]]:
    """(the manifest or None when it cannot be read, its problems): `parse_manifest`, the
    self-hash over `raw` (its bytes), a missing self-hash, and `entry_problems`. Each problem
    starts with `path: `."""
    try:
        doc = parse_manifest(raw, path)
    except IntegrityError as e:
        return None, [str(e)]
    problems = []
    self_problem = check_self_hash(raw)
    if self_problem is None and SELF_HASH_KEY not in doc:
        # every manifest pile writes carries it: a damaged key (a flipped bit in its name) or a
        # hand edit removed it, and nothing else then vouches for the manifest's own bytes
        self_problem = (
            f"no {SELF_HASH_KEY} (every pile manifest has one): the manifest was edited or damaged"
        )
    if self_problem:
        problems.append(self_problem)
    problems += entry_problems(doc)
    return doc, [f"{path}: {p}" for p in problems]


def check(path: str | os.PathLike) -> list[str]:
    """Structural problems of the manifest at `path` (empty = fine): JSON, format and version,
    its own bytes against `manifest_sha256`, and its `files` entries. The listed files themselves
    are `pile verify`'s to hash."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        return [f"{path}: cannot read the manifest ({e.strerror})"]
    return load_checked(path, raw)[1]
