"""`pile shard`: cut a .bin into Pythia-named byte shards with a `<file> <sha256>` list."""

from __future__ import annotations

import sys

NAME = "shard"
HELP = "split a .bin into {name}-{i:05d}-of-{last:05d}.bin byte shards plus a checksum list"
DESCRIPTION = """\
Cut PREFIX_OR_BIN (out/pile_text_document or out/pile_text_document.bin) into byte shards named
like Pythia's ({name}-00000-of-{last}.bin; "of" is the last index, not the count). Streams and
hashes as it goes; when a manifest next to the .bin lists it, its sha256 is checked. Writes
{name}.shard_hashes.txt (<file> <sha256>, Pythia's format) next to the shards, with the .idx.
Default size: Pythia's 5,000,000,000 bytes.
"""


def _size(s: str) -> int:
    units = {
        "k": 1_000,
        "m": 1_000_000,
        "g": 1_000_000_000,
        "ki": 1 << 10,
        "mi": 1 << 20,
        "gi": 1 << 30,
    }
    t = s.strip().lower().rstrip("b")
    for u in sorted(units, key=len, reverse=True):
        if t.endswith(u):
            return int(float(t[: -len(u)]) * units[u])
    return int(t)


def add_arguments(p) -> None:
    p.add_argument("bin", metavar="PREFIX_OR_BIN", help="dataset prefix or its .bin")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--size", type=_size, help="bytes per shard (suffixes k, M, G, Ki, Mi, Gi)")
    g.add_argument("--num-shards", type=int, help="number of shards")
    p.add_argument("--out", metavar="DIR", help="output directory (default: next to the .bin)")
    p.add_argument(
        "--no-idx", action="store_true", help="do not copy/list the .idx with the shards"
    )


def run(args) -> int:
    from pipeline.shards.split import shard_bin

    res = shard_bin(
        args.bin,
        args.out,
        shard_bytes=args.size,
        num_shards=args.num_shards,
        with_idx=not args.no_idx,
    )
    print(f"{len(res.shards)} shard(s), {res.total_bytes:,} bytes, sha256 {res.bin_sha256}")
    print(f"checksums: {res.hash_list}")
    sys.stdout.flush()
    return 0
