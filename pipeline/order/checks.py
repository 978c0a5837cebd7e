"""The structural checks `pile verify` dispatches to, by manifest role and by manifest kind.

Each format's checks live with the format (pipeline.order.mapfiles for the index maps,
pipeline.order.shuffled for the pre-shuffled layout); these tables only map a role or a kind to
them:

- `CHECKS[role](path) -> list[str]`: the problems of one index-map `.npy` (roles doc_idx,
  sample_idx, shuffle_idx), needing only the file.
- `MANIFEST_CHECKS[kind](manifest_path, doc, sha256_of, quick)`: cross-checks of a manifest with
  the dataset it was built from ("index-maps": the dataset `.idx` changed; "preshuffled": the
  maps or dataset it was written from changed).
- `SET_CHECKS[kind](path) -> list[str]`: the structure of a whole set (the index maps of one
  manifest; a pre-shuffled directory), given its manifest's path.
- `SET_COVERS[kind](role, name) -> bool`: the listed files a set check reads itself, so `pile
  verify` runs no per-file check of its own on them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.order import mapfiles, shuffled
from pipeline.order.mapfiles import (  # noqa: F401 (re-exported)
    CHECKS,
    HashOf,
    check_against_sizes,
    check_doc_idx,
    check_maps_dataset,
    check_sample_idx,
    check_shuffle_idx,
)
from pipeline.order.shuffled import check_preshuffled_source  # noqa: F401 (re-exported)

MANIFEST_CHECKS: dict[
    str, Callable[[Path, dict, HashOf, bool], tuple[list[tuple[str, str]], list[str]]]
] = {
    mapfiles.MANIFEST_KIND: mapfiles.check_maps_dataset,
    shuffled.PRESHUFFLED_KIND: shuffled.check_preshuffled_source,
}

SET_CHECKS: dict[str, Callable[[Path], list[str]]] = {
    mapfiles.MANIFEST_KIND: mapfiles.check,
    shuffled.PRESHUFFLED_KIND: lambda manifest: shuffled.check(Path(manifest).parent),
}

SET_COVERS: dict[str, Callable[[str | None, str], bool]] = {
    # the three maps and the doc_epoch sidecar (its shape); provenance tables are not the maps'
    mapfiles.MANIFEST_KIND: lambda role, name: (
        role in mapfiles.ROLES or name.endswith("_doc_epoch.npy")
    ),
    # document.idx and its data (document.bin or every shard): the whole layout
    shuffled.PRESHUFFLED_KIND: lambda role, name: role in ("idx", "bin", "bin-shard"),
}
