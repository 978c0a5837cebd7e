"""`pile verify`: re-hash and structurally check artifacts against manifests or checksum lists."""

from __future__ import annotations

import sys

from pipeline.cli.common import add_engine_arguments

NAME = "verify"
HELP = "check files against manifests, sha256sum lists or Pythia's <file> <sha256> list"
DESCRIPTION = """\
Verify every PATH: a pile manifest (*.manifest.json), a directory (every *manifest.json and
`pile shard`'s *.shard_hashes.txt below it), a sha256sum list (<hash>  <file>, like the Pile's
SHA256SUMS.txt) or Pythia's list (<file> <hash>). Files are re-hashed (streaming, in parallel
threads) and checked structurally (.idx/.bin, sidecar, index maps, shards). Every missing,
mismatching, malformed or extra file is printed: in a directory, an artifact (.bin, .idx, .npy,
.parquet, .json) that no manifest or list covers is extra, since nothing verified it; *.tmp files
and .*.tmp directories are the leftovers of an interrupted run. Index maps and preshuffled data are
checked against the dataset they were built from (stale when it changed since). The exit code is 0
only when everything matches (4 otherwise; 5 for a directory a live run is writing, reported as
in progress with the stages it has finished; 3 for a directory with nothing to verify against; 2
for a --root that is not a directory). Listed files outside the list's directory (or --root) and
files that are not regular (FIFOs, devices) are refused, never read; no file content is printed.
"""


def add_arguments(p) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="manifest, directory or checksum list")
    p.add_argument(
        "--root",
        metavar="DIR",
        help="resolve the files of checksum lists relative to DIR (default: the list's own "
        "directory)",
    )
    p.add_argument("--quick", action="store_true", help="sizes and structure only, no hashing")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="files hashed in parallel (default 0: 2 per core, at most 8)",
    )
    add_engine_arguments(p)
    p.add_argument("--no-extra", action="store_true", help="do not report unlisted extra files")
    p.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="read listed files that are absolute or outside the list's directory (or --root); "
        "default: refuse them",
    )


def run(args) -> int:
    from pipeline.errors import IntegrityError
    from pipeline.verify import verify_paths

    bar = None
    if sys.stderr.isatty() and not args.quiet:
        from tqdm import tqdm

        bar = tqdm(unit=" files", desc="verify", file=sys.stderr)
    try:
        report = verify_paths(
            args.paths,
            root=args.root,
            quick=args.quick,
            workers=args.workers or None,
            extras=not args.no_extra,
            allow_outside_root=args.allow_outside_root,
            progress=(lambda e: bar.update(1)) if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.close()
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for p in report.problems:
        print(p)
    print(("quick: " if args.quick else "") + report.summary())
    if report.problems and all(p.kind == "in-progress" for p in report.problems):
        from pipeline.lock import BuildLocked

        raise BuildLocked("a run is still writing there (see above); verify when it is done.")
    if not report.ok:
        fix = "rebuild or re-download the named files."
        if report.hints:  # a list resolved against the wrong directory: say that first
            fix = " ".join(report.hints) + " Otherwise " + fix
        raise IntegrityError(f"{len(report.problems)} problem(s) found (listed above); {fix}")
    return 0
