"""`pile build`: the whole chain as a plan of stages with completion records.

Stages (for `--variant both`): dedup → tokenize:standard, tokenize:deduped → order:<v> →
preshuffle:<v> → report, then a verify pass over every manifest. Each stage has a *key*: the sha256
of its name, its own config fingerprint, the identity of the inputs (path, size, mtime) and the keys
of the stages it reads. A stage runs unless `OUT/_state/<stage>.json` holds the same key and all of
its outputs are present with their recorded sizes; when it runs, the outputs listed in its previous
record and any `*.tmp` left by a killed run are removed first, so a rerun of a killed build produces
the same bytes as an uninterrupted one, and an artifact built with another config is never reused.

Fault injection for tests: `PILE_FAULT=<stage>:<point>` (point = start | end) sends SIGKILL to the
build process at that point; `tokenize:<v>:mid` kills it after the first tokenize task is merged.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.build.config import BuildConfig
from pipeline.build.lock import BuildLock
from pipeline.build.state import clear_record, is_complete, load_record, write_record
from pipeline.config import canonical_json, combine_fingerprints
from pipeline.errors import IntegrityError, PipelineError
from pipeline.io import atomic_write_text
from pipeline.read import ReadConfig, resolve_inputs

log = logging.getLogger(__name__)

STANDARD_PREFIX = "pile"


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
    status: str = "pending"  # pending | up-to-date | done
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


class BuildPlan:
    """The stages of one build, their keys and how to run them (nothing runs until `execute`)."""

    def __init__(
        self, config: BuildConfig, progress: Callable[[str, dict[str, Any]], None] | None = None
    ):
        from pipeline.dedup import DedupConfig
        from pipeline.order.indexmap import OrderConfig
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
        self.order_config = OrderConfig.from_preset(order.pop("preset", "pythia"), **order)
        tok = dict(config.tokenize)
        tokenizer = tok.pop("tokenizer", None)
        self.tokenize_config = TokenizeConfig.for_tokenizer(tokenizer or None, **tok)
        self.shard_size = config.preshuffle.get("shard_size")
        self.input_identity = combine_fingerprints(
            *(canonical_json([f.path, f.kind, f.split, *_stat(f.path)]) for f in self.inputs),
            self.read_config.fingerprint(),
        )
        self.stages: list[Stage] = []
        self._plan()

    # -- plan ------------------------------------------------------------------------------
    def prefix(self, variant: str) -> str:
        return (
            STANDARD_PREFIX
            if variant == "standard"
            else deduped_prefix(self.dedup_config.threshold)
        )

    def data_prefix(self, variant: str) -> Path:
        return self.out / variant / f"{self.prefix(variant)}_text_document"

    def _add(self, name: str, parts: list[str], run, directory: Path) -> Stage:
        # the package version is part of every key: a new release redoes the stages
        st = Stage(name, combine_fingerprints(name, __version__, *parts), run, directory)
        self.stages.append(st)
        return st

    def _plan(self) -> None:
        variants = self.config.variants
        dedup_stage = None
        if "deduped" in variants:
            dedup_stage = self._add(
                "dedup",
                [self.dedup_config.fingerprint(), self.input_identity],
                self._run_dedup,
                self.out / "dedup",
            )
        tok_stages = {}
        for v in variants:
            parts = [self.tokenize_config.fingerprint(), self.input_identity]
            if v == "deduped":
                parts.append(dedup_stage.key)
            tok_stages[v] = self._add(
                f"tokenize-{v}", parts, lambda v=v: self._run_tokenize(v), self.out / v
            )
        order_stages = {}
        for v in variants:
            order_stages[v] = self._add(
                f"order-{v}",
                [self.order_config.fingerprint(), tok_stages[v].key],
                lambda v=v: self._run_order(v),
                self.out / v,
            )
        pre_stages = {}
        for v in variants:
            pre_stages[v] = self._add(
                f"preshuffle-{v}",
                [self.order_config.fingerprint(), str(self.shard_size), order_stages[v].key],
                lambda v=v: self._run_preshuffle(v),
                self.out / v / "preshuffled",
            )
        self._add(
            "report",
            [st.key for st in self.stages],
            self._run_report,
            self.out,
        )

    # -- stage bodies ------------------------------------------------------------------------
    def _run_dedup(self) -> tuple[list[Path], dict[str, Any]]:
        from pipeline.dedup import run_dedup

        out = self.out / "dedup"
        stats = run_dedup(
            self.inputs,
            out,
            self.dedup_config,
            self.read_config,
            self.config.workers,
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
            workers=self.config.workers,
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
        from pipeline.order.indexmap import index_map_paths, run_order

        manifest = run_order(self.data_prefix(variant), self.order_config)
        path = index_map_paths(self.data_prefix(variant), self.order_config)["manifest"]
        return _manifest_outputs(path), dict(manifest.get("counts", {}))

    def _run_preshuffle(self, variant: str) -> tuple[list[Path], dict[str, Any]]:
        from pipeline.order.inspect import PRESHUFFLED_MANIFEST
        from pipeline.order.preshuffle import PYTHIA_SHARD_SIZE, run_preshuffle

        out = self.out / variant / "preshuffled"
        shard_size = self.shard_size if self.shard_size is not None else PYTHIA_SHARD_SIZE
        manifest = run_preshuffle(self.data_prefix(variant), self.order_config, out, shard_size)
        return _manifest_outputs(out / PRESHUFFLED_MANIFEST), dict(manifest.get("counts", {}))

    def _run_report(self) -> tuple[list[Path], dict[str, Any]]:
        from pipeline.build.report import write_report

        paths = write_report(self)
        return paths, {}

    # -- execution ---------------------------------------------------------------------------
    def refresh_status(self) -> None:
        # Upstream keys are part of each key, so a changed upstream changes every key below it.
        for st in self.stages:
            st.status = "up-to-date" if is_complete(self.out, st.name, st.key) else "pending"

    def execute(self) -> list[Stage]:
        self.refresh_status()
        for st in self.stages:
            if st.status == "up-to-date":
                log.info("stage %s: up to date, skipped", st.name)
                self.progress(st.name, {"status": "skipped"})
                continue
            self._clean(st)
            log.info("stage %s: running", st.name)
            self.progress(st.name, {"status": "start"})
            fault_point(st.name, "start")
            t0 = time.perf_counter()
            outputs, info = st.run()
            st.seconds = time.perf_counter() - t0
            st.info = _jsonable(info)
            fault_point(st.name, "end")
            write_record(self.out, st.name, st.key, outputs, {"info": st.info})
            st.status = "done"
            self.progress(st.name, {"status": "done", "seconds": st.seconds})
            log.info("stage %s: done in %.2f s", st.name, st.seconds)
        return self.stages

    def _clean(self, st: Stage) -> None:
        """Remove what a previous (other-config or killed) run of this stage left behind."""
        rec = load_record(self.out, st.name)
        clear_record(self.out, st.name)
        if rec:
            for f in rec.get("outputs", []):
                p = self.out / f["name"]
                if p.is_file():
                    p.unlink()
        if st.directory.is_dir() and st.directory != self.out:
            for p in sorted(st.directory.rglob("*.tmp"), reverse=True):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                elif p.exists():
                    p.unlink()


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
    try:
        (out / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PipelineError(
            f"cannot create output directory {out}: {e.strerror}. Choose a writable --out."
        ) from None
    return out


def run_build(
    config: BuildConfig, progress: Callable[[str, dict[str, Any]], None] | None = None
) -> tuple[BuildPlan, Any]:
    """Run (or resume) the build; returns the plan and the final verify report."""
    from pipeline.verify import verify_paths

    out = ensure_out_dir(config.out)
    with BuildLock(out):
        plan = BuildPlan(config, progress)
        write_build_toml(config)
        plan.execute()
        report = verify_paths(
            [str(out / v) for v in config.variants]
            + ([str(out / "dedup")] if "deduped" in config.variants else [])
        )
        if not report.ok:
            raise IntegrityError(
                "the final verify pass failed:\n" + "\n".join(f"  {p}" for p in report.problems)
            )
    return plan, report
