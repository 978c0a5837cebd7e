"""The `gigatoken` backend: gigatoken's Rust BPE (`gigatoken_rs.load_hf_json`) on the same
tokenizer JSON, with its pretoken cache bounded.

gigatoken caches the ids of every pretoken it has seen; on a long-tailed corpus (code, URLs, hex,
CJK) that cache grows with the corpus. The cache only saves work, so the encoder is re-created
from the JSON after every `reset_chars` characters (default 256 Mi): RSS stays flat however large
the corpus, for the cost of one ~0.1 s load per 256 Mi characters. `tools/bench_encoder.py --rss`
measures it.

NFC: gigatoken normalises with newer Unicode tables than HF `tokenizers` (and Python): e.g.
"1" U+1AEB U+0301 (U+1AEB is new in Unicode 16) is reordered by gigatoken, left alone by HF. So
gigatoken is loaded with the normalizer removed and text is normalised here as HF does: already-NFC
text (nearly all; ASCII is checked in O(1)) is passed as is, other text goes through Python's NFC,
or HF's own normaliser when it holds a code point whose NFC data differs between Python's and HF's
tables (`fast_bpe.nfc_divergent`). HF splits the non-normalized added tokens (`<|endoftext|>`)
out *before* NFC, so a text containing one (rare: a literal `<|endoftext|>`) is encoded by the HF
reference instead.

Batches are encoded on the calling thread, one `encode` per text: the stage parallelises with
processes, and gigatoken's own thread pool would oversubscribe the cores (and must not be used
after a fork); `encode_batch` would also import awkward (see `GigaBPE.encode_batch_flat`).
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable

import numpy as np

DEFAULT_RESET_CHARS = 256 << 20


def gigatoken_version() -> str | None:
    """The installed gigatoken version, or None when it is not importable."""
    try:
        import gigatoken.gigatoken_rs  # noqa: F401
    except ImportError:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gigatoken")
    except PackageNotFoundError:  # pragma: no cover - importable but not installed
        return "unknown"


def _cached_divergent(hf_nfc, compute) -> list[int]:
    """`compute(hf_nfc)` (~0.4 CPU-s of probing) cached with the identity verdicts: it depends
    only on the HF `tokenizers` version, Python's Unicode tables and the probing code."""
    import hashlib
    import sys
    from importlib.metadata import version

    from pipeline.tokenize import fast_bpe, identity

    with open(fast_bpe.__file__, "rb") as f:
        code = hashlib.sha256(f.read()).hexdigest()[:16]
    key = "|".join(
        [
            f"tokenizers={version('tokenizers')}",
            f"python={sys.implementation.name}-{'.'.join(map(str, sys.version_info[:3]))}",
            f"unicode={unicodedata.unidata_version}",
            f"code={code}",
        ]
    )
    got = identity.load_nfc_divergent(key)
    if got is None:
        got = compute(hf_nfc)
        identity.store_nfc_divergent(key, got)
    return got


class GigaBPE:
    """Encode with gigatoken; re-create the Rust encoder every `reset_chars` characters."""

    def __init__(
        self,
        raw: bytes,
        reset_chars: int | None = None,
        *,
        reference: Callable[[str], list[int]],
        hf_nfc=None,
        spec: dict | None = None,
    ) -> None:
        """`reference(text)` encodes texts holding a raw added token (HF); `hf_nfc` is HF's NFC
        normalizer (for the code points whose NFC differs, probed on first use); `spec` is `raw`
        already parsed (not modified)."""
        import json

        import orjson
        from gigatoken.gigatoken_rs import load_hf_json

        spec = dict(orjson.loads(raw) if spec is None else spec)  # shallow: normalizer replaced
        if spec.get("normalizer") not in (None, {"type": "NFC"}):
            raise ValueError(f"normalizer {spec.get('normalizer')!r} is not reproduced (only NFC)")
        self._nfc_on = spec.get("normalizer") is not None
        spec["normalizer"] = None  # normalised here, as HF does
        raw_added = [
            a["content"] for a in spec.get("added_tokens") or [] if not a.get("normalized")
        ]
        self._raw_first = tuple(sorted({t[:2] for t in raw_added if t}))
        self._load = load_hf_json
        try:
            self._raw = orjson.dumps(spec)  # 45 ms less than json.dumps per process
        except TypeError:  # e.g. an integer beyond 64 bits
            self._raw = json.dumps(spec).encode("utf-8")
        if reset_chars is None:
            reset_chars = int(os.environ.get("PILE_GIGATOKEN_RESET_CHARS", DEFAULT_RESET_CHARS))
        self.reset_chars = max(1, int(reset_chars))
        self.resets = 0
        self._since = 0
        self._tok = load_hf_json(self._raw)
        self._reference = reference
        self._hf_nfc = hf_nfc
        self._divergent: frozenset[str] | None = None
        self.referred = 0

    def _needs_reference(self, text: str) -> bool:
        return any(f in text for f in self._raw_first)

    def _prepare(self, text: str) -> str:
        """`text` normalised exactly as HF's NFC normalizer would."""
        if not self._nfc_on or text.isascii() or unicodedata.is_normalized("NFC", text):
            return text
        if self._divergent is None:
            from tokenizers import normalizers

            from pipeline.tokenize.fast_bpe import nfc_divergent

            self._hf_nfc = self._hf_nfc or normalizers.NFC()
            self._divergent = frozenset(map(chr, _cached_divergent(self._hf_nfc, nfc_divergent)))
        if not self._divergent.isdisjoint(text):
            try:
                return self._hf_nfc.normalize_str(text)
            except TypeError:
                text.encode("utf-8")  # a lone surrogate: raise UnicodeEncodeError
                raise
        return unicodedata.normalize("NFC", text)

    def _account(self, nchars: int) -> None:
        self._since += nchars
        if self._since >= self.reset_chars:
            self._tok = self._load(self._raw)  # drops the old encoder and its cache
            self._since = 0
            self.resets += 1

    def encode(self, text: str) -> list[int]:
        if self._needs_reference(text):
            self.referred += 1
            return self._reference(text)
        ids = self._tok.encode(self._prepare(text)).tolist()  # a numpy array: no awkward
        self._account(len(text))
        return ids

    def encode_batch_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        # One `encode` per text (each returns a uint32 numpy array) rather than `encode_batch`:
        # the same ids and CPU time on the calling thread (measured on the novels: 0.43 s for
        # both per 40 MB), but `encode_batch` returns an awkward Array, and importing awkward
        # (+ fsspec) costs 0.5-1.4 CPU-s in every process, more than tokenizing 40 MB.
        if not texts:
            return np.empty(0, np.uint32), np.empty(0, np.int64)
        enc = self._tok.encode
        prep = self._prepare
        raw_first = self._raw_first
        one = raw_first[0] if len(raw_first) == 1 else None  # NeoX: "<|": one `in`, no generator
        parts = []
        for t in texts:
            if (one in t) if one is not None else any(f in t for f in raw_first):
                # rare: a literal added token, HF encodes it
                self.referred += 1
                parts.append(np.asarray(self._reference(t), dtype=np.uint32))
            else:
                parts.append(enc(prep(t)))
        sizes = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        flat = np.concatenate(parts).astype(np.uint32, copy=False)
        self._account(sum(map(len, texts)))
        return flat, sizes

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(np.asarray(ids, dtype=np.uint32)).decode("utf-8", "replace")
