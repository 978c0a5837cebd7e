"""Every non-HF backend (fast, gigatoken) gives the same ids as HF `tokenizers` (the reference),
and decodes the same: the differential test.

Edge cases (space runs, whitespace, CJK, emoji, combining marks, specials, unusual code points),
seeded random strings, a sweep of every BMP code point, and the real corpora in ../shared.
"""

from __future__ import annotations

import io
import json
import re
import unicodedata

import numpy as np
import pytest
from tokenizers import normalizers

from pipeline.errors import InputError
from pipeline.tokenize.fast_bpe import nfc_divergent

from ..conftest import shared_path


@pytest.fixture(scope="module", params=["fast", "gigatoken"])
def fast(request):
    """Each backend under test in turn (the name is the tests' historical one)."""
    from pipeline.tokenize.encoder import load_encoder

    if request.param == "gigatoken":
        pytest.importorskip("gigatoken", reason="gigatoken not installed")
    return load_encoder(backend=request.param)


def assert_identical(fast, hf, texts):
    a = hf.encode_batch(texts)
    b = fast.encode_batch(texts)
    for i, (x, y) in enumerate(zip(a, b)):
        assert x == y, f"text #{i} {texts[i][:200]!r}: hf={x[:40]} fast={y[:40]}"
    flat, sizes = fast.encode_batch_flat(texts)
    assert sizes.tolist() == [len(x) for x in a]
    assert flat.tolist() == [t for x in a for t in x]
    return a


WHITESPACE = [
    " ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u1680", "\u2000",
    "\u2002", "\u2003", "\u2009", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000",
    "\u180e", "\u200b", "\u200d", "\ufeff",
]  # fmt: skip

UNUSUAL = [
    "\x00", "\x7f", "\ufffd", "\ufffe", "\uffff", "\ue000", "\U000f0000", "\U0010ffff",
    "\u202e", "\u200f", "\u0600", "\U000e0001", "\U0001d11e", "\u0345", "\u07fd", "\u0898",
    "\U00011930", "\U00011935", "\u1100\u1161\u11a8", "\u212b", "\u2126", "\ufb01", "\u00bd",
    "\u0661\u0662", "\u00b2", "\u2167", "\U0001d518", "\u0130", "\u0131", "\u00df", "\u1e9e",
]  # fmt: skip

WORDS = [
    "Hello", "world", "the", "it's", "I'll", "we've", "'re", "don't", "'S", "\u2019s", "123",
    "4.5", "x1", "foo_bar", "<br>", "http://a.b/c?d=e", "def f(x):", "\u4e2d\u6587",
    "\u65e5\u672c\u8a9e", "\ud55c\uad6d\uc5b4", "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "\u0939\u093f\u0928\u094d\u0926\u0940", "\U0001f600", "\U0001f44d\U0001f3fd",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f1fa\U0001f1f8", "e\u0301",
    "Cafe\u0301", "na\u0308ive", "A\u030a", "a\u0301\u0327", "a\u0327\u0301", "o\u0302\u0323",
    "\u0915\u093c", "<|endoftext|>", "<|padding|>", "<|endoftext", "endoftext|>", "<|", "|>",
    "<|endoftext|>\u0338", "=\u0338", "----", "...", "!!!", "$$", "``", "\\\\",
]  # fmt: skip


def edge_cases() -> list[str]:
    out = []
    for n in range(1, 61):
        sp = " " * n
        out += [sp, "a" + sp, sp + "a", "a" + sp + "b", "Hello" + sp + "world", "\n" + sp + "x",
                sp + "\n", "x" + sp + "\n" + sp + "y", "." + sp + "1", "\t" + sp + "\t",
                "def f():\n" + sp + "return 1\n", sp + "<|endoftext|>" + sp,
                "\u4e2d" + sp + "\U0001f600", sp + "\u0301"]  # fmt: skip
    for w in WHITESPACE:
        for k in (1, 2, 3, 7):
            ws = w * k
            out += [ws, "a" + ws + "b", " " + ws + "a", ws + " a", "a" + ws, "1" + ws + "2",
                    "x " + ws + "  y", ws + "\u0301"]  # fmt: skip
    for w in WORDS + UNUSUAL:
        out += [w, " " + w, w + " ", "a" + w, w + "a", w * 3, "  " + w, w + "\n\n", "'" + w]
    out += ["\r\n".join(WORDS), " ".join(WORDS), "".join(WORDS), "\t".join(UNUSUAL)]
    out.append(" ".join(WORDS + UNUSUAL + WHITESPACE) * 3)
    return out


