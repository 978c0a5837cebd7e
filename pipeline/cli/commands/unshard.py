"""`pile unshard`: join Pythia-named byte shards back into one .bin, checking hashes."""

from __future__ import annotations

NAME = "unshard"
HELP = "join {name}-{i:05d}-of-{last:05d}.bin shards back into {name}.bin, checking sha256"
DESCRIPTION = """\
Join the shards found from SHARD_DIR_OR_LIST (any shard, their directory, or their checksum list)
back into {name}.bin. Each shard's sha256 is checked against the checksum list while it is copied
(a list named {name}.shard_hashes.txt next to the shards is used automatically); --sha256 checks
the joined file. Nothing is left behind on a mismatch.
"""


def add_arguments(p) -> None:
    p.add_argument("where", metavar="SHARD_DIR_OR_LIST", help="a shard, their directory, or a list")
    p.add_argument(
        "--out",
        metavar="PATH",
        help="a .bin path, or a directory (made if missing) for {name}.bin + .idx "
        "(default: next to the shards)",
    )
    p.add_argument("--sha256", help="expected sha256 of the joined .bin")
    p.add_argument(
        "--require-hashes", action="store_true", help="fail when no checksum list is found"
    )


def run(args) -> int:
    from pipeline.shards.split import unshard

    path, digest = unshard(
        args.where, args.out, expected_sha256=args.sha256, require_hashes=args.require_hashes
    )
    print(f"{path}: sha256 {digest}")
    return 0
