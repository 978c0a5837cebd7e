"""`pile contamination`: evaluation items found in the training data, with the first step."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.cli.common import add_data_arguments
from pipeline.errors import ConfigError
from pipeline.exposure.dataset import FOREIGN_NOTE, open_from_args

NAME = "contamination"
HELP = "near-duplicates (MinHash/LSH) and exact 13-gram overlaps of evaluation sets in training"
EXIT_CONTAMINATED = 6
DESCRIPTION = f"""\
For each query document of --queries (jsonl, jsonl.zst/gz or parquet; --text-key field), the
training documents that share an exact n-gram of GPT-NeoX tokens with it (default 13) or are
near-duplicates by the dedup stage's MinHash/LSH (--threshold; counted when the MinHash estimate
passes dedup's verification cut), each with the first training step that saw it. Writes one
parquet row per (query, training document, kind) to --out and prints a summary per query set;
exit {EXIT_CONTAMINATED} when a set's contaminated fraction is above --fail-above (for CI).
Pre-shuffled data without its document-level source is searched sample by sample.
{FOREIGN_NOTE}
Examples:
  pile contamination out/deduped/pile_0.87_deduped_text_document --queries lambada_test.jsonl
  pile contamination DATA --queries a.jsonl b.parquet --fail-above 0.01 --out hits.parquet
"""


def add_arguments(p) -> None:
    add_data_arguments(p)
    q = p.add_argument_group("queries and tests")
    q.add_argument("--queries", nargs="+", required=True, help="evaluation sets (jsonl/parquet)")
    q.add_argument("--text-key", default="text", help="text field of a query row")
    q.add_argument("--id-key", default=None, help="id field of a query row (default: row number)")
    q.add_argument("--ngram", type=int, default=13, help="exact n-gram length in tokens")
    q.add_argument(
        "--threshold",
        type=float,
        default=0.87,
        help="MinHash/LSH Jaccard threshold for near-duplicates (dedup preset pythia-0.87's)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--out", default="contamination.parquet", help="parquet table of the hits")
    o.add_argument("--json", action="store_true", help="print the summary as JSON")
    o.add_argument(
        "--fail-above",
        type=float,
        default=None,
        metavar="RATE",
        help=f"exit {EXIT_CONTAMINATED} when a query set's contaminated fraction exceeds RATE",
    )


def run(args) -> int:
    from pipeline.exposure.contamination import load_queries, run_contamination, write_parquet

    if args.ngram < 1:
        raise ConfigError(f"--ngram {args.ngram} must be >= 1 (13 is the usual test)")
    if args.fail_above is not None and not 0.0 <= args.fail_above <= 1.0:
        raise ConfigError(f"--fail-above {args.fail_above} must be a fraction in [0, 1]")
    sets = []
    for path in args.queries:
        ids, texts = load_queries(path, args.text_key, args.id_key)
        name = Path(path).name.split(".")[0]
        sets.append((name, ids, texts))
    ex = open_from_args(args)
    rows, summaries = run_contamination(ex, sets, threshold=args.threshold, n=args.ngram)
    write_parquet(rows, args.out)
    if args.json:
        sys.stdout.write(json.dumps({"data": ex.data.prefix, "out": args.out,
                                     "summary": summaries}) + "\n")  # fmt: skip
    else:
        for s in summaries:
            print(
                f"{s['query_set']}: {s['contaminated']}/{s['queries']} contaminated "
                f"({s['rate']:.2%}): {s['exact']} with an exact {s['ngram']}-gram, {s['near']} "
                f"near-duplicate (J >= {s['threshold']:g}); {s['shorter_than_ngram']} shorter than "
                f"{s['ngram']} tokens (matched whole)"
            )
        print(f"wrote {len(rows)} hits to {args.out}")
    if args.fail_above is not None:
        bad = [s for s in summaries if s["rate"] > args.fail_above]
        if bad:
            print(
                "pile contamination: "
                + ", ".join(f"{s['query_set']} {s['rate']:.2%}" for s in bad)
                + f" above --fail-above {args.fail_above:g}",
                file=sys.stderr,
            )
            return EXIT_CONTAMINATED
    return 0
