"""`pile build`'s plan: the stages of one build, derived from their declarations.

Every stage is a `StageSpec` (pipeline.contract) declared next to its code; the plan instantiates
each spec once per variant it serves (`tokenize-standard`, `tokenize-deduped`, `dedup`, `report`)
in dependency order and gives each a *key*: the sha256 of its name, the package version, the
fingerprints of its config, the identity of the inputs (path, size, mtime) when it reads them,
and the keys of the stages it reads. Its record also stores these parts (`basis`), so a changed key
is explained (e.g. "input train/02.jsonl.zst changed (mtime)"). Inputs are never hashed: the Pile is
~460 GB. A stage is up to date when `OUT/_state/<stage>.json` is complete, holds the same key and
all of its outputs are intact (pipeline.job.state), and it runs whenever one it reads runs.

The plan is also the `job` a spec sees: the output directory, the resolved inputs and read
config, the stage configs, the dataset names and the token counts once tokenize has run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.config import canonical_json, combine_fingerprints
from pipeline.contract import StageSpec, stage_specs
from pipeline.errors import PipelineError
from pipeline.job import sizes
from pipeline.job.config import BuildConfig, held_out_names
from pipeline.job.state import KEY_CHANGED, check_complete, load_record
from pipeline.read import ReadConfig, resolve_inputs
from pipeline.read.inputs import input_identity, input_location

log = logging.getLogger(__name__)

STANDARD_PREFIX = "pile"


def deduped_prefix(threshold: float) -> str:
    """Pythia's name for the deduplicated dataset, e.g. `pile_0.87_deduped`."""
    return f"pile_{threshold:g}_deduped"


@dataclass
class Stage:
    """One planned instance of a spec (`order-standard`): what the runner needs to run it."""

    name: str
    key: str
    spec: StageSpec
    variant: str  # the variant it serves ("deduped" for dedup, "build" for the report)
    directory: Path
    planned: list[str] = field(default_factory=list)  # files it may write, relative to OUT
    # fnmatch patterns (from the code, never from a record) of every name this stage may write
    # in any config: a record's names outside them are not removed (pipeline.job.state)
    owns: list[str] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)  # names of the stages it reads
    status: str = "pending"  # pending | up-to-date | done
    reason: str = ""  # why a pending stage runs
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    # what the key was made of, by part (stored in the completion record): lets a later run say
    # *why* a key changed (which input file, which config) instead of just that it did
    basis: dict[str, Any] = field(default_factory=dict)


