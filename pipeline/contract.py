"""The stage contract: what a stage of `pile build` declares, once, next to its code.

A stage (dedup, tokenize, order, preshuffle, report) is a `StageSpec`: its name, its frozen typed
config class, the stages it reads, the concrete files it writes for a build (`outputs`), the
patterns of every name it may write in any config (`owns`), the bytes it will take (`estimate`,
for `--dry-run`) and `run(job, variant, executor) -> StageResult` (the manifest it wrote last).
The build (pipeline.job) derives everything else from these declarations: its stage list, keys
and completion records, the clean-up of a stage's old outputs on rerun, the disk estimate, and
`artifact_patterns()`, the list of every artifact kind the stages write (for `pile verify`).

Like datatrove's `PipelineStep.run(data, rank, world_size)`, a spec knows nothing of where its
tasks run: `run` receives the executor (pipeline.engine) and the runner owns scheduling,
completion records and resumption (datatrove's executors skip finished ranks from completion
files; here a stage is skipped when its record's key matches and its outputs are intact). What this
project keeps beyond that contract: every file is written as tmp + fsync + rename, each stage's
self-hashed manifest is written last, keys are fingerprints of config, inputs and upstream keys,
and outputs are byte-identical for any worker count or engine.

`job` is the build a stage runs in (pipeline.job.plan.BuildPlan): the output directory `job.out`,
the resolved inputs and read config, the stage configs, `prefix(variant)`, `progress(stage,
info)`. Per-variant stages (tokenize, order, preshuffle) are instantiated once per variant as
`<name>-<variant>`; the others once, under their name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.engine.base import Executor

SetCheck = Callable[[Path], list[str]]  # a set's problems, from its manifest's path
Covers = Callable[[str | None, str], bool]  # (role, listed name): does the set check read it

# files of a build that belong to the runner, not to a stage (config, records, logs, lock)
RUNNER_PATTERNS = ("build.toml", "_state/*.json", "logs/*", ".lock", "quarantine/*")


@dataclass
class StageResult:
    """What `run` returns: the manifest the stage wrote last (it lists every other output) and
    counts for the completion record (`info`: never part of an artifact)."""

    manifest: Path
    info: dict[str, Any] = field(default_factory=dict)


class StageSpec:
    """One stage of the build. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    #: the stage's frozen config class (pipeline.config.StageConfig), None when it has none
    config_type: ClassVar[type | None] = None
    #: names of the stages it reads (resolved per variant by `reads`)
    upstream: ClassVar[tuple[str, ...]] = ()
    #: one instance per variant (`tokenize-standard`) or one for the build (`dedup`)
    per_variant: ClassVar[bool] = True
    #: its key includes the identity of the inputs (path, size, mtime) and the read config
    uses_inputs: ClassVar[bool] = False
    #: its size follows from the token count: the disk plan is checked again before it runs
    sized_by_tokens: ClassVar[bool] = False
    #: it writes partial files beside its outputs before merging them (the disk estimate's peak)
    merges_partials: ClassVar[bool] = False
    #: the `kind` of the manifests it writes whose whole set its format owner checks (`set_check`)
    manifest_kinds: ClassVar[tuple[str, ...]] = ()

    # -- which instances, reading what ---------------------------------------------------------
    def variants(self, variants: tuple[str, ...]) -> list[str]:
        """The variants this stage serves in a build of `variants` (one instance each; a
        build-wide stage returns one variant, or none when the build does not need it)."""
        return list(variants)

    def stage_name(self, variant: str) -> str:
        return f"{self.name}-{variant}" if self.per_variant else self.name

    def reads(self, variant: str, specs: dict[str, StageSpec], variants: list[str]) -> list[str]:
        """Names of the planned stages this instance reads: an upstream per-variant stage of the
        same variant (all variants, for a build-wide stage), or an upstream build-wide stage."""
        names = []
        for up in self.upstream:
            spec = specs.get(up)
            if spec is None:
                continue
            for v in spec.variants(tuple(variants)):
                if spec.per_variant and self.per_variant and v != variant:
                    continue
                names.append(spec.stage_name(v))
        return names

    # -- declarations --------------------------------------------------------------------------
    def config(self, job: Any, variant: str) -> Any:
        """The stage's config (an instance of `config_type`) in this build."""
        return None

    def fingerprints(self, job: Any, variant: str) -> dict[str, str]:
        """{part: fingerprint} of the config that shapes the outputs: part of the stage key, and
        named in the rerun reason when it changes ("tokenize config changed")."""
        return {}

    def directory(self, job: Any, variant: str) -> str:
        """The directory (relative to OUT) holding the stage's outputs."""
        return variant

    def outputs(self, job: Any, variant: str) -> list[str]:
        """Every file (relative to OUT, concrete names, never globs) the stage may write in this
        build: a rerun removes exactly these and their `.tmp`, never a user's file."""
        raise NotImplementedError

    def owns(self, variant: str) -> list[str]:
        """fnmatch patterns of every name the stage may write in any config: a record's names
        outside them are never removed."""
        raise NotImplementedError

    def work_dirs(self, variant: str) -> list[str]:
        """Directories (relative to OUT) the stage writes in besides those of its outputs."""
        return []

    def estimate(self, job: Any, variant: str) -> int:
        """Bytes its outputs will take (for `--dry-run`)."""
        return 0

    def run(self, job: Any, variant: str, executor: Executor) -> StageResult:
        raise NotImplementedError

    def set_check(self, kind: str) -> tuple[SetCheck, Covers] | None:
        """For a manifest of one of `manifest_kinds`: the format owner's check of the whole set it
        lists (problems, from the manifest's path) and which listed files that check reads itself
        (`pile verify` runs no per-file check of its own on those)."""
        return None


def set_owner(kind: str | None) -> tuple[SetCheck, Covers] | None:
    """The set check `pile verify` runs for a manifest of `kind`: declared by the stage that writes
    such manifests (None when no stage declares the kind: each file is checked by its role)."""
    if kind is None:
        return None
    for spec in stage_specs():
        if kind in spec.manifest_kinds:
            return spec.set_check(kind)
    return None


def stage_specs() -> list[StageSpec]:
    """The stages of `pile build`, in dependency order."""
    from pipeline.dedup.spec import DedupSpec
    from pipeline.order.spec import OrderSpec, PreshuffleSpec
    from pipeline.report.spec import ReportSpec
    from pipeline.tokenize.spec import TokenizeSpec

    return [DedupSpec(), TokenizeSpec(), OrderSpec(), PreshuffleSpec(), ReportSpec()]


def artifact_patterns(
    variants: tuple[str, ...] = ("standard", "deduped"),
    specs: list[StageSpec] | None = None,
) -> dict[str, list[str]]:
    """{stage name: fnmatch patterns (relative to OUT)} of every file the stages of a build may
    write, for any config: what `pile verify` counts as a build's artifact kinds."""
    found: dict[str, list[str]] = {}
    for spec in specs if specs is not None else stage_specs():
        for v in spec.variants(variants):
            found[spec.stage_name(v)] = list(spec.owns(v))
    return found
