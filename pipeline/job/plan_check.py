"""Check a build's whole order/preshuffle plan before the stages that depend on it run.

The sizes of the order and preshuffle stages follow from the order config and the token count:

    num_samples  = ceil(train_iters * global_batch * 1.005)          (gpt-neox, +0.5%)
    num_epochs   = smallest e with (e * tokens - 1) // seq_length >= num_samples
    index maps   = e copies of the items + one row per sample (pipeline.order.indexmap)
    pre-shuffled = train_iters * global_batch samples of seq_length + 1 uint16 tokens

The pre-shuffled size is known before anything runs (unless train_iters comes from `epochs`);
epochs and map sizes once tokenize has counted the tokens. `check_plan` is called at both points
by the runner, so a plan that cannot fit is refused before dedup (when it already knows) and
before order, never after writing gigabytes of index maps. Its fix is computed for this data:
`--epochs 1` with the train_iters it gives, or the largest `--train-iters` that fits.

`epochs = N` derives train_iters: samples are seq_length + 1 tokens overlapping by one, so N
epochs of T tokens hold S = (N * T - 1) // seq_length samples (gpt-neox `_num_epochs`); the chosen
train_iters is the LARGEST whose num_samples fits in S. Then the index maps hold exactly N epochs
(the smallest train_iters covering S would, through the +0.5%, need N + 1 epochs of maps), and
training sees every sample at most N times: train_iters * global_batch samples, up to one step
and 0.5% short of N full passes.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError
from pipeline.io import human_bytes

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.job.runner import BuildPlan
    from pipeline.order.config import OrderConfig

log = logging.getLogger(__name__)

# more passes than this over the data is almost surely a preset meant for a bigger corpus
REPEAT_WARNING = 100


def samples_in_epochs(tokens: int, seq_length: int, epochs: int) -> int:
    """Samples of seq_length + 1 tokens (one shared between neighbours) in `epochs` passes."""
    return max(0, (epochs * tokens - 1) // seq_length)


def train_iters_for_epochs(tokens: int, seq_length: int, global_batch: int, epochs: int) -> int:
    """The largest train_iters whose gpt-neox num_samples fits in `epochs` epochs of `tokens`
    (module docstring); at least 1: data smaller than one step still trains one step (more
    epochs than asked, which `assess` warns about with `one_step_fix`)."""
    from pipeline.order.config import num_samples_for

    fit = samples_in_epochs(tokens, seq_length, epochs)
    ti = int(fit // (global_batch * 1.005))
    while num_samples_for(ti + 1, global_batch) <= fit:
        ti += 1
    while ti > 0 and num_samples_for(ti, global_batch) > fit:
        ti -= 1
    return max(1, ti)


def one_step_fix(tokens: int, seq_length: int, global_batch: int, epochs: int) -> str:
    """For data whose `epochs` epochs hold fewer samples than one step: the largest global batch
    that keeps it to `epochs` epochs, or (too little data for any) a smaller sequence length."""
    from pipeline.order.config import num_samples_for

    fit = samples_in_epochs(tokens, seq_length, epochs)
    gb = global_batch
    while gb > 1 and num_samples_for(1, gb) > fit:
        gb -= 1
    if num_samples_for(1, gb) <= fit:
        return f"--global-batch {gb}"
    return "a smaller --seq-length (or more data)"


@dataclass
class VariantPlan:
    """What order-<variant> and preshuffle-<variant> will write (None = not known yet)."""

    variant: str
    config: OrderConfig | None  # None: train_iters comes from epochs and tokens are unknown
    items: int | None = None
    tokens: int | None = None
    epochs: int | None = None
    index_map_bytes: int | None = None
    preshuffle_bytes: int | None = None
    train_samples: int | None = None


@dataclass
class PlanCheck:
    variants: list[VariantPlan]
    need: int  # bytes the pending order/preshuffle stages will write (the known part)
    free: int  # free bytes at `where` + what those stages will remove first
    where: Path
    unknown: list[str] = field(default_factory=list)  # stages whose size is not known yet
    warnings: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.need <= self.free


def assess(plan: BuildPlan) -> PlanCheck:
    """Everything known about the order/preshuffle plan now (call plan.refresh_status first)."""
    from pipeline.job.state import load_record, owned_files

    rows, need, reclaim, unknown, warnings = [], 0, 0, [], []
    for v in plan.config.variants:
        est = plan.estimate(v)
        row = VariantPlan(
            v,
            plan.order_config_for(v) if "train_iters" in est else None,
            items=est.get("items"),
            tokens=est.get("tokens"),
            epochs=est.get("epochs"),
            index_map_bytes=est.get("index_map_bytes"),
            train_samples=est.get("train_samples"),
        )
        if "preshuffle_bytes" in est:
            row.preshuffle_bytes = est["preshuffle_bytes"] + est["idx_bytes"]
        rows.append(row)
        for stage, size in (
            (f"order-{v}", row.index_map_bytes),
            (f"preshuffle-{v}", row.preshuffle_bytes),
        ):
            st = plan.stage(stage)
            if st is None or st.status == "up-to-date":
                continue
            if size is None:
                unknown.append(stage)
                continue
            need += size
            # _clean removes what an earlier run of the stage left before it writes
            old = owned_files(plan.out, load_record(plan.out, stage), st.owns)
            reclaim += sum(p.stat().st_size for p in old)
        if row.epochs is not None:
            warning = repetition_warning(plan, row)
            if warning:
                warnings.append(warning)
    where = Path(plan.out).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free + reclaim
    return PlanCheck(rows, need, free, where, unknown, warnings)


def repetition_warning(plan: BuildPlan, row: VariantPlan) -> str | None:
    """A warning when the order repeats the data more than REPEAT_WARNING times, or more times
    than --epochs asked for (data smaller than one step); None otherwise."""
    cfg = row.config
    short = plan.epochs is not None and row.epochs > plan.epochs
    if row.epochs <= REPEAT_WARNING and not short:
        return None
    what = (
        f"{row.variant}: the training order repeats this dataset {row.epochs:,} times "
        f"({row.tokens:,} tokens per epoch, {cfg.train_samples:,} samples of {cfg.seq_length + 1} "
        f"tokens from train_iters {cfg.train_iters:,} x global_batch {cfg.global_batch:,})"
    )
    if short:
        fix = one_step_fix(row.tokens, cfg.seq_length, cfg.global_batch, plan.epochs)
        return (
            f"{what}: {plan.epochs} epoch(s) of it are fewer samples than one step. For "
            f"{plan.epochs} epoch(s) use {fix}."
        )
    ti = train_iters_for_epochs(row.tokens, cfg.seq_length, cfg.global_batch, 1)
    return (
        f"{what}; a model trained on it sees each document ~{row.epochs:,} times. For one pass "
        f"over your data use --epochs 1 (train_iters {ti:,} for this data)."
    )


def check_plan(plan: BuildPlan, when: str, warned: set[str] | None = None) -> PlanCheck:
    """Refuse (ConfigError, nothing written) when the known part of the plan cannot fit on disk;
    log a warning for every variant repeated more than REPEAT_WARNING times (once: `warned`
    holds those already logged). `when` says where in the build this runs."""
    pc = assess(plan)
    warned = set() if warned is None else warned
    for w in pc.warnings:
        if w not in warned:
            log.warning("%s", w)
            warned.add(w)
    if pc.fits:
        log.info(
            "plan check (%s): order and preshuffle need %s, %s free at %s%s",
            when,
            human_bytes(pc.need),
            human_bytes(pc.free),
            pc.where,
            f" (+ {', '.join(pc.unknown)}: not known yet)" if pc.unknown else "",
        )
        return pc
    raise ConfigError(refusal(plan, pc, when))


def describe(row: VariantPlan) -> str:
    """One line per variant: epochs, maps, pre-shuffled size (what is known)."""
    parts = []
    if row.epochs is not None:
        parts.append(
            f"{row.epochs:,} epoch(s) of {row.tokens:,} tokens, index maps "
            f"{human_bytes(row.index_map_bytes)}"
        )
    if row.preshuffle_bytes is not None:
        parts.append(
            f"pre-shuffled {row.train_samples:,} samples x {row.config.seq_length + 1} tokens = "
            f"{human_bytes(row.preshuffle_bytes)}"
        )
    return f"{row.variant}: " + ("; ".join(parts) or "sizes not known until tokenize has run")


def refusal(plan: BuildPlan, pc: PlanCheck, when: str) -> str:
    lines = [
        f"the build's order and preshuffle stages need {human_bytes(pc.need)} but only "
        f"{human_bytes(pc.free)} is free at {pc.where} (checked {when}; nothing of them was "
        "written):"
    ]
    lines += [f"  {describe(r)}" for r in pc.variants]
    lines.append("Fix: " + fixes(plan, pc))
    return "\n".join(lines)


def fixes(plan: BuildPlan, pc: PlanCheck, written: bool = True) -> str:
    """Commands that fit this data on this disk: --epochs 1 (with the train_iters and size it
    gives when the tokens are known), the largest --train-iters that fits, or free space.
    `written`: OUT/build.toml holds this config (a real run), so whole commands can use it."""
    from pipeline.order.indexmap import index_map_bytes, num_epochs_for
    from pipeline.order.shuffled import preshuffled_bytes

    base = plan.order_config
    out: list[str] = []
    known = [r for r in pc.variants if r.tokens is not None and r.tokens >= 2]
    if len(known) == len(pc.variants) and known:
        total, tis = 0, []
        for r in known:
            ti = train_iters_for_epochs(r.tokens, base.seq_length, base.global_batch, 1)
            cfg = dataclasses.replace(base, train_iters=ti)
            e = num_epochs_for(r.tokens, cfg.seq_length, cfg.num_samples)
            total += index_map_bytes(r.items, e, r.tokens, cfg.seq_length)
            total += sum(preshuffled_bytes(cfg))
            tis.append(f"{r.variant} {ti:,}")
        if plan.epochs != 1 and total <= pc.free:
            out.append(
                f"`{_command(plan, '--epochs', '1', written)}` (train_iters {', '.join(tis)}: "
                f"{human_bytes(total)} in all)"
            )
    elif plan.epochs is None:
        out.append(
            f"`{_command(plan, '--epochs', '1', written)}` (train_iters derived from the token count, "
            "one pass over your data)"
        )
    # the largest train_iters whose pre-shuffled samples (tokens + 12 index bytes each) fit in
    # 90% of the free space (the rest for the index maps)
    per_step = len(pc.variants) * base.global_batch * ((base.seq_length + 1) * 2 + 12)
    ti = int(pc.free * 0.9) // per_step
    if ti >= 1:
        out.append(f"`{_command(plan, '--train-iters', str(ti), written)}`")
    out.append("or free space / choose another --out")
    return ", ".join(out[:-1]) + (", " if len(out) > 1 else "") + out[-1] + "."


def _command(plan: BuildPlan, flag: str, value: str, written: bool) -> str:
    """The user's build again with one order flag set: `pile build --config OUT/build.toml`
    holds everything else (--epochs and --train-iters outrank the file's other one). Before the
    build wrote it (--dry-run), the flag to add."""
    if not written:
        return f"{flag} {value}"
    toml = Path(plan.out) / "build.toml"
    return f"pile build --config {shlex.quote(str(toml))} {flag} {value}"


def summary_line(pc: PlanCheck) -> str:
    """`needs at least X, Y free at W` + what is not known yet, for --dry-run."""
    line = f"needs at least {human_bytes(pc.need)}, {human_bytes(pc.free)} free at {pc.where}"
    if pc.unknown:
        line += f" (+ {', '.join(pc.unknown)}: not known until tokenize has counted the tokens)"
    return line


def as_dict(row: VariantPlan) -> dict[str, Any]:
    return {k: v for k, v in row.__dict__.items() if k != "config" and v is not None}
