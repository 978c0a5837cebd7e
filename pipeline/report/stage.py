"""Build report: `report.json`, `report.html` and `report/*.png` from the artifacts of a build.

Everything is read back from the outputs (manifests, dedup stats, sidecars), never from memory, so
the report of a resumed build equals the report of an uninterrupted one. PNGs are written with the
matplotlib Agg backend and without a timestamp, so the same data gives the same bytes.

Figures: documents and tokens per `pile_set_name` (standard vs deduped), duplicate rate per source,
cluster-size histogram, the LSH S-curve of the configuration, the document-length distribution,
the epochs each variant needs for the configured run, and the cumulative tokens per source seen by
each Pythia checkpoint within the run (`pile exposure`).
"""

from __future__ import annotations

import hashlib
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.config import canonical_json
from pipeline.io import atomic_write_bytes, atomic_write_text
from pipeline.manifest import read_manifest, write_manifest

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.job.runner import BuildPlan

# every figure make_figures may draw: the build's planned names (a rerun removes these and only
# these from report/, never another file a user keeps there)
REPORT_MANIFEST = "report.manifest.json"
REPORT_FIGURES = (
    "per_source.png",
    "doc_lengths.png",
    "epochs.png",
    "duplicate_rate.png",
    "cluster_sizes.png",
    "s_curve.png",
)
COLORS = {"standard": "#4C72B0", "deduped": "#DD8452"}


def collect(plan: BuildPlan) -> dict[str, Any]:
    """The report's data, from the build's outputs."""
    from pipeline.order.indexmap import index_map_paths
    from pipeline.tokenize.stage import output_names

    data: dict[str, Any] = {
        "build": {
            "preset": plan.config.preset,
            "variants": list(plan.config.variants),
            "inputs": [f.label for f in plan.inputs],
            "order": _output_fields(plan.order_config)
            if plan.epochs is None
            else {**_output_fields(plan.order_config), "train_iters": None, "epochs": plan.epochs},
            "dedup": _output_fields(plan.dedup_config),
        },
        "variants": {},
    }
    for v in plan.config.variants:
        prefix = plan.prefix(v)
        tok = read_manifest(plan.out / v / output_names(prefix)["manifest"])
        order_config = plan.order_config_for(v)
        order = read_manifest(index_map_paths(plan.data_prefix(v), order_config)["manifest"])
        counts = tok["counts"]
        data["variants"][v] = {
            "prefix": f"{prefix}_text_document",
            "documents": counts["documents"],
            "tokens": counts["tokens"],
            "excluded": counts.get("excluded", 0),
            "rejected": counts.get("rejected", 0),
            "empty_dropped": counts.get("empty_dropped", 0),
            "per_source": {
                name: {"documents": s["documents"], "tokens": s["tokens"]}
                for name, s in sorted(counts["per_source"].items())
            },
            "epochs": order["counts"]["num_epochs"],
            "tokens_per_epoch": order["counts"]["tokens_per_epoch"],
            "num_samples": order["counts"]["num_samples"],
            "train_samples": order["counts"].get("train_samples"),
            "epochs_consumed": (
                order["counts"].get("train_samples", 0)
                * order_config.seq_length
                / max(1, order["counts"]["tokens_per_epoch"])
            ),
        }
        if plan.epochs is not None:  # train_iters derived from this variant's tokens
            data["variants"][v]["train_iters"] = order_config.train_iters
    if "deduped" in plan.config.variants:
        stats = json.loads((plan.out / "dedup" / "stats.json").read_text("utf-8"))
        data["dedup"] = {
            "threshold": stats["config"]["threshold"],
            # what was removed, in words (older stats.json of a resumed build lack it)
            "criterion": stats.get("criterion", {}).get(
                "summary", f"LSH at Jaccard {stats['config']['threshold']:g} + MinHash estimate"
            ),
            "jaccard_cut": stats["counts"].get("jaccard_cut"),
            "bands": stats["config"]["bands"],
            "rows": stats["config"]["rows"],
            "num_perm": stats["config"]["num_perm"],
            "documents": stats["counts"]["documents"],
            "removed": stats["counts"]["removed"],
            "clusters": stats["counts"]["clusters"],
            "cluster_size_histogram": stats["cluster_size_histogram"],
            "s_curve": stats["s_curve"],
            "expected_recall": stats.get("expected_recall"),
            "duplicate_rate": {
                name: s["removed_fraction"]
                for name, s in sorted(stats["per_pile_set_name"].items())
            },
        }
    return data


