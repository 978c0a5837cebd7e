"""`pile build`: read → dedup → tokenize → order → preshuffle → report → verify, resumable."""

from __future__ import annotations

import logging
import shlex
import shutil
import sys
from pathlib import Path

from pipeline.cli.common import add_config_arguments, add_engine_arguments, declared_fields
from pipeline.config import field_dest, field_key

NAME = "build"
HELP = "build the standard and deduped token datasets end to end (default: the bundled sample)"
DESCRIPTION = (
    HELP + ".\n\nWith no --input it builds the bundled Pile-shaped sample. A rerun skips completed "
    "stages whose config, inputs and outputs are unchanged (an output with a new mtime is "
    "re-hashed) and redoes the rest and everything downstream; a killed build resumes to the "
    "same bytes. Keys of --config FILE (TOML) mirror these flags; flags override the file.\n\n"
    "Training length: with your own --input and no --preset, the order is Pythia's (seq_length "
    "2048, global batch 1024, seed 1234) for --epochs 1: train_iters is derived from the token "
    "count so the index maps hold one epoch. --preset pythia keeps Pythia's 143000 steps; "
    "--train-iters N or --epochs N set it yourself. The whole plan (epochs, index-map and "
    "pre-shuffled sizes, free disk) is checked before dedup and again once tokens are counted."
)

log = logging.getLogger("pipeline.job")


# the stage fields `pile build` exposes as override flags, by build.toml table, in --help order
# (every key of the tables is settable in --config FILE; pipeline.job.config.SECTIONS)
OVERRIDE_FLAGS = {
    "read": ("text_key", "set_name_key", "on_error", "max_line_bytes"),
    "dedup": ("threshold", "num_perm"),
    "tokenize": ("tokenizer_path", "append_eod"),
    "order": ("seq_length", "global_batch", "train_iters", "epochs", "seed"),
    "preshuffle": ("shard_size",),
}


def add_arguments(p) -> None:
    from pipeline.job.config import SECTIONS, BuildConfig

    # no argparse defaults here: a default would shadow the config file's value (flag > file >
    # default is resolved in pipeline.job.config)
    add_config_arguments(p, BuildConfig, only=("inputs", "out", "variant", "preset"), default=None)
    p.add_argument(
        "--config", default=None, metavar="FILE", help="TOML config file; flags override it"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved config, the stage plan and the sizes order and preshuffle will "
        "write; write nothing",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="build into an existing non-empty directory that is not a pile build (default: "
        "refuse; pile never removes files it did not write)",
    )
    add_config_arguments(p, BuildConfig, only=("workers",), default=None)
    add_engine_arguments(p, default=None)
    g = p.add_argument_group("stage overrides (default: from the preset / config file)")
    for table, names in OVERRIDE_FLAGS.items():
        add_config_arguments(g, SECTIONS[table], only=names, context="build", default=None)


def _overrides(args) -> dict:
    """{table: {build.toml key: flag value or None}} of the override flags."""
    from pipeline.job.config import SECTIONS

    return {
        table: {
            field_key(f): getattr(args, field_dest(f))
            for f in declared_fields(SECTIONS[table], only=names)
        }
        for table, names in OVERRIDE_FLAGS.items()
    }


