"""Connected components: known graphs, a reference union-find, worst-case shapes."""

from __future__ import annotations

import numpy as np

from pipeline.dedup.components import components_from_labels, connected_components


def _reference(src, dst):
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for u, v in zip(src.tolist(), dst.tolist()):
        ru, rv = find(u), find(v)
        if ru != rv:
            parent[max(ru, rv)] = min(ru, rv)
    nodes = sorted(parent)
    return nodes, [find(x) for x in nodes]


def test_known_graph():
    big = 5 << 40
    src = np.array([3, 7, 9, big + 1, 8, 20], dtype=np.int64)
    dst = np.array([1, 3, 8, 7, 20, 21], dtype=np.int64)
    nodes, root = connected_components(src, dst)
    assert nodes.tolist() == [1, 3, 7, 8, 9, 20, 21, big + 1]
    assert root.tolist() == [1, 1, 1, 8, 8, 8, 8, 1]
    out = components_from_labels(nodes, root)
    assert out["cluster_id"].tolist() == [1, 8]
    assert out["cluster_size"].tolist() == [4, 4]
    assert out["removed_id"].tolist() == [3, 7, 9, 20, 21, big + 1]
    assert out["removed_root"].tolist() == [1, 1, 8, 8, 8, 1]


def test_empty():
    nodes, root = connected_components(np.empty(0, np.int64), np.empty(0, np.int64))
    assert len(nodes) == 0 and len(root) == 0


def test_matches_reference_on_random_graphs():
    rng = np.random.default_rng(11)
    for _ in range(20):
        n = int(rng.integers(2, 400))
        e = int(rng.integers(1, 2 * n))
        ids = np.sort(rng.choice(10**12, size=n, replace=False)).astype(np.int64)
        src = ids[rng.integers(0, n, e)]
        dst = ids[rng.integers(0, n, e)]
        keep = src != dst
        nodes, root = connected_components(src[keep], dst[keep])
        ref_nodes, ref_root = _reference(src[keep], dst[keep])
        assert nodes.tolist() == ref_nodes
        assert root.tolist() == ref_root


def test_long_path_and_big_star():
    n = 50_000
    perm = np.random.default_rng(1).permutation(n).astype(np.int64)
    nodes, root = connected_components(perm[:-1], perm[1:])  # a path in random id order
    assert len(nodes) == n and (root == 0).all()
    star_src = np.arange(1, 100_001, dtype=np.int64)
    nodes, root = connected_components(star_src, np.zeros_like(star_src))
    assert (root == 0).all() and len(nodes) == 100_001
