"""`pile order`: gpt-neox v1.0 index maps (doc_idx, sample_idx, shuffle_idx) of a token dataset."""

from __future__ import annotations

import json
import sys

from pipeline.cli.common import add_order_arguments, order_config_from_args
from pipeline.order.mapfiles import index_map_paths
from pipeline.order.stage import run_order

NAME = "order"
HELP = "build the gpt-neox v1.0 training-order index maps (.npy) of a token dataset"
DESCRIPTION = """\
Build {PREFIX}_train_0_indexmap_{ns}ns_{sl}sl_{seed}s_{doc,sample,shuffle}_idx.npy exactly as
gpt-neox v1.0 (the code Pythia was trained with) does, from the item sizes of PREFIX.idx, plus a
_doc_epoch.npy (epoch copy of each doc_idx entry, for `pile inspect --provenance`) and a manifest.
num_samples = ceil(train_iters x global_batch x 1.005). Example (Pythia):
  pile order out/deduped/pile_0.87_deduped_text_document --preset pythia
"""


def add_arguments(p) -> None:
    p.add_argument("prefix", metavar="PREFIX", help="token dataset prefix (without .idx/.bin)")
    p.add_argument(
        "--out-dir", default=None, help="where to write the maps (default: next to PREFIX)"
    )
    p.add_argument("--reuse", action="store_true", help="keep maps whose manifest already matches")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    add_order_arguments(p)


def run(args) -> int:
    config = order_config_from_args(args)
    manifest = run_order(args.prefix, config, args.out_dir, reuse=args.reuse)
    if args.json:
        json.dump(manifest, sys.stdout, indent=1, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    c = manifest["counts"]
    paths = index_map_paths(args.prefix, config, args.out_dir)
    print(
        f"{c['items']} items, {c['tokens_per_epoch']} tokens/epoch, {c['num_epochs']} epoch(s), "
        f"{c['num_total_samples']} samples ({c['num_samples']} requested, "
        f"{c['train_samples']} trained in {c['steps']} steps of {config.global_batch})"
    )
    for role in ("doc_idx", "sample_idx", "shuffle_idx", "manifest"):
        print(f"{role:12s} {paths[role]}")
    return 0
