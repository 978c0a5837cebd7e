"""Options shared by several commands, derived from the config declarations.

A config field's flag, help, choices and metavar are declared once on the dataclass field
(`pipeline.config.opt`); `add_config_arguments` turns fields into argparse options and
`config_values` / `config_from_args` read them back, so a field added to a config is exposed by
every command that lists its class. The data options of inspect / exposure / find /
contamination (`DataOptions`) and the gpt-neox order options are declared here the same way.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from pipeline.config import base_type, config_fields, field_default, field_dest, field_flag, opt
from pipeline.errors import ConfigError
from pipeline.read import ReadConfig

log = logging.getLogger(__name__)

FIELD_DEFAULT: Any = object()  # add_config_arguments: the field's own default
_ARG_KEYS = ("help", "metavar", "choices", "type", "action", "nargs")


def declared_fields(
    classes: type | tuple[type, ...], only=None, exclude=(), *, every: bool = False
) -> list:
    """Fields of one class or several (`only` picks across them, in its order; without it, the
    fields declared with a CLI option, cli=True, or with `every` all of them)."""
    classes = (classes,) if isinstance(classes, type) else classes
    by_name = {f.name: f for cls in classes for f in config_fields(cls)}
    names = (
        [n for n, f in by_name.items() if every or f.metadata.get("cli", True)]
        if only is None
        else list(only)
    )
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(f"no field(s) {unknown} to declare; allowed: {sorted(by_name)}.")
    return [by_name[n] for n in names if n not in exclude]


def _type_of(f) -> Any:
    """argparse `type` from the field's annotation (int, float; str needs none)."""
    return {"int": int, "float": float}.get(base_type(f))


def add_config_arguments(
    parser,
    classes: type | tuple[type, ...],
    *,
    only: tuple[str, ...] | None = None,
    exclude: tuple[str, ...] = (),
    context: str | None = None,
    default: Any = FIELD_DEFAULT,
    suffix: str = "",
    overrides: dict[str, dict[str, Any]] | None = None,
) -> None:
    """One option per declared field of `classes` (all, or `only` in that order).

    context: which per-command variant of the declaration to use (e.g. "build"); default: the
    argparse default of every option (FIELD_DEFAULT: the field's; None: "not given", so a preset
    or a config file fills it in; argparse.SUPPRESS: no attribute unless given); suffix: appended
    to every help text; overrides: per-field argparse keywords on top of all that."""
    for f in declared_fields(classes, only, exclude):
        meta = f.metadata
        kw: dict[str, Any] = {k: meta[k] for k in _ARG_KEYS if k in meta}
        if context:
            kw.update(meta.get("contexts", {}).get(context, {}))
        kw.update((overrides or {}).get(f.name, {}))
        flag = kw.pop("flag", field_flag(f))
        kw.setdefault("dest", field_dest(f))
        if "default" not in kw:
            kw["default"] = field_default(f) if default is FIELD_DEFAULT else default
        if "action" not in kw and "type" not in kw and _type_of(f) is not None:
            kw["type"] = _type_of(f)
        if suffix and "help" in kw:
            kw["help"] += suffix
        parser.add_argument(flag, **kw)


def config_values(
    classes: type | tuple[type, ...],
    args: argparse.Namespace,
    *,
    only: tuple[str, ...] | None = None,
    exclude: tuple[str, ...] = (),
) -> dict[str, Any]:
    """{field name: value} of the fields whose option was given (not None), including fields
    with cli=False whose value a shared option provides (`workers` from --workers)."""
    values = {}
    for f in declared_fields(classes, only, exclude, every=True):
        v = getattr(args, field_dest(f), None)
        if v is not None:
            values[f.name] = v
    return values


def config_from_args(cls: type, args: argparse.Namespace, *, preset: Any = MISSING, **extra):
    """`cls` from the options given in `args` (+ `extra`); with `preset`, through
    `cls.from_preset(preset, ...)` so the options override the preset's values."""
    values = {**config_values(cls, args), **extra}
    if preset is not MISSING:
        return cls.from_preset(preset, **values)
    return cls(**values)


# -- reading ---------------------------------------------------------------------------------


def add_read_arguments(
    parser: argparse.ArgumentParser, *, default_quarantine: str | None = None
) -> None:
    g = parser.add_argument_group("reading")
    add_config_arguments(
        g,
        ReadConfig,
        overrides={"quarantine_dir": {"default": default_quarantine}},
    )


