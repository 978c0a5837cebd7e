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
    # a planted repeat: 12 tokens of item 4 also inside item 10 (text search finds both)
    starts = ends + 1 - sizes
    if sizes.size > 10 and sizes[4] > 14 and sizes[10] > 14:
        toks[starts[10] + 1 : starts[10] + 13] = toks[starts[4] + 1 : starts[4] + 13]
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


class Model:
    """Brute-force replay of the training stream: flat tokens in doc_idx order, labelled with
    their doc_idx position and offset, cut into samples exactly as the definition says."""

    def __init__(self, built) -> None:
        from pipeline.order import load_order

        cfg = built["config"]
        self.cfg = cfg
        self.maps = load_order(built["prefix"], cfg)
        sizes = built["sizes"].astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        toks = built["tokens"]
        doc_idx = np.asarray(self.maps.doc_idx).astype(np.int64)
        self.doc_idx = doc_idx
        self.epoch = np.asarray(self.maps.doc_epoch).astype(np.int64)
        self.flat = np.concatenate([toks[starts[i] : starts[i + 1]] for i in doc_idx])
        self.pos = np.repeat(np.arange(doc_idx.size), sizes[doc_idx])
        self.off = np.concatenate([np.arange(sizes[i]) for i in doc_idx])
        self.F = np.concatenate([[0], np.cumsum(sizes[doc_idx])])
        self.shuffle = np.asarray(self.maps.shuffle_idx).astype(np.int64)
        L = cfg.seq_length
        self.L = L
        self.trained = cfg.train_samples

    def sample_span(self, g: int) -> slice:
        s = int(self.shuffle[g])
        return slice(s * self.L, s * self.L + self.L + 1)

    def sample_tokens(self, g: int) -> np.ndarray:
        return self.flat[self.sample_span(g)]
