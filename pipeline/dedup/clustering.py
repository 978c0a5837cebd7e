"""Step 4 of the dedup stage: which documents go.

A vectorised union-find joins the verified pairs into components; the cluster rule
(DedupConfig.cluster_rule) then picks what is kept. "center" keeps the smallest doc_id of each
component and removes a member only when it passes the same check against that kept document,
resolving the rest again among themselves (pipeline.dedup.components.split_by_center);
"component" (and verify="none") removes every member but the smallest. The kept document depends
only on the ids, never on worker count or chunking. With exact verification, each round's
member-vs-center check and the removed documents' evidence Jaccard run as executor tasks
(pipeline.dedup.verification.exact_jaccard_tasks); the union-find and the rounds' bookkeeping
stay in the main process (arrays linear in the edges).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.dedup.components import connected_components, split_by_center
from pipeline.dedup.config import DedupConfig
from pipeline.dedup.edges import SignatureStore, signature_agreement
from pipeline.dedup.verification import TOL, ExactSets, exact_jaccard_tasks, similarity_check
from pipeline.engine.base import Executor


@dataclass(frozen=True)
class Removals:
    """The removed documents (sorted), the document kept in place of each, and the evidence."""

    removed_ids: np.ndarray
    kept_ids: np.ndarray
    estimate: np.ndarray  # MinHash estimate of each removed document against its kept one
    jaccard: np.ndarray | None  # exact Jaccard, when the shingle sets were read
    kept_by_cluster_rule: int  # component members the "center" rule kept


def cluster(
    src: np.ndarray,
    dst: np.ndarray,
    config: DedupConfig,
    store: SignatureStore,
    sets: ExactSets | None,
    executor: Executor,
) -> Removals:
    nodes, root = connected_components(src, dst)
    # exact Jaccard of each node with the center it was last checked against: under the center
    # rule a removed document's evidence is the value of the check that removed it
    checked = np.full(len(nodes), np.nan) if sets is not None else None
    if config.cluster_rule == "center":
        if sets is not None:

            def check(x: np.ndarray, c: np.ndarray) -> np.ndarray:
                j = exact_jaccard_tasks(x, c, sets, executor)
                checked[np.searchsorted(nodes, x)] = j
                return j >= config.threshold - TOL

        else:
            check = similarity_check(config, store, None, executor)
        kept_of = split_by_center(nodes, root, check)
    else:
        kept_of = root
    removed_mask = nodes != kept_of
    removed_ids = nodes[removed_mask]
    removed_root = kept_of[removed_mask]
    jaccard = None
    if sets is not None:
        if config.cluster_rule == "center":
            jaccard = checked[removed_mask]
        else:
            jaccard = exact_jaccard_tasks(removed_ids, removed_root, sets, executor)
    # evidence per removed document: its similarity to the document kept in its place
    return Removals(
        removed_ids,
        removed_root,
        signature_agreement(removed_ids, removed_root, store),
        jaccard,
        int(np.count_nonzero((kept_of == nodes) & (nodes != root))),
    )
