"""Flags derived from the config declarations read back into the same configs (and the same
fingerprints) as the hand-written argparse code they replace."""

from __future__ import annotations

import argparse

import pytest

from pipeline.cli.common import (
    config_from_args,
    config_values,
    explicit_order_args,
    order_config_and_origin,
    read_config_from_args,
)
from pipeline.cli.main import build_parser
from pipeline.dedup.config import DedupConfig
from pipeline.errors import ConfigError
from pipeline.order.config import OrderConfig
from pipeline.read.config import ReadConfig
from pipeline.tokenize.config import TokenizeConfig

# sha256 fingerprints recorded in manifests by the code before the declarations (they must not
# change: completion records and `pile verify` compare them)
FINGERPRINTS = {
    "dedup pythia-0.87": "b284e4f5ba0d24325ff470337c32d8cf196f3384723baa6cc3d500514afbc230",
    "order pythia": "228dd4e29549e30d90e94265fb92d421cab513746520f392d378c4e11384e4e3",
    "order sample": "df7c72168359b9829bad914d92d413c10a3ef25e39665cf50ce72da1998cd3ed",
    "tokenize": "0efe1ef70d46148b9e36065de0d2b2bf0af1840a8a9fb219cf8bb54e0714da3d",
    "read": "d4430af5595a58a038ebb53e7e1b4c29029d62743f32f2534ae093e2d101a1fe",
    "read body 1000": "32e6063d69856ccdfee6ec40e649c1201cd0f0c54df58f85ab585e73eed48a0a",
}


def _parse(command: str, argv: list[str]) -> argparse.Namespace:
    return build_parser([command]).parse_args([command, *argv])


def test_default_flags_give_the_recorded_fingerprints():
    dedup = _parse("dedup", ["in", "--out", "o"])
    assert (
        config_from_args(DedupConfig, dedup, preset=dedup.preset).fingerprint()
        == (FINGERPRINTS["dedup pythia-0.87"])
    )
    for preset in ("pythia", "sample"):
        args = _parse("order", ["p", "--preset", preset])
        assert (
            config_from_args(OrderConfig, args, preset=args.preset).fingerprint()
            == (FINGERPRINTS[f"order {preset}"])
        )
    tok = _parse("tokenize", ["in", "--out", "o", "--prefix", "p"])
    values = config_values(TokenizeConfig, tok)
    config = TokenizeConfig.for_tokenizer(values.pop("tokenizer_path", None), **values)
    assert config.fingerprint() == FINGERPRINTS["tokenize"]
    assert read_config_from_args(tok, "o").fingerprint() == FINGERPRINTS["read"]
    args = _parse("stats", ["--text-key", "body", "--max-line-bytes", "1000"])
    assert read_config_from_args(args).fingerprint() == FINGERPRINTS["read body 1000"]


def test_every_dedup_flag_reaches_the_config():
    args = _parse(
        "dedup",
        ["in", "--out", "o", "--threshold", "0.8", "--num-perm", "64", "--bands", "8", "--rows",
         "8", "--ngram", "3", "--seed", "9", "--verify-sigmas", "1.5", "--verify", "estimate",
         "--cluster-rule", "component", "--partitions", "8", "--keep-intermediate",
         "--workers", "2"],
    )  # fmt: skip
    got = config_from_args(DedupConfig, args, preset=args.preset)
    want = DedupConfig.from_preset(
        "pythia-0.87", threshold=0.8, num_perm=64, bands=8, rows=8, ngram=3, seed=9,
        verify_sigmas=1.5, verify="estimate", cluster_rule="component", partitions=8,
        keep_intermediate=True, workers=2,
    )  # fmt: skip
    assert got == want
    no_verify = _parse("dedup", ["in", "--out", "o", "--no-verify"])
    assert config_from_args(DedupConfig, no_verify, preset=None).verify == "none"
    plain = _parse("dedup", ["in", "--out", "o"])
    assert config_values(DedupConfig, plain) == {"workers": 1}  # the rest: from the preset


def test_every_tokenize_flag_reaches_the_config(tmp_path):
    tok = tmp_path / "t.json"
    tok.write_text("{}")
    args = _parse(
        "tokenize",
        ["in", "--out", "o", "--prefix", "p", "--no-append-eod", "--backend", "hf",
         "--batch-size", "7", "--tokenizer", str(tok)],
    )  # fmt: skip
    assert config_values(TokenizeConfig, args) == {
        "append_eod": False, "tokenizer_path": str(tok), "backend": "hf", "batch_size": 7,
    }  # fmt: skip


def test_reader_flags_and_the_quarantine_default():
    args = _parse("dedup", ["in", "--out", "o", "--on-error", "skip", "--set-name-key", "src"])
    assert read_config_from_args(args, "o") == ReadConfig(
        set_name_key="src", on_error="skip", quarantine_dir="o/quarantine"
    )
    args = _parse("stats", ["--on-error", "skip", "--quarantine", "q"])
    assert read_config_from_args(args).quarantine_dir == "q"
    assert read_config_from_args(_parse("stats", ["--on-error", "skip"])).quarantine_dir == (
        "quarantine"
    )


def test_build_override_flags_map_to_build_toml_keys():
    from pipeline.cli.commands.build import _overrides

    args = _parse(
        "build",
        ["--text-key", "body", "--set-name-key", "s", "--on-error", "skip", "--max-line-bytes",
         "99", "--threshold", "0.9", "--num-perm", "64", "--tokenizer", "t.json",
         "--no-append-eod", "--seq-length", "16", "--global-batch", "2", "--train-iters", "3",
         "--seed", "4", "--shard-size", "1000"],
    )  # fmt: skip
    assert _overrides(args) == {
        "read": {"text_key": "body", "set_name_key": "s", "on_error": "skip",
                 "max_line_bytes": 99},
        "dedup": {"threshold": 0.9, "num_perm": 64},
        "tokenize": {"tokenizer": "t.json", "append_eod": False},
        "order": {"seq_length": 16, "global_batch": 2, "train_iters": 3, "epochs": None,
                  "seed": 4},
        "preshuffle": {"shard_size": 1000},
    }  # fmt: skip
    none = _overrides(_parse("build", []))
    assert all(v is None for table in none.values() for v in table.values())
    assert (args.workers, args.input, args.preset) == (None, None, None)


@pytest.mark.parametrize("command", ["inspect", "preshuffle", "exposure", "find", "contamination"])
def test_recorded_order_options_are_absent_unless_given(command):
    positional = ["d", "--queries", "q"] if command == "contamination" else ["d"]
    if command == "preshuffle":
        positional = ["d", "--out-dir", "o"]
    args = _parse(command, positional)
    assert not explicit_order_args(args)
    assert not any(hasattr(args, k) for k in ("seq_length", "global_batch", "train_iters", "seed"))
    args = _parse(command, [*positional, "--seed", "5"])
    assert explicit_order_args(args)
    config, origin = order_config_and_origin(args, "d")
    assert config == OrderConfig.from_preset("pythia", seed=5)
    assert origin.startswith("order config: preset pythia with --seed 5 ->")


def test_order_flags_override_the_preset_and_a_bad_value_is_a_config_error():
    args = _parse("order", ["p", "--preset", "sample", "--global-batch", "4"])
    assert config_from_args(OrderConfig, args, preset=args.preset) == OrderConfig.from_preset(
        "sample", global_batch=4
    )
    with pytest.raises(ConfigError, match="seq_length 1 is out of range"):
        config_from_args(OrderConfig, _parse("order", ["p", "--seq-length", "1"]), preset="pythia")
