"""Config as the single source of truth: a field declared once (`pipeline.config.opt`) is a CLI
flag, a build.toml key and a preset key; unknown keys and wrong types are ConfigErrors naming the
allowed set; build.toml round-trips through the same declarations."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass

import pytest

from pipeline.cli.common import (
    DataOptions,
    add_config_arguments,
    config_from_args,
    config_values,
    declared_fields,
)
from pipeline.cli.main import build_parser, main
from pipeline.config import StageConfig, check_keys, field_flag, opt, toml_keys
from pipeline.dedup.config import DedupConfig
from pipeline.errors import ConfigError
from pipeline.job import config as job_config
from pipeline.job.config import (
    SECTIONS,
    BuildConfig,
    Section,
    check_presets,
    load_config_file,
    resolve_build_config,
    section_keys,
)
from pipeline.order.config import OrderConfig
from pipeline.read.config import ReadConfig
from pipeline.tokenize.config import TokenizeConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class Toy(StageConfig):
    """A throwaway config: what a new stage (or a new field) declares."""

    window: int = opt(7, help="tokens per window")
    mode: str = opt("fast", choices=("fast", "exact"), help="how to compare")
    ratio: float = opt(0.5, metavar="R", help="kept fraction")
    label: str | None = opt(None, flag="--name", key="name", help="a label")
    strict: bool = opt(False, action="store_true", help="fail on the first mismatch")
    hidden: int = opt(3, cli=False, help="not a flag unless named")
    local_only: int = opt(1, toml=False, help="not a build.toml key")


def _parser(**kw) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toy")
    add_config_arguments(p, Toy, **kw)
    return p


def _option(p: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in p._actions if flag in a.option_strings)


# -- a declared field is a CLI flag --------------------------------------------------------------


def test_declared_fields_become_flags_with_help_default_type_choices_metavar():
    p = _parser()
    flags = [a.option_strings[0] for a in p._actions if a.option_strings[0] != "-h"]
    assert flags == ["--window", "--mode", "--ratio", "--name", "--strict", "--local-only"]
    window = _option(p, "--window")
    assert (window.default, window.type, window.help) == (7, int, "tokens per window")
    assert _option(p, "--mode").choices == ("fast", "exact")
    assert _option(p, "--ratio").metavar == "R" and _option(p, "--ratio").type is float
    assert _option(p, "--name").dest == "name"
    args = p.parse_args(["--window", "9", "--mode", "exact", "--name", "x", "--strict"])
    assert config_from_args(Toy, args) == Toy(window=9, mode="exact", label="x", strict=True)
    assert config_from_args(Toy, p.parse_args([])) == Toy()
    with pytest.raises(SystemExit):  # choices come from the declaration
        p.parse_args(["--mode", "slow"])


def test_only_exclude_default_suffix_and_context():
    @dataclass(frozen=True)
    class Ctx:
        n: int = opt(2, help="long help", contexts={"short": {"help": "short", "metavar": "N"}})

    p = argparse.ArgumentParser()
    add_config_arguments(p, Ctx, context="short", default=None, suffix=" (default: preset)")
    n = _option(p, "--n")
    assert (n.help, n.metavar, n.default) == ("short (default: preset)", "N", None)
    assert config_values(Ctx, p.parse_args([])) == {}  # not given: left to the preset
    p = _parser(only=("hidden", "window"), exclude=("window",))
    assert [f.name for f in declared_fields(Toy, only=("hidden", "window"))] == ["hidden", "window"]
    assert [a.dest for a in p._actions[1:]] == ["hidden"]
    with pytest.raises(ConfigError, match="allowed:"):
        declared_fields(Toy, only=("nope",))


def test_a_field_added_to_a_config_is_a_flag_of_every_command_that_lists_the_class(monkeypatch):
    """Adding a field to DedupConfig is one edit: `pile dedup` gets its flag, read back into the
    config, and build.toml's [dedup] accepts its key."""
    extra = dataclasses.make_dataclass(
        "DedupPlus",
        [("band_seed", int, opt(5, help="seed of the band hash"))],
        bases=(DedupConfig,),
        frozen=True,
    )
    monkeypatch.setattr("pipeline.cli.commands.dedup.DedupConfig", extra)
    p = build_parser(["dedup"])
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    dedup = sub.choices["dedup"]
    assert "--band-seed" in dedup.format_help() and "seed of the band hash" in dedup.format_help()
    args = dedup.parse_args(["in", "--out", "o", "--band-seed", "11", "--threshold", "0.9"])
    config = config_from_args(extra, args, preset="pythia-0.87")
    assert (config.band_seed, config.threshold, config.num_perm) == (11, 0.9, 128)
    monkeypatch.setitem(SECTIONS, "dedup", (job_config.StagePreset, extra))
    assert "band_seed" in section_keys("dedup")
    assert Section("dedup", {"band_seed": 3})["band_seed"] == 3


