"""`pile inspect`: the exact tokens of training step N, with text and provenance."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np

from pipeline.cli.common import (
    DataOptions,
    add_config_arguments,
    add_order_arguments,
    order_config_and_origin,
)
from pipeline.errors import ConfigError, InputError
from pipeline.order.data import open_data
from pipeline.order.inspect import format_summary, format_text, save_steps_npy, step_report

log = logging.getLogger(__name__)

NAME = "inspect"
HELP = "show the [global_batch, seq_length+1] tokens of training step N (text, provenance)"
DESCRIPTION = """\
DATA is a document-level token dataset prefix (its gpt-neox index maps next to it or in
--maps-dir) or a pre-shuffled `document` dataset (a directory holding document.idx, or the
document prefix; joined document.bin or Pythia-style shards), ours or EleutherAI's.
Steps count from 0: step N is training samples [N*global_batch, (N+1)*global_batch); checkpoint
stepN has seen the samples below N*global_batch.
Without --preset/--seq-length/--global-batch/--train-iters/--seed the order config is the one
recorded with DATA (document.manifest.json of pre-shuffled data; the manifest of the only index
maps of a document-level dataset), else the pythia preset (EleutherAI's published data).
Every read checks the size of each file against the manifest listing it and the structure of
what it touches (map values in range, offsets and sizes consistent); damage found is exit 4
naming the file. A flipped byte inside token data keeps sizes and structure intact: only a hash
finds it, so pass --verify-hashes (or run `pile verify`) when the tokens must be trusted.
The default output (--format summary) is a page per step: for each sample its token count,
the source documents it spans and the first characters of its text. --format text prints every
token id (with --decode the full text, with --provenance every span), json and npy are for
programs.
Examples:
  pile inspect out/standard/pile_text_document --step 0
  pile inspect out/standard/pile_text_document --step 0 --sample 3 --format json --decode --provenance
  pile inspect out/standard/preshuffled --step 1000 --format npy -o step1000.npy
  pile inspect DATA --start-step 0 --end-step 9 --save-path token_indicies   (batch_viewer.py)
"""


def add_arguments(p) -> None:
    p.add_argument("data", metavar="DATA", help="dataset prefix, .idx/.bin path or directory")
    p.add_argument(
        "--step",
        type=int,
        default=None,
        help="training step N >= 0 (required unless the range form is used)",
    )
    p.add_argument(
        "--sample",
        type=int,
        default=None,
        help="only sample i (0..global_batch-1) of the step (default: all of them)",
    )
    p.add_argument(
        "--decode",
        action="store_true",
        help="add the decoded text (GPT-NeoX-20B) to --format text/json (the summary always "
        "shows the first characters)",
    )
    p.add_argument(
        "--provenance",
        action="store_true",
        help="list the documents each sample spans (doc id, source, file:line, token ranges, "
        "epoch copy: 0 = the item's first occurrence in doc_idx, 1 = its second, ...) in --format "
        "text/json; the summary lists them whenever the source is known, and with this flag an "
        "unknown source is an error",
    )
    p.add_argument(
        "--format",
        choices=("summary", "text", "json", "npy"),
        default="summary",
        help="summary: per sample its token count, source documents (pile_set_name, doc_id, "
        "file:line) and first characters of text; text: every token id (+ the full text with "
        "--decode, every span with --provenance); json: the same as one JSON object; npy: the "
        "token array",
    )
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="output file; '-' = stdout (default: stdout for text/json, step{N}.npy for npy)",
    )
    r = p.add_argument_group("range form (Pythia utils/batch_viewer.py)")
    r.add_argument("--start-step", type=int, default=None, help="first step (inclusive, >= 0)")
    r.add_argument(
        "--end-step", type=int, default=None, help="last step (inclusive, >= --start-step)"
    )
    r.add_argument(
        "--save-path",
        default="token_indicies",
        help="directory for indicies.npy of shape ((end-start+1)*global_batch, seq_length+1)",
    )
    d = p.add_argument_group("data")
    add_config_arguments(
        d, DataOptions, only=("form", "maps_dir", "verify_hashes", "source"), context="inspect"
    )
    add_order_arguments(p, recorded=True)


def run(args) -> int:
    ranged = args.start_step is not None or args.end_step is not None
    if ranged and args.step is not None:
        raise ConfigError("give either --step N or --start-step A --end-step B, not both")
    if not ranged and args.step is None:
        raise ConfigError("--step N is required (or the range form --start-step A --end-step B)")
    if ranged and (args.start_step is None or args.end_step is None):
        raise ConfigError("the range form needs both --start-step and --end-step")
    if ranged and (
        args.decode
        or args.provenance
        or args.sample is not None
        or args.format not in ("npy", "text", "summary")
    ):
        raise ConfigError(
            "the range form writes an .npy only; drop --decode/--provenance/--sample/--format"
        )
    # negative values are their own error (not "beyond the end"), caught before any data is read
    for flag in ("step", "sample", "start_step", "end_step"):
        v = getattr(args, flag)
        if v is not None and v < 0:
            raise ConfigError(
                f"--{flag.replace('_', '-')} {v} must be >= 0: steps and samples count from 0"
            )
    if ranged and args.end_step < args.start_step:
        raise ConfigError(
            f"--end-step {args.end_step} is before --start-step {args.start_step}; the range is "
            "inclusive, pass --end-step >= --start-step"
        )
    if not ranged and args.format == "npy" and (args.decode or args.provenance):
        raise ConfigError(
            "--format npy holds tokens only; use --format json or text with --decode/--provenance"
        )
    # which config was used goes into the summary, not onto stderr (-v shows it for every format)
    config, origin = order_config_and_origin(
        args, args.data, form=args.form, maps_dir=args.maps_dir
    )
    log.debug("%s", origin)
    data = open_data(
        args.data,
        config,
        maps_dir=args.maps_dir,
        form=args.form,
        source=args.source,
        verify_hashes=args.verify_hashes,
    )
    if ranged:
        path = Path(args.output) if args.output else Path(args.save_path) / "indicies.npy"
        shape = save_steps_npy(data, args.start_step, args.end_step, path)
        print(f"saved {shape[0]} x {shape[1]} {np.dtype(data.dtype).name} tokens of steps "
              f"{args.start_step}..{args.end_step} to {path}")  # fmt: skip
        return 0
    if args.format == "npy":
        if args.sample is not None and not 0 <= args.sample < data.global_batch:
            raise ConfigError(
                f"--sample {args.sample} is outside the batch: a step has samples "
                f"0..{data.global_batch - 1} (global_batch={data.global_batch})"
            )
        batch = data.step(args.step)
        arr = batch if args.sample is None else batch[args.sample]
        if args.output == "-":
            np.save(sys.stdout.buffer, arr)
            return 0
        path = Path(args.output or f"step{args.step}.npy")
        from pipeline.io import atomic_open

        with atomic_open(path, "wb") as f:
            np.save(f, arr)
        print(
            f"saved {arr.shape} {arr.dtype} tokens of step {args.step} to {path}", file=sys.stderr
        )
        return 0
    if args.format == "summary":
        text = _summary(data, args, origin)
    else:
        report = step_report(
            data, args.step, sample=args.sample, decode=args.decode, provenance=args.provenance
        )
        text = (
            json.dumps(report, ensure_ascii=False) + "\n"
            if args.format == "json"
            else format_text(report)
        )
    if args.output and args.output != "-":
        from pipeline.io import atomic_write_text

        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _summary(data, args, origin: str) -> str:
    """The default page: decoded text and source documents when they can be had; without
    --provenance a missing source is a note, not an error."""
    tokens = data.step(args.step)
    why = None
    provenance = True
    if not args.provenance:
        try:
            gb = data.global_batch
            data.provenance(np.array([args.step * gb]))
        except InputError as e:
            provenance, why = False, str(e)
    report = step_report(
        data, args.step, sample=args.sample, decode=True, provenance=provenance, tokens=tokens
    )
    return format_summary(report, origin=origin, no_provenance=why)
