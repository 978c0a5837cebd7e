"""`pile stats`: per-source component table (documents, bytes, mean size, share) of inputs."""

from __future__ import annotations

import json
import sys

from pipeline.cli.common import (
    add_engine_arguments,
    add_read_arguments,
    add_workers_argument,
    executor_from_args,
    read_config_from_args,
)
from pipeline.data import sample_files
from pipeline.errors import InputError
from pipeline.read import collect_stats

NAME = "stats"
HELP = "per-source table of documents, bytes, mean document size and share (like the Pile paper)"


def add_arguments(p) -> None:
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="files or directories (jsonl.zst, jsonl, jsonl.gz, parquet, datasets); "
        "default: the bundled sample (train, val, test)",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead")
    add_read_arguments(p)
    add_workers_argument(p)
    add_engine_arguments(p)


def run(args) -> int:
    inputs = args.inputs or [str(p) for p in sample_files()]
    config = read_config_from_args(args)
    with executor_from_args(args) as executor:
        stats = collect_stats(inputs, config, executor)
    if args.json:
        json.dump(stats.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(stats.format_table())
    if stats.rejected:
        print(
            f"{stats.rejected} rejected record(s) kept verbatim, with their reasons, in "
            f"{config.quarantine_dir}/",
            file=sys.stderr,
        )
    if not stats.documents and stats.rejected:
        raise InputError(
            f"no document could be read: all {stats.rejected} record(s) were rejected "
            f"({', '.join(f'{k}: {v}' for k, v in sorted(stats.rejected_by_reason.items()))}). "
            "Check --text-key and the input format; the reasons are in the quarantine files."
        )
    return 0