def test_identity_edge_cases(fast, hf):
    texts = edge_cases()
    assert len(texts) > 1500
    assert_identical(fast, hf, texts)


def piecewise_nfc(text: str) -> str:
    """NFC of the text between the special tokens (HF splits those off before normalising)."""
    nfc = normalizers.NFC().normalize_str  # HF's NFC, the normaliser of record
    pieces = re.split(r"(<\|endoftext\|>|<\|padding\|>)", text)
    return "".join(p if i % 2 else nfc(p) for i, p in enumerate(pieces))


def test_round_trip_is_nfc(fast, hf):
    n_special = 0
    for text in edge_cases():
        expected = piecewise_nfc(text)
        if "<|" not in text:
            assert expected == normalizers.NFC().normalize_str(text)
        else:
            n_special += expected != normalizers.NFC().normalize_str(text)
        for enc in (fast, hf):
            assert enc.decode(enc.encode(text)) == expected, repr(text)
    assert n_special > 0  # '<|endoftext|>' + U+0338 is not NFC('<|endoftext|>' + U+0338)
    # for text Python and HF normalise alike, that is unicodedata's NFC
    assert fast.decode(fast.encode("Cafe\u0301 na\u0308ive")) == "Caf\u00e9 n\u00e4ive"


def test_nfc_divergent_code_points_go_through_hf_normalizer(fast, hf):
    """HF's NFC tables are older than Python's: e.g. U+07FD (Unicode 11) has combining class 0
    for HF and 220 for Python, so Python reorders 'a' U+0345 U+07FD and HF does not. The fast
    path must follow HF."""
    text = "a\u0345\u07fd"
    assert unicodedata.normalize("NFC", text) != normalizers.NFC().normalize_str(text)
    assert 0x7FD in nfc_divergent(normalizers.NFC(), [0x7FD, 0x301, 0x41])
    assert 0x301 not in nfc_divergent(normalizers.NFC(), [0x7FD, 0x301, 0x41])
    assert fast.encode(text) == hf.encode(text) == [66, 137, 216, 155, 123]
    # an NFC-divergent mark next to ordinary decomposed text: the whole piece follows HF
    mixed = "e\u0301 a\u0345\u07fd e\u0301"
    assert fast.encode(mixed) == hf.encode(mixed)


def random_texts(seed: int, n: int) -> list[str]:
    """Seeded random strings over a mix of parts that stress every pre-tokenizer branch."""
    rng = np.random.default_rng(seed)
    parts = (
        WHITESPACE + UNUSUAL + WORDS + list("aAzZ09.,;:'\"-_!?()[]{}<>|/\\@#$%^&*+=~`")
        + ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "    ", "\t\t", "\n\n", "\u0301",
           "\u0338", "\u0327", "\u0345"]
    )  # fmt: skip
    out = []
    for _ in range(n):
        idx = rng.integers(0, len(parts), int(rng.integers(1, 30)))
        out.append("".join(parts[i] for i in idx))
    # plus random code points (any plane, no surrogates), alone and mixed with ASCII
    cps = rng.integers(0, 0x110000 - 0x800, 4 * n)
    cps = np.where(cps >= 0xD800, cps + 0x800, cps)
    for k in range(n):
        chunk = "".join(map(chr, cps[4 * k : 4 * k + 4]))
        out.append(chunk + " " + chunk[:2] + "a " + chunk[2:])
    return out


