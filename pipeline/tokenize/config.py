"""`pile tokenize`'s config: how documents become token items."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import StageConfig, opt
from pipeline.data import TOKENIZER_SHA256
from pipeline.errors import ConfigError
from pipeline.io import sha256_file
from pipeline.tokenize.encoder import BACKENDS


@dataclass(frozen=True)
class TokenizeConfig(StageConfig):
    """How documents become token items.

    append_eod: append the EOD id (`<|endoftext|>`) to every item (gpt-neox `--append-eod`).
    tokenizer_path: tokenizer JSON; None = the GPT-NeoX-20B file shipped in the package.
    tokenizer_sha256: expected sha256 of that file (checked at load); fingerprinted, the path is not.
    backend: "auto" | "gigatoken" | "fast" | "hf" (identical ids, checked by the identity guard;
        not fingerprinted; the manifest records the one used).
    batch_size: documents per encode batch; batch_chars caps the characters of a batch (neither
        changes output bytes).
    unit_bytes: text bytes per work unit (one task each; None = input bytes / (workers x 2));
        unit_cache: where single-frame compressed inputs are re-chunked to split (None = they
        are one unit). Neither changes output bytes.
    """

    append_eod: bool = opt(
        True,
        action=argparse.BooleanOptionalAction,
        help="append the EOD id (<|endoftext|> = 0) to every document",
        contexts={"build": {"help": "append the EOD token to every document (default on)"}},
    )
    # build.toml's [tokenize] calls it `tokenizer`, as the flag
    tokenizer_path: str | None = opt(
        None,
        flag="--tokenizer",
        key="tokenizer",
        metavar="PATH",
        help="tokenizer JSON; unset: the GPT-NeoX-20B file shipped in the package (sha256-checked)",
        contexts={
            "build": {"metavar": "FILE", "help": "tokenizer JSON (default: shipped NeoX-20B)"}
        },
    )
    # read from the tokenizer file (for_tokenizer), never set by hand
    tokenizer_sha256: str = opt(TOKENIZER_SHA256, cli=False, toml=False)
    backend: str = opt(
        "auto",
        choices=BACKENDS,
        help="encoder: gigatoken (Rust, fastest), fast (tiktoken) or hf (HF tokenizers, the "
        "reference); a backend must reproduce HF's ids on built-in edge cases before use; auto = "
        "the fastest that is installed and passes (the manifest and log say which)",
    )
    batch_size: int = opt(1024, help="documents per encode batch")
    batch_chars: int = opt(8 << 20, help="characters per encode batch (at most)", cli=False)
    # work units (pipeline.read.units); neither changes an output byte
    unit_bytes: int | None = opt(
        None,
        flag="--unit-size",
        metavar="BYTES",
        help="bytes of text per work unit (one task each; any size gives the same bytes); "
        "unset: the input bytes / (2 x workers), one unit per file with one worker",
        toml=False,
    )
    unit_cache: str | None = opt(
        None,
        help="directory for re-chunked copies of single-frame .jsonl.zst/.gz inputs, so they "
        "split into units (written once, reused by later runs); unset: such a file is one unit",
        metavar="DIR",
        toml=False,
    )

    _not_fingerprinted = (
        "tokenizer_path",
        "backend",
        "batch_size",
        "batch_chars",
        "unit_bytes",
        "unit_cache",
    )

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"tokenizer backend {self.backend!r} is not one of {', '.join(BACKENDS)}; "
                f"pass --backend {', '.join(BACKENDS)}."
            )
        if int(self.batch_size) < 1 or int(self.batch_chars) < 1:
            raise ConfigError(
                f"batch_size={self.batch_size} and batch_chars={self.batch_chars} must be >= 1."
            )
        if self.unit_bytes is not None and (
            isinstance(self.unit_bytes, bool)
            or not isinstance(self.unit_bytes, int)
            or self.unit_bytes < 1
        ):
            raise ConfigError(
                f"unit_bytes={self.unit_bytes!r} must be a positive number of bytes of text per "
                "work unit, or unset (balanced for the worker count)."
            )
        h = str(self.tokenizer_sha256).lower()
        if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
            raise ConfigError(
                f"tokenizer_sha256={self.tokenizer_sha256!r} is not a 64-digit hex sha256; use "
                "for_tokenizer(path) to compute it from the file."
            )

    @classmethod
    def for_tokenizer(cls, path: str | os.PathLike | None = None, **kw: Any) -> TokenizeConfig:
        """Config for the tokenizer at `path` (None = shipped), its sha256 read from the file."""
        if path is None:
            return cls(tokenizer_path=None, tokenizer_sha256=TOKENIZER_SHA256, **kw)
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"--tokenizer {path}: no such file; pass a tokenizer.json path.")
        return cls(tokenizer_path=str(p), tokenizer_sha256=sha256_file(p), **kw)
