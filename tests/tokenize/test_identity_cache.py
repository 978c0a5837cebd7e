"""The identity guard's verdict cache: the guard runs once per machine and key, not per run or
worker; any change of the key reruns it; a corrupt cache is ignored and rewritten; PILE_NO_CACHE
disables it; a failing verdict is cached and still refused (explicit) or falls back (auto)."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.tokenize import encoder as encoder_mod
from pipeline.tokenize import giga as giga_mod
from pipeline.tokenize import identity
from pipeline.tokenize.encoder import load_encoder

pytest.importorskip("gigatoken", reason="gigatoken not installed")


@pytest.fixture
def cache_dir(monkeypatch, tmp_path):
    d = tmp_path / "cache"
    monkeypatch.setenv("PILE_CACHE_DIR", str(d))
    monkeypatch.delenv("PILE_NO_CACHE", raising=False)
    return d


@pytest.fixture
def guard_runs(monkeypatch):
    """Counts the guard's runs and which backends HF was loaded for (a new process each time:
    the per-process encoder cache is emptied before every `load`)."""
    runs: list[str] = []
    orig = identity.first_mismatch

    def spy(candidate, hf, texts=None):
        runs.append(candidate.backend)
        return orig(candidate, hf, texts)

    monkeypatch.setattr(identity, "first_mismatch", spy)
    return runs


def load(backend="auto"):
    encoder_mod._CACHE.clear()  # as a new process (or pool worker) would start
    return load_encoder(backend=backend)


@pytest.fixture(autouse=True)
def _restore_encoder_cache(monkeypatch):
    monkeypatch.setattr(encoder_mod, "_CACHE", {})


def _corrupt_literal_eod(monkeypatch):
    """A gigatoken that drops the id of a literal <|endoftext|> inside text."""
    orig = giga_mod.GigaBPE.encode_batch_flat

    def bad(self, texts):
        flat, sizes = orig(self, texts)
        parts = np.split(flat, np.cumsum(sizes)[:-1]) if len(texts) else []
        out = [
            p[p != 0] if "<|endoftext|>" in t and p.size > 1 else p for t, p in zip(texts, parts)
        ]
        return (
            np.concatenate(out).astype(np.uint32) if out else flat,
            np.array([p.size for p in out], np.int64),
        )

    monkeypatch.setattr(giga_mod.GigaBPE, "encode_batch_flat", bad)


def test_hit_runs_the_guard_once_and_skips_loading_hf(cache_dir, guard_runs, caplog):
    enc = load()
    assert enc.backend == "gigatoken" and guard_runs == ["gigatoken"]
    data = json.loads((cache_dir / "identity.json").read_text())
    assert data["format"] == identity.CACHE_FORMAT
    [(key, verdict)] = data["verdicts"].items()
    assert key.startswith(enc.sha256) and f"gigatoken={enc.version}" in key
    assert verdict["ok"] is True and verdict["mismatch"] is None
    with caplog.at_level(logging.DEBUG, logger="pipeline.tokenize.encoder"):
        again = load()
    assert again.backend == "gigatoken" and guard_runs == ["gigatoken"]  # not rerun
    assert "verdict cached" in caplog.text
    # the reference was not loaded: no HF encoder in the process, no tokenizers.Tokenizer
    assert again._hf_tok is None
    assert not any(k[1] == "hf" for k in encoder_mod._CACHE)
    assert again.encode("Hello world") == [12092, 1533]


def test_explicit_backend_uses_the_cache_too(cache_dir, guard_runs):
    load("fast")
    load("fast")
    load("gigatoken")
    load("auto")
    assert guard_runs == ["fast", "gigatoken"]


def test_every_key_part_changes_the_key():
    cases = identity.cases_for(["<|endoftext|>"])
    base = ("a" * 64, "gigatoken", "0.10.0", "0.23.3", cases)
    k = identity.verdict_key(*base)
    assert k == identity.verdict_key(*base)
    variants = [
        ("b" * 64, *base[1:]),
        (base[0], "fast", *base[2:]),
        (*base[:2], "0.10.1", *base[3:]),
        (*base[:3], "0.24.0", base[4]),
        (*base[:4], [*cases, "one more case"]),
        (*base[:4], [*cases[:-1], cases[-1] + " "]),
    ]
    keys = {identity.verdict_key(*v) for v in variants}
    assert len(keys) == len(variants) and k not in keys
    py = ".".join(map(str, sys.version_info[:3]))
    assert k.endswith(f"python={sys.implementation.name}-{py}")


def test_a_changed_key_reruns_the_guard(cache_dir, guard_runs, monkeypatch):
    load()
    monkeypatch.setattr(giga_mod, "gigatoken_version", lambda: "0.10.999")  # an upgrade
    assert load().backend_label == "gigatoken 0.10.999"
    assert guard_runs == ["gigatoken", "gigatoken"]
    verdicts = json.loads((cache_dir / "identity.json").read_text())["verdicts"]
    assert len(verdicts) == 2
    monkeypatch.setattr(sys, "version_info", (3, 99, 0, "final", 0))  # another Python
    load()
    assert guard_runs == ["gigatoken"] * 3


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe\x00", b"[1, 2]", b'{"format": 99, "verdicts": {}}', b""],
    ids=["truncated", "binary", "list", "other-format", "empty"],
)
def test_corrupt_cache_is_ignored_and_rewritten(cache_dir, guard_runs, content):
    cache_dir.mkdir(parents=True)
    (cache_dir / "identity.json").write_bytes(content)
    assert load().backend == "gigatoken" and guard_runs == ["gigatoken"]
    data = json.loads((cache_dir / "identity.json").read_text())
    assert data["format"] == identity.CACHE_FORMAT and len(data["verdicts"]) == 1
    load()
    assert guard_runs == ["gigatoken"]
    assert not list(cache_dir.glob("*.tmp")) and len(list(cache_dir.iterdir())) == 1


def test_a_malformed_entry_is_a_miss(cache_dir, guard_runs):
    load()
    path = cache_dir / "identity.json"
    data = json.loads(path.read_text())
    for v in data["verdicts"].values():
        v["ok"] = "yes"
    path.write_text(json.dumps(data))
    load()
    assert guard_runs == ["gigatoken", "gigatoken"]


def test_disabled_by_env(cache_dir, guard_runs, monkeypatch):
    monkeypatch.setenv("PILE_NO_CACHE", "1")
    load()
    load()
    assert guard_runs == ["gigatoken", "gigatoken"]
    assert not cache_dir.exists()
    assert identity.cache_file() is None
    monkeypatch.setenv("PILE_NO_CACHE", "0")
    assert identity.cache_file() == cache_dir / "identity.json"


def test_default_location_is_the_user_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("PILE_CACHE_DIR", raising=False)
    monkeypatch.delenv("PILE_NO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert identity.cache_file() == tmp_path / "xdg" / "pile" / "identity.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert identity.cache_file() == tmp_path / "home" / ".cache" / "pile" / "identity.json"


def test_unwritable_cache_dir_only_costs_a_rerun(tmp_path, monkeypatch, guard_runs):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("PILE_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.delenv("PILE_NO_CACHE", raising=False)
    assert load().backend == "gigatoken"
    assert load().backend == "gigatoken"
    assert guard_runs == ["gigatoken", "gigatoken"]


def test_failing_verdict_is_cached_and_still_falls_back(cache_dir, guard_runs, monkeypatch, caplog):
    _corrupt_literal_eod(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="pipeline.tokenize.encoder"):
        assert load().backend == "fast"
    assert guard_runs == ["gigatoken", "fast"]
    verdicts = json.loads((cache_dir / "identity.json").read_text())["verdicts"]
    failed = [v for k, v in verdicts.items() if "|gigatoken=" in k]
    assert failed[0]["ok"] is False and "'a<|endoftext|>b'" in failed[0]["mismatch"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.tokenize.encoder"):
        assert load().backend == "fast"  # from the cache: the guard is not rerun
    assert guard_runs == ["gigatoken", "fast"]
    assert "'a<|endoftext|>b'" in caplog.text and "verdict cached" in caplog.text
    with pytest.raises(ConfigError) as e:
        load("gigatoken")
    assert "'a<|endoftext|>b'" in str(e.value) and "fix: use --backend auto" in str(e.value)
    assert guard_runs == ["gigatoken", "fast"]


def test_a_new_process_with_a_cached_verdict_loads_only_the_backend(cache_dir):
    """What a pool worker does: with the verdict cached, neither HF `tokenizers` nor awkward
    (gigatoken's batch result type) nor pandas is imported to load and use the encoder."""
    import subprocess

    load()  # caches the verdict
    code = (
        "import sys\n"
        "from pipeline.tokenize.encoder import load_encoder\n"
        "e = load_encoder()\n"
        "flat, sizes = e.encode_batch_flat(['Hello world', 'caf\\u00e9 \\u4e2d'])\n"
        "print(e.backend, flat.tolist()[:2], *(m in sys.modules for m in "
        "('tokenizers', 'awkward', 'pandas')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["gigatoken", "[12092,", "1533]", "False", "False", "False"]


def test_nfc_divergent_probe_is_cached(cache_dir, hf, monkeypatch):
    """gigatoken's first non-NFC text probes HF's NFC against Python's (~0.4 CPU-s): once per
    machine, kept next to the verdicts; the ids are the same either way."""
    from pipeline.data import TOKENIZER_PATH
    from pipeline.tokenize import fast_bpe

    calls = []
    orig = fast_bpe.nfc_divergent

    def spy(hf_nfc, candidates=None):
        calls.append(1)
        return orig(hf_nfc, candidates)

    monkeypatch.setattr(fast_bpe, "nfc_divergent", spy)
    texts = ["Cafe\u0301 na\u0308ive", "a\u0345\u07fd e\u0301", "plain"]
    want = [i for t in texts for i in hf.encode(t)]
    for _ in range(2):
        g = giga_mod.GigaBPE(TOKENIZER_PATH.read_bytes(), reference=hf.encode)
        flat, _ = g.encode_batch_flat(texts)
        assert flat.tolist() == want
    assert calls == [1]
    data = json.loads((cache_dir / "identity.json").read_text())
    [(key, points)] = data["nfc_divergent"].items()
    assert key.startswith("tokenizers=") and 0x07FD in points
    monkeypatch.setenv("PILE_NO_CACHE", "1")
    giga_mod.GigaBPE(TOKENIZER_PATH.read_bytes(), reference=hf.encode).encode_batch_flat(texts)
    assert calls == [1, 1]
