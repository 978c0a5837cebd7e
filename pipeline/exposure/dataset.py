"""Opening DATA for the exposure commands: the token data, its document-level source, the inverse
maps (built on first use) and the provenance table.

DATA is what `pile inspect` takes: a document-level prefix with its index maps, or pre-shuffled
data (whose recorded or --source document-level dataset gives the document boundaries). The
order config comes from the same flags and recorded-config detection (pipeline.cli.common).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import InputError
from pipeline.exposure.find import Locator
from pipeline.exposure.inverse import InverseMaps, open_inverse
from pipeline.order.data import open_data
from pipeline.order.document import DocumentData
from pipeline.order.shuffled import PreshuffledData

log = logging.getLogger(__name__)


@dataclass
class Exposed:
    data: DocumentData | PreshuffledData  # what DATA names
    doc: DocumentData | None  # the document-level dataset (DATA itself or the source)
    inv: InverseMaps | None
    loc: Locator | None
    prov: Any  # ProvenanceTable | None
    index_dir: str | None

    def require_documents(self, what: str) -> Locator:
        if self.loc is None:
            why = getattr(self.data, "source_error", None)
            raise InputError(
                f"{self.data.prefix} is pre-shuffled data without its document-level source, so "
                f"{what} is unknown: pass --source PREFIX (the *_text_document prefix and index "
                f"maps it was built from){f'; the recorded source is not usable: {why}' if why else ''}."
            )
        return self.loc


def open_exposed(
    data: str | os.PathLike,
    config,
    *,
    maps_dir=None,
    form: str = "auto",
    source=None,
    index_dir=None,
    need_inverse: bool = True,
    rebuild: bool = False,
) -> Exposed:
    d = open_data(data, config, maps_dir=maps_dir, form=form, source=source)
    doc = d if isinstance(d, DocumentData) else d.source
    inv = loc = prov = None
    if doc is not None:
        sizes = np.asarray(doc.ds.sizes)
        md = doc.maps_dir
        if need_inverse:
            inv = open_inverse(doc.maps, sizes, index_dir or md, md, rebuild=rebuild)
            loc = Locator(inv, sizes)
        from pipeline.order.provenance import ProvenanceTable

        n = len(sizes)
        prov = ProvenanceTable.open(doc.prefix, n, md) or ProvenanceTable.open(doc.prefix, n)
    return Exposed(d, doc, inv, loc, prov, None if index_dir is None else str(index_dir))


def doc_info(ex: Exposed, item: int) -> dict[str, Any]:
    """doc_id, pile_set_name, file, line of an item (when the dataset has provenance)."""
    if ex.prov is None:
        return {}
    row = ex.prov.rows(np.array([item]), np.array([0]))[0]
    return {k: v for k, v in row.items() if k != "tokens"}


FOREIGN_NOTE = """\
Data made elsewhere (gpt-neox / Pythia .bin/.idx + index maps, no manifests of ours): nothing is
recorded, so the pythia preset is used; for any other run pass --seq-length, --global-batch,
--train-iters and --seed (the map file names encode only num_samples, seq_length and seed). The
inverse maps are then checked against the index maps' sizes and sha256 only; without a
.docs.parquet sidecar every document counts as source "unknown" and documents are named by
--item (their index in the .idx)."""


def open_from_args(args, need_inverse: bool = True) -> Exposed:
    from pipeline.cli.common import resolve_order_config

    config = resolve_order_config(args, args.data, form=args.form, maps_dir=args.maps_dir)
    return open_exposed(
        args.data,
        config,
        maps_dir=args.maps_dir,
        form=args.form,
        source=args.source,
        index_dir=args.index_dir,
        need_inverse=need_inverse,
        rebuild=args.rebuild,
    )
