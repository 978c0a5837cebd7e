"""Reader configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.config import StageConfig
from pipeline.errors import ConfigError

ON_ERROR_POLICIES = ("raise", "skip")

# The longest line (one JSON record, newline excluded) the reader accepts. The Pile's largest
# components average 0.3-0.55 MiB per document (Books3, Ubuntu IRC, Gutenberg; Pile paper Table 1)
# and its longest single documents (whole books, long IRC logs) are tens of MiB of text; JSON
# escaping can triple that (\uXXXX for non-ASCII). 256 MiB keeps every such record with margin and
# bounds what one record costs a worker: about 3-4x the line in the reader (bytes, str, dict) and
# more in the stages that keep per-token arrays (see README, Bad input).
DEFAULT_MAX_LINE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class ReadConfig(StageConfig):
    """How records are read.

    text_key: key of the text field; a list of strings is joined with "\\n\\n" (lm_dataformat).
    set_name_key: key of the source name inside `meta` (falls back to a top-level key of the same
        name, e.g. dolma's `source`); "unknown" when absent.
    on_error: "raise" stops at the first bad record; "skip" writes it verbatim to `quarantine_dir`
        with its reason, counts it, and goes on.
    max_line_bytes: a longer line is rejected while it streams, never held whole in memory
        (a decompression bomb of one line cannot exhaust memory); see DEFAULT_MAX_LINE_BYTES.
    """

    text_key: str = "text"
    set_name_key: str = "pile_set_name"
    on_error: str = "raise"
    quarantine_dir: str | None = None
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES

    _not_fingerprinted = ("quarantine_dir",)

    def to_dict(self) -> dict[str, Any]:
        # The default limit is left out, so fingerprints and manifests of configs written before
        # it existed (every artifact) keep their bytes; another limit can change which lines are
        # read in skip mode, so it is recorded and fingerprinted.
        d = super().to_dict()
        if self.max_line_bytes == DEFAULT_MAX_LINE_BYTES:
            del d["max_line_bytes"]
        return d

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR_POLICIES:
            raise ConfigError(
                f"on_error={self.on_error!r} is not a policy; allowed: {', '.join(ON_ERROR_POLICIES)}."
            )
        if self.on_error == "skip" and not self.quarantine_dir:
            raise ConfigError(
                "on_error='skip' needs a quarantine directory so that skipped records are kept; "
                "pass --quarantine DIR."
            )
        if (
            isinstance(self.max_line_bytes, bool)
            or not isinstance(self.max_line_bytes, int)
            or self.max_line_bytes < 1
        ):
            raise ConfigError(
                f"max_line_bytes={self.max_line_bytes!r}: must be a positive number of bytes "
                f"(default {DEFAULT_MAX_LINE_BYTES}); pass --max-line-bytes N."
            )
        if not self.text_key:
            raise ConfigError("text_key must be a non-empty string (default 'text').")
