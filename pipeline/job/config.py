"""`pile build` configuration: a TOML file whose keys mirror the flags; flags override the file.

    input = ["/data/pile/train"]     # default: the bundled sample's train shards
    variant = "both"                 # standard | deduped | both
    preset = "pythia"                # build preset: which order and dedup presets to use
    workers = 2
    engine = "local"                 # local | ray (a run option, like workers: never changes bytes)
    ray_address = "auto"             # with engine = "ray": auto or HOST:PORT (default: a local Ray)
    [read]       text_key = "text", set_name_key = "pile_set_name", on_error = "raise",
                 max_line_bytes = 268435456
    [dedup]      preset = "pythia-0.87", threshold = 0.87, num_perm = 128, ...   (overrides)
    [tokenize]   append_eod = true, tokenizer = "/path/to/20B_tokenizer.json"
    [order]      preset = "pythia", seq_length = 2048, global_batch = 1024, train_iters = 143000, seed = 1234
                 epochs = 1      (instead of train_iters: N passes over this data, see below)
    [preshuffle] shard_size = 4294967296

Every key is declared once, on a dataclass field (pipeline.config.opt): the top-level keys on
`BuildConfig`, a table's keys on the stage configs of `SECTIONS` (ReadConfig's fields are [read]'s
keys, ...). The allowed keys, their types and `pile build`'s flags all derive from them, and a
table is held as a `Section`: a read-only mapping of its validated keys.

`resolve_build_config` merges default < preset < file < flags and validates every value. Paths
(inputs, out, the tokenizer) are made absolute, so `OUT/build.toml` rebuilds the same thing from
any working directory.

`[order] epochs = N` (`--epochs N`) derives `train_iters` from the token count once tokenize has
run (pipeline.job.plan_check.train_iters_for_epochs). It is the default for your own `--input`
when neither a preset nor train_iters/epochs is named anywhere: the Pythia preset's 143000 steps
would repeat a small corpus thousands of times. `--preset pythia` keeps Pythia's exact train_iters.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import StageConfig, check_keys, check_value, field_key, opt, toml_keys
from pipeline.data import sample_train_files
from pipeline.dedup.config import DedupConfig
from pipeline.engine import ENGINES
from pipeline.errors import ConfigError
from pipeline.order.config import OrderConfig, PreshuffleOptions
from pipeline.presets import load_preset, preset_names
from pipeline.read.config import ReadConfig
from pipeline.tokenize.config import TokenizeConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

VARIANTS = ("standard", "deduped", "both")
DEFAULT_OUT = "pile_out"
# input names that are Pile held-out splits (a path component, a file stem or a `#split`)
HELD_OUT_NAMES = ("val", "valid", "validation", "test")


@dataclass(frozen=True)
class StagePreset:
    """`preset = NAME` in [dedup] / [order]: the stage preset of manifests/presets.toml the
    table's other keys override (the build preset names one; build.toml always records it)."""

    preset: str | None = opt(None, help="stage preset of manifests/presets.toml")


@dataclass(frozen=True)
class OrderLength:
    """[order] `epochs`: train_iters derived from the token count (see the module docstring)."""

    epochs: int | None = opt(
        None,
        metavar="N",
        help="order: train for N epochs of this data: train_iters = the largest whose samples "
        "fit in N epochs of the token count (default: 1 for your own --input with no --preset "
        "or train_iters; none otherwise)",
    )


# build.toml's tables and the declarations of their keys
SECTIONS: dict[str, tuple[type, ...]] = {
    "read": (ReadConfig,),
    "dedup": (StagePreset, DedupConfig),
    "tokenize": (TokenizeConfig,),
    "order": (StagePreset, OrderConfig, OrderLength),
    "preshuffle": (PreshuffleOptions,),
}


def section_keys(table: str) -> dict[str, dataclasses.Field]:
    """{key: declaring field} of the keys a build.toml table (and its flags) may set."""
    return {k: f for cls in SECTIONS[table] for k, f in toml_keys(cls).items()}


