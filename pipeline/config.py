"""Stage config contract: frozen dataclasses with a canonical JSON form and a fingerprint.

A fingerprint is the sha256 of the canonical JSON of the config (sorted keys, no whitespace), with
the config's class name and a schema version. Outputs and completion records store it, so an
artifact built with another config is detected instead of being silently reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):  # dicts and build.toml sections
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class StageConfig:
    """Mixin for frozen config dataclasses: `to_dict()` and `fingerprint()`.

    Fields that do not change output bytes (worker counts, progress flags) are listed in the class
    attribute `_not_fingerprinted` and left out of the fingerprint.
    """

    _schema_version: int = 1
    _not_fingerprinted: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(self)

    def fingerprint(self) -> str:
        d = {k: v for k, v in self.to_dict().items() if k not in self._not_fingerprinted}
        payload = canonical_json(
            {"class": type(self).__name__, "schema": self._schema_version, "config": d}
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def combine_fingerprints(*parts: str) -> str:
    """Fingerprint of a stage that depends on upstream fingerprints plus its own."""
    # parts may hold input names (any Unicode; surrogate escapes for undecodable path bytes):
    # UTF-8 with surrogatepass is the same bytes as ASCII for ASCII parts, so fingerprints stay
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


# --- Declarations: a config field's user-facing facts, from which CLI flags and build.toml keys
# are derived (pipeline.cli.common.add_config_arguments / config_from_args, pipeline.job.config).
# Adding a field to a config dataclass with `opt(...)` is the one edit that exposes it.


def opt(
    default: Any = dataclasses.MISSING,
    *,
    help: str | None = None,
    flag: str | None = None,
    dest: str | None = None,
    metavar: str | None = None,
    choices: tuple[Any, ...] | None = None,
    type: Any = None,
    action: Any = None,
    nargs: Any = None,
    key: str | None = None,
    cli: bool = True,
    toml: bool = True,
    contexts: dict[str, dict[str, Any]] | None = None,
) -> Any:
    """A dataclass field with its CLI facts.

    flag: the option (default `--field-name`); dest: its argparse attribute (default: from the
    flag); help/metavar/choices/type/action/nargs: as for `argparse.add_argument` (type defaults
    to the annotation's int or float). key: its name in a
    `build.toml` table and presets (default: the field name); toml=False keeps it out of them;
    cli=False: no option unless a command names the field (`only=`).
    contexts: per-command variants, e.g. {"build": {"help": ..., "metavar": ...}} for the shorter
    spelling of the same option in `pile build`'s overrides group.
    """
    meta: dict[str, Any] = {
        k: v
        for k, v in (
            ("help", help),
            ("flag", flag),
            ("dest", dest),
            ("metavar", metavar),
            ("choices", choices),
            ("type", type),
            ("action", action),
            ("nargs", nargs),
            ("key", key),
        )
        if v is not None
    }
    meta["cli"] = cli
    meta["toml"] = toml
    meta["contexts"] = dict(contexts or {})
    return dataclasses.field(default=default, metadata=meta)


def config_fields(
    cls: type, only: tuple[str, ...] | list[str] | None = None, exclude: tuple[str, ...] = ()
) -> list[dataclasses.Field]:
    """The fields of `cls` (`only`, in that order, else declaration order) minus `exclude`."""
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    if only is not None:
        unknown = [n for n in only if n not in by_name]
        if unknown:
            raise ConfigError(
                f"{cls.__name__} has no field(s) {unknown}; allowed: {sorted(by_name)}."
            )
        chosen = [by_name[n] for n in only]
    else:
        chosen = list(by_name.values())
    return [f for f in chosen if f.name not in exclude]


def field_flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def field_dest(f: dataclasses.Field) -> str:
    return f.metadata.get("dest") or field_flag(f)[2:].replace("-", "_")


def field_key(f: dataclasses.Field) -> str:
    """The field's name in build.toml tables and presets."""
    return f.metadata.get("key") or f.name


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def toml_keys(cls: type) -> dict[str, dataclasses.Field]:
    """{key: field} of the fields of `cls` a build.toml table or a preset may set."""
    return {field_key(f): f for f in dataclasses.fields(cls) if f.metadata.get("toml", True)}


def check_keys(values: Any, allowed: Any, where: str, fix: str = "", prefix: str = "") -> None:
    """ConfigError naming the unknown keys of `values` and the allowed set."""
    bad = sorted(set(values) - set(allowed))
    if bad:
        raise ConfigError(
            f"{prefix}unknown key(s) {', '.join(bad)} in {where}; allowed: "
            f"{', '.join(sorted(allowed))}." + (f" {fix}" if fix else "")
        )


def annotation(f: dataclasses.Field) -> str:
    """The field's type as written ("int", "str | None"), for string or real annotations."""
    t = f.type
    return t if isinstance(t, str) else getattr(t, "__name__", None) or str(t)


def base_type(f: dataclasses.Field) -> str:
    """The annotation without `| None`: "int", "float", "str", "bool", ..."""
    return annotation(f).replace("| None", "").replace("Optional[", "").strip(" ]")


_TYPES = {
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "float": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
}


def check_value(f: dataclasses.Field, value: Any, where: str) -> None:
    """ConfigError unless `value` has the field's declared type (int, float, str, bool; None
    when the annotation allows it) and is one of its declared choices."""
    if value is None and "None" in annotation(f):
        return
    desc, ok = _TYPES.get(base_type(f), ("", lambda v: True))
    if not ok(value):
        raise ConfigError(f"{where}: {field_key(f)} = {value!r} must be {desc}.")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(
            f"{where}: {field_key(f)} = {value!r} is not allowed; allowed: "
            f"{', '.join(map(str, choices))}."
        )
