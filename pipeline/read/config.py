"""Reader configuration."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import StageConfig
from pipeline.errors import ConfigError

ON_ERROR_POLICIES = ("raise", "skip")


@dataclass(frozen=True)
class ReadConfig(StageConfig):
    """How records are read.

    text_key: key of the text field; a list of strings is joined with "\\n\\n" (lm_dataformat).
    set_name_key: key of the source name inside `meta` (falls back to a top-level key of the same
        name, e.g. dolma's `source`); "unknown" when absent.
    on_error: "raise" stops at the first bad record; "skip" writes it verbatim to `quarantine_dir`
        with its reason, counts it, and goes on.
    """

    text_key: str = "text"
    set_name_key: str = "pile_set_name"
    on_error: str = "raise"
    quarantine_dir: str | None = None

    _not_fingerprinted = ("quarantine_dir",)

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
        if not self.text_key:
            raise ConfigError("text_key must be a non-empty string (default 'text').")
