"""The stage contract (pipeline.contract): a stage declared once runs in `pile build`'s plan.

Toy stages: `toy` writes `toy/data-<n>.txt` (its name follows its config, so a config change
leaves a file of the old config to clean up), `total` reads it, `other` reads nothing.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.config import StageConfig
from pipeline.contract import RUNNER_PATTERNS, StageResult, StageSpec, artifact_patterns
from pipeline.engine import InlineExecutor
from pipeline.io import atomic_write_text
from pipeline.job.config import resolve_build_config
from pipeline.job.plan import BuildPlan
from pipeline.manifest import write_manifest


@dataclass(frozen=True)
class ToyConfig(StageConfig):
    n: int = 1


class _Toy(StageSpec):
    """A build-wide stage writing one data file and its manifest under `<name>/`."""

    config_type = ToyConfig
    per_variant = False

    def __init__(self, name: str, n: int = 1, upstream: tuple[str, ...] = ()):
        self.name = name
        self.upstream = upstream
        self.cfg = ToyConfig(n)
        self.runs = 0

    def variants(self, variants):
        return ["build"]

    def config(self, job, variant):
        return self.cfg

    def fingerprints(self, job, variant):
        return {self.name: self.cfg.fingerprint()}

    def directory(self, job, variant):
        return self.name

    def outputs(self, job, variant):
        return [f"{self.name}/data-{self.cfg.n}.txt", f"{self.name}/manifest.json"]

    def owns(self, variant):
        return [f"{self.name}/data-*.txt", f"{self.name}/manifest.json"]

    def estimate(self, job, variant):
        return 100 * self.cfg.n

    def run(self, job, variant, executor):
        self.runs += 1
        # what it reads from upstream: their data files, through the executor's ordered map
        read = [
            (job.out / u / f"data-{job.stage(u).spec.cfg.n}.txt").read_text()
            for u in job.stage(self.stage_name(variant)).upstream
        ]
        values = executor.map(_square, range(self.cfg.n))
        data = job.out / self.name / f"data-{self.cfg.n}.txt"
        atomic_write_text(data, json.dumps({"squares": values, "read": read}))
        write_manifest(
            job.out / self.name / "manifest.json",
            kind="toy",
            config_fingerprint=self.cfg.fingerprint(),
            files=[data],
        )
        return StageResult(job.out / self.name / "manifest.json", {"n": self.cfg.n})


def _square(x: int) -> int:
    return x * x


def _plan(out: Path, toy_n: int = 2) -> BuildPlan:
    specs = [
        _Toy("toy", toy_n),
        _Toy("total", 3, upstream=("toy",)),
        _Toy("other", 1),
    ]
    return BuildPlan(resolve_build_config(out=str(out), variant="standard"), specs=specs)


def _runs(plan: BuildPlan) -> dict[str, int]:
    return {st.name: st.spec.runs for st in plan.stages}


def test_toy_stages_plan_run_and_rerun_as_noop(tmp_path):
    plan = _plan(tmp_path)
    assert [st.name for st in plan.stages] == ["toy", "total", "other"]
    assert plan.stage("total").upstream == ["toy"]
    assert plan.stage("other").upstream == []
    plan.execute(executor=InlineExecutor())
    assert _runs(plan) == {"toy": 1, "total": 1, "other": 1}
    data = json.loads((tmp_path / "total" / "data-3.txt").read_text())
    assert data["squares"] == [0, 1, 4]
    assert json.loads(data["read"][0])["squares"] == [0, 1]
    rec = json.loads((tmp_path / "_state" / "toy.json").read_text())
    assert rec["status"] == "complete" and rec["info"] == {"info": {"n": 2}}
    assert sorted(f["name"] for f in rec["outputs"]) == ["toy/data-2.txt", "toy/manifest.json"]
    assert rec["basis"]["config"] == {"toy": ToyConfig(2).fingerprint()}

    again = _plan(tmp_path)
    again.execute(executor=InlineExecutor())
    assert _runs(again) == {"toy": 0, "total": 0, "other": 0}
    assert {st.status for st in again.stages} == {"up-to-date"}


def test_changed_config_reruns_the_stage_and_its_downstream_and_cleans_its_outputs(tmp_path):
    _plan(tmp_path, toy_n=2).execute(executor=InlineExecutor())
    keep = tmp_path / "toy" / "user-notes.txt"  # not a name the stage owns: never removed
    keep.write_text("mine")
    (tmp_path / "toy" / "data-5.txt.tmp").write_text("left by a killed run")

    changed = _plan(tmp_path, toy_n=5)
    changed.refresh_status()
    assert changed.stage("toy").reason == "toy config changed"
    assert changed.stage("total").reason == "upstream stage toy runs"
    assert changed.stage("other").status == "up-to-date"
    changed.execute(executor=InlineExecutor())
    assert _runs(changed) == {"toy": 1, "total": 1, "other": 0}
    assert not (tmp_path / "toy" / "data-2.txt").exists()  # the old config's output is gone
    assert not (tmp_path / "toy" / "data-5.txt.tmp").exists()
    assert (tmp_path / "toy" / "data-5.txt").exists()
    assert keep.read_text() == "mine"
    total = json.loads((tmp_path / "total" / "data-3.txt").read_text())
    assert json.loads(total["read"][0])["squares"] == [0, 1, 4, 9, 16]


def test_killed_stage_is_cleaned_from_its_running_record(tmp_path):
    plan = _plan(tmp_path, toy_n=2)
    plan.execute(executor=InlineExecutor())
    # a run of another config killed mid-stage: its running record names what it may write
    from pipeline.job.state import write_running

    (tmp_path / "toy" / "data-7.txt").write_text("partial")
    write_running(tmp_path, "toy", "killed-key", ["toy/data-7.txt", "toy/manifest.json"])
    again = _plan(tmp_path, toy_n=2)
    again.execute(executor=InlineExecutor())
    assert _runs(again) == {"toy": 1, "total": 1, "other": 0}
    assert not (tmp_path / "toy" / "data-7.txt").exists()
    assert (tmp_path / "toy" / "data-2.txt").exists()


def test_dry_run_estimate_comes_from_the_specs(tmp_path):
    plan = _plan(tmp_path, toy_n=4)
    plan.refresh_status()
    disk = plan.estimate_disk()
    assert disk["stages"] == {"toy": 400, "total": 300, "other": 100}
    assert disk["total"] == 800 and disk["peak"] == 800  # no stage merges partial files


def test_artifact_patterns_of_the_build_stages():
    pats = artifact_patterns()
    assert list(pats) == [
        "dedup",
        "tokenize-standard",
        "tokenize-deduped",
        "order-standard",
        "order-deduped",
        "preshuffle-standard",
        "preshuffle-deduped",
        "report",
    ]
    assert (
        "standard/preshuffled/document-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9].bin"
        in pats["preshuffle-standard"]
    )
    assert list(artifact_patterns(("standard",))) == [
        "tokenize-standard",
        "order-standard",
        "preshuffle-standard",
        "report",
    ]


def test_planned_outputs_are_concrete_and_owned(tmp_path):
    """Every name a stage plans (and a rerun removes) matches its own `owns` patterns, and no
    other stage's: each file has one owner."""
    from pipeline.job.state import GLOB_CHARS

    plan = BuildPlan(resolve_build_config(out=str(tmp_path)))
    for st in plan.stages:
        for name in st.planned:
            assert not GLOB_CHARS & set(name), name
            owners = [
                o.name for o in plan.stages if any(fnmatch.fnmatchcase(name, p) for p in o.owns)
            ]
            assert owners == [st.name], (name, owners)


@pytest.mark.parametrize("name", ["build.toml", "_state/dedup.json", "logs/build.log"])
def test_runner_files_are_not_stage_artifacts(name):
    pats = [p for ps in artifact_patterns().values() for p in ps]
    assert not any(fnmatch.fnmatchcase(name, p) for p in pats)
    assert any(fnmatch.fnmatchcase(name, p) for p in RUNNER_PATTERNS)


def test_verify_finds_each_set_check_through_the_stage_that_declares_it():
    from pipeline.contract import set_owner, stage_specs
    from pipeline.dedup.tables import CLUSTERS, REMOVED

    declared = {k: s.name for s in stage_specs() for k in s.manifest_kinds}
    assert declared == {"dedup": "dedup", "index-maps": "order", "preshuffled": "preshuffle"}
    check, covers = set_owner("dedup")
    assert covers(None, f"dedup/{REMOVED}") and covers(None, CLUSTERS)
    assert not covers(None, "dedup/stats.json")
    assert set_owner("token-dataset") is None and set_owner(None) is None
    assert set_owner("index-maps")[1]("doc_idx", "x_doc_idx.npy")
