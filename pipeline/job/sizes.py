"""Sizes for `pile build --dry-run` and the plan check: what each variant's order and preshuffle
stages will write (`variant_estimate`), and every stage's bytes (`estimate_disk`, from each spec's
`estimate`), with token counts from tokenize once it has run, else guessed from the input sizes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.read.inputs import input_identity

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.job.plan import BuildPlan

# bytes of uint16 tokens per input byte, by input kind (see guessed_tokens)
TOKEN_BYTES_PER_INPUT_BYTE = {"jsonl": 0.6, "jsonl.zst": 1.4, "jsonl.gz": 1.4, "parquet": 1.4}
TOKENS_PER_DOCUMENT = 400  # fewer tokens per document than the sample's 685 or the Pile's


def variant_estimate(plan: BuildPlan, variant: str) -> dict[str, Any]:
    """What order-<variant> and preshuffle-<variant> will write (call `refresh_status`
    first). Epochs and map bytes need the token count, known once tokenize-<variant> is up to
    date; the pre-shuffled size (uint16 tokens) needs it only when train_iters comes from
    `epochs`. Keys: train_iters, train_samples, preshuffle_bytes (shards), idx_bytes, and
    with the counts items, tokens, epochs, index_map_bytes."""
    from pipeline.order.indexmap import index_map_bytes, num_epochs_for
    from pipeline.order.shuffled import preshuffled_bytes

    counts = plan.dataset_counts(variant)
    est: dict[str, Any] = {}
    if plan.epochs is not None and counts is None:
        return est
    cfg = plan.order_config_for(variant)
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


def input_bytes(plan: BuildPlan) -> list[tuple[str, int]]:
    """(kind, bytes on disk) of every input; a directory input counts the files below it."""
    out = []
    for f in plan.inputs:
        p = Path(f.path)
        if p.is_dir():
            n = sum(q.stat().st_size for q in p.rglob("*") if q.is_file())
        else:
            n = input_identity(f)[0]
        out.append((f.kind, n))
    return out


def guessed_tokens(plan: BuildPlan) -> int:
    """Tokens guessed from the input sizes: a compressed input gives about 1.27 bytes of
    uint16 tokens per byte on the sample and on the Pile (460 GB of .jsonl.zst, ~300B
    tokens), uncompressed JSON about 0.5; the guess uses 1.4 and 0.6 to stay on the safe
    side."""
    return int(sum(n * (TOKEN_BYTES_PER_INPUT_BYTE.get(k, 1.4)) for k, n in input_bytes(plan)) / 2)


def estimated_counts(
    plan: BuildPlan, variant: str, guess_only: bool = False
) -> tuple[int, int, bool]:
    """(items, tokens, known) of the variant's token data for the disk estimate: counted
    once tokenize-<variant> is up to date, else guessed from the input sizes."""
    counts = None if guess_only else plan.dataset_counts(variant)
    if counts is not None and counts[1] >= 2:
        return counts[0], counts[1], True
    tokens = guessed_tokens(plan)
    return max(1, tokens // TOKENS_PER_DOCUMENT), tokens, False


def estimated_order_config(plan: BuildPlan, tokens: int):
    """The order config for `tokens` tokens: with `epochs`, train_iters follows from them."""
    cfg = plan.order_config
    if plan.epochs is not None:
        from pipeline.job.plan_check import train_iters_for_epochs

        ti = train_iters_for_epochs(tokens, cfg.seq_length, cfg.global_batch, plan.epochs)
        cfg = dataclasses.replace(cfg, train_iters=ti)
    return cfg


def estimate_disk(plan: BuildPlan) -> dict[str, Any]:
    """Bytes every artifact of this build will take (for `--dry-run`), by stage (each spec's
    `estimate`), plus the transient peak (tokenize merges its partial files into the `.bin`).
    Token counts come from the tokenize records when they are up to date, else from the
    input sizes (`guessed_tokens`). Listed by variant, then the build-wide stages."""
    shown = plan.by_variant()
    stages = {st.name: st.spec.estimate(plan, st.variant) for st in shown}
    known = all(estimated_counts(plan, v)[2] for v in plan.variants)
    transient = max(
        (stages[st.name] for st in shown if st.spec.merges_partials), default=0
    )  # partial files and the merged .bin side by side
    return {
        "stages": stages,
        "total": sum(stages.values()),
        "peak": sum(stages.values()) + transient,
        "tokens_known": known,
    }
