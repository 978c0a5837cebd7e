"""Structure checks of listed files: `pile verify` dispatches each role to its format's owner.

Whole sets, by manifest kind (the owner reads every file of the set itself, so verify runs no
per-file check of its own on the files it covers, `pipeline.order.checks.SET_COVERS`):

    index-maps          pipeline.order.mapfiles.check (via pipeline.order.checks.SET_CHECKS)
    preshuffled         pipeline.order.shuffled.check (via pipeline.order.checks.SET_CHECKS)
    dedup               pipeline.dedup.tables.check (removed.parquet, clusters.parquet)

Single files, by role, when no set owner covers them (other manifests, checksum lists):

    idx, bin            pipeline.shards.mmidx.check_index / check_bin
    sidecar (.parquet)  pipeline.tokenize.sidecar.check
    doc/sample/shuffle  pipeline.order.checks.CHECKS[role]
    byte shards         pipeline.shards.names.shard_set_problem, pipeline.shards.split
    .npy otherwise      a readable array
    counts              a token-dataset manifest's documents/tokens against its .idx
    cross-checks        pipeline.order.checks.MANIFEST_CHECKS[kind] (index maps and preshuffled
                        data against the dataset they were built from), exposure's and find's own

Owners are imported when a file of theirs is checked: verifying a checksum list needs no numpy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import IntegrityError, PipelineError
from pipeline.io import sha256_file
from pipeline.verify.report import Entry, Problem, Source, problems_of

INDEX_MAP_ROLES = ("doc_idx", "sample_idx", "shuffle_idx")
SetCheck = Callable[[Path], list[str]]  # the set's problems, from its manifest's path
Covers = Callable[[str | None, str], bool]  # (role, listed name): does the set check read it


def _set_owner(kind: str | None) -> tuple[SetCheck, Covers] | None:
    """The owner's check of the whole set a manifest of `kind` lists, and which of its files that
    check covers; None when no owner checks the set (then each file is checked by its role)."""
    if kind is None:  # checksum lists: no stage owns them, and no stage module is imported
        return None
    from pipeline.contract import set_owner

    return set_owner(kind)  # declared by the stage writing such manifests (StageSpec.set_check)


def _owner_problems(src: Source, msgs: list[str]) -> list[Problem]:
    """A set owner's messages (`<path>: what`) as problems about the file each names (a listed
    file, the manifest, or its directory), leaving out those about files verify already
    reported missing (the owner's "file not found" would say it twice)."""
    missing = {str(e.path) for e in src.entries if e.actual_bytes is None}
    named = {str(e.path) for e in src.entries} | {str(src.path), str(src.path.parent)}
    candidates = sorted(named, key=len, reverse=True)  # the longest: a file, not its directory
    problems = []
    for m in msgs:
        where = next((c for c in candidates if m.startswith(c + ": ")), None)
        if where is None:  # "<file> is damaged: ...", "no data for ...": the whole message
            where = next((c for c in candidates if m.startswith(c + " ")), str(src.path))
            text = m
        else:
            text = m[len(where) + 2 :]
        if where not in missing:
            problems.append(Problem(where, "structure", text, str(src.path)))
    return problems


def check_npy(path: Path) -> list[str]:
    """A `.npy` that no specific check covers must at least be a readable array."""
    import numpy as np

    try:
        np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        return [f"{path}: not a readable .npy array ({e})"]
    return []


def check_index_map(role: str, path: Path) -> tuple[list[str], str | None]:
    """(problems, warning) of an index map via pipeline.order.checks (imported lazily)."""
    from pipeline.order.checks import CHECKS

    fn = CHECKS.get(role)
    if fn is None:
        return [], None
    return list(fn(path)), None


def _data_pair(name: str, suffix: str) -> str:
    # string operations, not Path: this runs once per listed file (lists of many small files)
    stem, ext = os.path.splitext(name)
    return stem + suffix if ext else name + suffix


def structure(src: Source, quick: bool) -> tuple[list[Problem], list[str]]:
    """Problems of the files `src` lists that are present: the set's owner when its kind has one
    (`_set_owner`), each other file by its role; warnings."""
    problems: list[Problem] = []
    warnings: list[str] = []
    by_name = {e.name: e for e in src.entries}
    present = {e.name for e in src.entries if e.actual_bytes is not None}
    kind = (src.manifest or {}).get("kind") if src.kind == "manifest" else None
    token_dataset = kind == "token-dataset"
    owner = _set_owner(kind)
    covered: set[str] = set()
    if owner is not None:
        check_set, covers = owner
        covered = {e.name for e in src.entries if covers(e.role, e.name)}
        refused = [e for e in src.entries if e.refused]
        if refused:  # the owner would open what verify refused to read
            warnings.append(
                f"{src.path}: the {kind} set was not checked as a whole: it lists "
                f"{refused[0].path} ({refused[0].refused})"
            )
        elif any(e.actual_bytes is not None for e in src.entries if e.name in covered):
            try:
                msgs = check_set(src.path)
            except (PipelineError, OSError, ValueError) as e:  # damage the owner did not foresee
                msgs = [f"{src.path}: the {kind} set cannot be read to check it ({e})"]
            problems += _owner_problems(src, msgs)

    def add(e: Entry, msgs: list[str]) -> None:
        problems.extend(problems_of(e.path, "structure", msgs, e.source))

    for e in src.entries:
        if e.actual_bytes is None or e.name in covered:
            continue
        role = e.role
        if role == "idx":
            from pipeline.shards.mmidx import check_index

            add(e, check_index(e.path, one_doc_per_item=token_dataset))
        elif role == "bin":
            from pipeline.shards.mmidx import check_bin

            idx_name = _data_pair(e.name, ".idx")
            idx_path = e.path.with_name(os.path.basename(idx_name))
            if idx_name in by_name and idx_name in present or idx_path.exists():
                add(e, check_bin(e.path, idx_path))
        elif role == "sidecar" and e.name.endswith(".parquet"):
            from pipeline.tokenize import sidecar

            add(e, sidecar.check(e.path, sidecar.idx_for(e.path), full=not quick))
        elif e.name.endswith(".npy") and role not in INDEX_MAP_ROLES:
            add(e, check_npy(e.path))
        elif role in INDEX_MAP_ROLES:
            msgs, warn = check_index_map(role, e.path)
            add(e, msgs)
            if warn:
                warnings.append(warn)
    problems += _shard_groups(src, by_name, covered)
    return problems, warnings


def _shard_groups(src: Source, by_name: dict[str, Entry], covered: set[str]) -> list[Problem]:
    """Byte shards: every index 0..last listed, and (with the .idx listed) sizes adding up; not
    the shards a set owner checks (`covered`: pre-shuffled shards)."""
    from pipeline.shards.names import parse_shard_name, shard_set_problem

    problems: list[Problem] = []
    groups: dict[tuple[str, str], list[tuple[int, int, Entry]]] = {}
    for e in src.entries:
        if e.role not in (None, "bin-shard") or e.name in covered:
            continue
        parsed = parse_shard_name(os.path.basename(e.name))
        if parsed:
            name, i, last = parsed
            groups.setdefault((str(Path(e.name).parent), name), []).append((i, last, e))
    for (parent, name), shards in sorted(groups.items()):
        first = shards[0][2]
        bad = shard_set_problem(name, [(i, last) for i, last, _ in shards])
        if bad:
            problems.append(Problem(str(src.path), "structure", bad, first.source))
            continue
        idx_name = str(Path(parent) / f"{name}.idx") if parent != "." else f"{name}.idx"
        idx_entry = by_name.get(idx_name)
        if idx_entry is None or idx_entry.actual_bytes is None:
            continue
        if any(e.actual_bytes is None for _, _, e in shards):
            continue
        from pipeline.shards.split import check_shard_bytes

        total = sum(e.actual_bytes for _, _, e in shards)
        msgs = check_shard_bytes(total, len(shards), idx_entry.path, idx_name)
        problems += [
            Problem(str(first.path.parent / name), "structure", m, first.source) for m in msgs
        ]
    return problems


def counts_check(src: Source) -> list[Problem]:
    """A token-dataset manifest's counts must agree with its .idx."""
    doc = src.manifest or {}
    if doc.get("kind") != "token-dataset":
        return []
    counts = doc.get("counts", {})
    idx = [e for e in src.entries if e.role == "idx" and e.actual_bytes is not None]
    if len(idx) != 1 or "documents" not in counts:
        return []
    from pipeline.shards.mmidx import index_tokens

    try:
        n, tokens = index_tokens(idx[0].path)
    except IntegrityError:
        return []
    out = []
    if counts.get("documents") != n or counts.get("tokens") != tokens:
        out.append(
            Problem(
                str(src.path),
                "manifest",
                f"counts say {counts.get('documents')} documents / {counts.get('tokens')} tokens, "
                f"{idx[0].name} has {n} items / {tokens} tokens",
            )
        )
    return out


def cross_checks(
    sources: list[Source], entries: list[Entry], quick: bool
) -> tuple[list[Problem], list[str]]:
    """Cross-checks of a manifest with the dataset it was built from (index maps, preshuffled).

    Each file is hashed at most once: a file some source listed and verify hashed reuses that
    hash (the tokenize manifest next to index maps lists their `.idx`).
    """
    kinds = {(s.manifest or {}).get("kind") for s in sources}
    if not kinds & {"index-maps", "preshuffled", "inverse-maps", "ngram-index"}:
        return [], []  # nothing to cross-check: do not pay for importing the order stage
    from pipeline.order.checks import MANIFEST_CHECKS

    checks = dict(MANIFEST_CHECKS)
    if kinds & {"inverse-maps", "ngram-index"}:  # pile exposure / find: checked by their owners
        from pipeline.exposure import inverse, textindex

        checks.update({inverse.KIND: inverse.check, textindex.KIND: textindex.check})

    known: dict[Path, str] = {}

    def sha256_of(path: Path) -> str:
        if not known:  # built on first use: most runs have no such manifest
            known.update(
                (e.path.resolve(), e.actual_sha256) for e in entries if e.actual_sha256 is not None
            )
            known[Path()] = ""  # marks it built even when nothing was hashed
        key = path.resolve()
        if key not in known:
            known[key] = sha256_file(path)
        return known[key]

    problems: list[Problem] = []
    warnings: list[str] = []
    for s in sources:
        fn = checks.get((s.manifest or {}).get("kind"))
        if fn is None:
            continue
        try:
            found, warns = fn(s.path, s.manifest, sha256_of, quick)
        except OSError as e:
            warnings.append(f"{s.path}: not checked against its dataset ({e})")
            continue
        problems += [Problem(path, "stale", msg) for path, msg in found]
        warnings += warns
    return problems, warnings
