"""Training order (gpt-neox v1.0 index maps), pre-shuffled shards and batch-exact inspection.

    from pipeline.order import OrderConfig, run_order, load_order, run_preshuffle, open_data

- `config`: `OrderConfig` (seq_length, global_batch, train_iters, seed; presets).
- `indexmap`: the gpt-neox algorithms: `build_doc_idx`, `build_sample_idx`, `build_shuffle_idx`,
  `build_doc_epoch`, `build_index_maps(sizes, config)` (in memory), `num_epochs_for`.
- `mapfiles`: the index-map files: names `index_map_paths(...)`, finding a dataset's manifests
  (`find_manifests`, `map_tags`), `save_npy`, `load_order(...)` -> `OrderMaps`, `check(manifest)`.
- `stage`: the `pile order` stage, `run_order(prefix, config, out_dir=None)`, `order_command`.
- `shuffled`: the pre-shuffled layout (`document.idx` + shards): names, index bytes, the reader
  `PreshuffledData`, `check(directory)`.
- `preshuffle`: the `pile preshuffle` stage, `run_preshuffle(prefix, config, out_dir, shard_size)`.
- `document`: `DocumentData`, a document-level dataset + its maps: `.step(N)`, `.steps(A, B)`,
  `.samples(g)`, `.provenance(g)`; `prefetch`: its cold-cache reads; `steps`: step arithmetic.
- `data`: `open_data(DATA, config)` -> `DocumentData` | `PreshuffledData` (`resolve_data`, ...).
- `inspect`: `step_report` and the output formats of `pile inspect`.
- `provenance`: the random-access provenance table and the `.docs.parquet` sidecar reader.
- `integrity`: `ReadCheck`, the manifest size/sha256 checks of the files a read touches.
- `recorded`: `recorded_config(DATA, maps_dir=None, form="auto")` -> `RecordedConfig | None`, the
  order config recorded with data on disk (what `pile inspect` / `pile preshuffle` use by default).
- `checks`: the tables `pile verify` dispatches to (`CHECKS[role]`, `MANIFEST_CHECKS[kind]`,
  `SET_CHECKS[kind]`), each pointing at its format's module.
- `reference`: literal slow ports of the gpt-neox code (test oracle).
"""

from pipeline.order.config import OrderConfig
from pipeline.order.data import open_data
from pipeline.order.document import DocumentData
from pipeline.order.indexmap import build_index_maps
from pipeline.order.mapfiles import index_map_paths, load_order
from pipeline.order.preshuffle import run_preshuffle
from pipeline.order.shuffled import PreshuffledData
from pipeline.order.stage import run_order

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
