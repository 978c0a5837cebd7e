"""What `pile verify` found: problems, the sources and entries it read, and the summary line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RATE_MIN_BYTES = 256 << 20  # hashing throughput is printed from this many bytes on


@dataclass(frozen=True)
class Problem:
    path: str  # the file the problem is about
    kind: str  # missing | size | sha256 | structure | stale | extra | manifest | unreadable |
    # interrupted | in-progress | refused
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
    kind: str  # manifest | sha256sum | pythia | pythia+sha256sum
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


def problems_of(path: Path | str, kind: str, msgs: list[str], source: str = "") -> list[Problem]:
    """An owner's check messages (`<path>: what`) as problems about `path` (prefix dropped)."""
    return [Problem(str(path), kind, m.replace(f"{path}: ", ""), source) for m in msgs]


def size_message(expected: int, found: int) -> str:
    from pipeline.shards.mmidx import off_by

    return f"size differs: expected {expected} bytes, found {found} ({off_by(found, expected)})"
