"""The README's main job: `pile build` with no input builds the bundled sample, both variants."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from pipeline.cli.main import main
from pipeline.data import sample_dir


def planted_removals() -> tuple[int, set[int]]:
    """Documents of train/ that the planted clusters say must go, and every id that must stay."""
    gt = json.loads((sample_dir() / "ground_truth.json").read_text())
    removed, keep = 0, set()
    for c in gt["clusters"]:
        train = sorted(m["doc_id"] for m in c["members"] if m["split"] == "train")
        if c["kind"] == "negative":
            keep.update(train)
        elif train:
            removed += len(train) - 1
            keep.add(train[0])  # keep policy: the smallest global id of each cluster
    return removed, keep


def test_default_build_of_bundled_sample(tmp_path, capsys):
    from pipeline.job.config import resolve_build_config
    from pipeline.job.runner import BuildPlan

    out = tmp_path / "pile_out"
    # --dry-run's estimate before anything is built (token counts from the input sizes)
    plan = BuildPlan(resolve_build_config(out=str(out), workers=2))
    plan.refresh_status()
    est = plan.estimate_disk()
    assert main(["build", "--out", str(out), "--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert "verify:" in text and "all OK" in text and "pile inspect --step 0" in text
    rep = json.loads((out / "report.json").read_text())
    std, ded = rep["variants"]["standard"], rep["variants"]["deduped"]
    gt = json.loads((sample_dir() / "ground_truth.json").read_text())
    train_docs = sum(f["documents"] for f in gt["files"].values() if f["split"] == "train")
    assert std["documents"] == train_docs
    assert len(std["per_source"]) == 22
    removed, keep = planted_removals()
    assert ded["excluded"] == removed == rep["dedup"]["removed"]
    assert ded["documents"] == train_docs - removed
    sidecar = pq.read_table(out / "deduped" / "pile_0.87_deduped_text_document.docs.parquet")
    assert keep <= set(sidecar.column("doc_id").to_pylist())
    # inspect answers for the first step of both forms, identically
    data = str(out / "deduped" / "pile_0.87_deduped_text_document")
    assert main(["inspect", "--step", "3", "--format", "json", data]) == 0
    a = json.loads(capsys.readouterr().out)
    assert (
        main(
            [
                "inspect",
                "--step",
                "3",
                "--format",
                "json",
                "--preset",
                "sample",
                str(out / "deduped" / "preshuffled"),
            ]
        )
        == 0
    )
    b = json.loads(capsys.readouterr().out)
    rows_a = [s["tokens"] for s in a["samples"]]
    assert rows_a == [s["tokens"] for s in b["samples"]]
    assert len(rows_a) == 8 and all(len(r) == 2049 for r in rows_a)
    assert main(["verify", str(out)]) == 0
    # every artifact counted: at least what the build wrote (12.8 MB when measured), not
    # wildly more (the dry run said 6.29 MB before, for a 12.8 MB build)
    real = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert real <= est["total"] <= 1.5 * real
    assert est["total"] <= est["peak"] <= 2 * real
