"""`pile exposure`: what had training seen by step N, per pile_set_name.

From the precomputed histograms of pipeline.exposure.inverse (per step and source: tokens trained
on, documents first seen in part, first seen whole, seen whole a second time), any step's totals
are prefix sums: O(steps x sources) per query, whatever the data size.

Steps count from 0. `--step N` covers the samples of steps 0..N inclusive ((N+1) x global_batch
samples). A Pythia checkpoint stepC was saved after C steps, so it had seen steps 0..C-1 (step0:
nothing). A document is "seen in part" when some but not all tokens of every copy were trained on,
"once" when exactly one copy was seen whole, "more than once" when two or more were (multi-epoch
runs repeat documents); tokens count the seq_length + 1 tokens of every trained sample.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from pipeline.exposure.find import PYTHIA_CHECKPOINTS
from pipeline.exposure.inverse import DOCS_ONCE, DOCS_PART, DOCS_TWICE, TOKENS, InverseMaps


def _totals(hist: np.ndarray, steps: int) -> np.ndarray:
    """[4, sources]: the histogram summed over the first `steps` steps."""
    return np.asarray(hist[:, :steps]).sum(axis=1, dtype=np.int64)


def counts_after(inv: InverseMaps, steps: int) -> dict[str, Any]:
    """Exposure after the first `steps` training steps (steps 0..steps-1)."""
    hist = np.asarray(inv.exposure)
    c = _totals(hist, steps)
    docs = hist[DOCS_PART].sum(axis=0)
    cfg = inv.maps.config
    rows = []
    for j, name in enumerate(inv.sets):
        any_, whole, twice = int(c[DOCS_PART, j]), int(c[DOCS_ONCE, j]), int(c[DOCS_TWICE, j])
        rows.append(
            {
                "pile_set_name": name,
                "tokens": int(c[TOKENS, j]),
                "documents": int(docs[j]),
                "documents_seen": any_,
                "seen_in_part": any_ - whole,
                "seen_once": whole - twice,
                "seen_more_than_once": twice,
                "unseen": int(docs[j]) - any_,
            }
        )
    total = sum(r["tokens"] for r in rows)
    for r in rows:
        r["token_share"] = round(r["tokens"] / total, 6) if total else 0.0
    return {
        "steps_trained": steps,
        "samples": steps * cfg.global_batch,
        "tokens": total,
        "sources": rows,
    }


def exposure_at_step(inv: InverseMaps, step: int) -> dict[str, Any]:
    """Samples trained on up to and including step N."""
    return {"step": step, **counts_after(inv, step + 1)}


def pythia_checkpoints(inv: InverseMaps) -> list[dict[str, Any]]:
    T = inv.maps.config.train_iters
    out = []
    for c in PYTHIA_CHECKPOINTS:
        if c > T:
            out.append({"checkpoint": f"step{c}", "beyond": True, "train_iters": T})
        else:
            out.append({"checkpoint": f"step{c}", "beyond": False, **counts_after(inv, c)})
    return out


def cumulative_tokens(inv: InverseMaps) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(checkpoint steps within training (and train_iters), [len, sources] tokens seen by each)."""
    T = inv.maps.config.train_iters
    xs = sorted({c for c in PYTHIA_CHECKPOINTS if c <= T} | {T})
    cum = np.cumsum(np.asarray(inv.exposure[TOKENS, :T]), axis=0)
    ys = np.stack([cum[x - 1] if x else np.zeros(cum.shape[1], np.int64) for x in xs])
    return np.array(xs), ys, inv.sets


def cumulative_tokens_of(prefix, config, maps_dir=None):
    """`cumulative_tokens` computed in memory from the index maps (nothing written): for the
    build report. One pass over the samples; memory O(samples) (no per-document arrays)."""
    from pipeline.exposure.inverse import invert_shuffle, item_sources, position_steps
    from pipeline.order.mapfiles import load_order
    from pipeline.shards.mmidx import MMIDXIndex

    maps = load_order(prefix, config, maps_dir)
    sizes = np.asarray(MMIDXIndex(str(prefix) + ".idx").sizes)
    codes, sets = item_sources(str(prefix), len(sizes), maps_dir)
    inv = invert_shuffle(maps.shuffle_idx)
    _, _, tokens = position_steps(maps, sizes, inv, codes, len(sets), docs=False)
    T = config.train_iters
    xs = sorted({c for c in PYTHIA_CHECKPOINTS if c <= T} | {T})
    cum = np.cumsum(tokens[:T], axis=0)
    ys = np.stack([cum[x - 1] if x else np.zeros(cum.shape[1], np.int64) for x in xs])
    return np.array(xs), ys, sets


def plot_png(xs: np.ndarray, ys: np.ndarray, sets: list[str], title: str = "") -> bytes:
    """Cumulative tokens per source over the checkpoints (PNG bytes, no timestamp)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    order = np.argsort(-ys[-1], kind="stable") if len(ys) else []
    for j in order:
        ax.plot(xs, ys[:, j], marker=".", label=sets[j])
    ax.set_xscale("symlog", linthresh=1)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("checkpoint step (steps trained)")
    ax.set_ylabel("tokens seen")
    ax.set_title(title or "cumulative tokens per pile_set_name")
    ax.legend(fontsize=6, ncol=2, loc="upper left")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def format_table(report: dict[str, Any]) -> str:
    head = (
        f"{'pile_set_name':<22}{'tokens':>14}{'share':>8}{'docs':>10}{'seen':>10}"
        f"{'in part':>9}{'once':>10}{'>1':>10}{'unseen':>10}"
    )
    lines = [head]
    for r in sorted(report["sources"], key=lambda r: -r["tokens"]):
        lines.append(
            f"{r['pile_set_name'][:21]:<22}{r['tokens']:>14}{r['token_share']:>8.4f}"
            f"{r['documents']:>10}{r['documents_seen']:>10}{r['seen_in_part']:>9}"
            f"{r['seen_once']:>10}{r['seen_more_than_once']:>10}{r['unseen']:>10}"
        )
    return "\n".join(lines) + "\n"
