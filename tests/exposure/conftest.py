"""Small multi-epoch builds for the exposure tests: a random-token dataset with a sidecar (4
sources) and its index maps, plus its pre-shuffled copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.order import OrderConfig, run_order, run_preshuffle
from pipeline.shards.mmidx import MMIDXWriter

SET_NAMES = ("Pile-CC", "ArXiv", "Github", "FreeLaw")
# 3 epochs: 60 items of 1..59 tokens (~1800 tokens), 4 x 40 samples of 16 + 1 tokens
CONFIG = OrderConfig(seq_length=16, global_batch=4, train_iters=70, seed=7)


def write_dataset(prefix: Path, sizes, seed: int = 0, vocab: int = 50) -> np.ndarray:
    """MMIDIDX dataset of items of random tokens from a small vocabulary (so short snippets
    repeat), each ending with EOD 0, + a reader-style docs.parquet sidecar."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sizes = np.asarray(sizes, dtype=np.int64)
    rs = np.random.RandomState(seed)
    toks = rs.randint(1, vocab, int(sizes.sum())).astype(np.uint16)
    ends = np.cumsum(sizes) - 1
    toks[ends] = 0
    w = MMIDXWriter(prefix, np.uint16)
    w.add_items(toks, sizes)
    w.finalize()
    n = sizes.size
    i = np.arange(n, dtype=np.int64)
    line = i // 3 + 1
    t = pa.table(
        {
            "doc_id": ((i % 3) << 40) | (line - 1),
            "file": [f"train/{k % 3:02d}.jsonl.zst" for k in range(n)],
            "line": line,
            "pile_set_name": [SET_NAMES[k % len(SET_NAMES)] for k in range(n)],
            "tokens": sizes,
        }
    )
    # doc_id increases with the item only when sorted by (file, line): keep reader order instead
    pq.write_table(t, str(prefix) + ".docs.parquet", row_group_size=max(1, n // 3))
    return toks


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("exposure")
    prefix = d / "d_text_document"
    sizes = np.random.RandomState(3).randint(2, 60, 60)
    toks = write_dataset(prefix, sizes)
    run_order(prefix, CONFIG)
    run_preshuffle(prefix, CONFIG, d / "preshuffled", shard_size=4096)
    return {"dir": d, "prefix": prefix, "sizes": sizes, "tokens": toks, "config": CONFIG}