def read_config_from_args(
    args: argparse.Namespace, out_dir: str | Path | None = None
) -> ReadConfig:
    values = config_values(ReadConfig, args)
    if values["on_error"] == "skip" and not values.get("quarantine_dir"):
        values["quarantine_dir"] = str(Path(out_dir) / "quarantine") if out_dir else "quarantine"
    return ReadConfig(**values)


def add_workers_argument(parser: argparse.ArgumentParser, default: int = 1) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=default,
        help="worker processes (0 = one per core); output bytes do not depend on it",
    )


def executor_from_args(args, scratch=None):
    """The executor a command's stages run on: `--engine` (default local), `--workers`,
    `--ray-address`; commands without those options get the local engine's defaults."""
    from pipeline.engine import make_executor

    return make_executor(
        getattr(args, "engine", None) or "local",
        getattr(args, "workers", None),
        scratch,
        getattr(args, "ray_address", None),
    )


def parse_size(s: str) -> int:
    """Bytes from '30e9', '30G', '5GB', '64MiB', '1000'."""
    units = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 1 << 10, "mi": 1 << 20,
             "gi": 1 << 30, "ti": 1 << 40}  # fmt: skip
    t = s.strip().lower()
    if t.endswith("b"):
        t = t[:-1]
    try:
        for u in sorted(units, key=len, reverse=True):
            if t.endswith(u):
                return int(float(t[: -len(u)]) * units[u])
        return int(float(t)) if ("e" in t or "." in t) else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{s!r} is not a size; use bytes like 30000000000, 30e9, 30G or 64MiB"
        ) from None


# -- DATA of inspect, exposure, find, contamination --------------------------------------------

DATA_FORMS = ("auto", "document", "preshuffled")


@dataclass(frozen=True)
class DataOptions:
    """How a DATA argument (a token dataset, document-level or pre-shuffled) is opened."""

    form: str = opt("auto", choices=DATA_FORMS, help="data form")
    maps_dir: str | None = opt(
        None,
        help="directory of the index maps (default: next to DATA)",
        contexts={"preshuffle": {"help": "where the index maps are (default: next to PREFIX)"}},
    )
    verify_hashes: bool = opt(
        False,
        action="store_true",
        help="also check the sha256 of every file the command reads against its manifest (exit "
        "4 naming a damaged file); only the files read are hashed: the .idx and the shards "
        "holding the steps of pre-shuffled data, every map and the whole .bin of document-level "
        "data. Without it only sizes and structure are checked, which cannot see a flipped byte "
        "inside token data",
    )
    source: str | None = opt(
        None,
        help="for pre-shuffled DATA: the document-level prefix it was built from (default: the "
        "source recorded in its document.manifest.json)",
        contexts={
            "inspect": {
                "help": "for pre-shuffled DATA: the document-level prefix it was built from, for "
                "--provenance (default: the source recorded in its document.manifest.json)"
            }
        },
    )
    index_dir: str | None = opt(
        None,
        help="where the inverse maps / n-gram index are written and read (default: next to the "
        "index maps / the dataset; use it for read-only data)",
    )
    rebuild: bool = opt(
        False, action="store_true", help="rebuild the inverse maps even when current"
    )


def add_data_arguments(
    p,
    *,
    only: tuple[str, ...] = ("form", "maps_dir", "source", "index_dir", "rebuild"),
    context: str | None = None,
) -> None:
    """DATA and its options (group "data"), then the order options: what inspect, exposure,
    find and contamination share."""
    p.add_argument("data", metavar="DATA", help="dataset prefix, .idx/.bin path or directory")
    add_config_arguments(p.add_argument_group("data"), DataOptions, only=only, context=context)
    add_order_arguments(p, recorded=True)


# -- the training order (gpt-neox) -------------------------------------------------------------

FALLBACK_PRESET = "pythia"
RECORDED_DEFAULT = f"the config recorded with the data, else {FALLBACK_PRESET}"


def _order_config_cls():
    from pipeline.order.config import OrderConfig

    return OrderConfig


