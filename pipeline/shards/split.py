"""Byte shards of a `.bin` for distribution, named as Pythia publishes them.

`shard_bin(bin, out_dir, shard_bytes=...)` cuts `{name}.bin` into
`{name}-{i:05d}-of-{last:05d}.bin` where `last` is the index of the last shard (not the count:
Pythia's deduped data is `-00000-of-00082` ... `-00082-of-00082`, 83 files). Pieces are exact byte
ranges (not aligned to tokens or items; Pythia's `utils/shard_memmap.py` cut 5e9-byte pieces the
same way), so `cat` of the shards in order is the original file. With `shard_bytes`, last =
total // shard_bytes exactly as Pythia computes it (an exact multiple therefore ends with an empty
shard, as Pythia's script writes); with `num_shards` N there are exactly N shards.
Next to the shards goes a checksum list in Pythia's `<file> <sha256>` format
(`{name}.shard_hashes.txt`, read and written by pipeline.checksums), covering every shard and, when
present, the `.idx` copied beside them. Shard names are pipeline.shards.names'.

`unshard(shard_or_dir_or_list, out)` joins them back, streaming, checking each shard's sha256
against the list as it is read and the result against the original `.bin`'s sha256 when known.

Both stream in 8 MiB blocks and hash while copying (one read per byte); outputs are written as
`.tmp` and renamed, so an interrupted run leaves nothing that looks finished.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.checksums import check as checksum_check
from pipeline.checksums import hash_list_name, read_checksum_list, write_checksum_list
from pipeline.errors import ConfigError, InputError, IntegrityError
from pipeline.io import atomic_open, sha256_file
from pipeline.shards.mmidx import MMIDXIndex, index_tokens, off_by
from pipeline.shards.names import SHARD_GLOB, parse_shard_name, shard_name

log = logging.getLogger(__name__)

BLOCK = 8 << 20
PYTHIA_SHARD_BYTES = 5_000_000_000  # Pythia's published shards (utils/unshard_memmap.py)
MAX_SHARDS = 100_000  # 5-digit indices


@dataclass(frozen=True)
class ShardResult:
    shards: list[Path]
    hash_list: Path
    bin_sha256: str
    total_bytes: int


def _resolve_bin(prefix_or_bin: str | os.PathLike) -> Path:
    p = Path(prefix_or_bin)
    if p.suffix == ".bin" and p.is_file():
        return p
    cand = Path(str(p) + ".bin")
    if cand.is_file():
        return cand
    if p.suffix == ".idx" and p.with_suffix(".bin").is_file():
        return p.with_suffix(".bin")
    raise InputError(
        f"{prefix_or_bin}: neither a .bin file nor a dataset prefix with a .bin next to it; pass "
        "e.g. out/pile_text_document or out/pile_text_document.bin."
    )


def _expected_bin_sha(bin_path: Path) -> str | None:
    """The sha256 a manifest next to the .bin records for it, if any."""
    from pipeline.manifest import read_manifest

    for m in sorted(bin_path.parent.glob("*manifest.json")):
        try:
            doc = read_manifest(m)
        except IntegrityError:
            continue
        for f in doc.get("files", []):
            if (m.parent / f["name"]).resolve() == bin_path.resolve():
                return str(f["sha256"])
    return None


def plan_shards(total: int, shard_bytes: int | None, num_shards: int | None) -> int:
    """Bytes per shard for a `total`-byte file (exactly one of the two options)."""
    if (shard_bytes is None) == (num_shards is None):
        raise ConfigError("give exactly one of --size BYTES or --num-shards N.")
    if num_shards is not None:
        if num_shards < 1 or num_shards > MAX_SHARDS:
            raise ConfigError(f"--num-shards {num_shards} must be in 1..{MAX_SHARDS}.")
        shard_bytes = max(1, -(-total // num_shards))
    if shard_bytes is None or shard_bytes < 1:
        raise ConfigError(f"--size {shard_bytes} must be a positive number of bytes.")
    count = total // shard_bytes + 1 if num_shards is None else num_shards
    if count > MAX_SHARDS:
        raise ConfigError(
            f"--size {shard_bytes} gives {count} shards; the 5-digit names allow {MAX_SHARDS}. "
            "Choose a larger --size."
        )
    return shard_bytes


def shard_bin(
    prefix_or_bin: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    shard_bytes: int | None = None,
    num_shards: int | None = None,
    with_idx: bool = True,
    expected_sha256: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ShardResult:
    """Cut a `.bin` into Pythia-named byte shards plus a `<file> <sha256>` list (see module doc).

    The input's sha256 is computed while reading and compared with `expected_sha256` (default: the
    value a manifest next to the `.bin` records); on mismatch nothing is left behind.
    """
    bin_path = _resolve_bin(prefix_or_bin)
    name = bin_path.name[: -len(".bin")]
    out = Path(out_dir) if out_dir is not None else bin_path.parent
    out.mkdir(parents=True, exist_ok=True)
    total = bin_path.stat().st_size
    if shard_bytes is None and num_shards is None:
        shard_bytes = PYTHIA_SHARD_BYTES
    size = plan_shards(total, shard_bytes, num_shards)
    # Pythia's rule (utils/shard_memmap.py): last = total // size, so a total that is an exact
    # multiple of --size ends with an empty shard; with --num-shards N there are exactly N.
    last = num_shards - 1 if num_shards is not None else total // size
    count = last + 1
    expected = expected_sha256 or _expected_bin_sha(bin_path)
    for stale in out.glob(glob.escape(name) + SHARD_GLOB):
        parsed = parse_shard_name(stale.name)
        if parsed and parsed[0] == name:
            stale.unlink()  # shards of an earlier cut with another count would look like ours
    whole = hashlib.sha256()
    written: list[tuple[Path, str]] = []
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    try:
        with open(bin_path, "rb", buffering=0) as src:
            for i in range(count):
                target = out / shard_name(name, i, last)
                remaining = max(0, min(size, total - i * size))
                h = hashlib.sha256()
                with atomic_open(target, "wb") as dst:
                    while remaining > 0:
                        n = src.readinto(view[: min(BLOCK, remaining)])
                        if not n:
                            raise IntegrityError(
                                f"{bin_path}: ended early while writing {target.name}; the file "
                                "changed while it was being sharded."
                            )
                        chunk = view[:n]
                        h.update(chunk)
                        whole.update(chunk)
                        dst.write(chunk)
                        remaining -= n
                        if progress:
                            progress(n)
                written.append((target, h.hexdigest()))
        digest = whole.hexdigest()
        if expected is not None and digest != expected:
            raise IntegrityError(
                f"{bin_path}: sha256 {digest} differs from the manifest's {expected}; the .bin is "
                "corrupt, so no shards were kept. Rebuild it (or run `pile verify`)."
            )
    except BaseException:
        for p, _ in written:
            p.unlink(missing_ok=True)
        raise
    listed = [(p.name, h) for p, h in written]
    idx = bin_path.with_suffix(".idx")
    if with_idx and idx.is_file():
        idx_out = out / idx.name
        if idx_out.resolve() != idx.resolve():
            with atomic_open(idx_out, "wb") as dst, open(idx, "rb") as s:
                shutil.copyfileobj(s, dst, BLOCK)
        listed.append((idx.name, sha256_file(idx_out)))
    hl = write_checksum_list(out / hash_list_name(name), listed)  # Pythia's <file> <sha256>
    log.info(
        "wrote %d shard(s) of %s (%d bytes, sha256 %s) to %s", count, bin_path, total, digest, out
    )
    return ShardResult([p for p, _ in written], hl, digest, total)


def read_hash_list(path: Path) -> dict[str, str]:
    """`{file name: sha256}` from a `<file> <sha256>` (Pythia) or `sha256sum` list."""
    return read_checksum_list(path).hashes()


def find_shards(where: str | os.PathLike) -> tuple[str, list[Path], Path | None]:
    """(name, shards in order, hash list or None) from a shard, a directory, or a hash list."""
    p = Path(where)
    hash_list: Path | None = None
    if p.is_dir():
        d = p
        names = {parsed[0] for c in d.iterdir() if (parsed := parse_shard_name(c.name))}
        if len(names) != 1:
            raise InputError(
                f"{p}: holds shards of {len(names)} datasets ({', '.join(sorted(names)) or 'none'}); "
                "pass one shard file or its hash list instead."
            )
        name = names.pop()
    elif p.is_file() and parse_shard_name(p.name):
        d, name = p.parent, parse_shard_name(p.name)[0]
    elif p.is_file():
        hash_list = p
        d = p.parent
        names = {parsed[0] for n in read_hash_list(p) if (parsed := parse_shard_name(n))}
        if len(names) != 1:
            raise InputError(f"{p}: lists shards of {len(names)} datasets; expected exactly one.")
        name = names.pop()
    else:
        raise InputError(f"{where}: no such shard, directory or hash list.")
    found: dict[int, tuple[int, Path]] = {}
    for c in d.iterdir():
        parsed = parse_shard_name(c.name)
        if parsed and parsed[0] == name:
            found[parsed[1]] = (parsed[2], c)
    lasts = {last for last, _ in found.values()}
    if len(lasts) != 1:
        raise IntegrityError(
            f"{d}: shards of {name} disagree on the last index ({sorted(lasts)}); remove the stale "
            "ones from an earlier cut."
        )
    last = lasts.pop()
    missing = sorted(set(range(last + 1)) - set(found))
    extra = sorted(set(found) - set(range(last + 1)))
    if missing or extra:
        raise IntegrityError(
            f"{d}: shards of {name} incomplete: missing indices {missing[:10]} of 0..{last}"
            + (f", unexpected {extra[:10]}" if extra else "")
            + ". Download the missing shards."
        )
    shards = [found[i][1] for i in range(last + 1)]
    for c in shards:
        _refuse_link(c)
    if hash_list is None and (d / hash_list_name(name)).is_file():
        hash_list = d / hash_list_name(name)
    return name, shards, hash_list


def _refuse_link(path: Path) -> None:
    """Only real files are joined: a shard that is a symlink (or a FIFO, a device) could pull
    content from anywhere into the output."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise InputError(
            f"{path} is a symlink (to {os.readlink(path)}); unshard joins only regular files. "
            "Copy the shard there instead of linking it."
        )
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path} is not a regular file; unshard joins only regular files.")


