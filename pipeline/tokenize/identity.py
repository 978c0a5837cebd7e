"""Identity guard: a backend must reproduce HF `tokenizers` ids before it tokenizes anything.

`EDGE_CASES` are the inputs where BPE implementations are known to differ: whitespace runs (the
NeoX vocabulary has added tokens for 2..24 spaces), added tokens written literally inside text,
text that NFC changes (and code points whose NFC data differs between Unicode versions), emoji
with ZWJ/skin tones/flags, CJK, control characters, very long words, code indented with long
runs of spaces and tabs. Every added token of the tokenizer file is also embedded in text.
Lone surrogates (which the reader rejects, so none reach a backend from a file) must be refused
by the backend as by HF.

`first_mismatch(candidate, hf)` encodes all cases as one batch (the stage's path) and every 25th
one by one, and returns the first case whose ids differ, or None.

Verdict cache: the guard costs ~1 CPU-s (loading HF as well as the backend, encoding the cases),
so its verdict is kept in a small JSON file, `$PILE_CACHE_DIR/identity.json` (default
`$XDG_CACHE_HOME/pile/`, i.e. `~/.cache/pile/`), keyed by everything that decides it: the
tokenizer file's sha256, the backend and its package version, the HF `tokenizers` version (the
reference), the sha256 of the case set and of the backend's wrapper code, and the Python version
(its Unicode tables drive NFC). A failing verdict is kept too (auto still falls back, an explicit
backend is still refused). The file is written atomically; one that cannot be read or parsed is
ignored and rewritten; `PILE_NO_CACHE=1` disables it (the guard then runs every time).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_WS = [" ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\xa0", "\u3000", "\u2028", "\u200b", "\ufeff"]

EDGE_CASES: tuple[str, ...] = tuple(
    [
        "",
        "Hello world",
        " leading space",
        "trailing space ",
        # whitespace runs around words, of every length the added tokens cover and beyond
        *("a" + " " * n + "b" for n in range(1, 30)),
        *(" " * n for n in (1, 2, 3, 23, 24, 25, 26, 49, 50, 100)),
        *("x" + w * n + "y" for w in _WS for n in (1, 2, 3, 7)),
        "\t \t  \t   \n \n\n   \r\n\r\n",
        "end of line   \n   start of line",
        "word\n\n\n\n\n\nword",
        # added tokens inside text (the tokenizer's own list is embedded as well)
        "a<|endoftext|>b",
        "<|endoftext|><|endoftext|>",
        " <|endoftext|> ",
        "text.<|endoftext|>\n\nMore text",
        "<|endoftext|" + "|>",
        "<|endoftext",
        "endoftext|>",
        "<|padding|>x",
        "<|endoftext|>\u0338",
        "  <|endoftext|>  ",
        # NFC: decomposed, composed, exclusions, ordering of marks, Hangul, divergent data
        "Cafe\u0301 na\u0308ive A\u030a \u212b \u2126",
        "a\u0301\u0327 a\u0327\u0301 o\u0302\u0323 \u1e9b\u0323",
        "\u0958 \u0915\u093c \u0344 \u0f73",
        "\u1100\u1161\u11a8 \uac00\u11a8",
        "\ufb01 \u00bd \u00b2 \u2167 \u0130 \u0131 \u00df \u1e9e",
        "a\u07fd b\u0898 \U00011930\U00011935 \u0d3b",
        "a\u0345\u07fd",  # U+07FD: combining class 0 in HF's (older) tables, 220 in newer ones
        "e\u0301 a\u0345\u07fd e\u0301 x\u0345\u0898",
        "1\u1aeb\u0301 \u1aeb\u0301a",  # U+1AEB: unassigned for HF, a mark in Unicode 16
        "=\u0338 <\u0338 \u226f",
        # emoji, ZWJ sequences, skin tones, flags, keycaps
        "\U0001f600 \U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
        "\U0001f3f3\ufe0f\u200d\U0001f308 \U0001f1fa\U0001f1f8\U0001f1e9\U0001f1ea 1\ufe0f\u20e3",
        # CJK and other scripts
        "\u4e2d\u6587\u5b57\u7b26\u6d4b\u8bd5\uff0c\u6807\u70b9\u3002\u65e5\u672c\u8a9e\u306e"
        "\u30c6\u30ad\u30b9\u30c8 \ud55c\uad6d\uc5b4",
        "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0939\u093f\u0928\u094d\u0926\u0940 "
        "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22",
        # control and unusual characters
        "\x00\x01\x02\x1b[0m\x1f\x7f\x85",
        "a\u202eb\u200fc\u0600\U000e0001\ue000\U0010ffff\ufffd\ufffe\uffff",
        # contractions and numbers
        "it's I'll we've 're don't 'S \u2019s 'd 'm 'll 'DON'T",
        "3.14159 1,000,000 1e-10 0x1F \u0661\u0662\u0663 \u2163",
        # very long words
        "a" * 5000,
        "ab" * 4000,
        "1" * 3000,
        "\U0001f642" * 1000,
        "\u4e2d" * 3000,
        "https://example.com/" + "x/" * 1500 + "?q=" + "%20" * 500,
        # code indented with long runs of spaces and tabs
        "def f(x):\n" + " " * 40 + "return x\n" + " " * 8 + "\n\treturn\n",
        "\t" * 50 + "x = 1\n" + " " * 30 + "\t" * 3 + "y\n",
        "    " * 30 + "deep();\n" + "}\n" * 20,
        "\n" + " " * 100 + "\n" + " " * 101 + "\n",
        "#define X(a, b) \\\n\t\t((a) + (b))\n/* ---------------------------------------- */",
        "if (x) {\r\n    y();\r\n}\r\n" * 5,
    ]
)

LONE_SURROGATES: tuple[str, ...] = ("\ud800", "a\udfffb", "\U0001f600\udc00", "\ud83d")


@dataclass(frozen=True)
class Mismatch:
    index: int
    text: str
    got: object  # list of ids, or the error raised
    want: object

    def describe(self) -> str:
        return (
            f"edge case #{self.index} {self.text[:60]!r}{'...' if len(self.text) > 60 else ''}: "
            f"ids {_short(self.got)}, HF tokenizers gives {_short(self.want)}"
        )


def _short(x: object) -> str:
    if isinstance(x, list):
        return str(x[:12])[:-1] + (", ...]" if len(x) > 12 else "]")
    return repr(x)


def cases_for(added_tokens: list[str]) -> list[str]:
    """The built-in edge cases plus every added token embedded in text."""
    out = list(EDGE_CASES)
    for t in added_tokens:
        out += [t, f"x{t}y", f" {t} ", f"{t}{t}", f"\n\n{t}\n"]
    return out


def first_mismatch(candidate, hf, texts: list[str] | None = None) -> Mismatch | None:
    """The first of `texts` (default: `cases_for` the tokenizer's added tokens) that `candidate`
    (an `Encoder`) encodes differently from `hf` (the HF-backed `Encoder`), or None. Lone
    surrogates must be refused by both."""
    from pipeline.errors import InputError

    if texts is None:
        texts = cases_for(hf.added_tokens())
    want = [hf.encode(t) for t in texts]
    flat, sizes = candidate.encode_batch_flat(texts)
    pos = 0
    for i, n in enumerate(sizes.tolist()):
        got = flat[pos : pos + n].tolist()
        pos += n
        if got != want[i]:
            return Mismatch(i, texts[i], got, want[i])
    for i in range(0, len(texts), 25):  # the single-text path too, on a sample (it is cheap)
        got = candidate.encode(texts[i])
        if got != want[i]:
            return Mismatch(i, texts[i], got, want[i])
    for j, t in enumerate(LONE_SURROGATES):
        try:
            got = candidate.encode(t)
        except InputError:
            continue
        return Mismatch(len(texts) + j, t, got, "InputError (lone surrogate)")
    return None


# -- verdict cache --------------------------------------------------------------------------------

CACHE_FORMAT = 1
CACHE_MAX_ENTRIES = 256  # oldest dropped first: a few tokenizers x backends x upgrades
_HERE = Path(__file__).resolve().parent
# the wrapper code a verdict depends on, per backend (changing it invalidates the verdict)
_CODE = {
    "gigatoken": ("identity.py", "encoder.py", "giga.py", "fast_bpe.py"),
    "fast": ("identity.py", "encoder.py", "fast_bpe.py"),
}


def cache_file() -> Path | None:
    """The verdict cache file, or None when `PILE_NO_CACHE` is set (to anything but 0/empty)."""
    if os.environ.get("PILE_NO_CACHE", "") not in ("", "0"):
        return None
    root = os.environ.get("PILE_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "identity.json"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "pile" / "identity.json"


def verdict_key(
    tokenizer_sha256: str,
    backend: str,
    backend_version: str | None,
    reference_version: str | None,
    cases: list[str],
) -> str:
    """The cache key of the guard's verdict for `backend` on a tokenizer file and case set."""
    h = hashlib.sha256()
    for t in [*cases, *LONE_SURROGATES]:
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little") + b)
    code = hashlib.sha256()
    for name in _CODE.get(backend, ("identity.py", "encoder.py")):
        try:
            code.update((_HERE / name).read_bytes())
        except OSError:  # pragma: no cover - an installed package always has its sources
            code.update(name.encode())
    py = ".".join(map(str, sys.version_info[:3]))
    return "|".join(
        [
            tokenizer_sha256,
            f"{backend}={backend_version}",
            f"tokenizers={reference_version}",
            f"cases={h.hexdigest()[:16]}",
            f"code={code.hexdigest()[:16]}",
            f"python={sys.implementation.name}-{py}",
        ]
    )


def _read_all(path: Path) -> dict:
    """The cache file's content, validated; an empty cache if it is absent or damaged."""
    empty = {"format": CACHE_FORMAT, "verdicts": {}, "nfc_divergent": {}}
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return empty
    except (OSError, ValueError) as e:
        log.debug("identity verdict cache %s ignored (%s); it will be rewritten", path, e)
        return empty
    if (
        not isinstance(data, dict)
        or data.get("format") != CACHE_FORMAT
        or not isinstance(data.get("verdicts"), dict)
    ):
        log.debug("identity verdict cache %s has an unknown layout; it will be rewritten", path)
        return empty
    if not isinstance(data.get("nfc_divergent"), dict):
        data["nfc_divergent"] = {}
    return data


def _read_cache(path: Path) -> dict:
    return _read_all(path)["verdicts"]


def _write_all(path: Path, data: dict) -> None:
    from pipeline.errors import PipelineError
    from pipeline.io import atomic_write_text

    for section in ("verdicts", "nfc_divergent"):
        entries = data[section]
        while len(entries) > CACHE_MAX_ENTRIES:
            del entries[next(iter(entries))]
    try:
        # a per-process temporary: two processes storing at once must not share one
        tmp = path.with_name(f"{path.name}.{os.getpid()}")
        atomic_write_text(tmp, json.dumps(data, indent=1))
        os.replace(tmp, path)
    except (OSError, PipelineError) as e:
        log.debug("identity verdict cache %s not written (%s)", path, e)


def load_nfc_divergent(key: str) -> list[int] | None:
    """The cached `fast_bpe.nfc_divergent` code points for `key` (HF and Python versions)."""
    path = cache_file()
    if path is None:
        return None
    v = _read_all(path)["nfc_divergent"].get(key)
    if not isinstance(v, list) or not all(isinstance(c, int) for c in v):
        return None
    return v


def store_nfc_divergent(key: str, code_points: list[int]) -> None:
    path = cache_file()
    if path is None:
        return
    data = _read_all(path)
    data["nfc_divergent"].pop(key, None)
    data["nfc_divergent"][key] = [int(c) for c in code_points]
    _write_all(path, data)


def load_verdict(key: str) -> tuple[bool, str | None] | None:
    """(passed, description of the first mismatch or None) cached for `key`, or None."""
    path = cache_file()
    if path is None:
        return None
    v = _read_cache(path).get(key)
    if not isinstance(v, dict) or not isinstance(v.get("ok"), bool):
        return None
    detail = v.get("mismatch")
    return v["ok"], detail if isinstance(detail, str) else None


def store_verdict(key: str, ok: bool, mismatch: str | None) -> None:
    """Record a verdict (atomically; failures to write only cost a rerun of the guard)."""
    path = cache_file()
    if path is None:
        return
    data = _read_all(path)
    data["verdicts"].pop(key, None)
    data["verdicts"][key] = {"ok": ok, "mismatch": mismatch, "checked": int(time.time())}
    _write_all(path, data)