def _output_fields(cfg) -> dict[str, Any]:
    """The config fields that shape the outputs: worker counts and batch sizes do not, and would
    make report.json differ between runs that built the same bytes."""
    return {k: v for k, v in cfg.to_dict().items() if k not in cfg._not_fingerprinted}


def _doc_lengths(plan: BuildPlan, variant: str) -> np.ndarray:
    import pyarrow.parquet as pq

    from pipeline.tokenize.stage import output_names

    path = plan.out / variant / output_names(plan.prefix(variant))["sidecar"]
    return pq.read_table(path, columns=["tokens"]).column("tokens").to_numpy()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def make_figures(plan: BuildPlan, data: dict[str, Any]) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figs: dict[str, bytes] = {}
    variants = list(data["variants"])
    sources = sorted({s for v in variants for s in data["variants"][v]["per_source"]})

    fig, axes = plt.subplots(1, 2, figsize=(12, max(4, 0.3 * len(sources) + 1)), sharey=True)
    y = np.arange(len(sources))
    h = 0.8 / len(variants)
    for k, what in enumerate(("documents", "tokens")):
        ax = axes[k]
        for i, v in enumerate(variants):
            vals = [data["variants"][v]["per_source"].get(s, {}).get(what, 0) for s in sources]
            ax.barh(y + i * h, vals, height=h, label=v, color=COLORS.get(v))
        ax.set_title(f"{what} per pile_set_name")
        ax.set_xscale("symlog")
        ax.legend()
    axes[0].set_yticks(y + h * (len(variants) - 1) / 2, sources)
    axes[0].invert_yaxis()
    figs["per_source.png"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.logspace(0, np.log10(max(2, max(_doc_lengths(plan, v).max() for v in variants))), 40)
    for v in variants:
        ax.hist(_doc_lengths(plan, v), bins=bins, histtype="step", label=v, color=COLORS.get(v))
    ax.set_xscale("log")
    ax.set_xlabel("tokens per document (incl. EOD)")
    ax.set_ylabel("documents")
    ax.set_title("document-length distribution")
    ax.legend()
    figs["doc_lengths.png"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    vals = [data["variants"][v]["epochs"] for v in variants]
    used = [data["variants"][v]["epochs_consumed"] for v in variants]
    x = np.arange(len(variants))
    ax.bar(x - 0.2, vals, width=0.4, label="epochs in index maps")
    ax.bar(x + 0.2, used, width=0.4, label="epochs consumed by train_iters")
    ax.set_xticks(x, variants)
    ax.set_title("epochs needed for the configured run")
    ax.legend()
    figs["epochs.png"] = _png(fig)
    plt.close(fig)

    if "dedup" in data:
        d = data["dedup"]
        fig, ax = plt.subplots(figsize=(7, max(4, 0.3 * len(d["duplicate_rate"]) + 1)))
        names = list(d["duplicate_rate"])
        ax.barh(names, [100 * d["duplicate_rate"][n] for n in names], color=COLORS["deduped"])
        ax.invert_yaxis()
        ax.set_xlabel("% of documents removed")
        ax.set_title("duplicate rate per source")
        figs["duplicate_rate.png"] = _png(fig)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(6, 3.5))
        hist = d["cluster_size_histogram"]
        if hist:
            ax.bar([str(s) for s, _ in hist], [c for _, c in hist], color=COLORS["deduped"])
        ax.set_xlabel("cluster size (documents)")
        ax.set_ylabel("clusters")
        ax.set_title("near-duplicate cluster sizes")
        figs["cluster_sizes.png"] = _png(fig)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(6, 3.5))
        j = np.linspace(0, 1, 201)
        b, r = d["bands"], d["rows"]
        ax.plot(j, 1 - (1 - j**r) ** b, label=f"b={b}, r={r}")
        ax.scatter(*zip(*d["s_curve"]), s=12)
        ax.axvline(
            d["threshold"], color="gray", linestyle="--", label=f"threshold {d['threshold']}"
        )
        ax.set_xlabel("Jaccard similarity J")
        ax.set_ylabel("P(candidate | J)")
        ax.set_title("LSH S-curve")
        ax.legend()
        figs["s_curve.png"] = _png(fig)
        plt.close(fig)
    for v in variants:  # what each Pythia checkpoint had seen, per source (pile exposure)
        from pipeline.exposure.counts import cumulative_tokens_of, plot_png

        xs, ys, sets = cumulative_tokens_of(plan.data_prefix(v), plan.order_config_for(v))
        figs[f"exposure_{v}.png"] = plot_png(
            xs, ys, sets, f"{v}: cumulative tokens per source at the Pythia checkpoints"
        )
    return figs


