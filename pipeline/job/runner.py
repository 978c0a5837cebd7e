"""`pile build`: the whole chain as a plan of stages with completion records.

Stages (for `--variant both`): dedup → tokenize-standard, tokenize-deduped → order-<v> →
preshuffle-<v> → report, then a verify pass over every manifest. Each stage is declared once, next
to its code, as a `StageSpec` (pipeline.contract); the build is made of:

    plan.py        the stages, their keys and status, derived from the specs
    sizes.py       what the stages will write, for --dry-run and the plan check
    execute.py     running the pending stages with one executor, cleaning up old outputs first
    state.py       the running / complete records in OUT/_state
    stale.py       why a key changed; variants a build leaves out that no longer match
    outdir.py      the output directory: someone else's?, symlinks, build.toml
    plan_check.py  the order/preshuffle disk plan, refused before anything is written
    faults.py      PILE_FAULT, the kill points the resume tests use

This module runs a build: lock OUT, plan, execute, verify, and redo once the stages whose outputs
the verify pass found damaged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.errors import IntegrityError
from pipeline.job.config import BuildConfig
from pipeline.job.execute import execute
from pipeline.job.faults import fault_point
from pipeline.job.outdir import check_out_dir, ensure_out_dir, write_build_toml
from pipeline.job.plan import BuildPlan, Stage, deduped_prefix
from pipeline.job.stale import StaleVariant, describe_change
from pipeline.job.stale import input_changes as _input_changes
from pipeline.job.state import load_record
from pipeline.lock import DirLock

log = logging.getLogger(__name__)

__all__ = [
    "BuildPlan",
    "Stage",
    "StaleVariant",
    "_input_changes",
    "check_out_dir",
    "damaged_stages",
    "deduped_prefix",
    "describe_change",
    "ensure_out_dir",
    "fault_point",
    "run_build",
    "write_build_toml",
]


def run_build(
    config: BuildConfig,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
    force: bool = False,
) -> tuple[BuildPlan, Any]:
    """Run (or resume) the build; returns the plan and the final verify report."""
    from pipeline.engine import LazyExecutor, make_executor
    from pipeline.verify import verify_paths

    check_out_dir(config.out, force)
    out = ensure_out_dir(config.out)

    def made():
        ex = make_executor(config.engine, config.workers, None, config.ray_address)
        log.info("%s", ex.describe())
        return ex

    executor = LazyExecutor(made)  # made when a stage first needs it: a no-op rerun starts none
    # a Ray started for this run stops at the end; a joined cluster keeps running
    with DirLock(out, "build"), executor:
        plan = BuildPlan(config, progress)
        plan.check_confined()
        plan.stale = plan.stale_variants()
        for item in plan.stale:
            log.warning("%s", item.message)
        write_build_toml(config)
        execute(plan, executor=executor)
        # every directory the stages wrote, and the build-wide outputs (the report's manifest)
        targets = verify_targets(plan)
        report = verify_paths(targets)
        # damage that kept size and mtime (bit rot) passes the cheap intact check of a rerun and
        # is found here: redo the stages owning the damaged files (and their downstream) once
        redo = damaged_stages(plan, report)
        if redo:
            for name, why in redo.items():
                log.warning("stage %s: %s; redoing the stage and those after it", name, why)
            execute(plan, redo, executor)
            report = verify_paths(targets)
        if not report.ok:
            raise IntegrityError(
                "the final verify pass failed:\n" + "\n".join(f"  {p}" for p in report.problems)
            )
    return plan, report


def verify_targets(plan: BuildPlan) -> list[str]:
    """What the final verify pass checks: each stage's top directory under OUT (`standard/`,
    `dedup/`), and for a stage writing into OUT itself (the report) its manifest."""
    targets: list[str] = []
    for st in plan.by_variant():
        rel = st.directory.relative_to(plan.out)
        if rel.parts:
            target = str(plan.out / rel.parts[0])
        else:
            target = str(plan.out / next(n for n in st.planned if n.endswith("manifest.json")))
        if target not in targets:
            targets.append(target)
    return targets


def damaged_stages(plan: BuildPlan, report: Any) -> dict[str, str]:
    """{stage: why} for the up-to-date stages whose recorded outputs the verify pass found
    damaged (size, sha256 or structure)."""
    owner: dict[Path, str] = {}
    for st in plan.stages:
        if st.status != "up-to-date":
            continue  # just written: damage there is not bit rot, redoing would not help
        rec = load_record(plan.out, st.name) or {}
        for f in rec.get("outputs", []):
            if isinstance(f, dict) and isinstance(f.get("name"), str):
                owner[(plan.out / f["name"]).resolve()] = st.name
    redo: dict[str, str] = {}
    for p in report.problems:
        if p.kind not in ("size", "sha256", "structure", "manifest"):
            continue
        name = owner.get(Path(p.path).resolve())
        if name and name not in redo:
            redo[name] = f"output {p.path} is damaged ({p.kind}: {p.message})"
    return redo
