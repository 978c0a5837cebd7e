"""Resolve user-given input paths into an ordered list of `InputFile`s.

Files keep the order they are given in; a directory expands to the supported files below it sorted
by their relative path (so `train/` gives `00.jsonl.zst` ... `29.jsonl.zst`). The position in the
resolved list is the file index used in every document id, so the same input list always gives the
same ids.

Supported: `.jsonl.zst`/`.jsonl.zstd`/`.zst` (the Pile), `.jsonl`/`.json`, `.jsonl.gz`/`.json.gz`,
`.parquet`, a `datasets` `save_to_disk` directory (a Dataset, or one split of a DatasetDict:
`DIR#split`, default `train`), and `hf:DIR[#split]` for local hub-style data files loaded with
`datasets.load_dataset(DIR, streaming=True)` (default split `train`; never downloads).

URLs (`s3://`, `gs://`, `hf://datasets/...`, `https://`, see `pipeline.read.remote`) resolve the
same way: a file by its name, a prefix like a directory (its objects sorted by relative path,
under the same rules), and they are named relative to their common root as local files are.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from pipeline.errors import ConfigError, InputError
from pipeline.read.document import InputFile
from pipeline.read.remote import input_stat, is_url, protocol, url_path

log = logging.getLogger(__name__)

SUFFIX_KINDS = (
    (".jsonl.zst", "jsonl.zst"),
    (".jsonl.zstd", "jsonl.zst"),
    (".json.zst", "jsonl.zst"),
    (".zst", "jsonl.zst"),
    (".jsonl.gz", "jsonl.gz"),
    (".json.gz", "jsonl.gz"),
    (".jsonl", "jsonl"),
    (".json", "jsonl"),
    (".parquet", "parquet"),
)
SUPPORTED = (
    ", ".join(s for s, _ in SUFFIX_KINDS) + ", a save_to_disk directory[#split], hf:DIR[#split]"
)


# files pile writes that a directory walk must not take for input documents
PILE_ARTIFACTS = (".docs.parquet", ".rejected.jsonl", ".reasons.jsonl")


def _is_pile_output(d: Path) -> bool:
    """A directory pile wrote: it holds one of pile's manifests (every stage writes one last),
    recognised by its self-hash field, not by name alone (datasets ship other manifest.json)."""
    try:
        entries = [e for e in os.scandir(d) if e.is_file()]
    except OSError:
        return False
    for e in entries:
        if e.name == "manifest.json" or e.name.endswith(".manifest.json"):
            try:
                with open(e.path, "rb") as fh:
                    head = fh.read(1 << 20)
            except OSError:
                continue
            if b'"manifest_sha256"' in head:
                return True
    return False


def _why(path: Path, e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return (
            "it is a symbolic link loop (it leads back to itself); point the link at a file or "
            "remove it"
        )
    if e.errno == errno.ENOENT and path.is_symlink():
        return f"it is a broken symbolic link (to {os.readlink(path)!r}); fix or remove it"
    if e.errno == errno.ENOENT:
        return "it does not exist. Check the path"
    return f"it cannot be read ({e.strerror}); check its permissions"


def _not_regular(path: Path, allow_dir: bool = False) -> str | None:
    """Why `path` (followed through links) is not an input file pile can read, or None."""
    try:
        st = path.stat()
    except OSError as e:
        return _why(path, e)
    if stat.S_ISREG(st.st_mode) or (allow_dir and stat.S_ISDIR(st.st_mode)):
        return None
    what = (
        "a FIFO (named pipe)"
        if stat.S_ISFIFO(st.st_mode)
        else "a device"
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
        else "a socket"
        if stat.S_ISSOCK(st.st_mode)
        else "a directory"
        if stat.S_ISDIR(st.st_mode)
        else "not a regular file"
    )
    return (
        f"it is {what}, not a regular file: pile reads each input more than once (statistics, "
        "dedup, tokenize), so write the data to a file and give that file"
    )


def file_kind(path: str | os.PathLike) -> str | None:
    name = str(path).lower()
    for suffix, kind in SUFFIX_KINDS:
        if name.endswith(suffix):
            return kind
    return None


def _is_save_to_disk(d: Path) -> bool:
    return (d / "dataset_dict.json").is_file() or (
        (d / "state.json").is_file() and (d / "dataset_info.json").is_file()
    )


def _pick_split(d: Path, split: str | None) -> str:
    """A DatasetDict's split: the one asked for (`DIR#split`), else `train`, as for hf: inputs;
    never all of them, which would mix validation and test data into training."""
    import json

    splits = sorted(json.loads((d / "dataset_dict.json").read_text())["splits"])
    want = split or "train"
    if want not in splits:
        raise ConfigError(
            f"input {d}: the DatasetDict has no split {want!r}; it has {', '.join(splits)}. "
            f"Name one: {d}#{splits[0]}."
        )
    return want


def _skipped_name(name: str) -> bool:
    """plain .json beside data files is metadata (ground truth, manifests, dataset cards): inside
    a directory only line-delimited names count; give such a file explicitly to read it. pile's
    own sidecars and quarantine files are not input."""
    return name.startswith(".") or name.endswith((".tmp", ".json", *PILE_ARTIFACTS))


def _expand_url(url: str) -> list[tuple[str, str, str | None]]:
    """A URL: an object by its name, or a prefix expanded like a local directory."""
    from pipeline.read import remote

    meta = remote.info(url)  # a missing object, prefix or bucket: InputError naming it
    if meta.get("type") != "directory":
        kind = file_kind(posixpath.basename(url.split("?", 1)[0]))
        if kind is None:
            raise ConfigError(
                f"input {url!r}: unsupported file type; supported for URLs: "
                f"{', '.join(s for s, _ in SUFFIX_KINDS)}. Rename the object or convert it."
            )
        return [(url, kind, None)]
    entries = remote.listing(url)
    rels = {rel for rel, _ in entries}
    if "dataset_dict.json" in rels or {"state.json", "dataset_info.json"} <= rels:
        raise ConfigError(
            f"input {url!r}: a datasets save_to_disk folder is read from a local or shared "
            "filesystem only; copy it (or export its rows as .jsonl.zst or .parquet) and give "
            "that."
        )
    # a folder pile wrote (it holds one of pile's manifests) below the prefix is not input
    outputs = []
    for rel, full in entries:
        name = posixpath.basename(rel)
        if "/" in rel and (name == "manifest.json" or name.endswith(".manifest.json")):
            if b'"manifest_sha256"' in remote.read_head(full, 1 << 20):
                outputs.append(posixpath.dirname(rel) + "/")
                log.warning(
                    "input %s: skipping %s, an output directory of pile",
                    url, full.rsplit("/", 1)[0],
                )  # fmt: skip
    found = []
    for rel, full in entries:
        parts = rel.split("/")
        if any(p.startswith(".") for p in parts[:-1]) or _skipped_name(parts[-1]):
            continue
        if any(rel.startswith(o) for o in outputs):
            continue
        kind = file_kind(parts[-1])
        if kind is not None:
            found.append((rel, full, kind))
    if not found:
        raise InputError(f"prefix {url!r} holds no input files (supported: {SUPPORTED}).")
    return [(full, kind, None) for _, full, kind in sorted(found)]


def _expand(path_str: str) -> list[tuple[str, str, str | None]]:
    if is_url(path_str):
        return _expand_url(path_str)
    if path_str.startswith("hf:"):
        rest = path_str[3:]
        base, _, split = rest.partition("#")
        if not Path(base).is_dir():
            raise InputError(
                f"{path_str}: {base!r} is not a local directory; hf: inputs are local hub-style "
                "dataset folders (the pipeline never downloads)."
            )
        return [(str(Path(base)), "hf-hub", split or "train")]
    p = Path(path_str)
    split = None
    if not p.exists() and "#" in path_str:
        base, _, split = path_str.rpartition("#")
        if _is_save_to_disk(Path(base)):
            p = Path(base)
    problem = _not_regular(p, allow_dir=True)
    if problem:
        raise InputError(f"input {path_str!r}: {problem}.")
    if p.is_dir():
        if _is_save_to_disk(p):
            if (p / "dataset_dict.json").is_file():
                return [(str(p), "hf-disk", _pick_split(p, split))]
            if split:
                raise ConfigError(
                    f"input {path_str!r}: {p} holds a single Dataset, not a DatasetDict with "
                    f"splits; drop '#{split}'."
                )
            return [(str(p), "hf-disk", None)]
        found = []
        # Directory symlinks are followed (a corpus assembled from links is common); each real
        # directory is walked once, so a link back to an ancestor (a loop) or a second link to the
        # same directory is reported and not followed again.
        walked: dict[tuple[int, int], Path] = {}
        top = p.stat()
        walked[(top.st_dev, top.st_ino)] = p
        for root, dirs, files in os.walk(p, followlinks=True):
            kept_dirs = []
            for d in sorted(dirs):
                if d.startswith("."):
                    continue
                sub = Path(root) / d
                try:
                    st = sub.stat()
                except OSError as e:
                    log.warning("input %s: skipping %s: %s", p, sub, _why(sub, e))
                    continue
                key = (st.st_dev, st.st_ino)
                if key in walked:
                    log.warning(
                        "input %s: not following %s: it leads to %s, already walked (a symbolic "
                        "link loop, or a second link to one directory)",
                        p, sub, walked[key],
                    )  # fmt: skip
                    continue
                walked[key] = sub
                if _is_pile_output(sub):
                    # an output directory of pile (it has a manifest) below the input: its
                    # tables and exports are not input documents
                    log.warning("input %s: skipping %s, an output directory of pile", p, sub)
                    continue
                kept_dirs.append(d)
            dirs[:] = kept_dirs
            for name in files:
                full = Path(root) / name
                if _skipped_name(name):
                    continue
                kind = file_kind(name)
                if kind is None:
                    continue
                problem = _not_regular(full)
                if problem:
                    # never opened: a FIFO would block the run, a device never end
                    log.warning("input %s: skipping %s: %s", p, full, problem)
                    continue
                found.append((full.relative_to(p).as_posix(), str(full), kind))
        if not found:
            raise InputError(
                f"directory {path_str!r} holds no input files (supported: {SUPPORTED})."
            )
        return [(full, kind, None) for _, full, kind in sorted(found)]
    kind = file_kind(p)
    if kind is None:
        raise ConfigError(
            f"input {path_str!r}: unsupported file type; supported: {SUPPORTED}. "
            "Rename the file or convert it."
        )
    return [(str(p), kind, None)]


def resolve_inputs(paths: Iterable[str | os.PathLike | InputFile]) -> list[InputFile]:
    """The ordered input list; already-resolved `InputFile`s pass through unchanged."""
    items = list(paths)
    if items and all(isinstance(x, InputFile) for x in items):
        return items  # type: ignore[return-value]
    if not items:
        raise ConfigError("no inputs given; pass one or more files or directories.")
    found: list[tuple[str, str, str | None]] = []
    for item in items:
        if isinstance(item, InputFile):
            raise ConfigError("mix of resolved InputFile objects and paths; pass one kind.")
        found.extend(_expand(os.fspath(item)))
    seen: dict[tuple[str, str | None], int] = {}
    for i, (path, _, split) in enumerate(found):
        key = (path if is_url(path) else os.path.realpath(path), split)
        if key in seen:
            log.warning(
                "input %s is given more than once (positions %d and %d): its documents are read "
                "again, under other ids",
                path, seen[key], i,
            )  # fmt: skip
        else:
            seen[key] = i
    _warn_unchecked([path for path, kind, _ in found if kind == "jsonl.zst"])
    names = input_names([path for path, _, _ in found])
    return [
        InputFile(
            index=i,
            path=path,
            kind=kind,
            split=split,
            name=f"{name}#{split}" if split else name,
        )
        for i, ((path, kind, split), name) in enumerate(zip(found, names))
    ]


_warned_unchecked: set[str] = set()  # once per process, however many stages resolve the inputs


def _warn_unchecked(paths: list[str]) -> None:
    """Say once that damage inside checksum-less zstd frames (the Pile's own files are written
    so) cannot be seen while reading, and how to check the files instead. The bundled sample is
    part of the package, not a download, and is left out."""
    from pipeline.data import sample_dir
    from pipeline.read.lines import zstd_checksummed

    sample = os.path.realpath(sample_dir())

    def key(p: str) -> str:
        return p if is_url(p) else os.path.realpath(p)

    new = [
        p
        for p in paths
        if key(p) not in _warned_unchecked
        and not key(p).startswith(sample + os.sep)
        and zstd_checksummed(p) is False
    ]
    if not new:
        return
    _warned_unchecked.update(key(p) for p in new)
    shown = ", ".join(new[:3]) + (f" and {len(new) - 3} more" if len(new) > 3 else "")
    log.warning(
        "%d input file(s) (%s) have zstd frames without a content checksum, so damage that still "
        "decodes cannot be detected while reading; check them against their published checksums: "
        "pile verify SHA256SUMS.txt --root DIR (the Pile's download directory carries "
        "SHA256SUMS.txt)",
        len(new), shown,
    )  # fmt: skip


def input_names(paths: Sequence[str]) -> list[str]:
    """Each path relative to the deepest directory holding all of them, '/'-separated.

    `pile/train/00.jsonl.zst` ... with `pile/val.jsonl.zst` give `train/00.jsonl.zst` ...
    `val.jsonl.zst`, wherever `pile/` is: artifacts record these names, never absolute paths.
    URLs of one protocol are named the same way (`s3://b/pile/train/00.jsonl.zst` with
    `s3://b/pile/val.jsonl.zst` give the same names), so a copy in a bucket gives the same bytes;
    a mix of local paths and URLs (or of protocols) keeps each URL whole.
    """
    if not paths:
        return []
    urls = [p for p in paths if is_url(p)]
    if urls:
        if len(urls) == len(paths) and len({protocol(u) for u in urls}) == 1:
            rests = [url_path(u) for u in urls]
            root = posixpath.commonpath([posixpath.dirname(r) for r in rests])
            return [posixpath.relpath(r, root) if root else r for r in rests]
        local = iter(input_names([p for p in paths if not is_url(p)]))
        return [p if is_url(p) else next(local) for p in paths]
    full = [os.path.abspath(p) for p in paths]
    root = os.path.commonpath([os.path.dirname(p) for p in full])
    return [Path(os.path.relpath(p, root)).as_posix() for p in full]


def input_identity(f: InputFile) -> list[int | str]:
    """What identifies an input's content for resume and fingerprints without reading it (the
    Pile is ~460 GB): [size, mtime_ns] of a local file, [size, version tag] of a URL (ETag,
    generation, ...; see `pipeline.read.remote`); [0, 0] when it cannot be stat'ed."""
    try:
        st = input_stat(f.path)
    except OSError:
        return [0, 0]
    return [st.st_size, st.st_mtime_ns]


def input_location(f: InputFile) -> str:
    """The input's absolute path, or its URL as given (`os.path.abspath` would glue a URL to
    the current directory)."""
    return f.path if is_url(f.path) else os.path.abspath(f.path)
