"""GPT-NeoX-20B tokenizer: HF `tokenizers` reference backend and a bit-identical fast path.

`load_encoder()` returns an `Encoder` for the tokenizer JSON shipped in the package (sha256 checked)
or a user path. Backends:

- "hf":        HF `tokenizers` (`Tokenizer.encode(text).ids`), exactly what gpt-neox v1.0 used:
               the reference every other backend is checked against, and the fallback.
- "gigatoken": gigatoken's Rust BPE on the same JSON (`pipeline.tokenize.giga`), cache bounded.
- "fast":      tiktoken's BPE with the NeoX vocabulary (see `pipeline.tokenize.fast_bpe`).
- "auto":      the fastest of gigatoken, fast, hf that loads and passes the identity guard.

Identity guard (`pipeline.tokenize.identity`): before a non-HF backend is used it must reproduce
HF's ids on the built-in edge cases. "auto" skips a backend that fails (a warning names the
case); an explicit backend that fails is a ConfigError naming the first differing input.

Encoders pickle as (path, resolved backend, check_sha256) and are re-created from a per-process
cache without re-running the guard, so they can be passed to process-pool workers cheaply. The
guard's verdict is also cached on disk (`identity.load_verdict`): a process (or pool worker) that
loads an encoder the guard already passed on this machine neither reruns it nor loads HF.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data import TOKENIZER_PATH, TOKENIZER_SHA256
from pipeline.errors import ConfigError, InputError, IntegrityError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "gigatoken", "fast", "hf")
AUTO_ORDER = ("gigatoken", "fast", "hf")  # fastest first
EOD_TOKEN = "<|endoftext|>"

_CACHE: dict[tuple[str, str, bool], Encoder] = {}
_CACHE_LOCK = threading.RLock()


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_text(text: Any, where: str = "") -> None:
    if not isinstance(text, str):
        raise InputError(
            f"tokenizer input{where} must be str, got {type(text).__name__}; "
            "fix: pass document text as a Python str"
        )


def _surrogate_error(text: str, where: str = "") -> InputError:
    for i, ch in enumerate(text):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return InputError(
                f"tokenizer input{where} contains a lone surrogate U+{ord(ch):04X} at character "
                f"{i}; it is not valid Unicode and cannot be tokenized (HF tokenizers rejects it "
                "too); fix: repair or drop the document (e.g. reader on_error='skip')"
            )
    return InputError(f"tokenizer input{where} is not valid Unicode")


class Encoder:
    """A loaded tokenizer. Use `load_encoder()` rather than constructing it directly."""

    def __init__(
        self,
        path: Path,
        backend: str,
        check_sha256: bool,
        raw: bytes,
        spec: dict | None = None,
        *,
        fast_checked: bool = False,
    ) -> None:
        self.path = path
        self.backend = backend
        self._check_sha256 = check_sha256
        self.sha256 = _sha256_bytes(raw)
        if spec is None:
            spec = _parse_json(raw)
        self.spec_summary = _summarize(spec, path)
        self.vocab_size: int = self.spec_summary["vocab_size"]
        self.eod_id: int = self.spec_summary["eod_id"]
        self.name = f"{path.name}@{self.sha256[:12]}:{backend}"
        self._raw = raw
        self._hf_tok = None
        self._fast = None
        self._added = [str(a.get("content")) for a in spec.get("added_tokens") or []]
        self.version = None
        if backend == "fast":
            from pipeline.tokenize.fast_bpe import FastBPE

            self._fast = FastBPE(spec, checked=fast_checked)
            self.version = _dist_version("tiktoken")
        elif backend == "gigatoken":
            from pipeline.tokenize.giga import GigaBPE, gigatoken_version

            self._fast = GigaBPE(raw, reference=lambda t: self._hf.encode(t).ids, spec=spec)
            self.version = gigatoken_version()
        else:
            self._hf  # noqa: B018  (load now so errors surface at load time)
            self.version = _dist_version("tokenizers")

    @property
    def _hf(self):
        """The HF `tokenizers.Tokenizer` (the reference); loaded lazily for the fast backend."""
        if self._hf_tok is None:
            import tokenizers

            self._hf_tok = tokenizers.Tokenizer.from_str(self._raw.decode("utf-8"))
        return self._hf_tok

    def added_tokens(self) -> list[str]:
        return list(self._added)

    @property
    def backend_label(self) -> str:
        """The backend and the version of the package behind it, e.g. "gigatoken 0.10.0"."""
        return f"{self.backend} {self.version}" if self.version else self.backend

    def describe(self) -> dict:
        """What a manifest should record about the tokenizer."""
        return {
            "file": self.path.name,
            "sha256": self.sha256,
            "backend": self.backend,
            "backend_version": self.version,
            "vocab_size": self.vocab_size,
            "eod_id": self.eod_id,
        }

    # -- pickling: re-create from the per-process cache -------------------------------------
    def __reduce__(self):
        # the parent ran the identity guard: workers trust its choice
        return (_from_cache, (str(self.path), self.backend, self._check_sha256, None, True))

    def __repr__(self) -> str:
        return (
            f"Encoder(name={self.name!r}, backend={self.backend!r}, vocab_size={self.vocab_size}, "
            f"eod_id={self.eod_id})"
        )

    # -- encoding --------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no BOS/EOS), identical to HF `Tokenizer.encode(text).ids`."""
        _check_text(text)
        if self._fast is not None:
            try:
                return self._fast.encode(text)
            except (UnicodeEncodeError, ValueError, TypeError):
                self._raise_first_bad([text])
                raise
        try:
            return self._hf.encode(text).ids
        except TypeError:
            raise _surrogate_error(text) from None

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        for i, t in enumerate(texts):
            _check_text(t, f" #{i}")
        if self._fast is not None:
            try:
                return [self._fast.encode(t) for t in texts]
            except (UnicodeEncodeError, ValueError, TypeError):
                self._raise_first_bad(texts)
                raise
        try:
            return [e.ids for e in self._hf_batch(texts)]
        except TypeError:
            self._raise_first_bad(texts)
            raise

    def encode_batch_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(flat ids as uint32, sizes as int64) for `texts`, in order. sizes[i] = len(ids of i)."""
        for i, t in enumerate(texts):
            _check_text(t, f" #{i}")
        if self._fast is not None:
            try:
                return self._fast.encode_batch_flat(texts)
            except (UnicodeEncodeError, ValueError, TypeError):
                self._raise_first_bad(texts)
                raise
        try:
            encs = self._hf_batch(texts)
        except TypeError:
            self._raise_first_bad(texts)
            raise
        sizes = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        flat = np.empty(int(sizes.sum()), dtype=np.uint32)
        pos = 0
        for e, n in zip(encs, sizes.tolist()):
            flat[pos : pos + n] = e.ids
            pos += n
        return flat, sizes

    def _hf_batch(self, texts: list[str]):
        fn = getattr(self._hf, "encode_batch_fast", None) or self._hf.encode_batch
        return fn(list(texts))

    def _raise_first_bad(self, texts: list[str]) -> None:
        for i, t in enumerate(texts):
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:
                raise _surrogate_error(t, f" #{i}" if len(texts) > 1 else "") from None

    def decode(self, ids) -> str:
        """Text of `ids` (as HF's ByteLevel decoder: special tokens included, invalid UTF-8
        replaced by U+FFFD). Ids outside 0..vocab_size-1 are an InputError."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InputError(
                f"token id {bad[0]} is outside the vocabulary 0..{self.vocab_size - 1} of "
                f"{self.path.name}; fix: decode ids produced by this tokenizer"
            )
        if self._fast is not None:
            return self._fast.decode(ids)
        return self._hf.decode(ids, skip_special_tokens=False)

    def token_to_id(self, token: str) -> int | None:
        return self._hf.token_to_id(token)