def add_order_arguments(
    p: argparse.ArgumentParser, default_preset: str = FALLBACK_PRESET, *, recorded: bool = False
) -> None:
    """--preset and the OrderConfig fields (--seq-length/--global-batch/--train-iters/--seed).

    With `recorded` (commands that read existing data: inspect, preshuffle) nothing is defaulted
    here: when none of these flags is given, `resolve_order_config` uses the config recorded with
    the data (falling back to the `pythia` preset), and --help says so."""
    from pipeline.presets import preset_names

    presets = ", ".join(preset_names("order"))
    if recorded:
        g = p.add_argument_group(
            "training order (gpt-neox)",
            # RawDescriptionHelpFormatter keeps these line breaks
            "With none of these flags: the config recorded with the data (the pre-shuffled\n"
            "manifest, or the manifest of the only index maps), else the pythia preset.\n"
            "With any of them: --preset (else pythia) with the given flags on top.",
        )
        # SUPPRESS: no attribute unless given (so "not given" is visible) and no "(default: None)"
        # appended by the help formatter; the help states the real default instead.
        g.add_argument(
            "--preset",
            default=argparse.SUPPRESS,
            help=f"[order.NAME] preset of manifests/presets.toml ({presets}) "
            f"(default: {RECORDED_DEFAULT})",
        )
        dflt = " (default: the preset's; with no order flag at all, the recorded config's)"
        default: Any = argparse.SUPPRESS
    else:
        g = p.add_argument_group("training order (gpt-neox); flags override the preset")
        g.add_argument(
            "--preset",
            default=default_preset,
            help=f"[order.NAME] preset of manifests/presets.toml ({presets})",
        )
        dflt = " (default: the preset's)"
        default = None
    add_config_arguments(g, _order_config_cls(), default=default, suffix=dflt)


def explicit_order_args(args: argparse.Namespace) -> bool:
    """True when --preset or any order flag was given."""
    return getattr(args, "preset", None) is not None or bool(
        config_values(_order_config_cls(), args)
    )


def order_config_from_args(args: argparse.Namespace):
    """The --preset (default pythia) with the given flags on top."""
    return config_from_args(
        _order_config_cls(), args, preset=getattr(args, "preset", None) or FALLBACK_PRESET
    )


def resolve_order_config(
    args: argparse.Namespace,
    data: str | os.PathLike,
    *,
    form: str = "document",
    maps_dir: str | os.PathLike | None = None,
    level: int = logging.INFO,
):
    """The order config for a command reading existing DATA.

    Explicit --preset / order flags win. Otherwise the config recorded with DATA
    (pipeline.order.recorded: the pre-shuffled manifest, or the only index-map manifest; several
    raise ConfigError) and, when nothing is recorded (EleutherAI's data, maps built by gpt-neox),
    the `pythia` preset. Logs at `level` (INFO) which one is used.
    """
    config, why = order_config_and_origin(args, data, form=form, maps_dir=maps_dir)
    log.log(level, "%s", why)
    return config


def order_config_and_origin(
    args: argparse.Namespace,
    data: str | os.PathLike,
    *,
    form: str = "document",
    maps_dir: str | os.PathLike | None = None,
) -> tuple[Any, str]:
    """`resolve_order_config` without logging: (config, a sentence saying where it came from)."""
    from pipeline.order.recorded import config_flags, recorded_config

    cls = _order_config_cls()
    if explicit_order_args(args):
        config = order_config_from_args(args)
        given = [f"{field_flag(f)} {getattr(args, field_dest(f))}" for f in config_fields(cls)
                 if getattr(args, field_dest(f), None) is not None]  # fmt: skip
        preset = getattr(args, "preset", None) or FALLBACK_PRESET
        with_given = f" with {' '.join(given)}" if given else ""
        return config, f"order config: preset {preset}{with_given} -> {config_flags(config)}"
    rec = recorded_config(data, maps_dir=maps_dir, form=form)
    if rec is not None:
        return rec.config, (
            f"order config recorded in {rec.manifest}: {config_flags(rec.config)} "
            "(override with --preset or these flags)"
        )
    config = cls.from_preset(FALLBACK_PRESET)
    return config, (
        f"no order config recorded with {data}; using preset {FALLBACK_PRESET}: "
        f"{config_flags(config)}"
    )


def add_engine_arguments(parser: argparse.ArgumentParser, default: str | None = "local") -> None:
    """--engine and --ray-address, next to --workers (pile build passes default=None so a config
    file's `engine` is not shadowed by the flag's default)."""
    from pipeline.engine import ENGINES

    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=default,
        help="where tasks run: this machine's worker processes, or a Ray cluster (needs "
        "pip install -e '.[ray]'); output bytes do not depend on it"
        + ("" if default else " (default: from --config, else local)"),
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="with --engine ray: auto (the cluster `ray start` runs on this machine) or HOST:PORT; "
        "default: start a local Ray with --workers CPUs for this run",
    )