def test_stage_commands_expose_the_declared_fields():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command, cls in (
        ("dedup", DedupConfig),
        ("tokenize", TokenizeConfig),
        ("order", OrderConfig),
        ("stats", ReadConfig),
        ("inspect", OrderConfig),
        ("find", DataOptions),
    ):
        flags = {o for a in sub.choices[command]._actions for o in a.option_strings}
        want = {field_flag(f) for f in declared_fields(cls)}
        if command == "find":
            want.discard("--verify-hashes")  # inspect's only
        assert want <= flags, (command, want - flags)


# -- a declared field is a build.toml key ----------------------------------------------------


def test_build_toml_keys_are_the_declared_fields():
    assert set(section_keys("read")) == {"text_key", "set_name_key", "on_error", "max_line_bytes"}
    assert set(section_keys("order")) == {
        "preset", "seq_length", "global_batch", "train_iters", "seed", "epochs"
    }  # fmt: skip
    assert "tokenizer" in section_keys("tokenize") and "tokenizer_sha256" not in section_keys(
        "tokenize"
    )
    assert set(section_keys("dedup")) == {"preset"} | set(toml_keys(DedupConfig))
    assert "workers" not in section_keys("dedup")  # one top-level workers
    assert job_config.TOP_KEYS == {
        "input", "out", "variant", "preset", "workers", "engine", "ray_address"
    }  # fmt: skip


def test_a_field_added_to_a_stage_config_is_a_build_toml_key(tmp_path, monkeypatch):
    @dataclass(frozen=True)
    class PreshufflePlus:
        shard_size: int | None = opt(None, help="bytes per shard")
        stripe: int = opt(1, help="new: shards written side by side")

    monkeypatch.setitem(SECTIONS, "preshuffle", (PreshufflePlus,))
    cfg = tmp_path / "b.toml"
    cfg.write_text("[preshuffle]\nstripe = 4\n")
    config = resolve_build_config(config_file=str(cfg))
    assert config.preshuffle == {"stripe": 4}
    assert "stripe = 4" in config.to_toml()


def test_unknown_build_toml_key_names_the_allowed_keys(tmp_path):
    cfg = tmp_path / "b.toml"
    cfg.write_text("[read]\ntext_kee = 'body'\n")
    with pytest.raises(ConfigError) as e:
        load_config_file(cfg)
    msg = str(e.value)
    assert "unknown key(s) text_kee in [read]" in msg
    assert "allowed: max_line_bytes, on_error, set_name_key, text_key." in msg
    cfg.write_text("[tokenize]\ntokenizer_sha256 = 'ab'\n")  # derived from the file: not a key
    with pytest.raises(ConfigError, match="allowed: append_eod, backend, batch_chars"):
        load_config_file(cfg)
    cfg.write_text("colour = 1\n")
    with pytest.raises(ConfigError, match="allowed: dedup, engine, input, order, out"):
        load_config_file(cfg)


@pytest.mark.parametrize(
    "text,message",
    [
        ("workers = 'two'", "workers = 'two' must be an integer"),
        ("variant = 'all'", "variant = 'all' is not allowed; allowed: standard, deduped, both"),
        ("out = 3", "out = 3 must be a string"),
    ],
)
def test_top_level_values_are_checked_against_build_config(tmp_path, text, message):
    cfg = tmp_path / "b.toml"
    cfg.write_text(text + "\n")
    with pytest.raises(ConfigError) as e:
        load_config_file(cfg)
    assert f"{cfg}: {message}" in str(e.value)


