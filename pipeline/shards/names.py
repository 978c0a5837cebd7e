"""Pythia's byte-shard naming, the one place it is spelled.

`{name}-{i:05d}-of-{last:05d}.bin`, where `last` is the index of the last shard, not the count
(Pythia's deduped data is `-00000-of-00082` ... `-00082-of-00082`, 83 files; utils/shard_memmap.py).
`pile shard` and the pre-shuffled layout (`document-000NN-of-000MM.bin`) both use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SHARD_RE = re.compile(r"^(?P<name>.+)-(?P<i>\d{5})-of-(?P<last>\d{5})\.bin$")
SHARD_GLOB = "-?????-of-?????.bin"  # appended to a glob-escaped name


def shard_name(name: str, i: int, last: int) -> str:
    return f"{name}-{i:05d}-of-{last:05d}.bin"


def parse_shard_name(filename: str) -> tuple[str, int, int] | None:
    """(name, i, last) of a shard file name, or None when it is not one."""
    m = SHARD_RE.match(filename)
    return (m["name"], int(m["i"]), int(m["last"])) if m else None


def shard_names_for(total_bytes: int, shard_size: int, name: str) -> list[str]:
    """shard_memmap's split of total_bytes: shards 0..total // shard_size (the last may be empty
    when shard_size divides total, as Pythia's script writes it)."""
    last = total_bytes // shard_size
    return [shard_name(name, i, last) for i in range(last + 1)]


def shard_set_problem(name: str, found: Iterable[tuple[int, int]]) -> str | None:
    """What is wrong with the (i, last) pairs of the shards of `name` listed together: indices of
    0..last not listed, or several `-of-` values (two cuts mixed); None when complete."""
    found = list(found)
    lasts = {last for _, last in found}
    last = max(lasts)
    missing = sorted(set(range(last + 1)) - {i for i, _ in found})
    if missing:
        return f"shards of {name}: indices {missing[:10]} of 0..{last} not listed"
    if len(lasts) > 1:
        return f"shards of {name}: mixed -of- values {sorted(lasts)}"
    return None
