"""`pile tokenize`: documents -> GPT-NeoX-tokenized Megatron MMIDIDX dataset + sidecar + manifest."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.cli.common import (
    add_config_arguments,
    add_engine_arguments,
    add_read_arguments,
    add_workers_argument,
    config_values,
    executor_from_args,
    read_config_from_args,
)
from pipeline.tokenize.config import TokenizeConfig

NAME = "tokenize"
HELP = "tokenize documents into {prefix}_text_document.bin/.idx (gpt-neox MMIDIDX) with a manifest"
DESCRIPTION = """\
Tokenize INPUT documents with the GPT-NeoX-20B tokenizer (gpt-neox v1.0 preprocess_data.py
semantics: one item per document, EOD appended inside the item, empty documents dropped) into
OUT/{PREFIX}_text_document.bin/.idx, a provenance sidecar OUT/{PREFIX}_text_document.docs.parquet
and OUT/{PREFIX}.manifest.json (written last). Output bytes do not depend on --workers or --backend.
--exclude skips the documents a dedup set removed (the deduped dataset).
"""


def add_arguments(p) -> None:
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="input files or directories, in order"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--prefix", required=True, help="dataset name, e.g. pile or pile_0.87_deduped")
    p.add_argument(
        "--exclude",
        metavar="DEDUP_SET",
        help="dedup output directory (its removed documents are skipped) or a .npy of int64 doc ids",
    )
    add_config_arguments(p, TokenizeConfig)
    add_workers_argument(p)
    add_engine_arguments(p)
    add_read_arguments(p)


def run(args) -> int:
    from pipeline.tokenize.stage import run_tokenize

    values = config_values(TokenizeConfig, args)
    config = TokenizeConfig.for_tokenizer(values.pop("tokenizer_path", None), **values)
    read_config = read_config_from_args(args, args.out)
    bar = None
    if sys.stderr.isatty() and not args.quiet:
        from tqdm import tqdm

        bar = tqdm(unit=" docs", desc="tokenize", file=sys.stderr)

    def progress(res) -> None:
        if bar is not None:
            bar.update(res["counts"]["documents"])

    try:
        with executor_from_args(args) as executor:
            counts = run_tokenize(
                args.inputs,
                args.out,
                args.prefix,
                config,
                read_config,
                exclude=args.exclude,
                executor=executor,
                progress=progress,
            )
    finally:
        if bar is not None:
            bar.close()
    out = Path(args.out)
    print(
        f"{out / (args.prefix + '_text_document')}: {counts['documents']:,} documents, "
        f"{counts['tokens']:,} tokens; {counts['empty_dropped']:,} empty dropped, "
        f"{counts['excluded']:,} excluded, {counts['documents_with_literal_eod']:,} containing a "
        f"literal <|endoftext|>; manifest {out / (args.prefix + '.manifest.json')}"
    )
    return 0
