"""`pile exposure`: tokens and documents per pile_set_name seen by step N or each checkpoint."""

from __future__ import annotations

import json
import sys

from pipeline.cli.common import add_data_arguments
from pipeline.errors import ConfigError
from pipeline.exposure.dataset import FOREIGN_NOTE, open_from_args

NAME = "exposure"
HELP = "what training had seen by step N / each Pythia checkpoint, per pile_set_name"
DESCRIPTION = f"""\
For the samples trained on in steps 0..N (inclusive), the tokens and documents seen per
pile_set_name: documents seen in part, once, or more than once (whole copies; multi-epoch runs
repeat data). --pythia-checkpoints reports Pythia's 154 checkpoints (step0, 1, 2, 4, ..., 512, then
every 1000 to 143000); checkpoint stepC had seen steps 0..C-1, and checkpoints beyond the data's
train_iters are listed as beyond. The first run builds the inverse maps next to the index maps
(or in --index-dir), with their sha256 manifest (checked by `pile verify`).
DATA and the order flags are as for `pile inspect` (pre-shuffled data needs its document-level
source for the documents and sources).
{FOREIGN_NOTE}
Examples:
  pile exposure out/standard/pile_text_document --step 1000
  pile exposure out/deduped/preshuffled --pythia-checkpoints --json --plot exposure.png
"""


def add_arguments(p) -> None:
    add_data_arguments(p)
    q = p.add_argument_group("what to report")
    q.add_argument("--step", type=int, default=None, help="training step N >= 0 (inclusive)")
    q.add_argument(
        "--pythia-checkpoints",
        action="store_true",
        help="all 154 Pythia checkpoints (stepC = steps 0..C-1)",
    )
    q.add_argument("--json", action="store_true", help="JSON instead of a table")
    q.add_argument(
        "--plot",
        default=None,
        metavar="PNG",
        help="also write a PNG of cumulative tokens per source over the checkpoints",
    )


def run(args) -> int:
    from pipeline.exposure import counts
    from pipeline.exposure.inverse import check_step

    if (args.step is None) == (not args.pythia_checkpoints):
        raise ConfigError("give exactly one of --step N or --pythia-checkpoints")
    if args.step is not None and args.step < 0:
        raise ConfigError(f"--step {args.step} must be >= 0: steps count from 0")
    ex = open_from_args(args)
    loc = ex.require_documents("the documents and sources of each sample")
    inv = loc.inv
    T = inv.maps.config.train_iters
    if args.step is not None:
        check_step(args.step, T)
        report = {"data": ex.data.prefix, **counts.exposure_at_step(inv, args.step)}
        text = counts.format_table(report)
        head = (
            f"steps 0..{args.step} ({report['samples']} samples, {report['tokens']} tokens) "
            f"of {ex.data.prefix}\n"
        )
        out = json.dumps(report) + "\n" if args.json else head + text
    else:
        rows = counts.pythia_checkpoints(inv)
        report = {"data": ex.data.prefix, "train_iters": T, "checkpoints": rows}
        if args.json:
            out = json.dumps(report) + "\n"
        else:
            lines = [f"Pythia checkpoints of {ex.data.prefix} (train_iters={T})"]
            beyond = [r["checkpoint"] for r in rows if r["beyond"]]
            for r in rows:
                if r["beyond"]:
                    continue
                docs = sum(s["documents_seen"] for s in r["sources"])
                more = sum(s["seen_more_than_once"] for s in r["sources"])
                lines.append(
                    f"{r['checkpoint']:>11}  {r['samples']:>12} samples {r['tokens']:>15} tokens "
                    f"{docs:>11} documents seen ({more} more than once)"
                )
            if beyond:
                lines.append(
                    f"{len(beyond)} checkpoints {beyond[0]} .. {beyond[-1]}: beyond the data's "
                    f"{T} training steps"
                )
            out = "\n".join(lines) + "\n"
    sys.stdout.write(out)
    if args.plot:
        from pipeline.io import atomic_write_bytes

        xs, ys, sets = counts.cumulative_tokens(inv)
        atomic_write_bytes(args.plot, counts.plot_png(xs, ys, sets))
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