def unshard(
    where: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    expected_sha256: str | None = None,
    require_hashes: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[Path, str]:
    """Join shards back into `{name}.bin`; returns (path, sha256). See module doc."""
    name, shards, hl = find_shards(where)
    hashes = read_hash_list(hl) if hl is not None else {}
    if require_hashes and not hashes:
        raise IntegrityError(
            f"no hash list found for the shards of {name} (looked for "
            f"{hash_list_name(name)} beside them); pass the list itself as SHARD_DIR_OR_LIST "
            "(`pile unshard path/to/list.txt`), or drop --require-hashes."
        )
    missing_hash = [s.name for s in shards if s.name not in hashes]
    if hashes and missing_hash:
        raise IntegrityError(
            f"{hl}: has no sha256 for {missing_hash[:5]}; it belongs to another cut of {name}."
        )
    if out is None:
        target = shards[0].parent / f"{name}.bin"
    else:
        # a path ending in .bin is the file; anything else is a directory (made if missing)
        o = Path(out)
        target = o if o.suffix == ".bin" and not o.is_dir() else o / f"{name}.bin"
    target.parent.mkdir(parents=True, exist_ok=True)
    whole = hashlib.sha256()
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    with atomic_open(target, "wb") as dst:
        for s in shards:
            h = hashlib.sha256()
            with open(s, "rb", buffering=0) as f:
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    chunk = view[:n]
                    h.update(chunk)
                    whole.update(chunk)
                    dst.write(chunk)
                    if progress:
                        progress(n)
            want = hashes.get(s.name)
            if want is not None and h.hexdigest() != want:
                raise IntegrityError(
                    f"{s}: sha256 {h.hexdigest()} differs from {want} in {hl}; the shard is "
                    "corrupt. Download it again; no output was written."
                )
        digest = whole.hexdigest()
        if expected_sha256 is not None and digest != expected_sha256.lower():
            raise IntegrityError(
                f"joined {name}.bin has sha256 {digest}, expected {expected_sha256}; no output "
                "was written."
            )
    idx = shards[0].parent / f"{name}.idx"
    idx_target = target.with_suffix(".idx")
    if idx.is_file() and idx_target != idx:
        _refuse_link(idx)
        # the .idx travels with the shards (shard_bin copies it there): put it beside the .bin
        want = hashes.get(idx.name)
        if want is not None and sha256_file(idx) != want:
            raise IntegrityError(
                f"{idx}: sha256 differs from {want} in {hl}; the index is corrupt. Download it "
                "again."
            )
        with atomic_open(idx_target, "wb") as dst, open(idx, "rb") as src:
            shutil.copyfileobj(src, dst, BLOCK)
    log.info("joined %d shard(s) into %s (sha256 %s)", len(shards), target, digest)
    return target, digest


# ----------------------------------------------------------------------------------------------
# structure checks (`pile verify` dispatches here)


def check_shard_bytes(total: int, count: int, idx_path: Path, idx_label: str) -> list[str]:
    """The `count` shards of a `.bin` (`total` bytes) must hold what the `.idx` describes:
    tokens x itemsize. An unreadable `.idx` is its own problem (not repeated here)."""
    try:
        _, tokens = index_tokens(idx_path)
        itemsize = MMIDXIndex(idx_path).dtype.itemsize
    except IntegrityError:
        return []
    want = tokens * itemsize
    if total == want:
        return []
    return [
        f"the {count} shards hold {total} bytes, but {idx_label} describes {tokens} tokens x "
        f"{itemsize} = {want} ({off_by(total, want)})"
    ]


def check(where: str | os.PathLike) -> list[str]:
    """Problems of byte shards on disk (a shard, their directory or their hash list; empty =
    fine): every index 0..last present and regular, the hash list well formed, and with the
    `.idx` beside them, their bytes adding up to what it describes. Hashes are `pile verify`'s."""
    try:
        name, shards, hl = find_shards(where)
    except (InputError, IntegrityError) as e:
        return [str(e)]
    d = shards[0].parent
    problems = []
    if hl is not None:
        problems += checksum_check(hl)
    idx = d / f"{name}.idx"
    if idx.is_file():
        total = sum(s.stat().st_size for s in shards)
        problems += [
            f"{d / name}: {m}" for m in check_shard_bytes(total, len(shards), idx, idx.name)
        ]
    return problems
