r"""Bit-identical fast path for GPT-NeoX-style (NFC + ByteLevel + BPE) HF tokenizers.

HF `tokenizers` does, for `Tokenizer.encode(text)` with this kind of tokenizer.json:

1. split out the *non-normalized* added tokens (here the specials `<|endoftext|>`, `<|padding|>`)
   on the raw text, leftmost-longest;
2. NFC-normalise each remaining piece separately;
3. split out the *normalized* added tokens (here the runs of 2..24 spaces, ids 50254..50276)
   from each normalised piece, leftmost-longest;
4. pre-tokenize every remaining piece with the GPT-2 regex (`BYTELEVEL_PATTERN`), map bytes to
   the byte-level alphabet, and run BPE on each pre-token.

This module reproduces 1-3 in Python and hands each remaining piece to tiktoken's public
`Encoding.encode_ordinary` (its Rust `CoreBPE`) built with the same regex and a rank table where
rank = token id and tokens are the raw bytes of the byte-level vocabulary. Only public tiktoken API
is used: `encode_ordinary` replaces lone surrogates by U+FFFD instead of refusing them, so text is
checked for surrogates first (HF refuses them; so must we).

Why the results are identical (each point is checked, at load or by tests/tokenize):
- Regex: the pattern string is tokenizers' own; tiktoken runs it with fancy-regex, HF with
  Oniguruma. Their \p{L}/\p{N}/\s agree on every code point (sweep in
  `tools/bench_encoder.py --unicode-sweep`, BMP sweep in the tests).
- BPE: tiktoken merges the adjacent pair whose concatenation has the lowest rank; HF the pair
  with the lowest merge index. With rank = id this is the same order because merged ids increase
  with the merge index and each token comes from exactly one merge (`check_bpe_tables`). tiktoken
  may also merge a pair whose concatenation is a token made by a *different* merge; on arbitrary
  byte strings that happens (inside runs of spaces), but never on strings the pre-tokenizer can
  emit once space runs are split out (tests; corpora). A pre-token that is itself a token is
  emitted directly by tiktoken; HF's BPE of every token string is that token (test).
- NFC: Python's `unicodedata` (Unicode 14 on 3.11) is newer than HF's tables (pre Unicode 11:
  e.g. U+07FD has combining class 0 there). Text that is already NFC per Python is left
  unchanged by both; other text is normalised by Python unless it contains one of the code
  points whose behaviour differs (found by probing, `nfc_divergent`), in which case HF's own
  normaliser is used.
"""

from __future__ import annotations

import array
import itertools
import re
import unicodedata
from functools import lru_cache

import numpy as np

# tokenizers' `pre_tokenizers/byte_level.rs` (SysRegex = Oniguruma in the Python wheel)
BYTELEVEL_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# bytes that never occur in well-formed UTF-8 (so they need no single-byte token)
NON_UTF8_BYTES = frozenset([0xC0, 0xC1, *range(0xF5, 0x100)])


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map used by the ByteLevel pre-tokenizer/decoder."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def unsupported_reason(spec: dict) -> str | None:
    """None when the tokenizer JSON has the shape this fast path reproduces, else why not."""
    try:
        norm = spec.get("normalizer")
        if norm != {"type": "NFC"}:
            return f"normalizer is {norm!r}, only {{'type': 'NFC'}} is reproduced"
        pre = spec.get("pre_tokenizer") or {}
        if pre.get("type") != "ByteLevel":
            return f"pre_tokenizer is {pre.get('type')!r}, only ByteLevel is reproduced"
        if pre.get("add_prefix_space"):
            return "ByteLevel add_prefix_space=true is not reproduced"
        if not pre.get("use_regex", True):
            return "ByteLevel use_regex=false is not reproduced"
        post = spec.get("post_processor")
        if post is not None and post.get("type") != "ByteLevel":
            return f"post_processor {post.get('type')!r} may add tokens; only ByteLevel/None"
        dec = spec.get("decoder")
        if dec is not None and dec.get("type") != "ByteLevel":
            return f"decoder {dec.get('type')!r} is not ByteLevel"
        model = spec["model"]
        if model.get("type") != "BPE":
            return f"model type {model.get('type')!r} is not BPE"
        for key in ("dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix"):
            if model.get(key) not in (None, ""):
                return f"BPE {key}={model.get(key)!r} is not reproduced"
        for key in ("byte_fallback", "ignore_merges", "fuse_unk"):
            if model.get(key):
                return f"BPE {key}=true is not reproduced"
        for a in spec.get("added_tokens") or []:
            if a.get("single_word") or a.get("lstrip") or a.get("rstrip"):
                return f"added token {a.get('content')!r} uses single_word/lstrip/rstrip"
            if not a.get("content"):
                return "an added token has empty content"
        return check_bpe_tables(spec)
    except (KeyError, TypeError, AttributeError) as e:
        return f"unexpected tokenizer JSON structure ({e})"


