"""Error branches found by QA: incomplete maps, exact rebuild commands, negative steps/samples,
a directory of datasets passed as DATA, and a .bin that does not match its .idx."""

from __future__ import annotations

import shlex

import numpy as np
import pytest

from pipeline.cli.main import main
from pipeline.errors import ConfigError, InputError, IntegrityError
from pipeline.order.config import OrderConfig
from pipeline.order.data import open_data, resolve_data
from pipeline.order.document import DocumentData
from pipeline.order.inspect import save_steps_npy, step_report
from pipeline.order.mapfiles import index_map_paths, load_order
from pipeline.order.preshuffle import run_preshuffle
from pipeline.order.stage import order_command, run_order
from tests.order.helpers import run_cli

CFG = OrderConfig(seq_length=16, global_batch=4, train_iters=25, seed=1234)
CFG_FLAGS = "--seq-length 16 --global-batch 4 --train-iters 25 --seed 1234"


# ---- 1. missing map files: integrity error, the files named, the exact rebuild command --------


def test_order_command_uses_flags_or_the_matching_preset(tmp_path):
    assert order_command("d/x", CFG) == f"pile order d/x {CFG_FLAGS}"
    assert (
        order_command("d/x", OrderConfig.from_preset("sample")) == "pile order d/x --preset sample"
    )
    assert order_command("d/x", OrderConfig()) == "pile order d/x --preset pythia"
    cmd = order_command(tmp_path / "a b", CFG, tmp_path / "maps dir")
    assert shlex.split(cmd)[2] == str(tmp_path / "a b")
    assert shlex.split(cmd)[-2:] == ["--out-dir", str(tmp_path / "maps dir")]


def test_incomplete_maps_are_an_integrity_error(ds, capsys):
    run_order(ds, CFG)
    want = DocumentData(ds, CFG).step(0)
    paths = index_map_paths(ds, CFG)
    paths["sample_idx"].unlink()
    with pytest.raises(IntegrityError) as e:
        load_order(ds, CFG)
    msg = str(e.value)
    assert "incomplete" in msg and paths["sample_idx"].name in msg
    assert "different config" not in msg
    assert f"`pile order {ds} {CFG_FLAGS}`" in msg
    # through the CLI with no flags (config recorded in the manifest): exit 4, same fix
    rc, _, err = run_cli(capsys, "inspect", ds, "--step", "0")
    assert rc == 4 and "incomplete" in err and f"pile order {ds} {CFG_FLAGS}" in err
    # the suggested command really rebuilds THIS config
    fix = err.split("Rebuild them with `")[1].split("`")[0]
    assert main(shlex.split(fix)[1:]) == 0
    assert np.array_equal(DocumentData(ds, CFG).step(0), want)
    rc, _, _ = run_cli(capsys, "inspect", ds, "--step", "0")
    assert rc == 0


def test_all_three_maps_gone_but_manifest_left_is_incomplete(ds):
    run_order(ds, CFG)
    paths = index_map_paths(ds, CFG)
    for r in ("doc_idx", "sample_idx", "shuffle_idx", "doc_epoch"):
        paths[r].unlink()
    with pytest.raises(IntegrityError, match=r"incomplete: .*_doc_idx\.npy, .*present: manifest"):
        load_order(ds, CFG)


def test_maps_for_other_config_list_their_flags_and_the_exact_command(ds):
    run_order(ds, CFG)
    other = OrderConfig(seq_length=16, global_batch=4, train_iters=25, seed=7)
    with pytest.raises(ConfigError) as e:
        load_order(ds, other)
    msg = str(e.value)
    assert f"different config: 101ns_16sl_1234s ({CFG_FLAGS})" in msg
    assert (
        "101ns_16sl_7s" not in msg.split("different config:")[1]
    )  # the requested tag is not "other"
    assert f"`pile order {ds} --seq-length 16 --global-batch 4 --train-iters 25 --seed 7`" in msg


def test_no_maps_at_all_gives_the_exact_command(ds):
    with pytest.raises(InputError, match="not found") as e:
        load_order(ds, CFG)
    assert f"`pile order {ds} {CFG_FLAGS}`" in str(e.value)


def test_dataset_changed_gives_the_exact_command(ds, make_dataset):
    run_order(ds, CFG)
    make_dataset([33] * 60)  # same prefix, other data
    with pytest.raises(IntegrityError, match="built from a different dataset") as e:
        load_order(ds, CFG)
    assert str(e.value).endswith(f"`pile order {ds} {CFG_FLAGS}`.")


def test_unreadable_map_gives_the_exact_command(ds):
    run_order(ds, CFG)
    index_map_paths(ds, CFG)["shuffle_idx"].write_bytes(b"not a npy")
    with pytest.raises(IntegrityError, match="not a readable .npy") as e:
        load_order(ds, CFG)
    assert f"`pile order {ds} {CFG_FLAGS}`" in str(e.value)


