"""Inverse maps: each composed with the map it inverts is the identity; exposure counts agree
with a brute-force replay of the training stream."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.exposure import counts
from pipeline.exposure.dataset import open_exposed
from pipeline.exposure.find import PYTHIA_CHECKPOINTS, find_item
from pipeline.order import open_data

from .conftest import SET_NAMES, Model


@pytest.fixture(scope="module")
def ex(built):
    return open_exposed(built["prefix"], built["config"])


@pytest.fixture(scope="module")
def model(built):
    return Model(built)


def test_inverse_composed_with_map_is_identity(ex, model):
    inv = ex.inv
    shuffle = model.shuffle
    n = shuffle.size
    assert np.array_equal(np.asarray(inv.inv_shuffle)[shuffle], np.arange(n))
    assert np.array_equal(shuffle[np.asarray(inv.inv_shuffle)], np.arange(n))
    ip = np.asarray(inv.item_pos).astype(np.int64)
    n_items, epochs = ip.shape
    assert epochs == 3  # the fixture is a 3-epoch build
    assert np.array_equal(model.doc_idx[ip], np.repeat(np.arange(n_items)[:, None], epochs, 1))
    assert np.array_equal(model.epoch[ip], np.tile(np.arange(epochs), (n_items, 1)))
    # every position is some (item, copy)
    assert np.array_equal(np.sort(ip.ravel()), np.arange(model.doc_idx.size))
    for k in range(model.doc_idx.size):
        assert ex.loc.flat_start(k) == model.F[k], k
    rs = np.random.RandomState(0)
    for _ in range(200):
        s = int(rs.randint(0, ex.loc.num_total))
        o = int(rs.randint(0, model.L + 1))
        k, item, off = ex.loc.locate(s, o)
        t = s * model.L + o
        assert (k, off) == (model.pos[t], model.off[t])
        assert item == model.doc_idx[k]


def test_model_matches_the_preshuffled_tokens(built, model):
    pre = open_data(built["dir"] / "preshuffled", built["config"])
    for g in range(0, model.trained, 7):
        assert np.array_equal(pre.samples(np.array([g]))[0], model.sample_tokens(g))


def _expected_occurrences(model, item):
    out = set()
    gb = model.cfg.global_batch
    for g in range(model.trained):
        sp = model.sample_span(g)
        pos = model.pos[sp]
        hit = np.flatnonzero(model.doc_idx[pos] == item)
        for k in np.unique(pos[hit]):
            j = hit[pos[hit] == k]
            offs = model.off[sp][j]
            out.add((g // gb, g, int(j.min()), int(j.size), int(model.epoch[k]),
                     int(offs.min()), int(offs.max()) + 1))  # fmt: skip
    return out


def test_find_doc_agrees_with_brute_force(ex, model, built):
    for item in range(len(built["sizes"])):
        r = find_item(ex.loc, item)
        got = {(o["step"], o["sample"], o["offset"], o["tokens"], o["epoch"], *o["item_tokens"])
               for o in r["occurrences"]}  # fmt: skip
        assert got == _expected_occurrences(model, item), item
        if got:
            assert r["first_step"] == min(x[0] for x in got)


def _brute_docs(model, steps: int, n_items: int):
    """Per item: (seen any token, number of whole copies seen) after `steps` steps."""
    covered = np.zeros(model.flat.size, dtype=bool)
    for g in range(steps * model.cfg.global_batch):
        covered[model.sample_span(g)] = True
    anyk = np.zeros(model.doc_idx.size, dtype=bool)
    allk = np.ones(model.doc_idx.size, dtype=bool)
    np.logical_or.at(anyk, model.pos, covered)
    np.logical_and.at(allk, model.pos, covered)
    part = np.zeros(n_items, dtype=bool)
    whole = np.zeros(n_items, dtype=np.int64)
    np.logical_or.at(part, model.doc_idx, anyk)
    np.add.at(whole, model.doc_idx, allk)
    return part, whole


@pytest.mark.parametrize("step", [0, 9, 33, 69])
def test_exposure_counts_agree_with_brute_force(ex, model, built, step):
    r = counts.exposure_at_step(ex.inv, step)
    n_items = len(built["sizes"])
    part, whole = _brute_docs(model, step + 1, n_items)
    src = np.array([SET_NAMES[i % len(SET_NAMES)] for i in range(n_items)])
    covered_tokens = {}
    for g in range((step + 1) * model.cfg.global_batch):
        for k in model.pos[model.sample_span(g)]:
            name = SET_NAMES[model.doc_idx[k] % len(SET_NAMES)]
            covered_tokens[name] = covered_tokens.get(name, 0) + 1
    for row in r["sources"]:
        m = src == row["pile_set_name"]
        assert row["documents"] == m.sum()
        assert row["documents_seen"] == part[m].sum()
        assert row["seen_once"] == (whole[m] == 1).sum()
        assert row["seen_more_than_once"] == (whole[m] >= 2).sum()
        assert row["seen_in_part"] == (part[m] & (whole[m] == 0)).sum()
        assert row["tokens"] == covered_tokens.get(row["pile_set_name"], 0)


def test_exposure_at_the_last_step_counts_every_sample_once(ex, built):
    cfg = built["config"]
    r = counts.exposure_at_step(ex.inv, cfg.train_iters - 1)
    assert r["samples"] == cfg.train_samples
    assert r["tokens"] == cfg.train_samples * (cfg.seq_length + 1)
    assert sum(s["tokens"] for s in r["sources"]) == r["tokens"]


def test_pythia_checkpoints(ex, built):
    T = built["config"].train_iters
    rows = counts.pythia_checkpoints(ex.inv)
    assert [r["checkpoint"] for r in rows] == [f"step{c}" for c in PYTHIA_CHECKPOINTS]
    assert len(rows) == 154
    assert rows[0]["tokens"] == 0 and rows[0]["samples"] == 0
    for r, c in zip(rows, PYTHIA_CHECKPOINTS):
        assert r["beyond"] == (c > T)
        if not r["beyond"]:
            assert r == {"checkpoint": f"step{c}", "beyond": False,
                         **counts.counts_after(ex.inv, c)}  # fmt: skip
    # checkpoint stepC = steps 0..C-1 = --step C-1
    assert counts.counts_after(ex.inv, 64) == {
        k: v for k, v in counts.exposure_at_step(ex.inv, 63).items() if k != "step"
    }
    xs, ys, sets = counts.cumulative_tokens(ex.inv)
    assert xs[-1] == T and (np.diff(ys, axis=0) >= 0).all()
    assert ys[-1].sum() == built["config"].train_samples * 17


def test_first_step_whole_agrees_with_brute_force(ex, model, built):
    n_items = len(built["sizes"])
    T = built["config"].train_iters
    first_whole = np.full(n_items, -1)
    for n in range(T):
        _, whole = _brute_docs(model, n + 1, n_items)
        first_whole[(first_whole < 0) & (whole >= 1)] = n
    for item in range(n_items):
        r = find_item(ex.loc, item)
        want = None if first_whole[item] < 0 else int(first_whole[item])
        assert r["first_step_whole"] == want, item


def test_report_curve_computed_in_memory_equals_the_stored_one(ex, built):
    a = counts.cumulative_tokens(ex.inv)
    b = counts.cumulative_tokens_of(built["prefix"], built["config"])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    png = counts.plot_png(*b)
    assert png[:4] == b"\x89PNG" and png == counts.plot_png(*b)  # no timestamp: same bytes