class BuildPlan:
    """The stages of one build, their keys and how to run them (nothing runs until `execute`)."""

    def __init__(
        self,
        config: BuildConfig,
        progress: Callable[[str, dict[str, Any]], None] | None = None,
        specs: list[StageSpec] | None = None,
    ):
        from pipeline.dedup import DedupConfig
        from pipeline.order.config import OrderConfig
        from pipeline.tokenize.config import TokenizeConfig

        self.config = config
        self.out = Path(config.out)
        self.specs = specs if specs is not None else stage_specs()
        self.progress = progress or (lambda stage, info: None)
        self.inputs = resolve_inputs(list(config.inputs))
        self.read_config = (
            ReadConfig(quarantine_dir=str(self.out / "quarantine"), **config.read)
            if config.read.get("on_error") == "skip"
            else ReadConfig(**config.read)
        )
        dedup = dict(config.dedup)
        self.dedup_config = DedupConfig.from_preset(dedup.pop("preset", None), **dedup)
        order = dict(config.order)
        # epochs: train_iters is derived per variant from its token count (order_config_for)
        self.epochs: int | None = order.pop("epochs", None)
        self.order_config = OrderConfig.from_preset(order.pop("preset", "pythia"), **order)
        self._counts: dict[str, tuple[int, int]] = {}
        tok = dict(config.tokenize)
        tokenizer = tok.pop("tokenizer", None)
        self.tokenize_config = TokenizeConfig.for_tokenizer(tokenizer or None, **tok)
        self.shard_size = config.preshuffle.get("shard_size")
        stats = [input_identity(f) for f in self.inputs]
        # inputs are identified by path, size and mtime, never hashed (the Pile is ~460 GB): a
        # touched input reruns the build, and the reason names the file
        self.input_identity = combine_fingerprints(
            *(
                canonical_json([input_location(f), f.kind, f.split, *st])
                for f, st in zip(self.inputs, stats)
            ),
            self.read_config.fingerprint(),
        )
        self.input_basis = [
            [f.label, input_location(f), f.kind, f.split, *st] for f, st in zip(self.inputs, stats)
        ]
        # names with the inputs' root folder itself (`--input pile/val` is named `val/...`)
        dirs = [os.path.dirname(os.path.abspath(f.path)) for f in self.inputs]
        root = os.path.basename(os.path.commonpath(dirs)) if dirs else ""
        held_out = held_out_names([f"{root}/{f.label}" if root else f.label for f in self.inputs])
        if held_out:
            log.warning("%s", held_out_message(held_out, self.inputs))
        self.stages: list[Stage] = self.plan(config.variants)
        self.stale: list[Any] = []  # StaleVariant, filled by run_build / the dry run

    # -- what the specs read -------------------------------------------------------------------
    @property
    def variants(self) -> tuple[str, ...]:
        return self.config.variants

    def prefix(self, variant: str) -> str:
        return (
            STANDARD_PREFIX
            if variant == "standard"
            else deduped_prefix(self.dedup_config.threshold)
        )

    def data_prefix(self, variant: str) -> Path:
        return self.out / variant / f"{self.prefix(variant)}_text_document"

    def stage(self, name: str) -> Stage | None:
        return next((st for st in self.stages if st.name == name), None)

    def by_variant(self) -> list[Stage]:
        """The stages grouped by variant (standard's, then deduped's), then the build-wide ones
        (dedup, report): the order of --dry-run's disk table and of the final verify pass."""
        shown = [st for v in self.variants for st in self.stages if st.variant == v]
        shown = [st for st in shown if st.spec.per_variant]
        return shown + [st for st in self.stages if not st.spec.per_variant]

    def dataset_counts(self, variant: str) -> tuple[int, int] | None:
        """(items, tokens) of the variant's token dataset once tokenize-<variant> is up to date or
        done (read from its `.idx`, as order will), else None."""
        if variant in self._counts:
            return self._counts[variant]
        tok = self.stage(f"tokenize-{variant}")
        if tok is None or tok.status not in ("up-to-date", "done"):
            return None
        from pipeline.shards.mmidx import MMIDXIndex

        sizes = MMIDXIndex(f"{self.data_prefix(variant)}.idx").sizes
        self._counts[variant] = (int(len(sizes)), int(sizes.sum(dtype="int64")))
        return self._counts[variant]

    def order_fingerprint(self) -> str:
        fp = self.order_config.fingerprint()
        if self.epochs is not None:
            # train_iters follows from the tokenize output, whose key is part of the stage key
            fp = combine_fingerprints(fp, f"epochs={self.epochs}")
        return fp

    def order_config_for(self, variant: str):
        """The variant's order config: the configured one, or with `epochs`, the one whose
        train_iters gives that many epochs of the variant's tokens (needs tokenize done)."""
        if self.epochs is None:
            return self.order_config
        from pipeline.job.plan_check import train_iters_for_epochs

        counts = self.dataset_counts(variant)
        if counts is None:
            raise PipelineError(
                f"order-{variant}: train_iters for {self.epochs} epoch(s) needs the token count "
                f"of tokenize-{variant}, which has not run."
            )
        cfg = self.order_config
        ti = train_iters_for_epochs(counts[1], cfg.seq_length, cfg.global_batch, self.epochs)
        return dataclasses.replace(cfg, train_iters=ti)

    # -- the stages ----------------------------------------------------------------------------
    def plan(self, variants: tuple[str, ...]) -> list[Stage]:
        """The stages building `variants`, in dependency order, from the specs."""
        by_spec = {spec.name: spec for spec in self.specs}
        stages: list[Stage] = []
        keys: dict[str, str] = {}
        for spec in self.specs:
            for v in spec.variants(variants):
                name = spec.stage_name(v)
                upstream = [u for u in spec.reads(v, by_spec, list(variants)) if u in keys]
                fps = spec.fingerprints(self, v)
                # the package version is part of every key: a new release redoes the stages
                basis: dict[str, Any] = {
                    "version": __version__,
                    "config": fps,
                    "upstream": {u: keys[u] for u in upstream},
                }
                parts = list(fps.values())
                if spec.uses_inputs:
                    basis["inputs"] = self.input_basis
                    basis["read"] = self.read_config.fingerprint()
                    parts.append(self.input_identity)
                parts += [keys[u] for u in upstream]
                st = Stage(
                    name,
                    combine_fingerprints(name, __version__, *parts),
                    spec,
                    v,
                    self.out / spec.directory(self, v),
                    planned=spec.outputs(self, v),
                    owns=spec.owns(v),
                    upstream=upstream,
                    basis=basis,
                )
                keys[name] = st.key
                stages.append(st)
        return stages

    def refresh_status(self, refresh: bool = False, redo: dict[str, str] | None = None) -> None:
        """Mark each stage up-to-date or pending (with the reason). Upstream keys are part of each
        key, so a changed upstream config changes every key below it; a stage redone with an
        unchanged key (a corrupt or missing output) makes its downstream pending explicitly.
        `redo` names stages to run anyway, with the reason (damage found by the verify pass)."""
        from pipeline.job.stale import describe_change

        pending: set[str] = set()
        redo = redo or {}
        for st in self.stages:  # stages are in dependency order
            redo_up = [u for u in st.upstream if u in pending]
            if st.name in redo:
                ok, why = False, redo[st.name]
            elif redo_up:
                ok, why = False, f"upstream stage {redo_up[0]} runs"
            else:
                ok, why = check_complete(self.out, st.name, st.key, refresh=refresh)
                if why == KEY_CHANGED:
                    rec = load_record(self.out, st.name) or {}
                    why = describe_change(rec.get("basis"), st.basis) or why
            st.status, st.reason = ("up-to-date", "") if ok else ("pending", why)
            if not ok:
                pending.add(st.name)

    def execute(self, redo: dict[str, str] | None = None, executor: Any = None) -> list[Stage]:
        from pipeline.job.execute import execute

        return execute(self, redo, executor)

    def stale_variants(self) -> list[Any]:
        from pipeline.job.stale import stale_variants

        return stale_variants(self)

    def check_confined(self) -> None:
        from pipeline.job.outdir import check_confined

        check_confined(self)

    # -- sizes (pipeline.job.sizes) ------------------------------------------------------------
    def estimate(self, variant: str) -> dict[str, Any]:
        return sizes.variant_estimate(self, variant)

    def input_bytes(self) -> list[tuple[str, int]]:
        return sizes.input_bytes(self)

    def estimated_counts(self, variant: str, guess_only: bool = False) -> tuple[int, int, bool]:
        return sizes.estimated_counts(self, variant, guess_only)

    def estimated_order_config(self, tokens: int):
        return sizes.estimated_order_config(self, tokens)

    def estimate_disk(self) -> dict[str, Any]:
        return sizes.estimate_disk(self)


def held_out_message(names: list[str], inputs: list[Any]) -> str:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    paths = [os.path.abspath(f.path) for f in inputs]
    root = Path(os.path.commonpath([os.path.dirname(p) for p in paths]))
    fix = (
        f"pass --input {shlex.quote(str(root / 'train'))}"
        if (root / "train").is_dir()
        else "pass only the training files with --input"
    )
    return (
        f"input(s) {shown} look like held-out splits (val/valid/validation/test): training on "
        f"them leaks evaluation data. If they are not meant for training, {fix}."
    )