def _parse_json(raw: bytes):
    """`json.loads(raw)` at orjson's speed (50 ms less per process for the 2.5 MB NeoX file);
    what orjson refuses (NaN, integers beyond 64 bits, ...) goes to `json` for its verdict."""
    import orjson

    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _summarize(spec: dict, path: Path) -> dict:
    """Vocabulary size and EOD id derived from the tokenizer JSON, validated."""
    try:
        vocab = spec["model"]["vocab"]
        added = spec.get("added_tokens") or []
    except (KeyError, TypeError):
        raise InputError(
            f"{path}: not a HF tokenizers JSON (no model.vocab); fix: pass a tokenizer.json file"
        ) from None
    ids = set(vocab.values()) | {int(a["id"]) for a in added}
    vocab_size = max(ids) + 1 if ids else 0
    eod = [int(a["id"]) for a in added if a.get("content") == EOD_TOKEN]
    if not eod and EOD_TOKEN in vocab:
        eod = [int(vocab[EOD_TOKEN])]
    if not eod:
        raise InputError(
            f"{path}: no {EOD_TOKEN!r} token in the vocabulary or added tokens; the EOD id "
            "cannot be derived; fix: use a tokenizer that defines it (GPT-NeoX-20B has id 0)"
        )
    return {"vocab_size": vocab_size, "eod_id": eod[0], "n_ids": len(ids)}