def _html(data: dict[str, Any], figures: list[str]) -> str:
    e = html.escape
    rows = []
    for v, d in data["variants"].items():
        rows.append(
            f"<tr><td>{e(v)}</td><td>{e(d['prefix'])}</td><td>{d['documents']:,}</td>"
            f"<td>{d['tokens']:,}</td><td>{d['excluded']:,}</td><td>{d['epochs']}</td>"
            f"<td>{d['epochs_consumed']:.3f}</td><td>{d['num_samples']:,}</td></tr>"
        )
    dedup = ""
    if "dedup" in data:
        d = data["dedup"]
        dedup = (
            f"<h2>Deduplication</h2><p>MinHash K={d['num_perm']}, LSH {d['bands']} bands x "
            f"{d['rows']} rows; near-duplicates: {e(d['criterion'])}: {d['removed']:,} of "
            f"{d['documents']:,} documents removed in {d['clusters']:,} clusters.</p>"
        )
    imgs = "\n".join(f'<figure><img src="report/{e(f)}" alt="{e(f)}"></figure>' for f in figures)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>pile build report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}img{{max-width:100%}}</style></head>
<body><h1>pile build report</h1>
<p>preset <b>{e(data["build"]["preset"])}</b>; order: seq_length {data["build"]["order"]["seq_length"]},
global batch {data["build"]["order"]["global_batch"]}, {_iterations(data)},
seed {data["build"]["order"]["seed"]}.</p>
<table><tr><th>variant</th><th>dataset</th><th>documents</th><th>tokens</th><th>excluded</th>
<th>epochs in maps</th><th>epochs consumed</th><th>num_samples</th></tr>
{"".join(rows)}</table>
{dedup}
{imgs}
<p>Data: <a href="report.json">report.json</a></p>
</body></html>
"""


def write_report(plan: BuildPlan) -> list[Path]:
    out = plan.out
    data = collect(plan)
    figures = make_figures(plan, data)
    paths = []
    for name, png in sorted(figures.items()):
        p = out / "report" / name
        atomic_write_bytes(p, png)
        paths.append(p)
    data["figures"] = [f"report/{n}" for n in sorted(figures)]
    text = canonical_json(data) + "\n"
    atomic_write_text(out / "report.json", text)
    atomic_write_text(out / "report.html", _html(data, sorted(figures)))
    paths += [out / "report.json", out / "report.html"]
    # written last, like every stage's manifest, so `pile verify` covers the report too; the
    # report holds no local paths or times, so its bytes are the build's (same inputs, same bytes)
    write_manifest(
        out / REPORT_MANIFEST,
        kind="build-report",
        config_fingerprint=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        files=paths,
    )
    return [*paths, out / REPORT_MANIFEST]


def _iterations(data: dict[str, Any]) -> str:
    """`143,000 iterations`, or with --epochs the train_iters derived for each variant."""
    order = data["build"]["order"]
    if order.get("epochs") is None:
        return f"{order['train_iters']:,} iterations"
    per = ", ".join(f"{v} {d['train_iters']:,}" for v, d in data["variants"].items())
    return f"{order['epochs']} epoch(s) of each dataset (train_iters {per})"
