"""`pile find`: when did a document, or a token sequence, enter training?"""

from __future__ import annotations

import json
import sys

import numpy as np

from pipeline.cli.common import add_data_arguments
from pipeline.errors import ConfigError
from pipeline.exposure.dataset import FOREIGN_NOTE, open_from_args

NAME = "find"
HELP = "every (step, sample, offset, epoch copy) at which a document or a text was trained on"
DESCRIPTION = f"""\
--doc ID (the reader's doc_id), --file F --line L, or --item I (its index in the .idx) lists
every piece of that document in training: step, training sample, token offset in the sample,
epoch copy, and the first step / checkpoint that had seen it (in part, and a whole copy).
--text "..." tokenizes the snippet (GPT-NeoX-20B; write it as it appears in context, e.g. with
its leading space) or --tokens takes ids, and lists every exact match inside one document (or
pre-shuffled sample) with the samples it was trained in. Snippets of at least kgram + stride - 1
tokens use a sampled k-gram index built once next to the dataset (sha256 manifest); shorter ones
(or --scan) scan the tokens. Steps count from 0; checkpoint stepC had seen steps 0..C-1.
DATA and the order flags are as for `pile inspect`; the inverse maps are built on first use.
{FOREIGN_NOTE}
Examples:
  pile find out/standard/pile_text_document --file train/00.jsonl.zst --line 17 --json
  pile find out/standard/preshuffled --text " the quick brown fox jumps over the lazy dog"
"""


def add_arguments(p) -> None:
    add_data_arguments(p)
    q = p.add_argument_group("what to find (one of)")
    q.add_argument(
        "--doc", type=int, default=None, help="reader doc_id (file_index << 40 | line-1)"
    )
    q.add_argument("--file", default=None, help="input file (as named in the sidecar), with --line")
    q.add_argument("--line", type=int, default=None, help="1-based line (row) in --file")
    q.add_argument("--item", type=int, default=None, help="item index in the dataset's .idx")
    q.add_argument("--text", default=None, help="text snippet (tokenized, exact token match)")
    q.add_argument("--tokens", default=None, help="token ids (space or comma separated)")
    o = p.add_argument_group("output and search")
    o.add_argument("--json", action="store_true", help="JSON instead of text")
    o.add_argument("--limit", type=int, default=1000, help="matches of a text mapped to training")
    o.add_argument("--scan", action="store_true", help="scan the tokens instead of the index")
    o.add_argument("--kgram", type=int, default=8, help="k-gram length of the text index")
    o.add_argument("--stride", type=int, default=16, help="anchor stride of the text index")


def _query(args) -> str:
    given = [
        n
        for n, v in (
            ("--doc", args.doc),
            ("--file/--line", args.file if args.file is not None else args.line),
            ("--item", args.item),
            ("--text", args.text),
            ("--tokens", args.tokens),
        )
        if v is not None
    ]
    if len(given) != 1:
        raise ConfigError(
            "give exactly one of --doc ID, --file F --line L, --item I, --text TEXT, --tokens IDS"
            + (f" (got {', '.join(given)})" if given else "")
        )
    if given[0] == "--file/--line" and (args.file is None or args.line is None):
        raise ConfigError("--file and --line go together: --file train/00.jsonl.zst --line 17")
    return given[0]


def _text_tokens(args) -> np.ndarray:
    if args.tokens is not None:
        try:
            ids = [int(x) for x in args.tokens.replace(",", " ").split()]
        except ValueError:
            raise ConfigError(f"--tokens {args.tokens!r}: give integer token ids") from None
    else:
        from pipeline.tokenize.encoder import load_encoder

        ids = load_encoder().encode(args.text)
    if not ids:
        raise ConfigError("the snippet has no tokens; give a non-empty --text or --tokens")
    return np.asarray(ids, dtype=np.int64)