def _token_bytes(tok: str, dec: dict[str, int]) -> bytes | None:
    try:
        return bytes(dec[c] for c in tok)
    except KeyError:
        return None


def _merges(model: dict) -> list[tuple[str, str]]:
    out = []
    for m in model["merges"]:
        if isinstance(m, str):
            a, b = m.split(" ", 1)
        else:
            a, b = m
        out.append((a, b))
    return out


def check_bpe_tables(spec: dict) -> str | None:
    """The conditions under which tiktoken's rank-based BPE equals HF's merge-order BPE.

    - every vocabulary token is a byte-level string (maps to bytes) or an added token;
    - every byte that can occur in UTF-8 is a token (0xC0, 0xC1, 0xF5..0xFF never occur and
      are absent from the NeoX vocabulary);
    - merge i produces token `a+b`, which is in the vocabulary, and merged ids increase
      strictly with the merge index (so "lowest rank" = "earliest merge");
    - no token is produced by two merges, and every multi-byte token is produced by a merge.
    """
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    added = {a["content"] for a in spec.get("added_tokens") or []}
    dec = {c: b for b, c in bytes_to_unicode().items()}
    for b in range(256):
        if bytes_to_unicode()[b] not in vocab and b not in NON_UTF8_BYTES:
            return f"single byte {b} is not in the vocabulary"
    produced: dict[str, int] = {}
    last = -1
    for i, (a, b) in enumerate(_merges(model)):
        t = a + b
        if a not in vocab or b not in vocab or t not in vocab:
            return f"merge #{i} ({a!r}, {b!r}) refers to tokens outside the vocabulary"
        if t in produced:
            return f"token {t!r} is produced by merges #{produced[t]} and #{i}"
        produced[t] = i
        if vocab[t] <= last:
            return f"merge #{i} yields id {vocab[t]} <= previous merged id {last}"
        last = vocab[t]
    for tok, tid in vocab.items():
        if tok in added:
            continue
        if _token_bytes(tok, dec) is None:
            return f"vocabulary token {tok!r} (id {tid}) is not byte-level"
        if len(tok) > 1 and tok not in produced:
            return f"multi-byte token {tok!r} (id {tid}) is produced by no merge"
    return None


