"""Training order (gpt-neox v1.0 index maps), pre-shuffled shards and batch-exact inspection.

    from pipeline.order import OrderConfig, run_order, load_order, run_preshuffle, open_data

- `indexmap`: `OrderConfig`, `run_order(prefix, config, out_dir=None)`, `load_order(...)`,
  `build_index_maps(sizes, config)` (in memory), file names `index_map_paths(...)`.
- `preshuffle`: `run_preshuffle(prefix, config, out_dir, shard_size=30e9)`.
- `inspect`: `open_data(DATA, config)` -> `DocumentData` | `PreshuffledData` with `.step(N)`,
  `.steps(A, B)`, `.samples(g)`, `.provenance(g)`.
- `recorded`: `recorded_config(DATA, maps_dir=None, form="auto")` -> `RecordedConfig | None`, the
  order config recorded with data on disk (what `pile inspect` / `pile preshuffle` use by default).
- `checks`: `CHECKS[role](path) -> list[str]` for roles doc_idx / sample_idx / shuffle_idx.
- `reference`: literal slow ports of the gpt-neox code (test oracle).
"""

from pipeline.order.indexmap import (
    OrderConfig,
    build_index_maps,
    index_map_paths,
    load_order,
    run_order,
)
from pipeline.order.inspect import DocumentData, PreshuffledData, open_data
from pipeline.order.preshuffle import run_preshuffle

__all__ = [
    "DocumentData",
    "OrderConfig",
    "PreshuffledData",
    "build_index_maps",
    "index_map_paths",
    "load_order",
    "open_data",
    "run_order",
    "run_preshuffle",
]