def _resolve(path: str | Path | None) -> tuple[Path, bool]:
    if path is None:
        return TOKENIZER_PATH, True
    p = Path(path).expanduser().resolve()
    return p, p == TOKENIZER_PATH.resolve()


def load_encoder(
    path: str | Path | None = None, *, backend: str = "auto", check_sha256: bool = True
) -> Encoder:
    """Load (cached per process) the tokenizer at `path` (default: the shipped GPT-NeoX-20B JSON).

    For the shipped file the sha256 is checked against `pipeline.data.TOKENIZER_SHA256` when
    `check_sha256` (IntegrityError on mismatch). `backend` is "auto" (the fastest backend that is
    installed, supports the file and passes the identity guard), "gigatoken", "fast" (ConfigError
    if unavailable or not identical to HF on the edge cases) or "hf".
    """
    if backend not in BACKENDS:
        raise ConfigError(
            f"tokenizer backend {backend!r} is not one of {', '.join(BACKENDS)}; "
            "fix: pass backend='auto', 'gigatoken', 'fast' or 'hf'"
        )
    p, is_default = _resolve(path)
    return _from_cache(str(p), backend, check_sha256, is_default)


def _from_cache(
    path: str,
    backend: str,
    check_sha256: bool,
    is_default: bool | None = None,
    trusted: bool = False,
):
    key = (path, backend, check_sha256)
    enc = _CACHE.get(key)
    if enc is not None:
        return enc
    with _CACHE_LOCK:  # re-entrant: loading a backend loads the HF reference through here
        enc = _CACHE.get(key)
        if enc is None:
            enc = _load_uncached(Path(path), backend, check_sha256, is_default, trusted)
            # one instance per resolved backend, so a pickled encoder comes back as itself
            enc = _CACHE.setdefault((path, enc.backend, check_sha256), enc)
            _CACHE[key] = enc
    return enc


