"""What `pile inspect` checks about the files it reads: sizes always, sha256 on request.

Cheap checks (every read): each file a command reads is compared by size with the manifest entry
that lists it (`*.manifest.json` in its directory or the one above), and the readers check the
structure of what they touch (pipeline.order.document, pipeline.order.shuffled;
`damaged` is the error they raise). A flipped byte inside token data keeps
every size and every structure intact: only a hash finds it. `ReadCheck(verify_hashes=True)`
hashes each file the first time a read touches it (only the files actually read: for pre-shuffled
data the `.idx` and the shards holding the requested steps, not all of them) and compares the
sha256 with the manifest; a mismatch, or a file no manifest covers, is an IntegrityError naming
the file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pipeline.errors import IntegrityError
from pipeline.manifest import check_self_hash, read_manifest

log = logging.getLogger(__name__)

SEARCH_UP = 1  # manifests are looked for in a file's directory and this many levels above


def damaged(path: str | os.PathLike, what: str) -> IntegrityError:
    """The error for a file whose content is inconsistent: names it, what is wrong and the fix."""
    return IntegrityError(
        f"{path} is damaged: {what}. Check it with `pile verify` and rebuild it (`pile build` "
        "redoes the stage that writes it)."
    )


class ReadCheck:
    """Manifest entries of the files a command reads; `touch(path)` before using a file."""

    def __init__(self, verify_hashes: bool = False) -> None:
        self.verify_hashes = verify_hashes
        self._entries: dict[Path, tuple[Path, dict[str, Any]]] = {}
        self._scanned: set[Path] = set()
        self._damaged: dict[Path, str] = {}  # manifests that could not be read, and why
        self._checked: set[Path] = set()
        self._fast: set[str] = set()  # paths as given, already checked (no realpath per read)
        self.hashed: list[Path] = []  # files whose sha256 was checked, in order

    def _scan(self, directory: Path) -> None:
        if directory in self._scanned:
            return
        self._scanned.add(directory)
        try:
            cands = sorted(directory.glob("*manifest.json"))
        except OSError:
            return
        for m in cands:
            if not m.is_file():
                continue
            try:
                doc = read_manifest(m)
                # a manifest edited or damaged since it was written: the configs and sizes it
                # records cannot be trusted (checked for every read: manifests are small)
                why = check_self_hash(m.read_bytes())
            except (IntegrityError, OSError) as e:
                self._damaged[m] = str(e)
                continue
            for f in doc.get("files", []):
                p = _resolve(m.parent / str(f["name"]))
                # the first manifest (nearest directory, then name order) wins
                self._entries.setdefault(p, (m, {**f, "_damaged": why}))

    def entry(self, path: Path) -> tuple[Path, dict[str, Any]] | None:
        """(manifest path, its entry) that lists `path`, or None."""
        p = _resolve(path)
        d = p.parent
        for _ in range(SEARCH_UP + 1):
            self._scan(d)
            if p in self._entries:
                return self._entries[p]
            d = d.parent
        return None

    def touch(self, path: str | os.PathLike) -> None:
        """Check `path` once: its size against its manifest; with verify_hashes its sha256."""
        p = Path(path)
        if str(p) in self._fast:
            return
        key = _resolve(p)
        if key in self._checked:
            self._fast.add(str(p))
            return
        found = self.entry(p)
        try:
            size = p.stat().st_size
        except OSError as e:
            raise IntegrityError(f"{p}: cannot be read ({e.strerror or e}).") from None
        if found is not None:
            m, f = found
            if f["_damaged"]:
                raise IntegrityError(
                    f"{m}: {f['_damaged']}. It records the files read here ({p.name}, ...), so "
                    f"they cannot be checked; re-run the stage that writes it (`pile verify {m}` "
                    "says more)."
                )
            if size != int(f["bytes"]):
                raise IntegrityError(
                    f"{p}: {size} bytes, but {m} records {f['bytes']}: the file was truncated, "
                    f"extended or replaced since it was written. Check the set with `pile verify "
                    f"{m}` and rebuild what it names."
                )
        if self.verify_hashes:
            if found is None:
                damaged = [
                    f"{m} ({why})" for m, why in self._damaged.items() if m.parent in p.parents
                ]
                hint = f"; unreadable manifests there: {'; '.join(damaged)}" if damaged else ""
                raise IntegrityError(
                    f"{p}: --verify-hashes: no manifest records its sha256, so it cannot be "
                    f"verified{hint}. Check it against published checksums with `pile verify`, "
                    "or run without --verify-hashes."
                )
            from pipeline.io import sha256_file

            m, f = found
            got = sha256_file(p)
            self.hashed.append(p)
            if got != f["sha256"]:
                raise IntegrityError(
                    f"{p}: sha256 {got} does not match {f['sha256']} recorded in {m}: the file is "
                    "damaged (same size, different bytes). Rebuild it (`pile build` redoes the "
                    "stage that writes it) or restore it from a good copy."
                )
        self._checked.add(key)
        self._fast.add(str(p))


def _resolve(p: Path) -> Path:
    try:
        return Path(os.path.realpath(p))
    except OSError:  # pragma: no cover - realpath does not raise on Linux
        return Path(os.path.abspath(p))
