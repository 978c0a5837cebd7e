"""GPT-NeoX encoder: golden ids, loading/integrity errors, pickling, fast == HF identity."""

from __future__ import annotations

import json
import operator
import pickle
import shutil
import unicodedata

import numpy as np
import pytest

from pipeline.data import TOKENIZER_PATH, TOKENIZER_SHA256
from pipeline.engine import make_executor
from pipeline.errors import ConfigError, InputError, IntegrityError
from pipeline.tokenize import encoder as encoder_mod
from pipeline.tokenize.encoder import load_encoder
from pipeline.tokenize.fast_bpe import (
    BYTELEVEL_PATTERN,
    check_bpe_tables,
    unsupported_reason,
)

try:
    import gigatoken  # noqa: F401

    GIGA = "gigatoken"
except ImportError:
    GIGA = pytest.param("gigatoken", marks=pytest.mark.skip(reason="gigatoken not installed"))
BACKENDS = [GIGA, "fast", "hf"]


@pytest.fixture(scope="module")
def spec():
    return json.loads(TOKENIZER_PATH.read_bytes())


@pytest.fixture
def fresh_cache(monkeypatch):
    """An empty encoder cache (restored afterwards) so loads really read the file."""
    monkeypatch.setattr(encoder_mod, "_CACHE", {})


# -- golden ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_golden_ids(backend):
    enc = load_encoder(backend=backend)
    assert enc.backend == backend
    assert enc.encode("Hello, I am") == [12092, 13, 309, 717]
    assert enc.encode("Hello world") == [12092, 1533]
    assert enc.encode("") == []
    assert enc.encode("<|endoftext|>") == [0]
    assert enc.encode("<|padding|>") == [1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_space_runs_map_to_added_tokens(backend):
    enc = load_encoder(backend=backend)
    # runs of 24..2 spaces are the added tokens 50254..50276 (longest first)
    for n in range(2, 25):
        assert enc.encode(" " * n) == [50278 - n], n
        assert enc.encode("a" + " " * n + "b") == [66, 50278 - n, 67], n
    assert enc.encode(" ") == [209]
    assert enc.encode("a b") == [66, 270]
    # 25 = 24 + 1: the leftover single space joins the following text (" b" = 270)
    assert enc.encode("a" + " " * 25 + "b") == [66, 50254, 270]
    assert enc.encode(" " * 49) == [50254, 50254, 209]
    assert enc.encode(" " * 50) == [50254, 50254, 50276]


@pytest.mark.parametrize("backend", BACKENDS)
def test_specials_split_before_nfc(backend):
    """HF splits `<|endoftext|>` on the raw text, then NFC-normalises each piece: '>' + U+0338
    (which NFC composes to U+226F) must not swallow the special token's '>'."""
    enc = load_encoder(backend=backend)
    assert enc.encode("x<|endoftext|>\u0338y") == [89, 0, 136, 118, 90]
    assert unicodedata.normalize("NFC", ">\u0338") == "\u226f"


def test_metadata_derived_from_file(fast, hf, spec):
    added = {a["content"]: a["id"] for a in spec["added_tokens"]}
    for enc in (fast, hf):
        assert enc.vocab_size == 50277 == max(added.values()) + 1
        assert enc.eod_id == 0 == added["<|endoftext|>"]
        assert enc.sha256 == TOKENIZER_SHA256
        assert enc.backend in enc.name and TOKENIZER_SHA256[:12] in enc.name
    # auto picks the fastest backend that passes the identity guard for the NeoX file
    assert load_encoder().backend == ("gigatoken" if GIGA == "gigatoken" else "fast")
    assert fast.describe() == {
        "file": "20B_tokenizer.json",
        "sha256": TOKENIZER_SHA256,
        "backend": "fast",
        "backend_version": fast.version,
        "vocab_size": 50277,
        "eod_id": 0,
    }


def test_fast_path_preconditions_hold(spec):
    assert unsupported_reason(spec) is None
    assert check_bpe_tables(spec) is None


def test_every_vocabulary_token_is_its_own_hf_bpe(spec):
    """tiktoken emits a pre-token that is itself in the vocabulary directly, without merging;
    HF runs the merges. They agree because HF's BPE of every token's string is that token."""
    from tokenizers import Tokenizer, models

    vocab = spec["model"]["vocab"]
    merges = [tuple(m.split(" ", 1)) for m in spec["model"]["merges"]]
    bpe_only = Tokenizer(models.BPE(vocab=vocab, merges=merges))  # no normalizer/pre-tokenizer
    toks = [t for t, i in vocab.items() if i >= 2]  # 0, 1 are the specials
    got = [e.ids for e in bpe_only.encode_batch(toks)]
    assert got == [[vocab[t]] for t in toks]


def test_pattern_equals_tokenizers_bytelevel_regex():
    # tokenizers/src/pre_tokenizers/byte_level.rs (the pattern handed to tiktoken)
    assert BYTELEVEL_PATTERN == (
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
    )


# -- batch APIs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_and_flat(backend):
    enc = load_encoder(backend=backend)
    texts = ["Hello world", "", "a  b", "Hello, I am", "<|endoftext|>x"]
    singles = [enc.encode(t) for t in texts]
    assert enc.encode_batch(texts) == singles
    flat, sizes = enc.encode_batch_flat(texts)
    assert flat.dtype == np.uint32 and sizes.dtype == np.int64
    assert sizes.tolist() == [2, 0, 3, 4, 2]
    assert flat.tolist() == [12092, 1533, 66, 50276, 67, 12092, 13, 309, 717, 0, 89]
    empty_flat, empty_sizes = enc.encode_batch_flat([])
    assert empty_flat.size == 0 and empty_sizes.size == 0
    assert enc.encode_batch([]) == []


# -- loading and errors -------------------------------------------------------------------------


def test_unknown_backend_is_config_error():
    with pytest.raises(ConfigError, match=r"'turbo' is not one of auto, gigatoken, fast, hf"):
        load_encoder(backend="turbo")


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_encoder(tmp_path / "nope.json")


def test_default_file_with_wrong_hash_is_integrity_error(tmp_path, monkeypatch, fresh_cache):
    bad = tmp_path / "20B_tokenizer.json"
    raw = TOKENIZER_PATH.read_bytes()
    bad.write_bytes(raw + b"\n")  # still a valid tokenizer, but not the shipped bytes
    monkeypatch.setattr(encoder_mod, "TOKENIZER_PATH", bad)
    with pytest.raises(IntegrityError, match=f"expected {TOKENIZER_SHA256}") as ei:
        load_encoder()
    assert ei.value.exit_code == 4 and str(bad) in str(ei.value)
    # explicitly opting out of the check loads it (and the hash reported is the real one)
    enc = load_encoder(check_sha256=False, backend="hf")
    assert enc.sha256 != TOKENIZER_SHA256


def test_user_path_is_not_hash_checked(tmp_path, fresh_cache):
    user = tmp_path / "my_tokenizer.json"
    shutil.copyfile(TOKENIZER_PATH, user)
    enc = load_encoder(user)
    assert enc.path == user.resolve() and enc.sha256 == TOKENIZER_SHA256
    assert enc.encode("Hello world") == [12092, 1533]


def test_invalid_json_is_input_error(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_encoder(p)


def test_tokenizer_without_eod_is_input_error(tmp_path, spec):
    s = json.loads(json.dumps(spec))
    s["added_tokens"] = [a for a in s["added_tokens"] if a["content"] != "<|endoftext|>"]
    s["model"]["vocab"]["<|eot|>"] = s["model"]["vocab"].pop("<|endoftext|>")
    p = tmp_path / "no_eod.json"
    p.write_text(json.dumps(s))
    with pytest.raises(InputError, match="no '<\\|endoftext\\|>' token"):
        load_encoder(p, backend="hf")


def test_unsupported_tokenizer_fast_is_config_error_auto_falls_back(tmp_path, spec):
    s = json.loads(json.dumps(spec))
    s["normalizer"] = {"type": "NFKC"}
    p = tmp_path / "nfkc.json"
    p.write_text(json.dumps(s))
    with pytest.raises(ConfigError, match="normalizer is .*NFKC.*fix: use --backend auto"):
        load_encoder(p, backend="fast")
    enc = load_encoder(p, backend="auto")
    assert enc.backend in ("gigatoken", "hf")  # whichever reproduces HF on the edge cases
    assert enc.encode("\ufb01") == load_encoder(backend="hf").encode("fi")  # NFKC: ligature


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda s: s["pre_tokenizer"].update(add_prefix_space=True), "add_prefix_space"),
        (lambda s: s["model"].update(dropout=0.1), "dropout"),
        (lambda s: s["added_tokens"][2].update(lstrip=True), "lstrip"),
        (lambda s: s["model"].update(merges=s["model"]["merges"][::-1]), "merged id"),
        (lambda s: s["model"]["merges"].append("Ġ Ġ"), "produced by merges"),
        (lambda s: s["model"]["merges"].pop(5000), "produced by no merge"),
        (lambda s: s["model"]["vocab"].pop("Ġt"), "outside the vocabulary"),
        (lambda s: s["model"]["vocab"].pop("a"), "single byte 97"),
        (lambda s: s["model"].update(type="Unigram"), "model type 'Unigram'"),
    ],
)
def test_fast_path_refuses_tables_it_cannot_reproduce(spec, mutate, reason):
    s = json.loads(json.dumps(spec))
    mutate(s)
    assert reason in (unsupported_reason(s) or "")


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_str_is_input_error(backend):
    enc = load_encoder(backend=backend)
    with pytest.raises(InputError, match="must be str, got bytes"):
        enc.encode(b"Hello")
    with pytest.raises(InputError, match="#1 must be str, got int"):
        enc.encode_batch(["ok", 3])


