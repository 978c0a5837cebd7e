"""The Pile's 22 components (`manifests/pile_sources.json`, shipped as `pipeline.manifests`).

`PILE_SET_NAMES` are the exact `meta.pile_set_name` strings, in the order of Table 1 of the Pile
paper (Gao et al. 2020); `load_pile_sources()` returns the published per-component figures and
`load_pile_manifest()` the whole manifest (also the Pile's file layout and document counts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

MANIFEST_NAME = "pile_sources.json"

PILE_SET_NAMES: tuple[str, ...] = (
    "Pile-CC",
    "PubMed Central",
    "Books3",
    "OpenWebText2",
    "ArXiv",
    "Github",
    "FreeLaw",
    "StackExchange",
    "USPTO Backgrounds",
    "PubMed Abstracts",
    "Gutenberg (PG-19)",
    "OpenSubtitles",
    "Wikipedia (en)",
    "DM Mathematics",
    "Ubuntu IRC",
    "BookCorpus2",
    "EuroParl",
    "HackerNews",
    "YoutubeSubtitles",
    "PhilPapers",
    "NIH ExPorter",
    "Enron Emails",
)


@dataclass(frozen=True)
class PileSource:
    """One row of the Pile paper's Table 1 (sizes in GiB/KiB as printed there)."""

    name: str
    raw_size_gib: float
    weight_pct: float
    epochs: float
    effective_size_gib: float
    mean_document_kib: float


@cache
def _load() -> dict[str, Any]:
    text = resources.files("pipeline.manifests").joinpath(MANIFEST_NAME).read_text("utf-8")
    return json.loads(text)


def load_pile_manifest() -> dict[str, Any]:
    """The whole manifest as a dict (a copy): sources, totals, file layout, document counts."""
    return json.loads(json.dumps(_load()))


def load_pile_sources() -> tuple[PileSource, ...]:
    """The 22 components in Table 1 order."""
    return tuple(PileSource(**row) for row in _load()["sources"])
