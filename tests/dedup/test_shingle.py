"""Normalisation, shingling and the 64-bit shingle hash."""

from __future__ import annotations

import random
import unicodedata

import numpy as np

import pipeline.dedup.shingle as S
from pipeline.dedup.shingle import (
    normalize_words,
    shingle_hash_reference,
    shingle_hashes,
)


def _reference(texts, n):
    """Shingle hashes by the scalar definition: str.split words, n-grams, reference hash."""
    out, counts = [], []
    for t in texts:
        w = normalize_words(t)
        if not w:
            counts.append(0)
            continue
        sh = [" ".join(w[i : i + n]) for i in range(max(1, len(w) - n + 1))]
        out += [shingle_hash_reference(s) for s in sh]
        counts.append(len(sh))
    return out, counts


def test_known_answer_hash():
    # the definition of the shingle hash is part of the artifact format: pin two values
    assert shingle_hash_reference("a") == _ref_a()
    h, c = shingle_hashes(["A"], 5)
    assert c.tolist() == [1] and int(h[0]) == shingle_hash_reference("a")


def _ref_a() -> int:
    # poly("a") = 97; fmix64(97 + 1 * 0x9E3779B97F4A7C15), computed independently here
    m = (1 << 64) - 1
    x = (97 + 0x9E3779B97F4A7C15) & m
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & m
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & m
    x ^= x >> 33
    return x


def test_vectorised_matches_reference_on_unicode_whitespace():
    rng = random.Random(7)
    ws = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    alphabet = list("abcXYZ019.,;'\"-") + ws + ["é", "e\u0301", "İ", "ß", "中", "\U0001f600"]
    alphabet += ["\u200b", "\u180e", "\x00", "\ud800"]  # not whitespace for str.split
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 50))) for _ in range(1500)]
    texts += ["", " ", "\u3000\u2028", "one", "one two three four five six"]
    for n in (1, 3, 5):
        h, c = shingle_hashes(texts, n)
        ref, ref_counts = _reference(texts, n)
        assert c.tolist() == ref_counts
        assert h.tolist() == ref


def test_short_and_empty_documents():
    h, c = shingle_hashes(["", "   \n\t ", "two words", "exactly five words here now"], 5)
    assert c.tolist() == [0, 0, 1, 1]
    assert int(h[0]) == shingle_hash_reference("two words")
    assert int(h[1]) == shingle_hash_reference("exactly five words here now")


def test_normalisation_rules():
    base = "The Quick brown fox jumps over the lazy dog café"
    variants = [
        base.upper(),
        base.replace(" ", "  \n\t"),
        "  " + base + "\n",
        unicodedata.normalize("NFD", base),
        base.replace(" ", "\u00a0"),
    ]
    h0, _ = shingle_hashes([base], 5)
    for v in variants:
        h, _ = shingle_hashes([v], 5)
        assert h.tolist() == h0.tolist(), v
    # punctuation is kept: "fox," (word 3 of 10) changes the 4 shingles starting at words 0..3
    h, _ = shingle_hashes([base.replace("fox", "fox,")], 5)
    assert len(h0) == 6
    assert set(h.tolist()) & set(h0.tolist()) == set(h0[4:].tolist())


def test_segmented_documents_give_the_same_shingles(monkeypatch):
    rng = random.Random(3)
    texts = [
        " ".join(f"w{rng.randint(0, 40)}" for _ in range(rng.randint(0, 90))) for _ in range(300)
    ]
    texts.append("x" * 500)  # one long word
    h_ref, c_ref = shingle_hashes(texts, 5)
    monkeypatch.setattr(S, "PIECE_BYTES", 64)
    monkeypatch.setattr(S, "SEGMENT_WORDS", 7)
    h, c = shingle_hashes(texts, 5)
    assert c.tolist() == c_ref.tolist()
    assert h.tolist() == h_ref.tolist()


def test_giant_document_over_10_mb():
    rng = np.random.default_rng(5)
    vocab = np.array([f"tok{i}" for i in range(20000)])
    words = vocab[rng.integers(0, len(vocab), 1_600_000)]
    giant = " ".join(words.tolist())
    assert len(giant.encode()) > 10 * 1024 * 1024
    h, c = shingle_hashes([giant, "small doc"], 5)
    assert c.tolist() == [len(words) - 4, 1]
    # spot-check shingles against the definition at both ends and across a segment boundary
    for i in (0, 1, S.SEGMENT_WORDS - 1, S.SEGMENT_WORDS, len(words) - 5):
        assert int(h[i]) == shingle_hash_reference(" ".join(words[i : i + 5].tolist()))
