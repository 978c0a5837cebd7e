"""The reader streams: resident memory does not grow with the input size."""

from __future__ import annotations

import psutil
import zstandard

from pipeline.read import iter_documents


def test_rss_does_not_grow_on_large_input(tmp_path):
    path = tmp_path / "big.jsonl.zst"
    line = (
        b'{"text": "'
        + b"lorem ipsum dolor sit amet " * 150
        + b'", "meta": {"pile_set_name": "Pile-CC"}}\n'
    )
    block = line * 2000  # ~8 MB
    cctx = zstandard.ZstdCompressor(level=1)
    with open(path, "wb") as fh, cctx.stream_writer(fh) as w:
        for _ in range(40):  # ~320 MB decompressed
            w.write(block)
    proc = psutil.Process()
    n = 0
    rss_early = None
    for n, _doc in enumerate(iter_documents([path]), start=1):
        if n == 8000:
            rss_early = proc.memory_info().rss
    rss_end = proc.memory_info().rss
    assert n == 80000
    growth = rss_end - rss_early
    assert growth < 32 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over ~290 MB of input"
