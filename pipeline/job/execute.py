"""Running a plan: each pending stage's spec `run` with the build's executor, between a *running*
and a *complete* record (pipeline.job.state).

Before a stage runs, the files its previous record names (the outputs of a finished run, or the
planned outputs of a killed or failed one, whatever its config) and any `*.tmp` of its planned
names are removed, and a *running* record listing the files it may write is stored; so a rerun of
a killed build produces the same bytes as an uninterrupted one, leaves no file of another config
behind, and an artifact built with another config is never reused. Its complete record lists the
files of the manifest the stage wrote last.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.job.faults import fault_point
from pipeline.job.state import COMPLETE, load_record, owned_files, write_record, write_running

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.engine.base import Executor
    from pipeline.job.plan import BuildPlan, Stage

log = logging.getLogger(__name__)


def execute(
    plan: BuildPlan, redo: dict[str, str] | None = None, executor: Executor | None = None
) -> list[Stage]:
    """Run the pending stages of `plan` in order (`redo`: stages to run anyway, with why).
    Without `executor`, one local executor of the build's worker count runs them all."""
    if executor is None:
        from pipeline.engine import make_executor

        cfg = plan.config
        with make_executor(cfg.engine, cfg.workers, None, cfg.ray_address) as ex:
            return execute(plan, redo, ex)
    from pipeline.job.plan_check import check_plan

    plan.refresh_status(refresh=True, redo=redo)
    if plan.config.engine != "local" and any(s.status != "up-to-date" for s in plan.stages):
        executor.workers  # noqa: B018 - join the cluster (or fail: no Ray) before any stage runs
    # refuse a plan that cannot fit before any stage runs (what is known now), and again once
    # the token counts are known, before the first stage whose size depends on them
    warned: set[str] = set()
    check_plan(plan, "before the first stage", warned)
    checked = False
    for st in plan.stages:
        if not checked and st.spec.sized_by_tokens:
            check_plan(plan, "after tokenize, before order", warned)
            checked = True
        if st.status == "up-to-date":
            log.info("stage %s: up to date, skipped", st.name)
            plan.progress(st.name, {"status": "skipped"})
            continue
        clean_stage(plan.out, st)
        log.info("stage %s: running (%s)", st.name, st.reason)
        plan.progress(st.name, {"status": "start"})
        fault_point(st.name, "start")
        t0 = time.perf_counter()
        result = st.spec.run(plan, st.variant, executor)
        st.seconds = time.perf_counter() - t0
        st.info = jsonable(result.info)
        fault_point(st.name, "end")
        write_record(
            plan.out,
            st.name,
            st.key,
            manifest_outputs(result.manifest),
            {"info": st.info},
            st.planned,
            basis=st.basis,
        )
        st.status = "done"
        plan.progress(st.name, {"status": "done", "seconds": st.seconds})
        log.info("stage %s: done in %.2f s", st.name, st.seconds)
    return plan.stages


def clean_stage(out: Path, st: Stage) -> None:
    """Remove what a previous (other-config, failed or killed) run of this stage left behind,
    then store the running record. The old record goes only after its files: a build killed
    in between still knows what to remove. Only names the stage writes are touched (its
    planned files and their `.tmp`), never another file in the stage's directory."""
    rec = load_record(out, st.name)
    why = removal_reason(rec, st.reason)
    for p in owned_files(out, rec, st.owns):
        log.info("stage %s: removing %s (%s)", st.name, p, why)
        p.unlink()
    # this run's own names too: a record lost with a crash must not leave them to be reused
    for p in owned_files(out, {"planned": st.planned}, st.owns):
        p.unlink()
    write_running(out, st.name, st.key, st.planned)
    for name in st.planned:  # temporaries of these names (pipeline.io.atomic_open)
        tmp = out / f"{name}.tmp"
        try:
            os.unlink(tmp)  # a planted symlink goes, its target stays
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            shutil.rmtree(tmp)
        else:
            log.info("stage %s: removing %s (left by an interrupted run)", st.name, tmp)


def removal_reason(rec: dict[str, Any] | None, reason: str) -> str:
    """Why a stage's old files go, for the log: an interrupted run's leftovers, or the outputs
    of a finished run redone because its config, inputs or outputs changed."""
    if not isinstance(rec, dict) or rec.get("status", COMPLETE) != COMPLETE:
        return "left by an interrupted or failed run"
    return f"output of an earlier run, redone because {reason}" if reason else "redone"


def manifest_outputs(manifest_path: Path) -> list[Path]:
    """The files a stage's manifest lists, and the manifest: the stage's complete outputs."""
    from pipeline.manifest import read_manifest

    m = read_manifest(manifest_path)
    base = manifest_path.parent
    return [base / f["name"] for f in m["files"]] + [manifest_path]


def jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        try:
            return obj.item()
        except (TypeError, ValueError):
            pass
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