class Section(Mapping):
    """One build.toml table: only the keys its stage configs declare, each of its declared
    type. Read-only; equal to a dict with the same items."""

    __slots__ = ("table", "_values")

    def __init__(self, table: str, values: Mapping[str, Any] | None = None, where: str = ""):
        if table not in SECTIONS:
            raise ConfigError(f"unknown table [{table}]; allowed: {', '.join(SECTIONS)}.")
        values = dict(values or {})
        keys = section_keys(table)
        check_keys(values, keys, f"[{table}]", prefix=where)
        for k, v in values.items():
            check_value(keys[k], v, f"{where}[{table}]")
        self.table = table
        self._values = values

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Section({self.table!r}, {self._values!r})"

    def config_kwargs(self, cls: type) -> dict[str, Any]:
        """The values `cls` declares, by field name (e.g. `tokenizer` -> tokenizer_path)."""
        keys = toml_keys(cls)
        return {keys[k].name: v for k, v in self._values.items() if k in keys}


def _section(table: str) -> Any:
    return field(default_factory=lambda: Section(table), metadata={"toml": False})


@dataclass(frozen=True)
class BuildConfig(StageConfig):
    inputs: tuple[str, ...] = opt(
        key="input",
        flag="--input",
        nargs="+",
        metavar="PATH",
        help="input files or directories (default: the bundled sample's train shards)",
    )
    out: str = opt(metavar="DIR", help="output directory (default: pile_out, or the config file's)")
    variant: str = opt(
        "both",
        choices=VARIANTS,
        help="which datasets to build (default: both, or the config file's)",
    )
    preset: str = opt(
        "sample",
        metavar="NAME",
        help="build preset from manifests/presets.toml: pythia | sample "
        "(default: sample for the bundled sample, pythia otherwise; with your own --input and no "
        "preset, --epochs 1 replaces Pythia's train_iters)",
    )
    workers: int = opt(
        1, help="worker processes (0 = one per core); output bytes do not depend on it"
    )
    # run options like workers (their flags: pipeline.cli.common.add_engine_arguments)
    engine: str = opt("local", choices=ENGINES, cli=False, help="local | ray: where tasks run")
    ray_address: str | None = opt(
        None, cli=False, help="with engine = ray: auto or HOST:PORT (default: a local Ray)"
    )
    read: Section = _section("read")
    dedup: Section = _section("dedup")
    tokenize: Section = _section("tokenize")
    order: Section = _section("order")
    preshuffle: Section = _section("preshuffle")
    bundled_sample: bool = opt(False, toml=False)

    _not_fingerprinted = ("workers", "out", "engine", "ray_address")

    def __post_init__(self) -> None:
        for table in SECTIONS:  # plain dicts become validated sections
            value = getattr(self, table)
            if not isinstance(value, Section):
                object.__setattr__(self, table, Section(table, value))

    @property
    def epochs(self) -> int | None:
        """Epochs of the data to train for (train_iters derived after tokenize), or None when
        train_iters is given (by a preset, the file or a flag)."""
        return self.order.get("epochs")

    @property
    def variants(self) -> tuple[str, ...]:
        return ("standard", "deduped") if self.variant == "both" else (self.variant,)

    def to_toml(self) -> str:
        """The resolved config as TOML (what `--dry-run` prints and `OUT/build.toml` holds)."""
        top = {
            field_key(f): getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in SECTIONS
            and f.metadata.get("toml", True)
            and getattr(self, f.name) is not None  # ray_address unset
        }
        lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
        for table in SECTIONS:
            values = getattr(self, table)
            lines.append("")
            lines.append(f"[{table}]")
            for k in sorted(values):
                lines.append(f"{k} = {_toml_value(values[k])}")
        return "\n".join(lines) + "\n"


# the top-level keys of build.toml (the tables are SECTIONS)
TOP_KEYS = {k for k in toml_keys(BuildConfig) if k not in SECTIONS}
# a [build.NAME] preset names a stage preset for each table that has a `preset` key
PRESET_TABLES = tuple(t for t, classes in SECTIONS.items() if StagePreset in classes)
STAGE_CONFIGS = {"dedup": DedupConfig, "order": OrderConfig}


def check_presets() -> list[str]:
    """Validate every preset of manifests/presets.toml against the declarations: a stage
    preset's keys and values make a valid config, a build preset names existing stage presets.
    Returns the names checked ("order.pythia", ...); raises ConfigError at the first bad one."""
    checked = []
    for table, cls in STAGE_CONFIGS.items():
        for name in preset_names(table):
            cls.from_preset(name)
            checked.append(f"{table}.{name}")
    for name in preset_names("build"):
        _build_preset(name)
        checked.append(f"build.{name}")
    return checked


