"""Argument groups shared by several commands (reader options, workers)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.read import ReadConfig
from pipeline.read.config import DEFAULT_MAX_LINE_BYTES


def add_read_arguments(
    parser: argparse.ArgumentParser, *, default_quarantine: str | None = None
) -> None:
    g = parser.add_argument_group("reading")
    g.add_argument("--text-key", default="text", help="JSON key of the document text")
    g.add_argument(
        "--set-name-key",
        default="pile_set_name",
        help="key of the source name inside meta (or top level); 'unknown' when absent",
    )
    g.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="bad records: stop with an error, or skip them into the quarantine directory",
    )
    g.add_argument(
        "--quarantine",
        default=default_quarantine,
        metavar="DIR",
        help="where --on-error skip keeps rejected records verbatim with their reasons "
        "(default: OUT/quarantine for commands with --out, else ./quarantine)",
    )
    g.add_argument(
        "--max-line-bytes",
        type=int,
        default=DEFAULT_MAX_LINE_BYTES,
        metavar="N",
        help="longest input line (one JSON record) read; a longer one is rejected while it "
        "streams, never held in memory (with --on-error skip: copied to the quarantine)",
    )


def read_config_from_args(
    args: argparse.Namespace, out_dir: str | Path | None = None
) -> ReadConfig:
    quarantine = args.quarantine
    if args.on_error == "skip" and not quarantine:
        quarantine = str(Path(out_dir) / "quarantine") if out_dir else "quarantine"
    return ReadConfig(
        text_key=args.text_key,
        set_name_key=args.set_name_key,
        on_error=args.on_error,
        quarantine_dir=quarantine,
        max_line_bytes=args.max_line_bytes,
    )


def add_workers_argument(parser: argparse.ArgumentParser, default: int = 1) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=default,
        help="worker processes (0 = one per core); output bytes do not depend on it",
    )


def executor_from_args(args, scratch=None):
    """The executor a command's stages run on: `--engine` (default local), `--workers`,
    `--ray-address`; commands without those options get the local engine's defaults."""
    from pipeline.engine import make_executor

    return make_executor(
        getattr(args, "engine", None) or "local",
        getattr(args, "workers", None),
        scratch,
        getattr(args, "ray_address", None),
    )


def add_engine_arguments(parser: argparse.ArgumentParser, default: str | None = "local") -> None:
    """--engine and --ray-address, next to --workers (pile build passes default=None so a config
    file's `engine` is not shadowed by the flag's default)."""
    from pipeline.engine import ENGINES

    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=default,
        help="where tasks run: this machine's worker processes, or a Ray cluster (needs "
        "pip install -e '.[ray]'); output bytes do not depend on it"
        + ("" if default else " (default: from --config, else local)"),
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="with --engine ray: auto (the cluster `ray start` runs on this machine) or HOST:PORT; "
        "default: start a local Ray with --workers CPUs for this run",
    )
