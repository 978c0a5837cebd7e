"""Connected components of the candidate graph over int64 document ids (vectorised union-find).

Only documents that appear in an edge take part: `np.unique` of the endpoints gives the sorted node
list and every id is replaced by its rank (0..M-1, int32 while M < 2**31, else int64; rank order =
id order, so "smallest rank" means "smallest document id"). Then, until no edge joins two different trees:
  1. look up both endpoints' roots (the parent array is fully compressed after step 3),
  2. drop edges whose endpoints already share a root,
  3. hook: for every remaining edge, parent[max root] = min(parent[max root], min root)
     (`np.minimum.at`), then pointer-jump (parent = parent[parent]) until nothing changes.
parent[x] <= x always holds, so there are no cycles, and each root ends as the smallest id of its
component. Every round merges every tree that still has an edge with at least one other tree, so
the number of rounds is logarithmic in practice (2-4 on star-shaped LSH edges).
Memory: linear in the number of edges E, never in the corpus: it runs in the driver (the edge
list is gathered there), over int32 ranks of the M <= 2E documents that have an edge (no Python
object per node), the int64 node array plus int32 parent/rank arrays and the sort of np.unique.
Peak beyond the caller's (src, dst) (16 bytes per edge): measured 48 bytes per edge (42 per node)
on 2M LSH-like star edges (tracemalloc), e.g. ~10 GB for 200M edges; documents without a
near-duplicate cost nothing. Beyond one machine's memory it would need an out-of-core or
distributed (e.g. hash-to-min) variant; not implemented.
"""

from __future__ import annotations

import numpy as np


def connected_components(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, root): the sorted distinct ids of the edges and the smallest id of each one's component."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    if src.shape != dst.shape:
        raise ValueError(f"edge arrays differ in length: {src.shape} vs {dst.shape}")
    if len(src) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy()
    nodes = np.unique(np.concatenate([src, dst]))
    rank = np.int32 if len(nodes) < 2**31 - 1 else np.int64
    u = np.searchsorted(nodes, src).astype(rank)
    v = np.searchsorted(nodes, dst).astype(rank)
    parent = np.arange(len(nodes), dtype=rank)
    while len(u):
        ru = parent[u]
        rv = parent[v]
        live = ru != rv
        if not live.any():
            break
        u, v, ru, rv = u[live], v[live], ru[live], rv[live]
        hi = np.maximum(ru, rv)
        lo = np.minimum(ru, rv)
        np.minimum.at(parent, hi, lo)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    return nodes, nodes[parent]


def components_from_labels(nodes: np.ndarray, root: np.ndarray) -> dict[str, np.ndarray]:
    """Removed documents and cluster table of a (nodes, root) labelling (keep = the root)."""
    removed_mask = nodes != root
    roots, sizes = np.unique(root, return_counts=True)
    return {
        "removed_id": nodes[removed_mask],
        "removed_root": root[removed_mask],
        "cluster_id": roots,
        "cluster_size": sizes,
    }


def split_by_center(nodes: np.ndarray, root: np.ndarray, check) -> np.ndarray:
    """The kept document of every node under the center rule (see pipeline.dedup.config).

    In each component (`root`), the smallest unresolved id is kept and every other unresolved
    member is checked against it: `check(x, c) -> bool[]` for arrays of (member, kept) ids;
    those that pass are removed in its place, the others are resolved again among themselves in
    the next round. All components advance together (one vectorised check per round); the number
    of rounds is the largest number of documents kept in one component. Returns kept_of (int64,
    aligned with `nodes`; kept_of[i] == nodes[i] for a kept document).
    """
    nodes = np.asarray(nodes, dtype=np.int64)
    kept_of = nodes.copy()
    idx = np.arange(len(nodes))
    group = np.asarray(root, dtype=np.int64)
    while len(idx) > 1:
        # nodes ascend and the sort is stable, so each group's first entry is its smallest id
        idx = idx[np.argsort(group[idx], kind="stable")]
        g = group[idx]
        first = np.empty(len(idx), dtype=bool)
        first[0] = True
        np.not_equal(g[1:], g[:-1], out=first[1:])
        center = idx[first][np.cumsum(first) - 1]
        others = idx[~first]
        if not len(others):
            break
        centers = center[~first]
        ok = np.asarray(check(nodes[others], nodes[centers]), dtype=bool)
        kept_of[others[ok]] = nodes[centers[ok]]
        idx = others[~ok]
    return kept_of