def _build_preset(name: str) -> dict[str, str]:
    if name not in preset_names("build"):
        raise ConfigError(
            f"unknown build preset {name!r}; allowed: {', '.join(preset_names('build'))}."
        )
    stage_presets = load_preset("build", name)
    fix = "Fix manifests/presets.toml."
    check_keys(stage_presets, PRESET_TABLES, f"build preset {name!r}", fix)
    for table in PRESET_TABLES:
        if table not in stage_presets:
            raise ConfigError(f"build preset {name!r} names no {table} preset. {fix}")
        if stage_presets[table] not in preset_names(table):
            raise ConfigError(
                f"build preset {name!r}: {table} = {stage_presets[table]!r} names no "
                f"[{table}.NAME] preset; allowed: {', '.join(preset_names(table))}. {fix}"
            )
    return stage_presets


_TOML_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f]')
_TOML_SHORT = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_escape(m: re.Match) -> str:
    c = m.group()
    return _TOML_SHORT.get(c) or f"\\u{ord(c):04X}"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        # a TOML basic string: escape backslash, quote and every control character (a newline in a
        # path would otherwise end the string and the file would not parse)
        return '"' + _TOML_ESCAPE.sub(_toml_escape, v) + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if v is None:
        return '""'
    raise ConfigError(f"cannot write {v!r} as TOML")


def load_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found.") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {p} is not valid TOML: {e}.") from None
    for k, v in data.items():
        if k in SECTIONS:
            if not isinstance(v, dict):
                raise ConfigError(f"{p}: [{k}] must be a table.")
            check_keys(v, section_keys(k), f"[{k}]", prefix=f"{p}: ")
        elif k not in TOP_KEYS:
            raise ConfigError(
                f"{p}: unknown key {k!r}; allowed: {', '.join(sorted(TOP_KEYS | set(SECTIONS)))}."
            )
        elif k != "input":  # a string or a list of them
            check_value(toml_keys(BuildConfig)[k], v, str(p))
    return data


def resolve_build_config(
    *,
    inputs: list[str] | None = None,
    out: str | None = None,
    variant: str | None = None,
    preset: str | None = None,
    workers: int | None = None,
    engine: str | None = None,
    ray_address: str | None = None,
    config_file: str | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> BuildConfig:
    """default < preset < config file < flags. Every flag is None when not given (the CLI has no
    defaults of its own), so a value in the file is never shadowed by a flag's default.
    `overrides` holds per-table flag values (None = not given)."""
    data = load_config_file(config_file) if config_file else {}
    if config_file:
        # relative paths in a config file mean relative to that file, wherever pile runs from
        base = os.path.dirname(os.path.abspath(config_file))
        if isinstance(data.get("input"), str):
            data["input"] = [data["input"]]
        if data.get("input"):
            data["input"] = [_absolute_input(str(i), base) for i in data["input"]]
        if data.get("out"):
            data["out"] = os.path.join(base, os.path.expanduser(str(data["out"])))
        tok = data.get("tokenize", {})
        if tok.get("tokenizer"):
            tok["tokenizer"] = os.path.join(base, os.path.expanduser(str(tok["tokenizer"])))
    inputs = inputs or data.get("input") or []
    if isinstance(inputs, str):
        inputs = [inputs]
    bundled = not inputs
    if bundled:
        inputs = [str(p) for p in sample_train_files()]
        if not inputs:
            raise ConfigError(
                "no --input given and the bundled sample is missing from the package; "
                "reinstall the package or pass --input."
            )
    out = out or data.get("out") or DEFAULT_OUT
    variant = variant or data.get("variant") or "both"
    if variant not in VARIANTS:
        raise ConfigError(f"variant {variant!r} is not one of {', '.join(VARIANTS)}.")
    preset_flag = preset
    preset = preset or data.get("preset") or ("sample" if bundled else "pythia")
    stage_presets = _build_preset(preset)
    workers = workers if workers is not None else int(data.get("workers", 1))
    if workers < 0:
        raise ConfigError(f"workers={workers}: must be >= 0 (0 = one per core).")
    engine = engine or data.get("engine") or "local"
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r} is not one of {', '.join(ENGINES)}.")
    ray_address = ray_address or data.get("ray_address") or None
    tables: dict[str, dict[str, Any]] = {}
    for table in SECTIONS:
        merged: dict[str, Any] = {}
        if table in PRESET_TABLES:
            merged["preset"] = stage_presets[table]
        merged.update(data.get(table, {}))
        if preset_flag and table in PRESET_TABLES:
            # --preset outranks the file's stage presets (build.toml always names them)
            merged["preset"] = stage_presets[table]
        for k, v in (overrides or {}).get(table, {}).items():
            if v is not None:
                merged[k] = v
        tables[table] = merged
    _resolve_epochs(
        tables["order"],
        data.get("order", {}),
        (overrides or {}).get("order", {}),
        own_data_default=not bundled and not preset_flag and not data.get("preset"),
    )
    if tables["tokenize"].get("tokenizer"):
        tables["tokenize"]["tokenizer"] = os.path.abspath(str(tables["tokenize"]["tokenizer"]))
    for path in [*map(str, inputs), str(out), str(tables["tokenize"].get("tokenizer") or "")]:
        _check_utf8(path)
    if "://" in str(out):  # pipeline/read/remote.py: inputs may be URLs, outputs may not
        raise ConfigError(
            f"--out {out}: outputs go to a local or shared POSIX filesystem (written atomically, "
            "locked, and memory-mapped by training), not object storage; build to a disk and "
            "copy the finished directory up if you need it there."
        )
    return BuildConfig(
        inputs=tuple(_absolute_input(str(i)) for i in inputs),
        out=os.path.abspath(str(out)),
        variant=variant,
        preset=preset,
        workers=workers,
        engine=engine,
        ray_address=ray_address,
        bundled_sample=bundled,
        **tables,
    )


