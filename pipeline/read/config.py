"""Reader configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.config import StageConfig, opt
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

    text_key: str = opt(
        "text",
        help="JSON key of the document text",
        contexts={"build": {"metavar": "KEY"}},
    )
    set_name_key: str = opt(
        "pile_set_name",
        help="key of the source name inside meta (or top level); 'unknown' when absent",
        contexts={"build": {"metavar": "KEY", "help": "key of the source name in meta"}},
    )
    on_error: str = opt(
        "raise",
        choices=ON_ERROR_POLICIES,
        help="bad records: stop with an error, or skip them into the quarantine directory",
        contexts={"build": {"help": "bad-record policy"}},
    )
    # `pile build` keeps skipped records in OUT/quarantine: not a build.toml key
    quarantine_dir: str | None = opt(
        None,
        flag="--quarantine",
        metavar="DIR",
        help="where --on-error skip keeps rejected records verbatim with their reasons "
        "(default: OUT/quarantine for commands with --out, else ./quarantine)",
        toml=False,
    )
    max_line_bytes: int = opt(
        DEFAULT_MAX_LINE_BYTES,
        metavar="N",
        help="longest input line (one JSON record) read; a longer one is rejected while it "
        "streams, never held in memory (with --on-error skip: copied to the quarantine)",
        contexts={
            "build": {
                "help": "longest input line read (default 256 MiB); longer ones are refused or "
                "quarantined without being held in memory"
            }
        },
    )

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