class FastBPE:
    """NFC + added-token split in Python, GPT-2-regex + BPE in tiktoken's Rust core."""

    def __init__(self, spec: dict, *, checked: bool = False) -> None:
        """`checked`: the caller already verified `unsupported_reason(spec) is None`."""
        import tiktoken

        reason = None if checked else unsupported_reason(spec)
        if reason is not None:
            raise ValueError(reason)
        model = spec["model"]
        vocab: dict[str, int] = model["vocab"]
        added = spec.get("added_tokens") or []
        added_contents = {a["content"] for a in added}
        dec = {c: b for b, c in bytes_to_unicode().items()}
        ranks: dict[bytes, int] = {}
        for tok, tid in vocab.items():
            if tok in added_contents:
                continue  # added tokens are split out before BPE, never merged into
            ranks[_token_bytes(tok, dec)] = tid
        self._enc = tiktoken.Encoding(
            name="gpt-neox-fast",
            pat_str=BYTELEVEL_PATTERN,
            mergeable_ranks=ranks,
            special_tokens={},
        )
        self._core_encode = self._enc.encode_ordinary
        # added tokens: raw (normalized=false) and post-NFC (normalized=true) ones
        self._raw_added = {a["content"]: int(a["id"]) for a in added if not a.get("normalized")}
        # HF matches normalized added tokens by their normalized form
        self._norm_added = {
            unicodedata.normalize("NFC", a["content"]): int(a["id"])
            for a in added
            if a.get("normalized")
        }
        self._raw_re = _alternation(self._raw_added)
        self._norm_re = _alternation(self._norm_added)
        self._raw_first = _first_chars(self._raw_added)
        self._norm_first = _first_chars(self._norm_added)
        # decoding: id -> bytes (byte-level tokens and added tokens' utf-8 contents)
        id_bytes: dict[int, bytes] = {tid: b for b, tid in ranks.items()}
        for a in added:
            content = a["content"]
            b = _token_bytes(content, dec)
            id_bytes[int(a["id"])] = b if b is not None else content.encode("utf-8")
        self._id_bytes = id_bytes
        from tokenizers import normalizers

        self._hf_nfc = normalizers.NFC()
        self._divergent: re.Pattern | None = None  # computed on the first non-NFC text

    # -- NFC -------------------------------------------------------------------------------
    def _nfc(self, text: str) -> str:
        """NFC exactly as HF's normalizer computes it. Python's `unicodedata` is used unless the
        text holds a code point whose normalization data differs between the two Unicode
        versions (HF's tables are older: e.g. marks added in Unicode 11+ have combining class 0
        there); such text goes through HF's own normalizer."""
        if self._divergent is None:
            self._divergent = nfc_divergent_re(self._hf_nfc)
        if self._divergent is not None and self._divergent.search(text):
            try:
                return self._hf_nfc.normalize_str(text)
            except TypeError:
                text.encode("utf-8")  # a lone surrogate: raise UnicodeEncodeError like tiktoken
                raise
        return unicodedata.normalize("NFC", text)

    # -- encoding --------------------------------------------------------------------------
    def _encode_normalized(self, text: str, out: list[int]) -> None:
        if not text:
            return
        if not unicodedata.is_normalized("NFC", text):
            text = self._nfc(text)
        norm_re = self._norm_re
        if norm_re is None or not _contains_any(text, self._norm_first):
            out += self._core_encode(text)
            return
        pos = 0
        core = self._core_encode
        table = self._norm_added
        for m in norm_re.finditer(text):
            s = m.start()
            if s > pos:
                out += core(text[pos:s])
            out.append(table[m.group()])
            pos = m.end()
        if pos < len(text):
            out += core(text[pos:])

    def encode(self, text: str) -> list[int]:
        if not text.isascii() and _SURROGATE.search(text) is not None:
            text.encode("utf-8")  # raises UnicodeEncodeError, as HF refuses it
        out: list[int] = []
        raw_re = self._raw_re
        if raw_re is None or not _contains_any(text, self._raw_first):
            self._encode_normalized(text, out)
            return out
        pos = 0
        table = self._raw_added
        for m in raw_re.finditer(text):
            s = m.start()
            if s > pos:
                self._encode_normalized(text[pos:s], out)
            out.append(table[m.group()])
            pos = m.end()
        if pos < len(text):
            self._encode_normalized(text[pos:], out)
        return out

    def encode_batch_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        sizes: list[int] = []
        encode = self.encode
        if _ARRAY_U32:  # array.fromlist converts ints ~3x faster than np.array(list)
            buf = array.array("I")
            for t in texts:
                ids = encode(t)
                sizes.append(len(ids))
                buf.fromlist(ids)
            flat = np.frombuffer(buf, dtype=np.uint32) if len(buf) else np.empty(0, np.uint32)
        else:
            ids_all: list[int] = []
            for t in texts:
                ids = encode(t)
                sizes.append(len(ids))
                ids_all += ids
            flat = np.array(ids_all, dtype=np.uint32)
        return flat, np.array(sizes, dtype=np.int64)

    # -- decoding --------------------------------------------------------------------------
    def decode_bytes(self, ids: list[int]) -> bytes:
        table = self._id_bytes
        try:
            return b"".join(table[i] for i in ids)
        except KeyError as e:
            raise ValueError(f"token id {e.args[0]} is not in the vocabulary") from None

    def decode(self, ids: list[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


_ARRAY_U32 = array.array("I").itemsize == 4
_SURROGATE = re.compile("[\ud800-\udfff]")


def nfc_candidates() -> list[int]:
    """Code points that take part in normalization at all (per Python's `unicodedata`): nonzero
    combining class or a canonical decomposition (Hangul syllables excluded: algorithmic and
    stable since Unicode 2.0), plus the components of those decompositions."""
    out: set[int] = set()
    # planes 0-2 and 14: canonical decompositions and combining marks occur nowhere else (planes
    # 3-13 are CJK extensions without decompositions or unassigned, 15-16 private use); skipping
    # the rest makes this 4x cheaper, and it runs at every encoder load (the identity guard)
    for c in itertools.chain(range(0x30000), range(0xE0000, 0xE1000)):
        if 0xD800 <= c <= 0xDFFF or 0xAC00 <= c <= 0xD7A3:
            continue
        ch = chr(c)
        d = unicodedata.decomposition(ch)
        if d and not d.startswith("<"):
            out.add(c)
            out.update(int(x, 16) for x in d.split())
        elif unicodedata.combining(ch):
            out.add(c)
    return sorted(out)


def nfc_divergent(hf_nfc, candidates: list[int] | None = None) -> list[int]:
    """Code points whose NFC behaviour differs between Python's `unicodedata` and HF's
    normalizer (`hf_nfc.normalize_str`), found by probing each candidate in contexts that expose
    its combining class, decomposition and compositions."""
    bad: set[int] = set()
    for c in nfc_candidates() if candidates is None else candidates:
        ch = chr(c)
        probes = [ch, "a" + ch, ch + "\u0301", "a\u0345" + ch, "a" + ch + "\u0334"]
        d = unicodedata.decomposition(ch)
        comps: list[int] = []
        if d and not d.startswith("<"):
            comps = [int(x, 16) for x in d.split()]
            nfd = unicodedata.normalize("NFD", ch)
            probes += [nfd, "a" + nfd, nfd + "\u0334"]
        for s in probes:
            if hf_nfc.normalize_str(s) != unicodedata.normalize("NFC", s):
                bad.add(c)
                bad.update(comps)
                break
    return sorted(bad)


def nfc_divergent_re(hf_nfc) -> re.Pattern | None:
    bad = nfc_divergent(hf_nfc)
    if not bad:
        return None
    return re.compile("[" + "".join(re.escape(chr(c)) for c in bad) + "]")


def _alternation(table: dict[str, int]) -> re.Pattern | None:
    """Leftmost-longest matcher for a set of literal strings (Python `re` alternation is
    leftmost-first, so alternatives are ordered longest first)."""
    if not table:
        return None
    chars = {c for s in table for c in s}
    lengths = sorted(len(s) for s in table)
    if len(chars) == 1 and lengths == list(range(lengths[0], lengths[-1] + 1)):
        # runs of one character with every length lo..hi: a greedy bounded repeat is
        # leftmost-longest and much faster than the alternation
        return re.compile(f"{re.escape(chars.pop())}{{{lengths[0]},{lengths[-1]}}}")
    alts = sorted(table, key=lambda s: (-len(s), s))
    return re.compile("|".join(re.escape(s) for s in alts))


def _first_chars(table: dict[str, int]) -> tuple[str, ...]:
    return tuple(sorted({s[:2] if len(s) >= 2 else s for s in table}))


def _contains_any(text: str, needles: tuple[str, ...]) -> bool:
    return any(n in text for n in needles)