def test_damaged_source_does_not_hide_preshuffled_tokens(ds, tmp_path, capsys):
    run_order(ds, CFG)
    run_preshuffle(ds, CFG, tmp_path / "pre", shard_size=None)
    index_map_paths(ds, CFG)["sample_idx"].unlink()
    data = open_data(tmp_path / "pre", CFG)
    assert data.step(0).shape == (4, 17)
    with pytest.raises(InputError, match="pass --source .*incomplete"):
        data.provenance(np.array([0]))


# ---- 2. negative numbers are their own error ----------------------------------------------


def test_negative_step_is_not_beyond_the_end(ds, tmp_path):
    run_order(ds, CFG)
    data = DocumentData(ds, CFG)
    for call in (lambda: data.step(-1), lambda: data.steps(-1, 2)):
        with pytest.raises(ConfigError, match=r"step -1 must be >= 0") as e:
            call()
        assert "beyond" not in str(e.value)
    with pytest.raises(ConfigError, match=r"step -2 must be >= 0"):
        save_steps_npy(data, -2, 1, tmp_path / "x.npy")
    assert not (tmp_path / "x.npy").exists()
    with pytest.raises(ConfigError, match=r"--sample -1 must be >= 0"):
        step_report(data, 0, sample=-1)
    run_preshuffle(ds, CFG, tmp_path / "pre", shard_size=None)
    with pytest.raises(ConfigError, match=r"step -3 must be >= 0"):
        open_data(tmp_path / "pre", CFG).step(-3)


@pytest.mark.parametrize(
    "argv, want",
    [
        (["--step", "-1"], "--step -1 must be >= 0"),
        (["--step", "0", "--sample", "-1"], "--sample -1 must be >= 0"),
        (["--step", "0", "--sample", "-1", "--format", "npy"], "--sample -1 must be >= 0"),
        (["--start-step", "-1", "--end-step", "2"], "--start-step -1 must be >= 0"),
        (["--start-step", "0", "--end-step", "-5"], "--end-step -5 must be >= 0"),
        (["--start-step", "3", "--end-step", "1"], "--end-step 1 is before --start-step 3"),
    ],
)
def test_cli_negative_and_reversed_numbers(ds, capsys, tmp_path, argv, want):
    run_order(ds, CFG)
    rc, _, err = run_cli(capsys, "inspect", ds, *argv, "--save-path", tmp_path)
    assert rc == 2 and want in err and "beyond" not in err


def test_cli_order_flags_out_of_range(ds, capsys):
    rc, _, err = run_cli(capsys, "inspect", ds, "--step", "0", "--global-batch", "0")
    assert rc == 2 and "global_batch 0 must be >= 1" in err
    rc, _, err = run_cli(capsys, "inspect", ds, "--step", "0", "--train-iters", "-3")
    assert rc == 2 and "train_iters -3 must be >= 1" in err


# ---- 3. a directory that holds datasets --------------------------------------------------


def test_output_directory_lists_the_datasets_inside(make_dataset, tmp_path, capsys):
    out = tmp_path / "pile_out"
    std, _ = make_dataset([20] * 40, name="pile_text_document", directory=out / "standard")
    ded, _ = make_dataset([20] * 30, name="pile_0.87_deduped_text_document",
                          directory=out / "deduped")  # fmt: skip
    for prefix, variant in ((std, "standard"), (ded, "deduped")):
        run_order(prefix, CFG)
        run_preshuffle(prefix, CFG, out / variant / "preshuffled", shard_size=None)
    (out / "_state").mkdir()
    (out / "_state" / "junk.idx").write_bytes(b"")  # skipped: not a dataset directory
    want = [
        f"{out}/deduped/pile_0.87_deduped_text_document",
        f"{out}/deduped/preshuffled",
        f"{out}/standard/pile_text_document",
        f"{out}/standard/preshuffled",
    ]
    with pytest.raises(InputError) as e:
        resolve_data(out)
    assert ", ".join(want) in str(e.value) and "junk" not in str(e.value)
    rc, _, err = run_cli(capsys, "inspect", out, "--step", "0")
    assert rc == 3 and ", ".join(want) in err
    # each listed path is a valid DATA argument
    for w in want:
        assert resolve_data(w)[0].startswith(w)


def test_directory_with_two_datasets_lists_both(make_dataset, tmp_path):
    a, _ = make_dataset([5] * 10, name="a_text_document")
    b, _ = make_dataset([5] * 10, name="b_text_document")
    with pytest.raises(InputError, match=f"{a}, {b}"):
        resolve_data(tmp_path)


def test_directory_without_datasets_says_what_to_pass(tmp_path):
    (tmp_path / "x" / "y").mkdir(parents=True)
    with pytest.raises(InputError, match="none within 3 levels .* pass a token dataset prefix"):
        resolve_data(tmp_path)


# ---- 4. a .bin that does not match its .idx ------------------------------------------------


def test_inspect_refuses_bin_with_trailing_bytes(ds, capsys):
    run_order(ds, CFG)
    with open(str(ds) + ".bin", "ab") as f:
        f.write(b"\x01\x02\x03\x04")
    rc, _, err = run_cli(capsys, "inspect", ds, "--step", "0")
    assert rc == 4 and f"{ds}.bin" in err and f"{ds}.idx" in err
    assert "4 extra trailing bytes" in err