def _load_uncached(
    p: Path, backend: str, check_sha256: bool, is_default: bool | None, trusted: bool = False
) -> Encoder:
    if is_default is None:
        is_default = p == TOKENIZER_PATH.resolve()
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InputError(
            f"tokenizer file {p} does not exist; fix: pass an existing tokenizer.json path or "
            "omit it to use the shipped GPT-NeoX-20B tokenizer"
        ) from None
    except OSError as e:
        raise InputError(f"tokenizer file {p} cannot be read ({e}); fix: check permissions") from e
    digest = _sha256_bytes(raw)
    if check_sha256 and is_default and digest != TOKENIZER_SHA256:
        raise IntegrityError(
            f"shipped tokenizer {p} has sha256 {digest}, expected {TOKENIZER_SHA256}; the file "
            "is corrupted or was modified; fix: reinstall the package or restore "
            "pipeline/data/20B_tokenizer.json from git"
        )
    try:
        spec = _parse_json(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(
            f"tokenizer file {p} is not valid JSON ({e}); fix: pass a tokenizer.json"
        ) from e
    if backend == "hf":
        return _construct(p, "hf", check_sha256, raw, spec)
    if trusted:  # a worker re-creating the encoder its parent checked
        return _construct(p, backend, check_sha256, raw, spec, fast_checked=True)
    hf: Encoder | None = None  # the reference, loaded only when the guard has to run
    candidates = AUTO_ORDER if backend == "auto" else (backend,)
    for cand in candidates:
        if cand == "hf":
            log.debug("tokenizer %s: backend hf (HF tokenizers, the reference)", p.name)
            return hf or _from_cache(str(p), "hf", check_sha256, is_default)
        why = _unavailable(cand, spec)
        enc = None
        if why is None:
            try:
                enc = Encoder(p, cand, check_sha256, raw, spec, fast_checked=True)
            except Exception as e:  # HF loaded the file: the backend does not support it
                if isinstance(e, (InputError, ConfigError, IntegrityError)):
                    raise
                why = f"it cannot load the file ({str(e).splitlines()[0]})"
        if enc is None:
            if backend != "auto":
                raise ConfigError(
                    f"tokenizer backend {cand!r} cannot be used for {p}: {why}; allowed: "
                    f"{', '.join(BACKENDS)}; fix: use --backend auto (the fastest that works) "
                    "or --backend hf"
                )
            log.debug("tokenizer %s: backend %s skipped (%s)", p.name, cand, why)
            continue
        from pipeline.tokenize import identity

        key = identity.verdict_key(
            enc.sha256,
            cand,
            enc.version,
            _dist_version("tokenizers"),
            identity.cases_for(enc.added_tokens()),
        )
        verdict = identity.load_verdict(key)
        cached = verdict is not None
        if verdict is None:
            if hf is None:
                hf = _from_cache(str(p), "hf", check_sha256, is_default)
            bad = identity.first_mismatch(enc, hf)
            verdict = (bad is None, bad.describe() if bad is not None else None)
            identity.store_verdict(key, *verdict)
        ok, mismatch = verdict
        if ok:
            log.debug(
                "tokenizer %s: backend %s (ids identical to HF tokenizers on the built-in edge "
                "cases%s)",
                p.name,
                enc.backend_label,
                "; verdict cached" if cached else "",
            )
            return enc
        msg = (
            f"tokenizer backend {enc.backend_label} does not reproduce HF tokenizers' ids for "
            f"{p.name} on {mismatch}{' (verdict cached)' if cached else ''}"
        )
        if backend != "auto":
            raise ConfigError(
                f"{msg}; its tokens would differ from gpt-neox's; fix: use --backend auto (it "
                "falls back to a backend that passes) or --backend hf"
            )
        log.warning("%s; falling back to the next backend", msg)
    raise AssertionError("unreachable: hf ends the candidate list")  # pragma: no cover


def _unavailable(backend: str, spec: dict) -> str | None:
    """Why `backend` cannot load this tokenizer here, or None."""
    if backend == "gigatoken":
        from pipeline.tokenize.giga import gigatoken_version

        if gigatoken_version() is None:
            return "the gigatoken package is not installed (pip install gigatoken)"
        return None
    if backend == "fast":
        from pipeline.tokenize.fast_bpe import unsupported_reason

        reason = unsupported_reason(spec)
        if reason is not None:
            return f"{reason} (only a GPT-NeoX-style NFC + ByteLevel BPE tokenizer is reproduced)"
    return None


def _construct(
    p: Path, backend: str, check_sha256: bool, raw: bytes, spec: dict, fast_checked=False
) -> Encoder:
    try:
        return Encoder(p, backend, check_sha256, raw, spec, fast_checked=fast_checked)
    except Exception as e:
        if isinstance(e, (InputError, ConfigError, IntegrityError)):
            raise
        raise InputError(
            f"tokenizer file {p} cannot be loaded by backend {backend} ({e}); fix: pass a valid "
            "tokenizer.json, or --backend hf"
        ) from e
