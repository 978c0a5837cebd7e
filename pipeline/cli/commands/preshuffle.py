"""`pile preshuffle`: write training sample g as item g (Pythia's pre-shuffled `document` data)."""

from __future__ import annotations

from pipeline.cli.common import (
    DataOptions,
    add_config_arguments,
    add_order_arguments,
    parse_size,
    resolve_order_config,
)
from pipeline.order.config import PreshuffleOptions
from pipeline.order.preshuffle import PYTHIA_SHARD_SIZE, run_preshuffle
from pipeline.order.shuffled import DOC_IDX_FORMS

NAME = "preshuffle"
HELP = "write the pre-shuffled document.idx + document-000NN-of-000MM.bin of a token dataset"
DESCRIPTION = """\
Write OUT_DIR/document.idx and the .bin of train_iters x global_batch samples of seq_length + 1
tokens in training order (item g = training sample g), byte-sharded with Pythia's naming
(document-00000-of-000NN.bin, NN = last index) and a manifest. Step N is then the contiguous byte
range [N*global_batch*(seq_length+1)*2, (N+1)*...). Needs the index maps (`pile order`); without
order flags it uses the config recorded in their manifest when exactly one set of maps exists.
"""


def add_arguments(p) -> None:
    p.add_argument("prefix", metavar="PREFIX", help="token dataset prefix (without .idx/.bin)")
    p.add_argument(
        "--out-dir", required=True, help="output directory (e.g. out/standard/preshuffled)"
    )
    g = p.add_mutually_exclusive_group()
    add_config_arguments(
        g,
        PreshuffleOptions,
        overrides={"shard_size": {"type": parse_size, "default": PYTHIA_SHARD_SIZE}},
    )
    g.add_argument("--no-shard", action="store_true", help="write one document.bin instead")
    p.add_argument(
        "--doc-idx",
        choices=DOC_IDX_FORMS,
        default="pythia",
        help="doc_idx of document.idx: pythia = [0], byte-identical to EleutherAI's published "
        "file (gpt-neox and Pythia's batch_viewer read it; Megatron-LM's IndexedDataset only with "
        "fast_cache_load=True); full = 0..N, one document per sample, which current Megatron-LM "
        "also reads",
    )
    add_config_arguments(p, DataOptions, only=("maps_dir",), context="preshuffle")
    add_order_arguments(p, recorded=True)


def run(args) -> int:
    config = resolve_order_config(args, args.prefix, form="document", maps_dir=args.maps_dir)
    m = run_preshuffle(
        args.prefix,
        config,
        args.out_dir,
        None if args.no_shard else args.shard_size,
        maps_dir=args.maps_dir,
        doc_idx=args.doc_idx,
    )
    c = m["counts"]
    print(
        f"{c['samples']} samples of {c['sample_tokens']} tokens ({c['steps']} steps, "
        f"{c['step_bytes']} bytes/step) -> {c['shards']} file(s) in {args.out_dir}"
    )
    return 0
