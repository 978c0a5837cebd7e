"""`pile verify`: re-hash and structurally check artifacts against manifests or checksum lists.

Accepted sources (the format is sniffed from the content; `lists.py`):

- a pile manifest (`*.manifest.json` / `manifest.json`): every listed file's size and sha256, the
  manifest's own self-hash and entries (`pipeline.manifest.load_checked`), structure checks by
  role, cross-checks of its counts with the data, and extra files (files next to it that look like
  artifacts of its prefix but are listed by no manifest or `*.shard_hashes.txt` in that directory);
- a directory (`directory.py`): every `*manifest.json` and `*.shard_hashes.txt` below it; any
  artifact-looking file below it that none of them lists is extra (not verified); `*.tmp` files
  and `.*.tmp` directories are reported together as one "interrupted" problem, a run writing there
  now as "in-progress";
- a `sha256sum` list (`<hash>  <file>` or `<hash> *<file>`, like the Pile's SHA256SUMS.txt) or
  Pythia's list (`<file> <hash>`, utils/shard_hashes.txt), parsed by `pipeline.checksums`.

List entries are resolved relative to the list's directory, or to `root` when given. Hashing
(`run.py`) streams each file and runs files in parallel threads; `quick=True` checks sizes and
structure only.

Structure checks (`structure.py`) are the format owners': a whole set by its manifest's kind
(index maps: `pipeline.order.mapfiles.check`; a pre-shuffled directory:
`pipeline.order.shuffled.check`, both via `pipeline.order.checks.SET_CHECKS`; dedup tables:
`pipeline.dedup.tables.check`), and every file no set owner covers by its role: `.idx`/`.bin` in
`pipeline.shards.mmidx`, the sidecar in `pipeline.tokenize.sidecar`, a lone index map in
`pipeline.order.checks.CHECKS[role]`, byte shards in `pipeline.shards.names`/`split`. Stale checks
(`pipeline.order.checks.MANIFEST_CHECKS[kind]`): index maps whose recorded dataset `.idx` differs
from the `.idx` next to them, and preshuffled data whose recorded order fingerprint differs from the
index maps it names or from its dataset's `.idx` now. Each file is hashed at most once.
"""

from __future__ import annotations

import os

from pipeline.verify.directory import collect_sources
from pipeline.verify.report import Entry, Problem, Source, VerifyReport
from pipeline.verify.run import is_manifest, verify_paths
from pipeline.verify.structure import check_index_map, check_npy


def check_index(idx_path: str | os.PathLike, one_doc_per_item: bool = False) -> list[str]:
    """`pipeline.shards.mmidx.check_index` (numpy is imported only when a check runs)."""
    from pipeline.shards.mmidx import check_index as check

    return check(idx_path, one_doc_per_item)


def check_bin(bin_path: str | os.PathLike, idx_path: str | os.PathLike) -> list[str]:
    """`pipeline.shards.mmidx.check_bin`."""
    from pipeline.shards.mmidx import check_bin as check

    return check(bin_path, idx_path)


def check_sidecar(
    path: str | os.PathLike, idx_path: str | os.PathLike | None, full: bool
) -> list[str]:
    """`pipeline.tokenize.sidecar.check`."""
    from pipeline.tokenize.sidecar import check

    return check(path, idx_path, full)


__all__ = [
    "Entry",
    "Problem",
    "Source",
    "VerifyReport",
    "check_bin",
    "check_index",
    "check_index_map",
    "check_npy",
    "check_sidecar",
    "collect_sources",
    "is_manifest",
    "verify_paths",
]
