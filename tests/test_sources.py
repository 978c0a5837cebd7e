"""The Pile component manifest: names, published figures and their internal consistency."""

from __future__ import annotations

import re

import pytest

from pipeline.sources import PILE_SET_NAMES, load_pile_manifest, load_pile_sources


def test_names_match_manifest_in_table_order():
    assert tuple(s.name for s in load_pile_sources()) == PILE_SET_NAMES
    assert len(PILE_SET_NAMES) == 22
    assert len(set(PILE_SET_NAMES)) == 22


def test_names_match_shared_readme(shared):
    readme = shared("README.md").read_text("utf-8")
    line = next(ln for ln in readme.splitlines() if "pile_set_name` values" in ln)
    assert tuple(re.findall(r'"([^"]+)"', line)) == PILE_SET_NAMES


def test_known_rows():
    by_name = {s.name: s for s in load_pile_sources()}
    cc = by_name["Pile-CC"]
    assert (cc.raw_size_gib, cc.weight_pct, cc.epochs, cc.mean_document_kib) == (
        227.12,
        18.11,
        1.0,
        4.33,
    )
    pg = by_name["Gutenberg (PG-19)"]
    assert (pg.epochs, pg.effective_size_gib, pg.mean_document_kib) == (2.5, 27.19, 398.73)
    assert by_name["Wikipedia (en)"].epochs == 3.0


def test_figures_are_consistent_with_totals():
    sources = load_pile_sources()
    total = load_pile_manifest()["total"]
    assert sum(s.raw_size_gib for s in sources) == pytest.approx(total["raw_size_gib"], abs=0.01)
    assert sum(s.effective_size_gib for s in sources) == pytest.approx(
        total["effective_size_gib"], abs=0.01
    )
    assert sum(s.weight_pct for s in sources) == pytest.approx(100.0, abs=0.01)
    for s in sources:
        # the paper rounds each column to 2 decimals independently
        assert s.raw_size_gib * s.epochs == pytest.approx(s.effective_size_gib, abs=0.011), s.name
        assert 100 * s.effective_size_gib / total["effective_size_gib"] == pytest.approx(
            s.weight_pct, abs=0.006
        ), s.name


def test_layout():
    layout = load_pile_manifest()["layout"]
    assert layout["train"] == [f"train/{i:02d}.jsonl.zst" for i in range(30)]
    assert (layout["val"], layout["test"]) == ("val.jsonl.zst", "test.jsonl.zst")


def test_manifest_copy_is_independent():
    m = load_pile_manifest()
    m["sources"].clear()
    assert len(load_pile_sources()) == 22
