"""Fixtures for the order tests: small MMIDIDX datasets with random tokens and a sidecar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.shards.mmidx import MMIDXWriter

SET_NAMES = ("Pile-CC", "ArXiv", "Github", "FreeLaw")


def write_dataset(
    prefix: Path, sizes, seed: int = 0, sidecar: bool = True, dtype=np.uint16, identity=True
) -> np.ndarray:
    """MMIDIDX dataset of items with `sizes` random tokens (+ docs.parquet); returns the tokens.

    Sidecar rows follow the reader's identity doc_id = file_index << 40 | (line - 1) (3 files,
    items dealt round-robin) unless identity=False (then doc_id = 7 * item + 3)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    rs = np.random.RandomState(seed)
    toks = rs.randint(0, 50277, int(sizes.sum())).astype(dtype)
    w = MMIDXWriter(prefix, dtype)
    w.add_items(toks, sizes)
    w.finalize()
    if sidecar:
        import pyarrow as pa
        import pyarrow.parquet as pq

        n = sizes.size
        i = np.arange(n, dtype=np.int64)
        line = i // 3 + 1
        doc_id = ((i % 3) << 40) | (line - 1) if identity else i * 7 + 3
        t = pa.table(
            {
                "doc_id": doc_id,
                "file": [f"train/{k % 3:02d}.jsonl.zst" for k in range(n)],
                "line": line,
                "pile_set_name": [SET_NAMES[i % len(SET_NAMES)] for i in range(n)],
                "tokens": sizes,
            }
        )
        pq.write_table(t, str(prefix) + ".docs.parquet", row_group_size=max(1, n // 3))
    return toks


@pytest.fixture
def make_dataset(tmp_path):
    def make(sizes, name="d_text_document", seed=0, sidecar=True, directory=None, identity=True):
        d = Path(directory) if directory else tmp_path
        d.mkdir(parents=True, exist_ok=True)
        prefix = d / name
        toks = write_dataset(prefix, sizes, seed, sidecar, identity=identity)
        return prefix, toks

    return make


@pytest.fixture
def ds(make_dataset):
    """A 60-item token dataset with sizes 1..39 (seeded)."""
    prefix, _ = make_dataset(np.random.RandomState(4).randint(1, 40, 60))
    return prefix