class _Progress:
    """One owner of the terminal: a tqdm bar per running stage (documents/s for the tokenize
    stages), nothing when --quiet. Library code only calls back; it never prints."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def __call__(self, stage: str, info: dict) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        status = info.get("status")
        if status == "start":
            self.close()
            counting = stage.startswith(("tokenize", "dedup"))
            self.bar = tqdm(
                desc=f"{stage:<20}",
                unit=" docs" if counting else "",
                file=sys.stderr,
                dynamic_ncols=True,
                bar_format=None if counting else "{desc}: {elapsed}{postfix}",
            )
        elif status == "done":
            self.close(f"done in {info.get('seconds', 0):.1f}s")
        elif status == "total" and self.bar is not None:
            self.bar.total = int(info["documents"])
            self.bar.refresh()
        elif status == "skipped":
            print(f"{stage:<20}: up to date, skipped", file=sys.stderr)
        elif self.bar is not None and "counts" in info:
            c = info["counts"]
            if "tokens" in c:
                self.tokens = getattr(self, "tokens", 0) + int(c["tokens"])
                self.bar.set_postfix(tokens=f"{self.tokens:,}", refresh=False)
            self.bar.update(int(c.get("documents", 0)))

    def close(self, note: str | None = None) -> None:
        if self.bar is not None:
            if note:
                self.bar.set_postfix_str(note)
            self.bar.close()
            self.bar = None
            self.tokens = 0


def run(args) -> int:
    from pipeline.job.config import resolve_build_config
    from pipeline.job.runner import BuildPlan, check_out_dir, ensure_out_dir, run_build

    config = resolve_build_config(
        inputs=args.input,
        out=args.out,
        variant=args.variant,
        preset=args.preset,
        workers=args.workers,
        engine=args.engine,
        ray_address=args.ray_address,
        config_file=args.config,
        overrides=_overrides(args),
    )
    if args.dry_run:
        _dry_run(BuildPlan(config), args.force)
        return 0

    check_out_dir(config.out, args.force)  # before anything (logs/) is written there
    out = ensure_out_dir(config.out)
    fh = logging.FileHandler(out / "logs" / "build.log", encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    fh.setLevel(logging.DEBUG)
    root = logging.getLogger("pipeline")
    root.addHandler(fh)
    root.setLevel(logging.DEBUG)
    progress = _Progress(enabled=not args.quiet)
    # the terminal belongs to the progress bars: console logging drops to warnings unless -v
    console = [h for h in root.handlers if getattr(h, "_pile_cli", False)]
    saved = [h.level for h in console]
    if not args.verbose:
        for h in console:
            h.setLevel(logging.WARNING)
    ok = False
    try:
        plan, report = run_build(config, progress, force=args.force)
        ok = True
    finally:
        progress.close(None if ok else "failed")  # the error message follows on its own line
        for h, level in zip(console, saved):
            h.setLevel(level)
        root.removeHandler(fh)
        fh.close()
    _summary(plan, report)
    return 0


def _dry_run(plan, force: bool = False) -> None:
    from pipeline.errors import ConfigError
    from pipeline.io import human_bytes
    from pipeline.job.plan_check import assess, fixes, summary_line
    from pipeline.job.runner import check_out_dir

    try:
        check_out_dir(plan.config.out, force)
    except ConfigError as e:
        print(f"WARNING: a build would be refused: {e}")

    plan.refresh_status()  # read-only: checks records and outputs, writes nothing
    print("# resolved config (pile build --dry-run: nothing was written)")
    print(plan.config.to_toml())
    print("# stage plan")
    for st in plan.stages:
        if st.status == "up-to-date":
            print(f"{st.name:<22} {'up to date':<10} key {st.key[:16]}")
        else:
            print(f"{st.name:<22} {'will run':<10} key {st.key[:16]}  ({st.reason})")
    print(f"{'verify':<22} {'will run':<10} every manifest under {plan.config.out}")
    _print_stale(plan.stale_variants())
    print("\n# order and preshuffle outputs")
    seq = plan.order_config.seq_length
    check = assess(plan)
    for row in check.variants:
        est = plan.estimate(row.variant)
        v = row.variant
        if "epochs" in est:
            order = (
                f"{est['epochs']:,} epoch(s) of {est['items']:,} documents / {est['tokens']:,} "
                f"tokens, index maps ~{human_bytes(est['index_map_bytes'])}"
            )
        else:
            order = f"epochs and index-map size not known until tokenize-{v} has run"
        if plan.epochs is not None:
            ti = f"{est['train_iters']:,}" if "train_iters" in est else "derived after tokenize"
            order += f" (--epochs {plan.epochs}: train_iters {ti})"
        print(f"{v:<10} order: {order}")
        if "train_samples" in est:
            print(
                f"{'':<10} preshuffle: {est['train_samples']:,} samples x {seq + 1} "
                f"tokens x 2 bytes = {human_bytes(est['preshuffle_bytes'])}"
            )
        else:
            print(f"{'':<10} preshuffle: size not known until tokenize-{v} has run")
    for w in check.warnings:
        print(f"WARNING: {w}")
    disk = plan.estimate_disk()
    print("\n# disk (every artifact of the build, by stage)")
    for name, n in disk["stages"].items():
        print(f"{name:<22} ~{human_bytes(n)}")
    how = "" if disk["tokens_known"] else ", token counts estimated from the input sizes"
    print(
        f"{'total':<22} ~{human_bytes(disk['total'])} (peak ~{human_bytes(disk['peak'])} while "
        f"tokenize merges its partial files{how})"
    )
    print(summary_line(check))
    if not check.fits:
        print(f"will not fit; fix: add {fixes(plan, check, written=False)}")


def _print_stale(stale) -> None:
    """Variants this build leaves out whose outputs no longer match the inputs or config."""
    if stale:
        print("\n# stale variants (not updated by this build; nothing was deleted)")
        for item in stale:
            print(f"WARNING: {item.message}")


def _summary(plan, report) -> None:
    how = f"{plan.config.preset} preset"
    if plan.epochs is not None:
        iters = ", ".join(
            f"{v} {plan.order_config_for(v).train_iters:,}" for v in plan.config.variants
        )
        how += f", --epochs {plan.epochs}: train_iters {iters}"
    print(f"\npile build: {plan.out} ({how})")
    print(f"{'stage':<22} {'status':<11} seconds")
    for st in plan.stages:
        print(f"{st.name:<22} {st.status:<11} {st.seconds:7.2f}")
    import json

    rep = json.loads((plan.out / "report.json").read_text("utf-8"))
    print(f"\n{'variant':<10} {'documents':>10} {'tokens':>12} {'epochs':>7}  dataset")
    for v in plan.config.variants:
        d = rep["variants"][v]
        print(
            f"{v:<10} {d['documents']:>10,} {d['tokens']:>12,} {d['epochs']:>7}  "
            f"{plan.out / v / d['prefix']}"
        )
    if "dedup" in rep:
        d = rep["dedup"]
        print(
            f"dedup: {d['removed']:,} of {d['documents']:,} documents removed "
            f"({d['clusters']:,} clusters; near-duplicates: "
            f"{d.get('criterion', 'Jaccard ' + str(d['threshold']))})"
        )
    d = rep["variants"][plan.config.variants[0]]
    if d.get("rejected") or d.get("empty_dropped"):
        print(
            f"input: {d.get('rejected', 0):,} bad record(s) skipped (kept verbatim in "
            f"{plan.out / 'quarantine'}), {d.get('empty_dropped', 0):,} empty document(s) dropped"
        )
    print(f"verify: {report.summary()}")
    _print_stale(plan.stale)
    v = plan.config.variants[-1]
    data = plan.out / v / rep["variants"][v]["prefix"]
    print("\nnext:")
    for line in next_commands(plan.out, data, plan.out / v / "preshuffled"):
        print(f"  {line}")


def next_commands(out: Path, data: Path, preshuffled: Path) -> list[str]:
    """Commands to try after a build, quoted to paste into a shell. The report is opened with
    the platform's opener when it has one (`open` is macOS-only), else only named."""
    q = shlex.quote
    lines = [
        f"pile inspect --step 0 --decode --provenance {q(str(data))}",
        f"pile inspect --step 0 {q(str(preshuffled))}",
        f"pile verify {q(str(out))}",
    ]
    report = out / "report.html"
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    if shutil.which(opener):
        lines.append(f"{opener} {q(str(report))}")
    else:
        lines.append(f"# the report: {q(str(report))} (open it in a browser)")
    return lines
