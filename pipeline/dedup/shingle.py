"""Text normalisation and word n-gram shingles, hashed to 64 bits, vectorised over a batch.

Normalisation (`normalize_words`), applied to every document before shingling:
  1. `str.lower()` (Unicode lowercase; case differences never separate near-duplicates),
  2. Unicode NFC (after lowercasing, since lowercasing can produce decomposed sequences, e.g.
     "İ" -> "i" + U+0307), so canonically equivalent spellings give the same bytes,
  3. split on Unicode whitespace (`str.split()`: runs of spaces, tabs, newlines, NBSP, ... are one
     separator; leading/trailing whitespace is dropped).
  Punctuation and digits are kept: they are part of the words (cheap, and boilerplate that differs
  only in numbers is still near-duplicate through the other shingles).

Shingles: the word n-grams `words[i:i+n]` for i = 0 .. m-n (m words, n = `ngram`). A document with
0 < m < n words is one shingle (all its words); a document with no words has no shingles and no
signature (it is never a duplicate and never removed; the stage counts it).

Implementation: each text is lowercased, NFC-normalised and UTF-8 encoded in Python (3 C calls);
whitespace detection, collapsing and word boundaries are done in numpy on the batch's bytes (the
ASCII whitespace bytes plus the UTF-8 sequences of every non-ASCII code point for which
`str.isspace()` holds), so the words are exactly those of `str.split()` without building Python
word lists.

Hash of a shingle: the UTF-8 bytes of its words joined by single spaces, c_0 .. c_{L-1}, give
    poly = sum_j c_j * P**j  (mod 2**64),   h = fmix64(poly + L * G)  (mod 2**64)
with P = 0xA0761D6478BD642F (odd, so invertible mod 2**64) and G = 0x9E3779B97F4A7C15. All shingles
of a batch are hashed at once without a Python loop: the batch's normalised text is one byte
array; the prefix sums S_i = sum_{j<i} c_j P**j give the polynomial of any byte span [s, e) as
(S_e - S_s) * P**-s. Cost: a few numpy passes per byte and per shingle.
Known limit: polynomial hashing modulo 2**64 has structured collisions (Thue-Morse strings of
length >= 2048 bytes); natural 5-word shingles are far shorter, and a rare collision only nudges
one Jaccard estimate. Random strings collide with probability ~2**-64.

Memory: a batch is processed in pieces of at most `PIECE_BYTES` of text (about 60 bytes of
temporaries per text byte), and a document longer than that is cut (in numpy, at word boundaries)
into byte slices of `SEGMENT_WORDS` shingles that overlap by n-1 words, so its shingle set is
unchanged and a 100 MB document needs ~20 bytes per byte once plus one piece's temporaries; only a
single word longer than a piece makes a piece bigger. The power tables (16
bytes per byte of the longest piece) are cached per process.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np

from pipeline.dedup.hashing import fmix64

POLY_BASE = 0xA0761D6478BD642F
POLY_BASE_INV = pow(POLY_BASE, -1, 1 << 64)
LENGTH_MIX = np.uint64(0x9E3779B97F4A7C15)
PIECE_BYTES = 1 << 21  # 2 MiB of normalised text per vectorised piece
SEGMENT_WORDS = 1 << 17  # a document longer than PIECE_BYTES is hashed in segments of this many

# Unicode whitespace exactly as str.split() sees it: ASCII bytes via a lookup table, the rest as
# the 2- and 3-byte UTF-8 sequences of the non-ASCII whitespace code points.
_WS_CODEPOINTS = [c for c in range(0x110000) if chr(c).isspace()]
if [c for c in _WS_CODEPOINTS if c < 128] != [9, 10, 11, 12, 13, 28, 29, 30, 31, 32]:
    raise RuntimeError(
        "unexpected ASCII whitespace set; update _whitespace_mask"
    )  # pragma: no cover
_WS_UTF8 = [chr(c).encode("utf-8") for c in _WS_CODEPOINTS if c >= 128]
_WS2 = np.array(sorted(b[0] << 8 | b[1] for b in _WS_UTF8 if len(b) == 2), dtype=np.int64)
_WS3 = np.array(
    sorted(b[0] << 16 | b[1] << 8 | b[2] for b in _WS_UTF8 if len(b) == 3), dtype=np.int64
)
_WS_LEAD_LUT = np.zeros(256, dtype=bool)
_WS_LEAD_LUT[sorted({b[0] for b in _WS_UTF8})] = True
if any(len(b) > 3 for b in _WS_UTF8):  # pragma: no cover - no such code point in Unicode 15
    raise RuntimeError("4-byte whitespace code point; extend the whitespace detector")

_pow_cache: dict[str, np.ndarray] = {}


def normalize_words(text: str) -> list[str]:
    """The normalised words of `text` (lowercase, NFC, split on Unicode whitespace)."""
    return unicodedata.normalize("NFC", text.lower()).split()


def normalized_text(text: str) -> str:
    """Normalised text: the words joined by single spaces (what shingles are cut from)."""
    return " ".join(normalize_words(text))


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P**i and P**-i (mod 2**64) for i < n (cached; grown by doubling)."""
    have = _pow_cache.get("pow")
    if have is None or len(have) < n:
        size = 1 << max(16, (n - 1).bit_length())
        with np.errstate(over="ignore"):
            pw = np.empty(size, dtype=np.uint64)
            pw[0] = 1
            pw[1:] = POLY_BASE
            np.cumprod(pw, out=pw)
            ipw = np.empty(size, dtype=np.uint64)
            ipw[0] = 1
            ipw[1:] = POLY_BASE_INV
            np.cumprod(ipw, out=ipw)
        _pow_cache["pow"], _pow_cache["ipow"] = pw, ipw
    return _pow_cache["pow"], _pow_cache["ipow"]


