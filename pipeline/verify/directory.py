"""What `pile verify DIR` finds in a directory besides what its sources list.

- the sources below it: every `*manifest.json` and `*.shard_hashes.txt` (`pile shard`'s lists),
  hidden directories skipped;
- unverified artifacts: files that look like artifacts (`.bin`, `.idx`, `.npy`, `.parquet`,
  `.json`) but no source lists (`extra`), and files next to a manifest that look like its prefix's;
- leftovers of an interrupted run: `*.tmp` files and `.*.tmp` work directories (reported together
  as one problem), dedup's work folders, and stages of a build whose completion record says
  running;
- a run writing there now (a live `.lock` in, above or below it): reported as in progress.

Not artifacts: what `pile build` keeps beside its stage directories (`build.toml`, `_state/`,
`logs/`, `quarantine/`: local paths and times), and the files a stage leaves unlisted on purpose
(`UNLISTED_BY_KIND`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.checksums import HASH_LIST_SUFFIX
from pipeline.errors import ConfigError, InputError
from pipeline.verify.lists import listed_in, sniff_and_load
from pipeline.verify.report import Problem, Source

ARTIFACT_SUFFIXES = (".bin", ".idx", ".npy", ".parquet", ".tmp")  # unprefixed manifests
DIR_ARTIFACT_SUFFIXES = ARTIFACT_SUFFIXES + (".json",)  # scan of a directory argument
SOURCE_GLOBS = ("*manifest.json", "*" + HASH_LIST_SUFFIX)  # what a directory is verified against
BUILD_MARKER = "build.toml"
# Beside its stage directories `pile build` keeps files that name local paths or change from run to
# run, so no manifest lists them (README "Output layout"): they are not artifacts.
BUILD_NOT_ARTIFACTS = frozenset({"build.toml", "_state", "logs", "quarantine"})


# task work directories (`.PREFIX.tokenize.FP.tmp`, dedup's `.signatures.FP.tmp`): a killed run's
# finished tasks, reused by its rerun (pipeline/tokenize/stage.py, pipeline/dedup/stage.py)
def _is_task_work(name: str) -> bool:
    return name.startswith(".") and (".tokenize." in name or name.startswith(".signatures."))


# Files and directories a stage writes next to its manifest without listing them, by manifest kind:
# dedup's wall-clock timings.json and its keep_intermediate buckets/ and edges/.
UNLISTED_BY_KIND = {"dedup": frozenset({"timings.json", "buckets", "edges"})}
# `<name>.tmp` is pile's temporary only for names pile writes (a user's notes.tmp is not)
TMP_OF = (".bin", ".idx", ".npy", ".parquet", ".json", ".jsonl", ".html", ".png", ".toml", ".txt")
DEDUP_WORK_DIRS = frozenset({"buckets", "edges", "exact"})  # dedup's temporary folders


@dataclass
class Collected:
    sources: list[Source] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)  # directory arguments, scanned for extras
    source_files: set[Path] = field(default_factory=set)  # resolved, loadable or not
    temporaries: set[Path] = field(default_factory=set)  # resolved `*.tmp` of interrupted runs


def _temporaries(d: Path) -> list[Path]:
    """`*.tmp` files and `.*.tmp` directories below `d`: what an interrupted run leaves behind.

    Every stage writes `<name>.tmp` then renames it (pipeline.io), and tokenize and dedup keep
    their finished tasks in a hidden `.{prefix}.tokenize.{fp}.tmp/` / `.signatures.{fp}.tmp/`
    (reused by the rerun); their presence means a run was killed before it finished.
    """
    found: list[Path] = []
    for here, subdirs, files in os.walk(d):
        r = Path(here)
        tmp_dirs = [x for x in subdirs if x.endswith(".tmp")]
        found += [r / x for x in tmp_dirs]
        # not into temp dirs (their content is one leftover) nor other hidden directories
        subdirs[:] = sorted(x for x in subdirs if not x.startswith(".") and x not in tmp_dirs)
        found += [r / f for f in files if f.endswith(".tmp") and f[:-4].endswith(TMP_OF)]
    return sorted(found)


def _live_writer(d: Path) -> str | None:
    """Who is writing in `d` now (a live run's `.lock` in, above or below it), else None: its
    `*.tmp` files are work in progress, not leftovers (pipeline.lock)."""
    from pipeline.lock import LOCK_NAME, held_by_this_process, lock_holder

    candidates = [a / LOCK_NAME for a in [d.resolve(), *d.resolve().parents]]
    candidates += sorted(d.rglob(LOCK_NAME))
    for lock in candidates:
        if held_by_this_process(lock.parent):
            continue  # this process's own (the final verify pass of `pile build`)
        holder = lock_holder(lock)
        if holder:
            return f"{holder}, lock {lock}"
    return None


def _progress_line(d: Path) -> str:
    """What a running build has finished, from its completion records (`_state/` in `d` or the
    nearest directory above it that has one): 'finished: dedup, tokenize-standard; running:
    tokenize-deduped'."""
    base = next((a for a in [d.resolve(), *d.resolve().parents] if (a / "_state").is_dir()), None)
    if base is None:
        return "no stage of it has finished yet"
    done, running = [], []
    for rec_path in sorted((base / "_state").glob("*.json")):
        try:
            rec = json.loads(rec_path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict):
            status = rec.get("status", "complete")
            (done if status == "complete" else running).append(rec_path.stem)
    line = f"finished: {', '.join(done) if done else 'nothing yet'}"
    return line + (f"; running: {', '.join(running)}" if running else "")


def _unfinished_stages(d: Path) -> list[str]:
    """Stages of the build in `d` (its `_state/` records) whose record is still *running*: a run
    killed or failed there, so what `d` holds is not a finished build even if every manifest that
    exists checks out."""
    names = []
    for rec_path in sorted((d / "_state").glob("*.json")):
        try:
            rec = json.loads(rec_path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("status", "complete") != "complete":
            names.append(rec_path.stem)
    # the report is every build's last stage: a build that stopped before it (refused or failed
    # between stages) has only complete records, and is still not finished
    if (d / BUILD_MARKER).is_file() and (d / "_state").is_dir():
        if not (d / "_state" / "report.json").is_file():
            names.append("report (and any stage before it that had not started)")
    return names


def _sources_below(d: Path) -> list[Path]:
    """Every manifest and shard hash list below `d`, skipping hidden files and directories."""
    found: set[Path] = set()
    for pattern in SOURCE_GLOBS:
        for q in d.rglob(pattern):
            # hidden relative to d only: d itself may sit below a hidden directory
            if q.is_file() and not any(x.startswith(".") for x in q.relative_to(d).parts):
                found.add(q)
    return sorted(found)


def _interrupted(d: Path, tmps: list[Path]) -> list[Problem]:
    """A build in `d` whose stages did not all finish, and the temporaries `tmps` a killed run
    left in it: one problem each."""
    problems = []
    unfinished = _unfinished_stages(d)
    if unfinished:
        problems.append(
            Problem(
                str(d),
                "interrupted",
                f"stage(s) {', '.join(unfinished)} of this build did not finish (the run "
                "was killed or failed): its outputs are incomplete; rerun `pile build "
                f"--config {d / BUILD_MARKER}` to finish it",
            )
        )
    if tmps:
        names = ", ".join(str(t) for t in tmps[:10]) + (", ..." if len(tmps) > 10 else "")
        msg = (
            f"{len(tmps)} temporary file(s) of an interrupted run: {names}; rerun the "
            "command that writes them (it replaces them; delete them if you abandon "
            "that run)"
        )
        work = [t for t in tmps if t.is_dir() and _is_task_work(t.name)]
        if work:
            msg += (
                f"; {len(work)} of them hold the tasks that run finished (tokenize "
                "partials, dedup signatures), which the rerun reuses"
            )
        problems.append(Problem(str(d), "interrupted", msg))
    return problems


def collect(paths: Sequence[str | os.PathLike], root: str | os.PathLike | None) -> Collected:
    out = Collected()
    rootp = Path(root) if root is not None else None
    if rootp is not None and not rootp.is_dir():
        what = "is not a directory" if rootp.exists() else "does not exist"
        raise ConfigError(
            f"--root {rootp}: the directory {what}; pass the directory that holds the files the "
            "checksum list names."
        )
    for p in paths:
        p = Path(p)
        if p.is_dir():
            live = _live_writer(p)
            if live:
                # between stages a live build's directory looks complete and mid-stage it is
                # full of work files: neither is worth checking file by file
                out.problems.append(
                    Problem(
                        str(p),
                        "in-progress",
                        f"a run is writing here now ({live}); {_progress_line(p)}. Verify again "
                        "when it has finished",
                    )
                )
                continue
            found = _sources_below(p)
            tmps = _temporaries(p)
            out.problems += _interrupted(p, tmps)
            out.temporaries.update(t.resolve() for t in tmps)
            if not found and not tmps:
                raise InputError(
                    f"{p}: directory holds no *manifest.json or *.shard_hashes.txt, so nothing in "
                    "it can be verified; pass a manifest, a checksum list (with --root DIR if its "
                    "files are elsewhere), or the output directory of a pile stage."
                )
            out.dirs.append(p)
        elif not p.exists():
            raise InputError(
                f"{p}: no such file or directory; pass a manifest, a directory or a checksum list."
            )
        else:
            found = [p]
        for q in found:
            # --root is where an explicitly given checksum list's files are; a list found
            # inside a directory names files next to itself
            s, pr = sniff_and_load(q, rootp if q == p else None)
            out.sources += s
            out.problems += pr
            out.source_files.add(q.resolve())
    return out


def collect_sources(
    paths: Sequence[str | os.PathLike], root: str | os.PathLike | None = None
) -> tuple[list[Source], list[Problem]]:
    """Parse every PATH (manifest, checksum list, or directory of them)."""
    c = collect(paths, root)
    return c.sources, c.problems


def extra_files(manifests: list[Source], covered: frozenset[Path] = frozenset()) -> list[Problem]:
    """Files next to a manifest that look like its artifacts but no manifest or list there lists.

    `pile shard` writes its byte shards and their `*.shard_hashes.txt` next to the dataset and
    its manifest; the list (and `covered`, every file some verified source lists) counts too.
    """
    problems: list[Problem] = []
    by_dir: dict[Path, list[Source]] = {}
    for s in manifests:
        by_dir.setdefault(s.path.parent.resolve(), []).append(s)
    for d, srcs in sorted(by_dir.items()):
        listed: set[Path] = set()
        for h in sorted(d.glob("*" + HASH_LIST_SUFFIX)):
            names = listed_in(h)
            if names is not None:
                listed.add(h.resolve())
                listed.update(names)
        all_manifests = sorted(d.glob("*manifest.json"))
        for m in all_manifests:
            listed.add(m.resolve())
            try:
                doc = json.loads(m.read_text(encoding="utf-8"))
                for f in doc.get("files", []):
                    listed.add((d / f["name"]).resolve())
            except (OSError, ValueError, TypeError, KeyError):
                continue
        scan_dirs = {d} | {p.parent for p in listed if p.parent != d and d in p.parents}
        for s in srcs:
            name = s.path.name
            prefix = name[: -len("manifest.json")].rstrip(".") if name != "manifest.json" else ""
            for sd in sorted(scan_dirs):
                try:
                    children = sorted(sd.iterdir())
                except OSError:
                    continue
                for c in children:
                    if not c.is_file() or c.name.startswith("."):
                        continue
                    if c.resolve() in listed or c.resolve() in covered:
                        continue
                    if sd == d and prefix:
                        if not (
                            c.name.startswith(prefix + "_")
                            or c.name.startswith(prefix + ".")
                            or c.name.startswith(prefix + "-")
                        ):
                            continue
                    elif not c.name.endswith(ARTIFACT_SUFFIXES):
                        continue
                    problems.append(
                        Problem(
                            str(c),
                            "extra",
                            "looks like an artifact of this dataset but no manifest lists it",
                            str(s.path),
                        )
                    )
    # one report per file even when several manifests share the directory
    seen: set[str] = set()
    unique = []
    for p in problems:
        if p.path not in seen:
            seen.add(p.path)
            unique.append(p)
    return unique


def covered_by(c: Collected) -> frozenset[Path]:
    """Every file a source lists, and the sources themselves (resolved)."""
    return frozenset(c.source_files) | {e.path.resolve() for s in c.sources for e in s.entries}


def unlisted(c: Collected, covered: frozenset[Path]) -> list[Problem]:
    """Artifact-looking files below the directory arguments that no source lists (unverified)."""
    unlisted_here: dict[Path, set[str]] = {}
    for s in c.sources:
        kind = (s.manifest or {}).get("kind")
        if kind in UNLISTED_BY_KIND:
            unlisted_here.setdefault(s.path.parent.resolve(), set()).update(UNLISTED_BY_KIND[kind])
    problems: list[Problem] = []
    seen: set[Path] = set()
    for d in c.dirs:
        for here, subdirs, files in os.walk(d):
            r = Path(here)
            skip = set(unlisted_here.get(r.resolve(), ()))
            if (r / BUILD_MARKER).is_file():
                skip |= BUILD_NOT_ARTIFACTS
            if "signatures" in subdirs:  # a dedup directory: its work folders are one problem each
                for w in sorted(DEDUP_WORK_DIRS & set(subdirs) - skip):
                    n = sum(len(fs) for _, _, fs in os.walk(r / w))
                    problems.append(
                        Problem(
                            str(r / w),
                            "interrupted",
                            f"dedup work folder ({n} file(s)) of an unfinished dedup run; rerun "
                            "the dedup stage (it replaces it), or delete it",
                        )
                    )
                    skip.add(w)
            subdirs[:] = sorted(x for x in subdirs if not x.startswith(".") and x not in skip)
            for f in sorted(files):
                if f.startswith(".") or f in skip or not f.endswith(DIR_ARTIFACT_SUFFIXES):
                    continue
                if f.endswith(".tmp"):  # pile's are reported as interrupted; others are not its
                    continue
                full = (r / f).resolve()
                if full in covered or full in seen:
                    continue
                seen.add(full)
                problems.append(
                    Problem(
                        str(r / f),
                        "extra",
                        f"no manifest or checksum list under {d} lists it, so it was not verified",
                    )
                )
    return problems