def test_identity_random_strings(fast, hf):
    assert_identical(fast, hf, random_texts(seed=20240601, n=8000))


def test_identity_every_bmp_code_point(fast, hf):
    """Every BMP code point (no surrogates) after a space and a letter, and between digits:
    exposes any \\p{L}/\\p{N}/\\s or NFC disagreement between the two regex/Unicode stacks.
    (tools/bench_encoder.py --unicode-sweep does all planes in more contexts.)"""
    cps = [c for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    texts = []
    for i in range(0, len(cps), 32):
        chunk = [chr(c) for c in cps[i : i + 32]]
        texts.append("".join(" " + c + "a" for c in chunk))
        texts.append("".join("1" + c + "\u0301" for c in chunk))
    assert_identical(fast, hf, texts)


def _jsonl_texts(path):
    if path.suffix == ".zst":
        import zstandard

        with open(path, "rb") as fh:
            data = zstandard.ZstdDecompressor().stream_reader(fh).read()
        lines = io.StringIO(data.decode("utf-8"))
    else:
        lines = io.StringIO(path.read_text(encoding="utf-8"))
    return [json.loads(line)["text"] for line in lines if line.strip()]


def test_identity_lambada(fast, hf):
    texts = _jsonl_texts(shared_path("corpora", "lambada", "lambada_test.jsonl"))
    assert len(texts) == 5153
    ids = assert_identical(fast, hf, texts)
    assert sum(map(len, ids)) > 300_000


def test_identity_blns(fast, hf):
    docs = _jsonl_texts(shared_path("corpora", "blns", "blns.jsonl.zst"))
    assert len(docs) == 4
    texts = [t for t in docs if isinstance(t, str)]  # one document's "text" is a JSON list
    assert len(texts) == 3
    # the Big List of Naughty Strings, whole and line by line
    lines = [line for t in texts for line in t.split("\n")]
    assert_identical(fast, hf, texts + lines)


def test_identity_pile_real(fast, hf):
    base = shared_path("corpora", "pile_real")
    texts = [t for f in sorted(base.glob("*.jsonl.zst")) for t in _jsonl_texts(f)]
    assert len(texts) == 3
    assert_identical(fast, hf, texts)


def test_identity_cc(fast, hf):
    base = shared_path("corpora", "cc")
    texts = [t for f in sorted(base.glob("*.jsonl")) for t in _jsonl_texts(f)]
    assert len(texts) > 10
    assert_identical(fast, hf, texts)


def test_identity_novels_subset(fast, hf):
    """~4 MB of the novels: the first 400 paragraph runs of each collection (the whole corpora:
    tools/bench_encoder.py --check-identity)."""
    import zstandard

    texts = []
    for f in sorted(shared_path("corpora", "novels").glob("*.jsonl.zst")):
        with open(f, "rb") as fh:
            reader = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(fh), "utf-8")
            for k, line in enumerate(reader):
                if k >= 4:
                    break
                t = json.loads(line)["text"]
                texts += [t[i : i + 5000] for i in range(0, min(len(t), 500_000), 5000)]
    assert len(texts) > 200
    assert_identical(fast, hf, texts)


def test_decode_matches_hf_on_arbitrary_ids(fast, hf):
    """Random id sequences (including split UTF-8 sequences) decode identically, with the same
    U+FFFD replacement of invalid bytes."""
    rng = np.random.default_rng(7)
    for _ in range(300):
        ids = rng.integers(0, fast.vocab_size, int(rng.integers(1, 40))).tolist()
        assert fast.decode(ids) == hf.decode(ids)


def test_decode_rejects_ids_outside_vocabulary(fast, hf):
    for enc in (fast, hf):
        with pytest.raises(InputError, match="token id 50277 is outside the vocabulary 0..50276"):
            enc.decode([12092, 50277])
        with pytest.raises(InputError, match="token id -1 is outside"):
            enc.decode([-1])
