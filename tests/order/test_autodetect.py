"""`pile inspect` / `pile preshuffle` without order flags: the config recorded with the data."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest

from pipeline.cli.main import main
from pipeline.errors import ConfigError
from pipeline.manifest import write_manifest
from pipeline.order.config import OrderConfig
from pipeline.order.document import DocumentData
from pipeline.order.mapfiles import find_manifests, index_map_paths
from pipeline.order.preshuffle import preshuffled_index_chunks
from pipeline.order.recorded import recorded_config
from pipeline.order.stage import run_order
from pipeline.shards.mmidx import MMIDXDataset
from tests.order.helpers import run_cli

FLAGS = ["--seq-length", "16", "--global-batch", "4", "--train-iters", "25", "--seed", "1234"]
CFG = OrderConfig(seq_length=16, global_batch=4, train_iters=25, seed=1234)
# a second config for the same data: other seed and batch, same seq_length
FLAGS_B = ["--seq-length", "16", "--global-batch", "2", "--train-iters", "30", "--seed", "9"]
CFG_B = OrderConfig(seq_length=16, global_batch=2, train_iters=30, seed=9)
RECORDED = "default: the config recorded with the data, else pythia"


@pytest.fixture
def info_logs(caplog):
    caplog.set_level(logging.DEBUG, logger="pipeline")  # inspect says it at DEBUG (-v)
    return caplog


def step_tokens(out: str) -> np.ndarray:
    return np.array([s["tokens"] for s in json.loads(out)["samples"]])


# ---- document-level data: the only index-map manifest -------------------------------------


def test_document_level_uses_the_only_index_maps(ds, capsys, info_logs):
    run_order(ds, CFG)
    capsys.readouterr()  # run_order's own log lines
    # inspect says which config it uses at DEBUG (-v): a normal run prints nothing on stderr
    rc, out, err = run_cli(capsys, "inspect", ds, "--step", "3", "--format", "json")
    assert rc == 0 and err == "", err
    assert "order config" not in info_logs.text
    rc, out, err = run_cli(capsys, "-v", "inspect", ds, "--step", "3", "--format", "json")
    assert rc == 0, err
    rep = json.loads(out)
    assert rep["global_batch"] == 4 and rep["seq_length"] == 16
    assert np.array_equal(step_tokens(out), DocumentData(ds, CFG).step(3))
    manifest = index_map_paths(ds, CFG)["manifest"]
    assert f"order config recorded in {manifest}: {' '.join(FLAGS)}" in info_logs.text
    # step 25 is past the recorded 25 train_iters: the recorded config bounds the steps
    rc, _, err = run_cli(capsys, "-v", "inspect", ds, "--step", "25")
    assert rc == 2 and "steps 0..24" in err


def test_document_level_maps_dir(ds, capsys, tmp_path):
    maps = tmp_path / "maps"
    run_order(ds, CFG_B, maps)
    rc, out, err = run_cli(
        capsys, "inspect", ds, "--step", "5", "--format", "json", "--maps-dir", maps
    )
    assert rc == 0, err
    assert np.array_equal(step_tokens(out), DocumentData(ds, CFG_B, maps).step(5))
    # without --maps-dir nothing is recorded next to the data: pythia, and its missing maps
    rc, _, err = run_cli(capsys, "-v", "inspect", ds, "--step", "5")
    assert rc == 3 and "not found" in err and "--preset pythia" in err


def test_other_datasets_maps_in_the_same_directory_are_ignored(ds, make_dataset, capsys):
    other, _ = make_dataset([30] * 50, name="d_text_document2")
    run_order(ds, CFG)
    run_order(other, CFG_B)
    assert [t for t, _ in find_manifests(ds)] == [CFG.map_tag]
    assert [t for t, _ in find_manifests(other)] == [CFG_B.map_tag]
    assert recorded_config(ds).config == CFG and recorded_config(other).config == CFG_B
    rc, out, _ = run_cli(capsys, "-v", "inspect", other, "--step", "2", "--format", "json")
    assert rc == 0 and np.array_equal(step_tokens(out), DocumentData(other, CFG_B).step(2))


def test_several_index_maps_is_an_error_listing_them(ds, capsys, tmp_path):
    run_order(ds, CFG)
    run_order(ds, CFG_B)
    rc, _, err = run_cli(capsys, "-v", "inspect", ds, "--step", "0")
    assert rc == 2 and "has index maps for 2 order configs" in err
    assert f"101ns_16sl_1234s ({' '.join(FLAGS)})" in err
    assert f"61ns_16sl_9s ({' '.join(FLAGS_B)})" in err
    assert "Pick one by passing its flags" in err
    rc, _, err = run_cli(capsys, "preshuffle", ds, "--out-dir", tmp_path / "p")
    assert rc == 2 and "has index maps for 2 order configs" in err
    assert not (tmp_path / "p" / "document.idx").exists()
    with pytest.raises(ConfigError, match="2 order configs"):
        recorded_config(ds)


def test_explicit_flags_pick_one_of_several(ds, capsys, info_logs):
    run_order(ds, CFG)
    run_order(ds, CFG_B)
    rc, out, err = run_cli(capsys, "-v", "inspect", ds, "--step", "7", "--format", "json", *FLAGS_B)
    assert rc == 0, err
    assert np.array_equal(step_tokens(out), DocumentData(ds, CFG_B).step(7))
    assert f"order config: preset pythia with {' '.join(FLAGS_B)} ->" in info_logs.text


def test_explicit_preset_wins_over_recorded_maps(ds, capsys, info_logs):
    run_order(ds, CFG)
    rc, _, err = run_cli(capsys, "-v", "inspect", ds, "--step", "0", "--preset", "sample")
    assert rc == 2 and "no index maps for 772ns_2048sl_1234s" in err
    assert "different config: 101ns_16sl_1234s" in err
    assert "order config: preset sample -> --seq-length 2048 --global-batch 8" in info_logs.text
    # one flag alone also disables detection (preset pythia + that flag)
    rc, _, err = run_cli(capsys, "-v", "inspect", ds, "--step", "0", "--seed", "1234")
    assert rc == 2 and "no index maps for 147164160ns_2048sl_1234s" in err


def test_maps_without_manifest_keep_the_pythia_error(ds, capsys, info_logs):
    run_order(ds, CFG)
    index_map_paths(ds, CFG)["manifest"].unlink()  # like maps written by gpt-neox itself
    rc, _, err = run_cli(capsys, "-v", "inspect", ds, "--step", "0")
    assert rc == 2 and "no index maps for 147164160ns_2048sl_1234s" in err
    assert "found maps built with a different config: 101ns_16sl_1234s" in err
    assert f"no order config recorded with {ds}; using preset pythia" in info_logs.text


def test_damaged_recorded_config(ds, capsys):
    run_order(ds, CFG)
    path = index_map_paths(ds, CFG)["manifest"]
    write_manifest(path, kind="index-maps", config_fingerprint="0" * 64, files=[],
                   config={"seq_length": 16, "global_batch": 4, "train_iters": 25})  # fmt: skip
    rc, _, err = run_cli(capsys, "-v", "inspect", ds, "--step", "0")
    assert rc == 4 and "recorded config lacks seed" in err and "--seed N" in err
    write_manifest(path, kind="index-maps", config_fingerprint="0" * 64, files=[],
                   config={"seq_length": 1, "global_batch": 4, "train_iters": 25, "seed": 1})  # fmt: skip
    rc, _, err = run_cli(capsys, "-v", "inspect", ds, "--step", "0")
    assert rc == 4 and "invalid recorded order config" in err and "seq_length 1" in err
    # explicit flags skip the detection; the maps' own manifest check still applies
    rc, _, err = run_cli(capsys, "-v", "inspect", ds, "--step", "0", *FLAGS)
    assert rc == 2 and "maps were built with seq_length=1, requested 16" in err


# ---- preshuffle: same bytes as with explicit flags ----------------------------------------


def test_preshuffle_uses_the_recorded_maps(ds, capsys, tmp_path, info_logs):
    run_order(ds, CFG)
    auto, explicit = tmp_path / "auto", tmp_path / "explicit"
    rc, out, err = run_cli(capsys, "preshuffle", ds, "--out-dir", auto, "--shard-size", "1k")
    assert rc == 0 and "100 samples of 17 tokens (25 steps" in out, err
    assert "order config recorded in" in info_logs.text
    rc, _, _ = run_cli(
        capsys, "preshuffle", ds, "--out-dir", explicit, "--shard-size", "1k", *FLAGS
    )
    assert rc == 0
    names = sorted(p.name for p in auto.iterdir())
    assert names == sorted(p.name for p in explicit.iterdir())
    assert "document-00003-of-00003.bin" in names
    for n in names:
        if n.endswith((".idx", ".bin")):
            assert (auto / n).read_bytes() == (explicit / n).read_bytes(), n
    ma, me = (json.loads((d / "document.manifest.json").read_text()) for d in (auto, explicit))
    assert ma["config"] == me["config"] and ma["files"] == me["files"]


# ---- pre-shuffled data: document.manifest.json ----------------------------------------------


@pytest.mark.parametrize("where", ["dir", "prefix", "idx"])
def test_preshuffled_uses_its_manifest(ds, capsys, tmp_path, info_logs, where):
    run_order(ds, CFG_B)
    pre = tmp_path / "pre"
    assert main(["preshuffle", str(ds), "--out-dir", str(pre), *FLAGS_B]) == 0
    # a second set of maps next to the source does not matter: the manifest records the config
    run_order(ds, CFG)
    capsys.readouterr()
    data = {"dir": pre, "prefix": pre / "document", "idx": pre / "document.idx"}[where]
    rc, out, err = run_cli(capsys, "-v", "inspect", data, "--step", "11", "--format", "json",
                           "--provenance")  # fmt: skip
    assert rc == 0, err
    rep = json.loads(out)
    doc = DocumentData(ds, CFG_B)
    assert rep["form"] == "preshuffled" and rep["global_batch"] == 2
    assert np.array_equal(step_tokens(out), doc.step(11))
    assert rep["samples"][1]["provenance"] == doc.provenance(np.array([23]))[0]
    assert f"order config recorded in {pre / 'document.manifest.json'}" in info_logs.text


def test_preshuffled_explicit_global_batch_wins(ds, capsys, tmp_path):
    run_order(ds, CFG)
    pre = tmp_path / "pre"
    assert main(["preshuffle", str(ds), "--out-dir", str(pre), "--no-shard", *FLAGS]) == 0
    capsys.readouterr()
    rc, out, err = run_cli(capsys, "-v", "inspect", pre, "--step", "3", "--format", "json",
                           "--global-batch", "5", "--seq-length", "16")  # fmt: skip
    assert rc == 0, err
    rep = json.loads(out)
    assert rep["global_batch"] == 5 and rep["samples_range"] == [15, 20]
    rows = np.stack([MMIDXDataset(pre / "document").get(g) for g in range(15, 20)])
    assert np.array_equal(step_tokens(out), rows)
    assert np.array_equal(rows[:1], DocumentData(ds, CFG).samples(np.array([15])))


def test_preshuffled_without_manifest_defaults_to_pythia(tmp_path, capsys, info_logs):
    """EleutherAI's published data has no manifest: global_batch 1024 of the pythia preset."""
    pre = tmp_path / "eleuther"
    pre.mkdir()
    n, width = 2 * 1024 + 7, 5
    with open(pre / "document.idx", "wb") as f:
        for chunk in preshuffled_index_chunks(n, width, np.uint16):
            f.write(chunk)
    toks = np.random.RandomState(5).randint(0, 50277, (n, width)).astype(np.uint16)
    (pre / "document.bin").write_bytes(toks.tobytes())
    rc, out, err = run_cli(capsys, "-v", "inspect", pre, "--step", "1", "--format", "json")
    assert rc == 0, err
    rep = json.loads(out)
    assert rep["global_batch"] == 1024 and rep["seq_length"] == width - 1
    assert np.array_equal(step_tokens(out), toks[1024:2048])
    assert "using preset pythia: --seq-length 2048 --global-batch 1024" in info_logs.text
    rc, _, err = run_cli(capsys, "-v", "inspect", pre, "--step", "2")
    assert rc == 2 and "steps 0..1" in err


def test_preshuffled_without_manifest_and_small_keeps_the_batch_error(ds, capsys, tmp_path):
    run_order(ds, CFG)
    pre = tmp_path / "pre"
    assert main(["preshuffle", str(ds), "--out-dir", str(pre), *FLAGS]) == 0
    (pre / "document.manifest.json").unlink()
    rc, _, err = run_cli(capsys, "-v", "inspect", pre, "--step", "0")
    assert rc == 2 and "100 samples is less than one global batch of 1024" in err


# ---- --help ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["inspect", "preshuffle"])
def test_help_states_the_recorded_default(capsys, command):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    out = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert e.value.code == 0
    assert "--preset PRESET [order.NAME] preset of manifests/presets.toml" in out
    assert (
        f"({RECORDED})" in out
        and "(default: None)" not in out.split("training order (gpt-neox):")[1]
    )
    # (preshuffle's --doc-idx does default to pythia; it is not an order flag)
    assert "(default: pythia)" not in out.split("training order (gpt-neox):")[1]


def test_order_help_keeps_the_pythia_default(capsys):
    with pytest.raises(SystemExit) as e:
        main(["order", "--help"])
    out = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert e.value.code == 0 and "(default: pythia)" in out and RECORDED not in out
