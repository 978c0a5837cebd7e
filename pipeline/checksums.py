"""Checksum lists: the one parser and writer of `<sha256> <file>` style lists.

Three spellings are read, line by line (a list may mix them; the format is detected per line):

- `sha256sum` (coreutils, the Pile's SHA256SUMS.txt): `HEX  name` (text mode) or `HEX *name`
  (binary mode); a leading backslash marks a name with `\\\\` / `\\n` escapes, which are undone;
- Pythia's `utils/shard_hashes.txt`: `name HEX` (one or more blanks between);
- `pile shard`'s `{name}.shard_hashes.txt`, written in Pythia's format.

Blank lines and `#` comments are skipped. A line in neither form is an InputError naming
`file:line`. Hashes are returned lower-case.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import InputError
from pipeline.io import atomic_write_text

SHA256SUM = "sha256sum"
PYTHIA = "pythia"
FORMATS = (SHA256SUM, PYTHIA)
SHA256SUM_LINE = re.compile(r"^(\\?)([0-9a-fA-F]{64}) [ *](.+)$")
PYTHIA_LINE = re.compile(r"^(.+?)\s+([0-9a-fA-F]{64})$")
HASH_LIST_SUFFIX = ".shard_hashes.txt"  # what `pile shard` writes next to the shards


def hash_list_name(name: str) -> str:
    """`pile shard`'s list of the shards of `{name}.bin`."""
    return name + HASH_LIST_SUFFIX


@dataclass(frozen=True)
class ChecksumEntry:
    name: str  # as listed: relative to the list's directory (or a --root)
    sha256: str  # lower-case hex
    line: int  # 1-based line in the list
    form: str  # sha256sum | pythia


@dataclass
class ChecksumList:
    path: Path
    entries: list[ChecksumEntry] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """`sha256sum`, `pythia`, or `pythia+sha256sum` for a list that mixes them."""
        return "+".join(sorted({e.form for e in self.entries})) or SHA256SUM

    def hashes(self) -> dict[str, str]:
        """`{file name (basename): sha256}`: how `pile unshard` looks shards up."""
        return {os.path.basename(e.name): e.sha256 for e in self.entries}


def _unescape(name: str) -> str:
    # coreutils escapes `\` and newline in names and marks such lines with a leading backslash
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), name)


def parse_line(line: str) -> tuple[str, str, str] | None:
    """(name, sha256, form) of one stripped, non-comment line; None when it is in neither form."""
    m = SHA256SUM_LINE.match(line)
    if m:
        name = _unescape(m.group(3)) if m.group(1) else m.group(3)
        return name, m.group(2).lower(), SHA256SUM
    m = PYTHIA_LINE.match(line)
    if m:
        return m.group(1), m.group(2).lower(), PYTHIA
    return None


def parse_checksum_text(text: str, path: str | os.PathLike) -> ChecksumList:
    """Entries of a list's text; `path` names the list in errors."""
    out = ChecksumList(Path(path))
    # on "\n" only: str.splitlines() also splits on U+0085, U+2028, ..., which file names may hold
    for lineno, line in enumerate(text.split("\n"), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parsed = parse_line(s)
        if parsed is None:
            raise InputError(
                f"{path}:{lineno}: {s[:80]!r} is neither '<sha256>  <file>' (sha256sum) nor "
                "'<file> <sha256>' (Pythia); fix the line or pass a manifest instead."
            )
        name, digest, form = parsed
        out.entries.append(ChecksumEntry(name, digest, lineno, form))
    return out


def decode(raw: bytes, path: str | os.PathLike) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path}: neither a JSON manifest nor a UTF-8 checksum list (bad byte at {e.start}); "
            "pass a *.manifest.json, a directory, a sha256sum list or Pythia's <file> <sha256> list."
        ) from e


def read_checksum_list(path: str | os.PathLike) -> ChecksumList:
    """Parse the list at `path` (an empty list has no entries; callers decide if that is wrong)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read the checksum list ({e.strerror}).") from e
    return parse_checksum_text(decode(raw, path), path)


def format_line(name: str, sha256: str, form: str = PYTHIA) -> str:
    if form == PYTHIA:
        return f"{name} {sha256}"
    if form == SHA256SUM:
        if "\\" in name or "\n" in name:
            return "\\" + sha256 + "  " + name.replace("\\", "\\\\").replace("\n", "\\n")
        return f"{sha256}  {name}"
    raise ValueError(f"checksum list form {form!r}; allowed: {', '.join(FORMATS)}")


def format_checksum_list(items: Iterable[tuple[str, str]], form: str = PYTHIA) -> str:
    """The text of a list of (name, sha256), one line each, newline-terminated."""
    return "\n".join(format_line(n, h, form) for n, h in items) + "\n"


def write_checksum_list(
    path: str | os.PathLike, items: Iterable[tuple[str, str]], form: str = PYTHIA
) -> Path:
    """Write the list atomically (tmp, fsync, rename)."""
    path = Path(path)
    atomic_write_text(path, format_checksum_list(items, form))
    return path


def check(path: str | os.PathLike) -> list[str]:
    """Structural problems of a checksum list (empty = fine): unreadable or not UTF-8, a line in
    neither form (file:line), no entries, a name listed twice with different hashes."""
    try:
        lst = read_checksum_list(path)
    except InputError as e:
        return [str(e)]
    if not lst.entries:
        return [f"{path}: no checksum lines found; it is empty or not a checksum list."]
    problems = []
    first: dict[str, ChecksumEntry] = {}
    for e in lst.entries:
        seen = first.setdefault(e.name, e)
        if seen.sha256 != e.sha256:
            problems.append(
                f"{path}:{e.line}: {e.name} is listed again with another sha256 (line "
                f"{seen.line} has {seen.sha256[:16]}...)"
            )
    return problems
