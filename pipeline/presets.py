"""Presets from `manifests/presets.toml` (shipped in the package as `pipeline.manifests`)."""

from __future__ import annotations

import sys
from functools import cache
from importlib import resources
from typing import Any

from pipeline.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@cache
def _load() -> dict[str, Any]:
    text = resources.files("pipeline.manifests").joinpath("presets.toml").read_text("utf-8")
    return tomllib.loads(text)


def preset_names(section: str) -> list[str]:
    return sorted(_load().get(section, {}))


def load_preset(section: str, name: str) -> dict[str, Any]:
    """The preset `name` of `section` (e.g. ("order", "pythia")) as a dict of config values."""
    table = _load().get(section, {})
    if name not in table:
        raise ConfigError(
            f"unknown {section} preset {name!r}; allowed: {', '.join(sorted(table)) or '(none)'}. "
            "Presets live in manifests/presets.toml."
        )
    return dict(table[name])