def test_unknown_key_exits_2_from_the_cli(tmp_path, capsys):
    cfg = tmp_path / "b.toml"
    cfg.write_text("[dedup]\nthreshhold = 0.9\n")
    assert main(["build", "--config", str(cfg), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) threshhold in [dedup]" in err and "threshold" in err


@pytest.mark.parametrize(
    "table,text,message",
    [
        ("order", "seed = '7'", "[order]: seed = '7' must be an integer"),
        ("dedup", "threshold = 'high'", "[dedup]: threshold = 'high' must be a number"),
        ("tokenize", "append_eod = 1", "[tokenize]: append_eod = 1 must be true or false"),
        ("read", "on_error = 'ignore'", "on_error = 'ignore' is not allowed; allowed: raise, skip"),
        ("preshuffle", "shard_size = 1.5", "shard_size = 1.5 must be an integer"),
    ],
)
def test_build_toml_values_are_checked_against_the_declared_types(tmp_path, table, text, message):
    cfg = tmp_path / "b.toml"
    cfg.write_text(f"[{table}]\n{text}\n")
    with pytest.raises(ConfigError) as e:
        resolve_build_config(config_file=str(cfg))
    assert message in str(e.value)


def test_sections_are_read_only_validated_mappings():
    s = Section("order", {"seed": 3})
    assert s == {"seed": 3} and dict(s) == {"seed": 3} and s.get("epochs") is None
    with pytest.raises(TypeError):
        s["seed"] = 4  # type: ignore[index]
    assert s.config_kwargs(OrderConfig) == {"seed": 3}
    assert Section("tokenize", {"tokenizer": "/t.json"}).config_kwargs(TokenizeConfig) == {
        "tokenizer_path": "/t.json"
    }
    with pytest.raises(ConfigError, match="allowed: read, dedup, tokenize, order, preshuffle"):
        Section("report")
    # a BuildConfig made with plain dicts holds sections
    b = BuildConfig(inputs=("a",), out="o", order={"seed": 1})
    assert isinstance(b.order, Section) and isinstance(b.read, Section)


# -- build.toml round trip -----------------------------------------------------------------------


def test_build_toml_round_trip_every_table(tmp_path):
    tok = tmp_path / "tok.json"
    tok.write_text("{}")
    flags = {
        "read": {"text_key": "body", "on_error": "raise", "max_line_bytes": 1000},
        "dedup": {"threshold": 0.9, "num_perm": 64},
        "tokenize": {"tokenizer": str(tok), "append_eod": False},
        "order": {"seq_length": 128, "global_batch": 4, "train_iters": 9, "seed": 3},
        "preshuffle": {"shard_size": 4096},
    }
    first = resolve_build_config(
        inputs=[str(tmp_path / "in")], out=str(tmp_path / "out"), variant="standard",
        preset="pythia", workers=2, overrides=flags,
    )  # fmt: skip
    text = first.to_toml()
    parsed = tomllib.loads(text)
    for table, values in flags.items():
        for k, v in values.items():
            assert parsed[table][k] == v, (table, k)
    cfg = tmp_path / "build.toml"
    cfg.write_text(text, encoding="utf-8")
    again = resolve_build_config(config_file=str(cfg))
    assert again.to_toml() == text
    for table in SECTIONS:
        assert getattr(again, table) == getattr(first, table), table
    assert (again.inputs, again.out, again.variant, again.preset, again.workers) == (
        first.inputs, first.out, first.variant, first.preset, first.workers,
    )  # fmt: skip
    assert again.fingerprint() == first.fingerprint()


# -- presets -------------------------------------------------------------------------------------


def test_every_shipped_preset_is_valid():
    checked = check_presets()
    assert {"order.pythia", "order.sample", "dedup.pythia-0.87", "build.pythia"} <= set(checked)


@pytest.mark.parametrize(
    "presets,message",
    [
        ({"order": {"x": {"seq_len": 5}}}, "unknown key(s) seq_len in order preset 'x'; allowed:"),
        ({"dedup": {"x": {"workers": 2}}}, "unknown key(s) workers in dedup preset 'x'"),
        ({"order": {"x": {"seed": -1}}}, "order seed -1 is out of range"),
        ({"build": {"x": {"order": "pythia"}}}, "build preset 'x' names no dedup preset"),
        (
            {"build": {"x": {"order": "nope", "dedup": "d"}}},
            "order = 'nope' names no [order.NAME] preset",
        ),
        ({"build": {"x": {"order": "o", "dedup": "d", "tokenize": "t"}}}, "allowed: dedup, order"),
    ],
)
def test_a_bad_preset_is_a_config_error_naming_the_allowed_set(monkeypatch, presets, message):
    good = {"order": {"o": {}}, "dedup": {"d": {}}, "build": {}}
    for section, table in presets.items():
        good[section] = {**good[section], **table}
    monkeypatch.setattr("pipeline.presets._load", lambda: good)
    with pytest.raises(ConfigError) as e:
        check_presets()
    assert message in str(e.value)


def test_check_keys_message():
    with pytest.raises(ConfigError) as e:
        check_keys({"a": 1, "zz": 2}, {"a", "b"}, "[t]", "Fix it.", prefix="f.toml: ")
    assert str(e.value) == "f.toml: unknown key(s) zz in [t]; allowed: a, b. Fix it."