def _check_utf8(path: str) -> None:
    """OUT/build.toml records every path, and TOML is UTF-8: a path whose bytes are not UTF-8
    (decoded by Python with surrogate escapes) cannot be written there, nor named in reports."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(path)
        raise ConfigError(
            f"path {raw!r} is not valid UTF-8, so build.toml cannot record it; rename it "
            "(e.g. convmv -f latin1 -t utf8 --notest PATH) or link it under a UTF-8 name."
        ) from None


def _resolve_epochs(
    order: dict[str, Any],
    file_order: dict[str, Any],
    flags: dict[str, Any],
    own_data_default: bool,
) -> None:
    """`epochs` and `train_iters` are two ways to say how long to train: a flag outranks the
    file's other one; both in one place is an error. Own data with no preset and neither key
    anywhere trains for 1 epoch (see the module docstring)."""
    flag_epochs, flag_iters = flags.get("epochs"), flags.get("train_iters")
    if flag_epochs is not None and flag_iters is not None:
        raise ConfigError(
            f"--epochs {flag_epochs} and --train-iters {flag_iters} both set the training length; "
            "give one of them."
        )
    if "epochs" in file_order and "train_iters" in file_order:
        raise ConfigError(
            f"[order] has both epochs = {file_order['epochs']!r} and train_iters = "
            f"{file_order['train_iters']!r}; keep one of them."
        )
    if flag_iters is not None:
        order.pop("epochs", None)
    elif flag_epochs is not None:
        order.pop("train_iters", None)
    elif own_data_default and "train_iters" not in order and "epochs" not in order:
        order["epochs"] = 1
    if "epochs" in order:
        e = order["epochs"]
        if isinstance(e, bool) or not isinstance(e, int) or e < 1:
            raise ConfigError(
                f"epochs = {e!r}: must be an integer >= 1 (passes over the tokenized data)."
            )
        order.pop("train_iters", None)


def _absolute_input(spec: str, base: str | None = None) -> str:
    """An input spec with its path made absolute, relative to `base` (default: the current
    directory); `hf:` and `#split` are kept."""

    def absolute(path: str) -> str:
        path = os.path.expanduser(path)
        return os.path.abspath(os.path.join(base, path) if base else path)

    from pipeline.read.remote import is_url

    if is_url(spec):  # s3://, gs://, hf://, https://: kept as given
        return spec
    if spec.startswith("hf:"):
        rest, sep, split = spec[3:].partition("#")
        return "hf:" + absolute(rest) + sep + split
    return absolute(spec)


def held_out_names(names: list[str]) -> list[str]:
    """The input names (relative to the inputs' root, as `InputFile.name`) that look like
    held-out splits: a directory, a file stem or a `#split` equal to val / valid / validation /
    test, case-insensitive."""
    found = []
    for name in names:
        path, _, split = name.partition("#")
        parts = path.split("/")
        words = [*parts[:-1], parts[-1].split(".", 1)[0], split]
        # whole words of each part: `test-00`, `pile_val`, `validation_set` count, `contest` not
        tokens = [t for w in words for t in re.split(r"[^0-9a-zA-Z]+", w) if t]
        if any(t.lower() in HELD_OUT_NAMES for t in tokens):
            found.append(name)
    return found