def _whitespace_mask(arr: np.ndarray, ascii_only: bool) -> np.ndarray:
    """Bytes that belong to a whitespace character (str.isspace), as a bool array."""
    ws = arr <= 32  # ASCII whitespace is 9..13, 28..32: drop the other control bytes if present
    ctrl = arr < 9
    ctrl |= (arr > 13) & (arr < 28)
    if ctrl.any():
        ws &= ~ctrl
    if ascii_only:
        return ws
    cand = np.flatnonzero(arr >= 0xC2)
    cand = cand[_WS_LEAD_LUT[arr[cand]]]
    if len(cand):
        last = len(arr) - 1
        b0 = arr[cand].astype(np.int64)
        b1 = np.where(cand + 1 <= last, arr[np.minimum(cand + 1, last)], 0).astype(np.int64)
        b2 = np.where(cand + 2 <= last, arr[np.minimum(cand + 2, last)], 0).astype(np.int64)
        two = cand[np.isin(b0 << 8 | b1, _WS2)]
        three = cand[np.isin(b0 << 16 | b1 << 8 | b2, _WS3)]
        for k in range(2):
            ws[two + k] = True
        for k in range(3):
            ws[three + k] = True
    return ws


def _hash_piece(units: list[bytes], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of normalised-but-unsplit texts (UTF-8), and the shingle count of each.

    The units are joined with b"\n"; whitespace runs are collapsed to one space in numpy, which
    gives exactly the bytes of " ".join(text.split()) for every unit.
    """
    buf = b"\n".join(units)
    raw = np.frombuffer(buf, dtype=np.uint8)
    ws = _whitespace_mask(raw, buf.isascii())
    # drop every whitespace byte that follows whitespace (and leading whitespace); the first byte
    # of each remaining run becomes the single separating space
    drop = ws.copy()
    drop[1:] &= ws[:-1]
    lens = np.fromiter((len(u) + 1 for u in units), dtype=np.int64, count=len(units))
    raw_start = np.zeros(len(units), dtype=np.int64)
    np.cumsum(lens[:-1], out=raw_start[1:])
    if drop.any():
        # unit u starts at byte raw_start[u] - (bytes dropped before it) of the compacted array
        dropped = np.add.reduceat(drop.view(np.uint8), raw_start, dtype=np.int64)
        unit_start = raw_start.copy()
        unit_start[1:] -= np.cumsum(dropped[:-1])
        keep = ~drop
        arr = raw[keep]
        ws_kept = ws[keep]
    else:
        unit_start = raw_start
        arr = raw.copy()
        ws_kept = ws
    np.copyto(arr, np.uint8(32), where=ws_kept)
    total = len(arr)
    is_word = arr != 32
    starts_mask = is_word.copy()
    starts_mask[1:] &= ~is_word[:-1]
    ends_mask = is_word.copy()
    ends_mask[:-1] &= ~is_word[1:]
    wstart = np.flatnonzero(starts_mask)
    wend = np.flatnonzero(ends_mask) + 1
    n_units = len(units)
    first_word = np.searchsorted(wstart, unit_start, side="left")
    m = np.empty(n_units, dtype=np.int64)
    m[:-1] = first_word[1:] - first_word[:-1]
    m[-1] = len(wstart) - first_word[-1]
    n_sh = np.where(m > 0, np.maximum(m - ngram + 1, 1), 0)
    n_total = int(n_sh.sum())
    if n_total == 0:
        return np.empty(0, dtype=np.uint64), n_sh
    sh_off = np.zeros(n_units, dtype=np.int64)
    np.cumsum(n_sh[:-1], out=sh_off[1:])
    unit_of = np.repeat(np.arange(n_units), n_sh)
    start_word = np.arange(n_total, dtype=np.int64)
    start_word += (first_word - sh_off)[unit_of]
    end_word = np.minimum(start_word + ngram, (first_word + m)[unit_of])
    end_word -= 1
    bs = wstart[start_word]
    be = wend[end_word]
    pw, ipw = _powers(total + 1)
    with np.errstate(over="ignore"):
        prefix = np.empty(total + 1, dtype=np.uint64)
        prefix[0] = 0
        np.multiply(arr, pw[:total], out=prefix[1:])
        np.cumsum(prefix, out=prefix)
        h = prefix[be]
        h -= prefix[bs]
        h *= ipw[bs]
        lengths = (be - bs).astype(np.uint64)
        lengths *= LENGTH_MIX
        h += lengths
    return fmix64(h, out=h), n_sh


def _segments(enc: bytes, ngram: int) -> list[bytes]:
    """Cut a long normalised text into byte slices of SEGMENT_WORDS shingles each (n-1 words of
    overlap), so that their shingles together are exactly the text's shingles."""
    raw = np.frombuffer(enc, dtype=np.uint8)
    ws = _whitespace_mask(raw, enc.isascii())
    word = ~ws
    starts = word.copy()
    starts[1:] &= ws[:-1]
    ends = word.copy()
    ends[:-1] &= ws[1:]
    wstart = np.flatnonzero(starts)
    wend = np.flatnonzero(ends) + 1
    m = len(wstart)
    if m <= ngram:
        return [enc]
    n_sh = m - ngram + 1
    out = []
    for s in range(0, n_sh, SEGMENT_WORDS):
        last_word = min(s + SEGMENT_WORDS, n_sh) + ngram - 2
        out.append(enc[int(wstart[s]) : int(wend[last_word])])
    return out


def _normalized_bytes(text: str) -> bytes:
    return unicodedata.normalize("NFC", text.lower()).encode("utf-8", "surrogatepass")


def shingle_hashes(texts: Sequence[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the shingles of each text, grouped by text.

    Returns (hashes uint64[total], counts int64[len(texts)]): text i owns
    hashes[sum(counts[:i]) : sum(counts[:i+1])]; counts[i] == 0 for a text without words.
    Duplicate shingles inside a text are kept (they do not change a MinHash).
    """
    counts = np.zeros(len(texts), dtype=np.int64)
    out: list[np.ndarray] = []
    pending: list[bytes] = []
    pending_doc: list[int] = []
    pending_bytes = 0

    def flush() -> None:
        nonlocal pending, pending_doc, pending_bytes
        if pending:
            h, n_sh = _hash_piece(pending, ngram)
            out.append(h)
            np.add.at(counts, np.asarray(pending_doc, dtype=np.int64), n_sh)
        pending, pending_doc, pending_bytes = [], [], 0

    for i, text in enumerate(texts):
        enc = _normalized_bytes(text)
        units = _segments(enc, ngram) if len(enc) > PIECE_BYTES else [enc]
        for unit in units:
            if pending_bytes and pending_bytes + len(unit) > PIECE_BYTES:
                flush()
            pending.append(unit)
            pending_doc.append(i)
            pending_bytes += len(unit) + 1
    flush()
    if not out:
        return np.empty(0, dtype=np.uint64), counts
    return (out[0] if len(out) == 1 else np.concatenate(out)), counts


def shingle_hash_reference(shingle: str) -> int:
    """Scalar reference of the hash of one shingle string (words joined by single spaces).

    Slow; for tests and for documenting the exact definition.
    """
    data = shingle.encode("utf-8", "surrogatepass")
    mask = (1 << 64) - 1
    poly = 0
    p = 1
    for c in data:
        poly = (poly + c * p) & mask
        p = (p * POLY_BASE) & mask
    from pipeline.dedup.hashing import fmix64_int

    return fmix64_int((poly + len(data) * int(LENGTH_MIX)) & mask)
