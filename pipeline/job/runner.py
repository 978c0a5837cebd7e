"""`pile build`: the whole chain as a plan of stages with completion records.

Stages (for `--variant both`): dedup → tokenize:standard, tokenize:deduped → order:<v> →
preshuffle:<v> → report, then a verify pass over every manifest. Each stage has a *key*: the sha256
of its name, its own config fingerprint, the identity of the inputs (path, size, mtime) and the keys
of the stages it reads; its record also stores these parts, so a changed key is explained (e.g.
"input train/02.jsonl.zst changed (mtime)"). Inputs are never hashed: the Pile is ~460 GB. A stage runs unless `OUT/_state/<stage>.json` is complete, holds the same
key and all of its outputs are intact (pipeline.job.state), and a stage runs whenever one it reads
runs. Before it runs, the files its previous record names (the outputs of a finished run, or the
planned outputs of a killed or failed one, whatever its config) and any `*.tmp` are removed, and a
*running* record listing the files it may write is stored; so a rerun of a killed build produces the
same bytes as an uninterrupted one, leaves no file of another config behind, and an artifact built
with another config is never reused.

A build of one variant reports (never deletes) the other variant when its completed stages no
longer match the current inputs and config (`BuildPlan.stale_variants`).

Fault injection for tests: `PILE_FAULT=<stage>:<point>` (point = start | end) sends SIGKILL to the
build process at that point; `tokenize:<v>:mid` kills it after the first tokenize task is merged;
`tokenize-task:N` and `dedup-signatures:N` kill inside the stage after N tasks (pipeline.tokenize
.stage, pipeline.dedup.stage: their finished tasks are reused by the rerun).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shlex
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.config import canonical_json, combine_fingerprints
from pipeline.engine import Executor, make_executor
from pipeline.errors import ConfigError, IntegrityError, PipelineError
from pipeline.io import atomic_write_text
from pipeline.job.config import BuildConfig, held_out_names
from pipeline.job.state import (
    COMPLETE,
    KEY_CHANGED,
    STATE_DIR,
    check_complete,
    load_record,
    owned_files,
    write_record,
    write_running,
)
from pipeline.lock import DirLock
from pipeline.read import ReadConfig, resolve_inputs
from pipeline.read.inputs import input_identity, input_location
from pipeline.report.stage import REPORT_FIGURES, REPORT_MANIFEST

log = logging.getLogger(__name__)

STANDARD_PREFIX = "pile"
SIG_EXT = ("npy", "parquet")  # dedup's signatures/<i>.npy|.parquet
SIX_DIGITS = "[0-9]" * 6
# --dry-run's disk estimate (BuildPlan.estimate_disk): bytes of uint16 tokens per input byte
TOKEN_BYTES_PER_INPUT_BYTE = {"jsonl": 0.6, "jsonl.zst": 1.4, "jsonl.gz": 1.4, "parquet": 1.4}
TOKENS_PER_DOCUMENT = 400  # fewer tokens per document than the sample's 685 or the Pile's
MAX_PLANNED_SHARDS = 10_000  # a plan with more shards is refused by the plan check anyway
REPORT_BYTES = 400_000  # report.html/json and six PNGs: ~170 kB on the sample


def deduped_prefix(threshold: float) -> str:
    """Pythia's name for the deduplicated dataset, e.g. `pile_0.87_deduped`."""
    return f"pile_{threshold:g}_deduped"


