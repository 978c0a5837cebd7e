"""Backend choice and the identity guard: auto picks the fastest backend that reproduces HF's ids
on the built-in edge cases, falls back (with a warning) when one does not, and an explicit
backend that does not is a ConfigError naming the first differing input."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.tokenize import encoder as encoder_mod
from pipeline.tokenize import giga as giga_mod
from pipeline.tokenize.encoder import load_encoder
from pipeline.tokenize.identity import EDGE_CASES, LONE_SURROGATES, cases_for, first_mismatch

gigatoken = pytest.importorskip("gigatoken", reason="gigatoken not installed")


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    """No encoder loaded in this process and no cached guard verdict."""
    monkeypatch.setattr(encoder_mod, "_CACHE", {})
    monkeypatch.setenv("PILE_CACHE_DIR", str(tmp_path / "cache"))


def test_edge_cases_cover_what_the_issue_names(hf):
    cases = cases_for(hf.added_tokens())
    joined = "".join(cases)
    assert "a<|endoftext|>b" in cases and "x<|padding|>y" in cases
    assert any(len(c) >= 5000 for c in cases)  # very long words
    assert " " * 26 in joined and "\t" * 50 in joined  # runs longer than the added tokens
    for probe in ("e\u0301", "\u200d", "\u4e2d", "\x00", "\U0001f1fa"):
        assert probe in joined
    assert all(any(0xD800 <= ord(c) <= 0xDFFF for c in s) for s in LONE_SURROGATES)


@pytest.mark.parametrize("backend", ["gigatoken", "fast"])
def test_every_backend_passes_the_guard(backend, hf):
    assert first_mismatch(load_encoder(backend=backend), hf) is None


def test_auto_prefers_gigatoken_and_says_so(fresh_cache, caplog):
    with caplog.at_level(logging.DEBUG, logger="pipeline.tokenize.encoder"):
        enc = load_encoder()
    assert enc.backend == "gigatoken" and enc.backend_label.startswith("gigatoken 0.")
    assert "backend gigatoken" in caplog.text and "identical to HF" in caplog.text


def test_auto_without_gigatoken_uses_fast(fresh_cache, monkeypatch):
    monkeypatch.setattr(giga_mod, "gigatoken_version", lambda: None)
    assert load_encoder().backend == "fast"
    with pytest.raises(ConfigError, match="gigatoken package is not installed.*--backend auto"):
        load_encoder(backend="gigatoken")


def _corrupt_literal_eod(monkeypatch):
    """A gigatoken that drops the id of a literal <|endoftext|> inside text."""
    orig = giga_mod.GigaBPE.encode_batch_flat

    def bad(self, texts):
        flat, sizes = orig(self, texts)
        out, new_sizes, pos = [], [], 0
        for t, n in zip(texts, sizes.tolist()):
            ids = flat[pos : pos + n].tolist()
            pos += n
            if "<|endoftext|>" in t and len(ids) > 1:
                ids = [i for i in ids if i != 0]
            out += ids
            new_sizes.append(len(ids))
        return np.array(out, np.uint32), np.array(new_sizes, np.int64)

    monkeypatch.setattr(giga_mod.GigaBPE, "encode_batch_flat", bad)


def test_mismatch_auto_falls_back_with_a_warning(fresh_cache, monkeypatch, caplog):
    _corrupt_literal_eod(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="pipeline.tokenize.encoder"):
        enc = load_encoder()
    assert enc.backend == "fast"
    assert "does not reproduce HF tokenizers' ids" in caplog.text
    assert "'a<|endoftext|>b'" in caplog.text and "falling back" in caplog.text


def test_mismatch_explicit_backend_is_config_error(fresh_cache, monkeypatch):
    _corrupt_literal_eod(monkeypatch)
    with pytest.raises(ConfigError) as e:
        load_encoder(backend="gigatoken")
    msg = str(e.value)
    assert "edge case #" in msg and "'a<|endoftext|>b'" in msg
    assert "HF tokenizers gives [66, 0, 67]" in msg
    assert "fix: use --backend auto" in msg


def test_surrogate_accepting_backend_fails_the_guard(hf, monkeypatch):
    enc = load_encoder(backend="fast")
    monkeypatch.setattr(enc, "encode", lambda t: [] if "\ud800" in t else hf.encode(t))
    bad = first_mismatch(enc, hf)
    assert bad is not None and bad.text == LONE_SURROGATES[0]


def test_cache_reset_keeps_ids_identical(hf):
    """The bounded-cache encoder (re-created every reset_chars characters) gives the same ids."""
    from pipeline.data import TOKENIZER_PATH

    g = giga_mod.GigaBPE(
        TOKENIZER_PATH.read_bytes(), reset_chars=500, reference=lambda t: hf.encode(t)
    )
    texts = list(EDGE_CASES[:40]) * 3
    flat, sizes = g.encode_batch_flat(texts)
    for _ in range(3):
        f2, s2 = g.encode_batch_flat(texts)
        assert f2.tolist() == flat.tolist() and s2.tolist() == sizes.tolist()
    assert g.resets >= 3
    assert flat.tolist() == [i for t in texts for i in hf.encode(t)]
