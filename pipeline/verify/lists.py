"""Reading what `pile verify` checks against: pile manifests and checksum lists, sniffed by content.

A manifest is parsed and checked by its owner (`pipeline.manifest.load_checked`: JSON, format,
self-hash, entries); a checksum list by `pipeline.checksums` (sha256sum, Pythia, `pile shard`'s
lists). Each listed file becomes an `Entry`, relative to its source's directory (or `--root` for an
explicitly given list); files of a list get a role from their names (`.idx`, byte shard, `.bin`).
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline import checksums
from pipeline.errors import InputError
from pipeline.manifest import load_checked
from pipeline.shards.names import SHARD_RE
from pipeline.verify.report import Entry, Problem, Source, problems_of


def sniff_and_load(path: Path, root: Path | None) -> tuple[list[Source], list[Problem]]:
    """The source at `path` (a manifest or a checksum list) and the problems of the file itself."""
    try:
        if not path.is_file():  # a FIFO or device named as a list would hang the read
            return [], [Problem(str(path), "refused", "not a regular file; not read")]
        raw = path.read_bytes()
    except OSError as e:
        return [], [Problem(str(path), "missing", f"cannot read it ({e.strerror})")]
    head = raw.lstrip()[:1]
    if head == b"{" or path.name.endswith(".json"):
        return load_manifest(path, raw)
    return [load_list(path, checksums.decode(raw, path), root)], []


def load_manifest(path: Path, raw: bytes) -> tuple[list[Source], list[Problem]]:
    doc, msgs = load_checked(path, raw)
    problems = problems_of(path, "manifest", msgs)
    if doc is None:
        return [], problems
    src = Source(path=path, kind="manifest", manifest=doc)
    base = path.parent
    for f in doc.get("files", []):
        try:
            size = int(f["bytes"])
        except (TypeError, ValueError):
            continue  # reported by load_checked; the file is then not verified by this entry
        src.entries.append(
            Entry(
                path=base / f["name"],
                name=f["name"],
                source=str(path),
                sha256=str(f["sha256"]).lower(),
                bytes=size,
                role=f.get("role"),
                base=base,
            )
        )
    return [src], problems


def role_of_listed(name: str) -> str | None:
    """What a checksum list's file is, from its name (lists carry no roles)."""
    if name.endswith(".idx"):
        return "idx"
    if SHARD_RE.match(os.path.basename(name)):
        return "bin-shard"
    if name.endswith(".bin"):
        return "bin"
    return None


def load_list(path: Path, text: str, root: Path | None) -> Source:
    """A checksum list's entries; InputError naming file:line for a malformed line, or when empty."""
    lst = checksums.parse_checksum_text(text, path)
    if not lst.entries:
        raise InputError(f"{path}: no checksum lines found; it is empty or not a checksum list.")
    base = root if root is not None else path.parent
    src = Source(path=path, kind=lst.kind)
    for c in lst.entries:
        src.entries.append(
            Entry(
                path=base / c.name,
                name=c.name,
                source=str(path),
                sha256=c.sha256,
                role=role_of_listed(c.name),
                base=base,
            )
        )
    return src


def listed_in(hash_list: Path) -> set[Path] | None:
    """The files a list names relative to its directory (resolved); None when it cannot be read
    or lists nothing (then it vouches for nothing, not even itself)."""
    try:
        lst = checksums.read_checksum_list(hash_list)
    except InputError:
        return None
    if not lst.entries:
        return None
    return {(hash_list.parent / c.name).resolve() for c in lst.entries}


def missing_hints(sources: list[Source], root: str | os.PathLike | None) -> list[str]:
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