@pytest.mark.parametrize("backend", BACKENDS)
def test_lone_surrogate_is_input_error(backend):
    """json.loads accepts "\\ud800" escapes, so a Pile line can hold a lone surrogate; HF
    rejects it, and so do both backends, naming the position."""
    enc = load_encoder(backend=backend)
    bad = json.loads('"ab\\ud800c"')
    with pytest.raises(InputError, match="lone surrogate U\\+D800 at character 2"):
        enc.encode(bad)
    with pytest.raises(InputError, match="#1 contains a lone surrogate U\\+D800"):
        enc.encode_batch_flat(["fine", bad])
    # also on the path where the fast backend normalises with HF's NFC (U+07FD, not NFC)
    with pytest.raises(InputError, match="lone surrogate U\\+DC00 at character 4"):
        enc.encode("a\u0345\u07fd " + json.loads('"\\udc00"'))


# -- pickling / workers -------------------------------------------------------------------------


def test_pickle_recreates_from_cache(fast, hf):
    for enc in (fast, hf, load_encoder()):
        blob = pickle.dumps(enc)
        assert len(blob) < 500  # path + backend, not the vocabulary
        assert pickle.loads(blob) is enc


def test_encoder_in_process_pool(fast, hf):
    """Encoders travel to pool workers (pickled by path + backend) and encode identically."""
    fn = operator.methodcaller("encode", "a" + " " * 30 + "b, Hello world")
    with make_executor("local", 2) as executor:
        got = executor.map(fn, [fast, hf, load_encoder(), fast])
    assert got == [[66, 50254, 50272, 67, 13, 24387, 1533]] * 4