def run(args) -> int:
    from pipeline.exposure import find
    from pipeline.exposure.dataset import doc_info

    what = _query(args)
    for flag in ("kgram", "stride", "limit"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag} {getattr(args, flag)} must be >= 1")
    ex = open_from_args(args)
    if what in ("--text", "--tokens"):
        q = _text_tokens(args)
        report = find_text(ex, q, args)
        report["query"] = {"text": args.text, "tokens": q.tolist()}
    else:
        loc = ex.require_documents("the document boundaries")
        if what == "--item":
            item = args.item
        else:
            meta = ex.inv.manifest.get("doc_id_sorted")
            item = find.resolve_item(
                ex.prov, doc=args.doc, file=args.file, line=args.line, sorted_ids=meta
            )
        report = {**find.find_item(loc, item), **doc_info(ex, item)}
    report["data"] = ex.data.prefix
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        sys.stdout.write(format_text(report))
    return 0


def find_text(ex, q: np.ndarray, args) -> dict:
    from pipeline.exposure import find, textindex
    from pipeline.exposure.dataset import doc_info

    stream = textindex.stream_of(ex.data)
    index = None
    if not args.scan and q.size >= args.kgram + args.stride - 1:
        index = textindex.open_index(stream, args.kgram, args.stride, args.index_dir)
    hits = textindex.search(stream, q, index)
    occ = []
    loc = ex.loc
    n = int(q.size)
    for t in hits[: args.limit].tolist():
        item = int(stream.item_of(np.array([t]))[0])
        off = t - int(stream.starts[item])
        if ex.data.form == "document":
            for o in find.text_occurrences(loc, item, off, n):
                if o["step"] is not None:
                    occ.append({**o, **doc_info(ex, item)})
            continue
        # pre-shuffled: item g is training sample g
        gb = ex.data.global_batch
        trained = item < ex.data.num_steps * gb
        o = {"step": item // gb if trained else None, "sample": item, "batch_index": item % gb,
             "offset": off, "tokens": n, "epoch": None, "split": False}  # fmt: skip
        if loc is not None:
            s = int(loc.maps.shuffle_idx[item])
            k, doc_item, doc_off = loc.locate(s, off)
            row = np.asarray(loc.inv.item_pos[doc_item]).tolist()
            o.update(epoch=row.index(k), item=doc_item, item_offset=doc_off)
            o.update(doc_info(ex, doc_item))
        if trained:
            occ.append(o)
    occ.sort(key=lambda d: (d["sample"], d["offset"]))
    # seen as a whole sequence only inside one sample; pieces split across two samples count
    # for first_step_any
    first = min((o["step"] for o in occ if not o["split"]), default=None)
    return {
        "first_step_any": min((o["step"] for o in occ), default=None),
        "matches": int(hits.size),
        "mapped": min(int(hits.size), args.limit),
        "search": "index" if index is not None else "scan",
        "first_step": first,
        "first_checkpoint": None if first is None else first + 1,
        "first_pythia_checkpoint": find.first_checkpoint(first),
        "occurrences": occ,
    }


def format_text(r: dict) -> str:
    lines = []
    if "item" in r:
        who = f"item {r['item']} ({r['tokens']} tokens)"
        if "doc_id" in r:
            who += f" doc_id {r['doc_id']} [{r['pile_set_name']}] {r['file']}:{r['line']}"
        lines.append(who)
    else:
        lines.append(
            f"{len(r['query']['tokens'])}-token query: {r['matches']} match(es) in the data "
            f"({r['search']}), {len(r['occurrences'])} trained occurrence(s)"
        )
    lines.append(
        f"first seen at step {r['first_step']} (checkpoint step{r['first_checkpoint']}, first "
        f"Pythia checkpoint step{r['first_pythia_checkpoint']})"
        if r["first_step"] is not None
        else "never trained on"
    )
    if r.get("first_step_whole") is not None:
        lines.append(f"a whole copy seen by step {r['first_step_whole']}")
    for o in r["occurrences"]:
        lines.append(
            f"  step {o['step']} sample {o['sample']} (batch index {o['batch_index']}) offset "
            f"{o['offset']} tokens {o['tokens']} epoch copy {o['epoch']}"
            + (" [split across samples]" if o.get("split") else "")
        )
    return "\n".join(lines) + "\n"
