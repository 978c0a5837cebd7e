"""The deduped dataset derived from the standard one is byte-identical to tokenizing with the
exclusion set (bundled sample with a planted exclusion set, and a tiny corpus with literal EODs)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import combine_fingerprints
from pipeline.data import sample_train_files
from pipeline.engine import make_executor
from pipeline.read import ReadConfig
from pipeline.tokenize import sidecar as sidecar_mod
from pipeline.tokenize.derive import derive_excluded
from pipeline.tokenize.stage import TokenizeConfig, output_names, run_tokenize

from .test_stage import SAMPLE_DOCS, write_corpus


def _bytes(d, prefix):
    n = output_names(prefix)
    return {k: (d / n[k]).read_bytes() for k in ("bin", "idx", "sidecar", "manifest")}


def _both_ways(tmp_path, inputs, excl, cfg, workers=1):
    rc = ReadConfig()
    std = tmp_path / "std"
    run_tokenize(inputs, std, "pile", cfg, rc, executor=make_executor("local", workers))
    fp = "planted-" + str(len(excl))
    ref = tmp_path / "ref"
    want = run_tokenize(
        inputs,
        ref,
        "pile_d",
        cfg,
        rc,
        exclude_ids=excl,
        exclude_fingerprint=fp,
        executor=make_executor("local", workers),
    )
    got = derive_excluded(std, "pile", tmp_path / "der", "pile_d", cfg, rc, excl, fp)
    assert got == want
    assert _bytes(tmp_path / "der", "pile_d") == _bytes(ref, "pile_d")
    return got


def test_derived_equals_tokenized_on_the_bundled_sample(tmp_path, monkeypatch):
    monkeypatch.setattr(sidecar_mod, "ROW_GROUP_ROWS", 97)  # row groups across kept runs
    inputs = sample_train_files()
    rng = np.random.default_rng(12)
    side = tmp_path / "probe"
    run_tokenize(inputs, side, "p", TokenizeConfig(), executor=make_executor("local", 1))
    ids = sidecar_mod.read_sidecar(side / "p_text_document.docs.parquet").column("doc_id")
    ids = ids.to_numpy()
    # a planted set: random documents, a whole run at the start, the last one, and ids that
    # match nothing (past the last line of a file, past the last file)
    excl = np.unique(
        np.concatenate([rng.choice(ids, ids.size // 7, replace=False), ids[:25], ids[-1:]])
    )
    excl = np.concatenate([excl, [ids[-1] + 10_000, 1 << 50]])
    c = _both_ways(tmp_path, inputs, np.sort(excl), TokenizeConfig())
    assert c["excluded"] == excl.size - 2 and c["exclude_ids_unmatched"] == 2


@pytest.mark.parametrize("append_eod", [True, False])
def test_derived_counts_literal_eod_and_empty_sources(tmp_path, append_eod):
    a = write_corpus(tmp_path / "in" / "00.jsonl.zst", SAMPLE_DOCS[:40])
    b = write_corpus(tmp_path / "in" / "01.jsonl.zst", SAMPLE_DOCS[40:])
    # doc ids: file index << 40 | (line - 1); exclude the literal-EOD doc's neighbour and all of
    # file 1's first lines
    excl = np.array([3, 5, (1 << 40) | 0, (1 << 40) | 1, (1 << 40) | 2], dtype=np.int64)
    c = _both_ways(tmp_path, [a, b], excl, TokenizeConfig(append_eod=append_eod), workers=2)
    assert c["documents_with_literal_eod"] == 1 and c["excluded"] == 5


def test_not_derived_from_another_config(tmp_path):
    a = write_corpus(tmp_path / "in" / "00.jsonl.zst", SAMPLE_DOCS[:10])
    run_tokenize([a], tmp_path / "std", "pile", TokenizeConfig(append_eod=False))
    assert combine_fingerprints  # the standard fingerprint is compared, not the path
    got = derive_excluded(
        tmp_path / "std", "pile", tmp_path / "d", "pd", TokenizeConfig(), ReadConfig(),
        np.array([1]), "x",
    )  # fmt: skip
    assert got is None and not (tmp_path / "d" / "pd.manifest.json").exists()