def fault_point(stage: str, point: str) -> None:
    """Test hook: SIGKILL this process when PILE_FAULT names this stage and point."""
    if os.environ.get("PILE_FAULT") == f"{stage}:{point}":
        log.warning("PILE_FAULT: killing the build at %s:%s", stage, point)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Stage:
    name: str
    key: str
    run: Callable[[], tuple[list[Path], dict[str, Any]]]
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
        self, config: BuildConfig, progress: Callable[[str, dict[str, Any]], None] | None = None
    ):
        from pipeline.dedup import DedupConfig
        from pipeline.order.config import OrderConfig
        from pipeline.tokenize.stage import TokenizeConfig

        self.config = config
        self.out = Path(config.out)
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
            log.warning("%s", _held_out_message(held_out, self.inputs))
        self.stages: list[Stage] = self._plan(config.variants)
        self.stale: list[StaleVariant] = []  # filled by run_build / the dry run
        self._executor: Executor | None = None

    @property
    def executor(self) -> Executor:
        """The engine the stages' tasks run on (--engine, --workers, --ray-address), made on first
        use so a dry run or a build with nothing to do never starts one; run_build closes it."""
        if self._executor is None:
            self._executor = make_executor(
                self.config.engine, self.config.workers, None, self.config.ray_address
            )
            log.info("%s", self._executor.describe())
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    # -- plan ------------------------------------------------------------------------------
    def prefix(self, variant: str) -> str:
        return (
            STANDARD_PREFIX
            if variant == "standard"
            else deduped_prefix(self.dedup_config.threshold)
        )

    def data_prefix(self, variant: str) -> Path:
        return self.out / variant / f"{self.prefix(variant)}_text_document"

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

    def _add(
        self,
        stages: list[Stage],
        name: str,
        parts: list[str],
        run,
        directory: Path,
        planned: list[str],
        upstream: list[Stage],
        config: dict[str, str],
        uses_inputs: bool = False,
        owns: list[str] | None = None,
    ) -> Stage:
        # the package version is part of every key: a new release redoes the stages
        basis: dict[str, Any] = {
            "version": __version__,
            "config": config,
            "upstream": {u.name: u.key for u in upstream},
        }
        if uses_inputs:
            basis["inputs"] = self.input_basis
            basis["read"] = self.read_config.fingerprint()
        st = Stage(
            name,
            combine_fingerprints(name, __version__, *parts),
            run,
            directory,
            planned=planned,
            owns=owns if owns is not None else list(planned),
            upstream=[u.name for u in upstream],
            basis=basis,
        )
        stages.append(st)
        return st

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.out).as_posix()

    # Planned names are concrete (never globs): a rerun removes exactly these files and their
    # `.tmp`, never a user's file that happens to match a pattern.
    def _planned_dedup(self) -> list[str]:
        # run_dedup also replaces its own work directories; these are the files it leaves
        names = ("manifest.json", "removed.parquet", "clusters.parquet", "stats.json")
        sigs = [f"signatures/{i:06d}.{ext}" for i in range(len(self.inputs)) for ext in SIG_EXT]
        return [f"dedup/{n}" for n in (*names, *sigs)]

    def _owns_dedup(self) -> list[str]:
        return [
            *self._planned_dedup()[:4],
            *(f"dedup/signatures/{SIX_DIGITS}.{e}" for e in SIG_EXT),
        ]

    def _planned_tokenize(self, variant: str) -> list[str]:
        from pipeline.tokenize.stage import output_names

        names = output_names(self.prefix(variant))
        return [f"{variant}/{names[k]}" for k in ("bin", "idx", "sidecar", "manifest")]

    def _owns_tokenize(self, variant: str) -> list[str]:
        d = f"{variant}/pile*"
        return [f"{d}_text_document.{e}" for e in ("bin", "idx", "docs.parquet")] + [
            f"{d}.manifest.json"
        ]

    def _planned_order(self, variant: str) -> list[str]:
        from pipeline.order.mapfiles import index_map_paths
        from pipeline.order.provenance import table_paths

        data = self.data_prefix(variant)
        paths = [*index_map_paths(data, self.order_config).values(), *table_paths(data).values()]
        names = [self._rel(p) for p in paths]
        if self.epochs is not None:
            # num_samples (in the map names) follows from the token count: any count
            tag = f"_{self.order_config.num_samples}ns_"
            names = [n.replace(tag, "_[0-9]*ns_") for n in names]
        return names

    def _owns_order(self, variant: str) -> list[str]:
        from pipeline.order.mapfiles import owned_globs

        d = f"{variant}/pile*_text_document"
        maps = owned_globs(d)
        tables = [f"{d}.provenance{e}" for e in ("_doc_id.npy", "_set.npy", ".json")]
        return maps + tables

    def _planned_preshuffle(self, variant: str) -> list[str]:
        from pipeline.order.preshuffle import PYTHIA_SHARD_SIZE
        from pipeline.order.shuffled import (
            PRESHUFFLED_MANIFEST,
            PRESHUFFLED_NAME,
            preshuffled_bytes,
            shard_names,
        )

        d = f"{variant}/preshuffled"
        size = self.shard_size if self.shard_size is not None else PYTHIA_SHARD_SIZE
        # with --epochs, train_iters follows from the token count, not known when planning
        cfg = self.order_config if self.epochs is None else None
        # the shard count follows the token dtype: the names for 2- and 4-byte tokens. Unknown or
        # absurd counts are not listed: preshuffle itself removes shards of another count
        counts = [preshuffled_bytes(cfg, item)[0] // size + 1 for item in (2, 4)] if cfg else []
        shards = (
            {n for item in (2, 4) for n in shard_names(preshuffled_bytes(cfg, item)[0], size)}
            if cfg is not None and max(counts) <= MAX_PLANNED_SHARDS
            else set()
        )
        return [
            f"{d}/{PRESHUFFLED_NAME}.idx",
            *(f"{d}/{n}" for n in sorted(shards)),
            f"{d}/{PRESHUFFLED_MANIFEST}",
        ]

    def _owns_preshuffle(self, variant: str) -> list[str]:
        from pipeline.order.shuffled import PRESHUFFLED_MANIFEST, PRESHUFFLED_NAME

        d = f"{variant}/preshuffled"
        five = "[0-9]" * 5
        return [
            f"{d}/{PRESHUFFLED_NAME}.idx",
            f"{d}/{PRESHUFFLED_NAME}.bin",
            f"{d}/{PRESHUFFLED_NAME}-{five}-of-{five}.bin",
            f"{d}/{PRESHUFFLED_MANIFEST}",
        ]

    def _plan(self, variants: tuple[str, ...]) -> list[Stage]:
        """The stages building `variants`, in dependency order."""
        stages: list[Stage] = []
        dedup_stage = None
        if "deduped" in variants:
            dedup_fp = self.dedup_config.fingerprint()
            dedup_stage = self._add(
                stages,
                "dedup",
                [dedup_fp, self.input_identity],
                self._run_dedup,
                self.out / "dedup",
                self._planned_dedup(),
                [],
                {"dedup": dedup_fp},
                uses_inputs=True,
                owns=self._owns_dedup(),
            )
        tok_fp = self.tokenize_config.fingerprint()
        tok_stages = {}
        for v in variants:
            parts = [tok_fp, self.input_identity]
            up = []
            if v == "deduped":
                parts.append(dedup_stage.key)
                up.append(dedup_stage)
            tok_stages[v] = self._add(
                stages,
                f"tokenize-{v}",
                parts,
                lambda v=v: self._run_tokenize(v),
                self.out / v,
                self._planned_tokenize(v),
                up,
                {"tokenize": tok_fp},
                uses_inputs=True,
                owns=self._owns_tokenize(v),
            )
        order_fp = self.order_config.fingerprint()
        if self.epochs is not None:
            # train_iters follows from the tokenize output, whose key is part of this one
            order_fp = combine_fingerprints(order_fp, f"epochs={self.epochs}")
        order_stages = {}
        for v in variants:
            order_stages[v] = self._add(
                stages,
                f"order-{v}",
                [order_fp, tok_stages[v].key],
                lambda v=v: self._run_order(v),
                self.out / v,
                self._planned_order(v),
                [tok_stages[v]],
                {"order": order_fp},
                owns=self._owns_order(v),
            )
        for v in variants:
            self._add(
                stages,
                f"preshuffle-{v}",
                [order_fp, str(self.shard_size), order_stages[v].key],
                lambda v=v: self._run_preshuffle(v),
                self.out / v / "preshuffled",
                self._planned_preshuffle(v),
                [order_stages[v]],
                {"order": order_fp, "shard_size": str(self.shard_size)},
                owns=self._owns_preshuffle(v),
            )
        self._add(
            stages,
            "report",
            [st.key for st in stages],
            self._run_report,
            self.out,
            [
                "report.json",
                "report.html",
                *(f"report/{n}" for n in REPORT_FIGURES),
                REPORT_MANIFEST,
            ],
            list(stages),
            {},
        )
        return stages

    # -- stage bodies ------------------------------------------------------------------------
    def _run_dedup(self) -> tuple[list[Path], dict[str, Any]]:
        from pipeline.dedup import run_dedup

        out = self.out / "dedup"
        stats = run_dedup(
            self.inputs,
            out,
            self.dedup_config,
            self.read_config,
            self.executor,
            progress=lambda info: self.progress("dedup", info),
        )
        # wall-clock timings are not an artifact (they differ run to run): keep them with the logs
        timings = out / "timings.json"
        if timings.exists():
            (self.out / "logs").mkdir(parents=True, exist_ok=True)
            os.replace(timings, self.out / "logs" / "dedup_timings.json")
        return _manifest_outputs(out / "manifest.json"), {
            "removed": stats.get("removed"),
            "clusters": stats.get("clusters"),
        }

    def _run_tokenize(self, variant: str) -> tuple[list[Path], dict[str, Any]]:
        from pipeline.tokenize.stage import output_names, run_tokenize

        out = self.out / variant
        exclude_ids = exclude_fp = None
        if variant == "deduped":
            from pipeline.dedup import load_removed_ids

            exclude_ids = load_removed_ids(self.out / "dedup", self.dedup_config.fingerprint())
            exclude_fp = self.dedup_config.fingerprint()
        stage = f"tokenize-{variant}"
        merged = {"tasks": 0}

        def on_task(result: dict[str, Any]) -> None:
            merged["tasks"] += 1
            self.progress(stage, result)
            if merged["tasks"] == 1:
                fault_point(stage, "mid")

        if variant == "deduped" and self.stage("tokenize-standard") is not None:
            # tokenize once: the deduped tokens are the standard ones minus the removed documents
            # (byte-identical to tokenizing again, so the stage key does not change; the standard
            # stage runs first, and derive_excluded tokenizes when its outputs do not fit)
            from pipeline.tokenize.derive import derive_excluded

            counts = derive_excluded(
                self.out / "standard",
                self.prefix("standard"),
                out,
                self.prefix(variant),
                self.tokenize_config,
                self.read_config,
                exclude_ids,
                exclude_fp,
            )
            if counts is not None:
                return _manifest_outputs(
                    out / output_names(self.prefix(variant))["manifest"]
                ), counts
        total = self._expected_documents(variant)
        if total is not None:
            self.progress(stage, {"status": "total", "documents": total})
        prefix = self.prefix(variant)
        counts = run_tokenize(
            self.inputs,
            out,
            prefix,
            self.tokenize_config,
            self.read_config,
            exclude_ids=exclude_ids,
            exclude_fingerprint=exclude_fp,
            executor=self.executor,
            progress=on_task,
        )
        return _manifest_outputs(out / output_names(prefix)["manifest"]), counts

    def _expected_documents(self, variant: str) -> int | None:
        """Documents the tokenize stage will write, when the dedup stage has counted them (for
        the progress bar's ETA only)."""
        import json

        try:
            stats = json.loads((self.out / "dedup" / "stats.json").read_text("utf-8"))
            n = int(stats["counts"]["documents"])
            return n - int(stats["counts"]["removed"]) if variant == "deduped" else n
        except (OSError, ValueError, KeyError):
            return None

    def _run_order(self, variant: str) -> tuple[list[Path], dict[str, Any]]:
        from pipeline.order.mapfiles import index_map_paths
        from pipeline.order.stage import run_order

        cfg = self.order_config_for(variant)
        manifest = run_order(self.data_prefix(variant), cfg)
        path = index_map_paths(self.data_prefix(variant), cfg)["manifest"]
        info = dict(manifest.get("counts", {}))
        if self.epochs is not None:
            info.update(epochs_requested=self.epochs, train_iters=cfg.train_iters)
        return _manifest_outputs(path), info

    def _run_preshuffle(self, variant: str) -> tuple[list[Path], dict[str, Any]]:
        from pipeline.order.preshuffle import PYTHIA_SHARD_SIZE, run_preshuffle
        from pipeline.order.shuffled import PRESHUFFLED_MANIFEST

        out = self.out / variant / "preshuffled"
        shard_size = self.shard_size if self.shard_size is not None else PYTHIA_SHARD_SIZE
        cfg = self.order_config_for(variant)
        manifest = run_preshuffle(self.data_prefix(variant), cfg, out, shard_size)
        return _manifest_outputs(out / PRESHUFFLED_MANIFEST), dict(manifest.get("counts", {}))

    def _run_report(self) -> tuple[list[Path], dict[str, Any]]:
        from pipeline.report.stage import write_report

        paths = write_report(self)
        return paths, {}

    # -- dry run -----------------------------------------------------------------------------
    def stage(self, name: str) -> Stage | None:
        return next((st for st in self.stages if st.name == name), None)

    def estimate(self, variant: str) -> dict[str, Any]:
        """What order-<variant> and preshuffle-<variant> will write (call `refresh_status`
        first). Epochs and map bytes need the token count, known once tokenize-<variant> is up to
        date; the pre-shuffled size (uint16 tokens) needs it only when train_iters comes from
        `epochs`. Keys: train_iters, train_samples, preshuffle_bytes (shards), idx_bytes, and
        with the counts items, tokens, epochs, index_map_bytes."""
        from pipeline.order.indexmap import index_map_bytes, num_epochs_for
        from pipeline.order.shuffled import preshuffled_bytes

        counts = self.dataset_counts(variant)
        est: dict[str, Any] = {}
        if self.epochs is not None and counts is None:
            return est
        cfg = self.order_config_for(variant)
        shards, idx = preshuffled_bytes(cfg)
        est.update(
            train_iters=cfg.train_iters,
            train_samples=cfg.train_samples,
            preshuffle_bytes=shards,
            idx_bytes=idx,
        )
        if counts is None or counts[1] < 2:
            return est  # too few tokens: order will say so
        items, tokens = counts
        epochs = num_epochs_for(tokens, cfg.seq_length, cfg.num_samples)
        est.update(
            items=items,
            tokens=tokens,
            epochs=epochs,
            index_map_bytes=index_map_bytes(items, epochs, tokens, cfg.seq_length),
        )
        return est

    def input_bytes(self) -> list[tuple[str, int]]:
        """(kind, bytes on disk) of every input; a directory input counts the files below it."""
        out = []
        for f in self.inputs:
            p = Path(f.path)
            if p.is_dir():
                n = sum(q.stat().st_size for q in p.rglob("*") if q.is_file())
            else:
                n = input_identity(f)[0]
            out.append((f.kind, n))
        return out

    def estimate_disk(self) -> dict[str, Any]:
        """Bytes every artifact of this build will take (for `--dry-run`), by stage, plus the
        transient peak (tokenize merges its partial files into the `.bin`). Token counts come from
        the tokenize records when they are up to date, else from the input sizes: a compressed
        input gives about 1.27 bytes of uint16 tokens per byte on the sample and on the Pile
        (460 GB of .jsonl.zst, ~300B tokens), uncompressed JSON about 0.5; the estimate uses 1.4
        and 0.6 to stay on the safe side."""
        from pipeline.order.indexmap import index_map_bytes, num_epochs_for
        from pipeline.order.shuffled import preshuffled_bytes

        guessed = int(
            sum(n * (TOKEN_BYTES_PER_INPUT_BYTE.get(k, 1.4)) for k, n in self.input_bytes()) / 2
        )
        stages: dict[str, int] = {}
        known = True
        for v in self.config.variants:
            est = self.estimate(v)
            tokens = est.get("tokens")
            if tokens is None:
                known = False
                tokens = guessed
            items = est.get("items") or max(1, tokens // TOKENS_PER_DOCUMENT)
            # .bin (2-byte tokens), .idx (sizes, pointers, doc_idx), sidecar, manifest
            stages[f"tokenize-{v}"] = 2 * tokens + 20 * items + 16 * items + 4096
            cfg = self.order_config
            if self.epochs is not None:  # train_iters follows from the (guessed) token count
                from pipeline.job.plan_check import train_iters_for_epochs

                ti = train_iters_for_epochs(tokens, cfg.seq_length, cfg.global_batch, self.epochs)
                cfg = dataclasses.replace(cfg, train_iters=ti)
            try:
                epochs = num_epochs_for(tokens, cfg.seq_length, cfg.num_samples)
                maps = index_map_bytes(items, epochs, tokens, cfg.seq_length)
            except PipelineError:
                maps = 0
            # the maps, the provenance tables (doc_id int64 + set code) and their manifest
            stages[f"order-{v}"] = maps + 10 * items + 4096
            shards, _ = preshuffled_bytes(cfg)
            stages[f"preshuffle-{v}"] = shards + 12 * cfg.train_samples + 4096
        if "deduped" in self.config.variants:
            items = max(1, guessed // TOKENS_PER_DOCUMENT)
            tok = self.estimate("standard") if "standard" in self.config.variants else {}
            items = tok.get("items") or items
            # signatures: num_perm uint32 per document, and their doc-id table
            stages["dedup"] = items * (4 * self.dedup_config.num_perm + 16) + 65536
        stages["report"] = REPORT_BYTES
        transient = max(
            (stages[k] for k in stages if k.startswith("tokenize-")), default=0
        )  # partial files and the merged .bin side by side
        return {
            "stages": stages,
            "total": sum(stages.values()),
            "peak": sum(stages.values()) + transient,
            "tokens_known": known,
        }

    # -- execution ---------------------------------------------------------------------------
    def refresh_status(self, refresh: bool = False, redo: dict[str, str] | None = None) -> None:
        """Mark each stage up-to-date or pending (with the reason). Upstream keys are part of each
        key, so a changed upstream config changes every key below it; a stage redone with an
        unchanged key (a corrupt or missing output) makes its downstream pending explicitly.
        `redo` names stages to run anyway, with the reason (damage found by the verify pass)."""
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

    def stale_variants(self) -> list[StaleVariant]:
        """The variants this build does not update (`--variant standard|deduped`) whose completed
        stages no longer match what the current inputs and config give. They are reported, never
        deleted: they are the user's data. A variant whose outputs were all removed is not."""
        current = {st.name for st in self.stages}
        found: dict[str, StaleVariant] = {}
        for st in self._plan(("standard", "deduped")):
            if st.name in current or st.name == "report":
                continue
            rec = load_record(self.out, st.name)
            if not rec or rec.get("status", COMPLETE) != COMPLETE or rec.get("key") == st.key:
                continue
            outputs = [self.out / f["name"] for f in rec.get("outputs", []) if "name" in f]
            if not any(p.exists() for p in outputs):
                continue
            variant = "deduped" if st.name == "dedup" else st.name.split("-", 1)[1]
            item = found.setdefault(variant, StaleVariant(variant, self.out))
            item.stages.append(st.name)
            if st.directory.name == "preshuffled":
                directory = st.directory.parent
            else:
                directory = st.directory
            if directory not in item.dirs:
                item.dirs.append(directory)
            if not item.reason:  # the first stale stage in dependency order says why
                item.reason = describe_change(rec.get("basis"), st.basis) or (
                    "its inputs or config changed since it was built"
                )
        return list(found.values())

    def execute(self, redo: dict[str, str] | None = None) -> list[Stage]:
        from pipeline.job.plan_check import check_plan

        self.refresh_status(refresh=True, redo=redo)
        if self.config.engine != "local" and any(s.status != "up-to-date" for s in self.stages):
            self.executor  # noqa: B018 - join the cluster (or fail: no Ray) before any stage runs
        # refuse a plan that cannot fit before any stage runs (what is known now), and again
        # once the token counts are known, before the stages whose size depends on them
        warned: set[str] = set()
        check_plan(self, "before the first stage", warned)
        checked = False
        for st in self.stages:
            if not checked and not st.name.startswith(("dedup", "tokenize-")):
                check_plan(self, "after tokenize, before order", warned)
                checked = True
            if st.status == "up-to-date":
                log.info("stage %s: up to date, skipped", st.name)
                self.progress(st.name, {"status": "skipped"})
                continue
            self._clean(st)
            log.info("stage %s: running (%s)", st.name, st.reason)
            self.progress(st.name, {"status": "start"})
            fault_point(st.name, "start")
            t0 = time.perf_counter()
            outputs, info = st.run()
            st.seconds = time.perf_counter() - t0
            st.info = _jsonable(info)
            fault_point(st.name, "end")
            write_record(
                self.out, st.name, st.key, outputs, {"info": st.info}, st.planned, basis=st.basis
            )
            st.status = "done"
            self.progress(st.name, {"status": "done", "seconds": st.seconds})
            log.info("stage %s: done in %.2f s", st.name, st.seconds)
        return self.stages

    def _clean(self, st: Stage) -> None:
        """Remove what a previous (other-config, failed or killed) run of this stage left behind,
        then store the running record. The old record goes only after its files: a build killed
        in between still knows what to remove. Only names the stage writes are touched (its
        planned files and their `.tmp`), never another file in the stage's directory."""
        rec = load_record(self.out, st.name)
        why = _removal_reason(rec, st.reason)
        for p in owned_files(self.out, rec, st.owns):
            log.info("stage %s: removing %s (%s)", st.name, p, why)
            p.unlink()
        # this run's own names too: a record lost with a crash must not leave them to be reused
        for p in owned_files(self.out, {"planned": st.planned}, st.owns):
            p.unlink()
        write_running(self.out, st.name, st.key, st.planned)
        for name in st.planned:  # temporaries of these names (pipeline.io.atomic_open)
            tmp = self.out / f"{name}.tmp"
            try:
                os.unlink(tmp)  # a planted symlink goes, its target stays
            except FileNotFoundError:
                pass
            except IsADirectoryError:
                shutil.rmtree(tmp)
            else:
                log.info("stage %s: removing %s (left by an interrupted run)", st.name, tmp)

    def check_confined(self) -> None:
        """Every directory a stage writes in must be a real directory inside OUT: a symlinked
        `OUT/standard` would make the build write and remove files elsewhere."""
        root = self.out.resolve()
        dirs = {STATE_DIR, "logs", "quarantine", "report", "dedup/buckets", "dedup/edges"}
        for st in self.stages:
            dirs.update(str(Path(n).parent) for n in st.planned)
        for d in sorted(dirs):
            here = self.out
            for part in Path(d).parts:
                here = here / part
                if here.is_symlink():
                    raise ConfigError(
                        f"{here} is a symlink (to {os.readlink(here)}); pile build writes and "
                        f"removes files only inside {root}. Replace it with a real directory "
                        "(move the linked data into it), or build into another --out."
                    )
                if not here.exists():
                    break


@dataclass
class StaleVariant:
    """A variant left out of this build whose outputs describe other inputs or another config."""

    variant: str
    out: Path
    dirs: list[Path] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    reason: str = ""

    @property
    def message(self) -> str:
        dirs = " and ".join(f"{d.relative_to(self.out).as_posix()}/" for d in self.dirs)
        toml = shlex.quote(str(self.out / "build.toml"))
        rm = " ".join(shlex.quote(str(d)) for d in self.dirs)
        many = len(self.dirs) > 1
        is_, it = ("are", "them") if many else ("is", "it")
        return (
            f"{dirs} in {self.out} {is_} stale ({self.reason}) and this build does not update "
            f"{it} (stages {', '.join(self.stages)}). Rebuild {it} with `pile build --config "
            f"{toml} --variant both` (up-to-date stages are skipped), or remove {it}: `rm -r {rm}`."
        )


def describe_change(old: dict[str, Any] | None, new: dict[str, Any]) -> str | None:
    """Why a stage key changed, from the basis stored in its record and the current one: the
    input files whose size or mtime changed, the configs that changed. None when the record has
    no basis (written by an older version) or nothing differs that it can name."""
    if not isinstance(old, dict):
        return None
    reasons = []
    if old.get("version") != new["version"]:
        reasons.append(f"pile version changed ({old.get('version')} -> {new['version']})")
    if "inputs" in new:
        reasons += _input_changes(old.get("inputs") or [], new["inputs"])
        if old.get("read") != new["read"]:
            reasons.append("read config changed")
    for part, fp in new["config"].items():
        if (old.get("config") or {}).get(part) != fp:
            reasons.append(f"{part} config changed")
    for name, key in new["upstream"].items():
        if (old.get("upstream") or {}).get(name) != key:
            reasons.append(f"upstream stage {name} changed")
    return "; ".join(reasons) or None


def _input_changes(old: list[Any], new: list[list[Any]], show: int = 3) -> list[str]:
    """`input train/02.jsonl.zst changed (mtime)`, `... added`, `... removed`, by (path, split)."""
    old = [o for o in old if isinstance(o, list) and len(o) == 6]
    old_by = {(o[1], o[3]): o for o in old}
    new_ids = {(n[1], n[3]) for n in new}
    msgs = []
    for n in new:
        o = old_by.get((n[1], n[3]))
        if o is None:
            msgs.append(f"input {n[0]} added")
            continue
        what = [w for w, i in (("kind", 2), ("size", 4), ("mtime", 5)) if o[i] != n[i]]
        if what:
            msgs.append(f"input {n[0]} changed ({', '.join(what)})")
    msgs += [f"input {o[0]} removed" for o in old if (o[1], o[3]) not in new_ids]
    if not msgs and [(o[1], o[3]) for o in old] != [(n[1], n[3]) for n in new]:
        msgs.append("input order changed (document ids follow it)")
    if len(msgs) > show:
        msgs = msgs[:show] + [f"{len(msgs) - show} more input change(s)"]
    return msgs


def _held_out_message(names: list[str], inputs: list[Any]) -> str:
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


def _removal_reason(rec: dict[str, Any] | None, reason: str) -> str:
    """Why a stage's old files go, for the log: an interrupted run's leftovers, or the outputs
    of a finished run redone because its config, inputs or outputs changed."""
    if not isinstance(rec, dict) or rec.get("status", COMPLETE) != COMPLETE:
        return "left by an interrupted or failed run"
    return f"output of an earlier run, redone because {reason}" if reason else "redone"


def _stat(path: str) -> list[int]:
    try:
        s = os.stat(path)
    except OSError:
        return [0, 0]
    return [s.st_size, s.st_mtime_ns]


def _manifest_outputs(manifest_path: Path) -> list[Path]:
    from pipeline.manifest import read_manifest

    m = read_manifest(manifest_path)
    base = manifest_path.parent
    return [base / f["name"] for f in m["files"]] + [manifest_path]


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        try:
            return obj.item()
        except (TypeError, ValueError):
            pass
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def write_build_toml(config: BuildConfig) -> Path:
    path = Path(config.out) / "build.toml"
    atomic_write_text(path, config.to_toml())
    return path


def ensure_out_dir(out: str | Path) -> Path:
    out = Path(out)
    if (out / "logs").is_symlink():  # the build log would be written elsewhere
        raise ConfigError(
            f"{out / 'logs'} is a symlink (to {os.readlink(out / 'logs')}); pile build writes only "
            "inside its output directory. Replace it with a real directory."
        )
    try:
        (out / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PipelineError(
            f"cannot create output directory {out}: {e.strerror}. Choose a writable --out."
        ) from None
    return out


def run_build(
    config: BuildConfig,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
    force: bool = False,
) -> tuple[BuildPlan, Any]:
    """Run (or resume) the build; returns the plan and the final verify report."""
    from pipeline.verify import verify_paths

    check_out_dir(config.out, force)
    out = ensure_out_dir(config.out)
    with DirLock(out, "build"), contextlib.ExitStack() as stack:
        plan = BuildPlan(config, progress)
        stack.callback(plan.close)  # a Ray started for this run stops; a joined one keeps running
        plan.check_confined()
        plan.stale = plan.stale_variants()
        for item in plan.stale:
            log.warning("%s", item.message)
        write_build_toml(config)
        plan.execute()
        targets = [str(out / v) for v in config.variants] + (
            [str(out / "dedup")] if "deduped" in config.variants else []
        )
        targets.append(str(out / REPORT_MANIFEST))  # the report and its figures too
        report = verify_paths(targets)
        # damage that kept size and mtime (bit rot) passes the cheap intact check of a rerun and
        # is found here: redo the stages owning the damaged files (and their downstream) once
        redo = damaged_stages(plan, report)
        if redo:
            for name, why in redo.items():
                log.warning("stage %s: %s; redoing the stage and those after it", name, why)
            plan.execute(redo)
            report = verify_paths(targets)
        if not report.ok:
            raise IntegrityError(
                "the final verify pass failed:\n" + "\n".join(f"  {p}" for p in report.problems)
            )
    return plan, report


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


def check_out_dir(out: str | Path, force: bool = False) -> None:
    """Refuse an existing non-empty directory that is not a pile build (no `build.toml`, no
    `_state/`): its files are someone's, and a build would overwrite `report.html` and the
    like. `force` builds there anyway (pile still removes only files its records name)."""
    out = Path(out)
    try:
        entries = sorted(os.listdir(out))
    except OSError:
        return  # missing, a file or unreadable: ensure_out_dir names the problem
    theirs = [e for e in entries if e not in ("logs", ".lock")]
    if not theirs or force or "build.toml" in entries or STATE_DIR in entries:
        return
    shown = ", ".join(theirs[:5]) + (f" and {len(theirs) - 5} more" if len(theirs) > 5 else "")
    raise ConfigError(
        f"--out {out} is a non-empty directory that is not a pile build (it holds {shown}; no "
        "build.toml or _state/). Pick a new or empty --out, or pass --force to build there "
        "anyway (pile would write build.toml, report.html, report/, logs/ and its stage "
        "directories beside your files)."
    )
