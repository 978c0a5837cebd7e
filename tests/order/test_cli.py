"""`pile order` / `pile preshuffle` / `pile inspect`: in-process CLI, outputs and error branches."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from pipeline.cli.main import main
from pipeline.order.config import OrderConfig
from pipeline.order.document import DocumentData
from tests.order.helpers import run_cli

FLAGS = ["--preset", "sample", "--seq-length", "16", "--global-batch", "4", "--train-iters", "25"]
CFG = OrderConfig(seq_length=16, global_batch=4, train_iters=25, seed=1234)


def test_order_then_inspect_text_json_npy(ds, capsys, tmp_path):
    rc, out, _ = run_cli(capsys, "order", str(ds), *FLAGS)
    assert rc == 0 and "_train_0_indexmap_101ns_16sl_1234s_doc_idx.npy" in out
    want = DocumentData(ds, CFG).step(3)

    rc, out, _ = run_cli(capsys, "inspect", str(ds), "--step", "3", "--format", "text", *FLAGS)
    assert rc == 0
    lines = [ln for ln in out.splitlines() if ln.startswith("  tokens: ")]
    got = np.array([[int(t) for t in ln.split()[1:]] for ln in lines])
    assert np.array_equal(got, want)

    rc, out, _ = run_cli(capsys, "inspect", str(ds), "--step", "3", "--sample", "2",
                         "--provenance", "--format", "json", *FLAGS)  # fmt: skip
    rep = json.loads(out)
    assert rc == 0 and rep["samples"][0]["tokens"] == want[2].tolist()
    assert rep["samples"][0]["sample"] == 14 and rep["samples"][0]["provenance"][0]["pile_set_name"]

    rc, _, _ = run_cli(capsys, "inspect", str(ds), "--step", "3", "--format", "npy",
                       "-o", str(tmp_path / "s3.npy"), *FLAGS)  # fmt: skip
    assert rc == 0 and np.array_equal(np.load(tmp_path / "s3.npy"), want)

    rc, _, _ = run_cli(capsys, "inspect", str(ds), "--step", "3", "--format", "json",
                       "-o", str(tmp_path / "s3.json"), *FLAGS)  # fmt: skip
    assert json.loads((tmp_path / "s3.json").read_text())["step"] == 3


def test_default_output_is_a_short_summary(ds, capsys):
    assert main(["order", str(ds), *FLAGS]) == 0
    capsys.readouterr()
    rc, out, err = run_cli(capsys, "inspect", str(ds), "--step", "3", *FLAGS)
    assert rc == 0 and err == ""  # no INFO line for a normal run
    rc, js, _ = run_cli(capsys, "inspect", str(ds), "--step", "3", "--format", "json",
                        "--decode", "--provenance", *FLAGS)  # fmt: skip
    rep = json.loads(js)
    lines = out.splitlines()
    assert lines[0].startswith(f"step 3 of {ds} (document-level): training samples 12..15, 17 ")
    for s in rep["samples"]:
        i = lines.index(f"sample {s['batch_index']} (training sample {s['sample']}): 17 tokens "
                        f"from {len(s['provenance'])} document"
                        + ("s" if len(s["provenance"]) != 1 else ""))  # fmt: skip
        for k, p in enumerate(s["provenance"][:5]):
            row = lines[i + 1 + k].split()
            took = p["sample_tokens"][1] - p["sample_tokens"][0]
            assert row[:2] == [str(took), "tokens"] and p["pile_set_name"] in lines[i + 1 + k]
            assert f"doc_id {p['doc_id']}  {p['file']}:{p['line']}" in lines[i + 1 + k]
        text = next(ln for ln in lines[i:] if ln.startswith("  text: "))
        assert text.startswith("  text: " + json.dumps(s["text"][:80], ensure_ascii=False))
    assert "--format text" in lines[-1]
    # the summary is a page, not a dump: no token ids
    assert " ".join(map(str, rep["samples"][0]["tokens"][:4])) not in out
    rc, out, _ = run_cli(capsys, "inspect", str(ds), "--step", "3", "--sample", "1", *FLAGS)
    assert rc == 0 and "sample 1 (training sample 13)" in out and "sample 0 " not in out


def test_summary_of_preshuffled_data_without_source(ds, capsys, tmp_path):
    assert main(["order", str(ds), *FLAGS]) == 0
    pre = tmp_path / "pre"
    assert main(["preshuffle", str(ds), "--out-dir", str(pre), "--no-shard", *FLAGS]) == 0
    capsys.readouterr()
    rc, out, err = run_cli(capsys, "inspect", pre, "--step", "2")
    assert rc == 0 and err == "" and "no source documents" not in out
    assert "sample 3 (training sample 11): 17 tokens from " in out
    # the recorded source dataset moved away: tokens and text still, no documents
    idx = ds.with_name(ds.name + ".idx")
    idx.rename(idx.with_suffix(".moved"))
    rc, out, err = run_cli(capsys, "inspect", pre, "--step", "2")
    assert rc == 0 and "no source documents: " in out and "--source PREFIX" in out, out
    assert "sample 3 (training sample 11): 17 tokens\n  text: " in out
    rc, _, err = run_cli(capsys, "inspect", pre, "--step", "2", "--provenance")
    assert rc == 3 and "--source PREFIX" in err


def test_preshuffle_and_range_form(ds, capsys, tmp_path):
    assert main(["order", str(ds), *FLAGS]) == 0
    pre = tmp_path / "pre"
    rc, out, _ = run_cli(
        capsys, "preshuffle", str(ds), "--out-dir", str(pre), "--shard-size", "1k", *FLAGS
    )
    assert rc == 0 and "100 samples of 17 tokens" in out
    assert (pre / "document-00000-of-00003.bin").exists()
    doc = DocumentData(ds, CFG)
    save = tmp_path / "tv"
    rc, _, _ = run_cli(capsys, "inspect", str(pre), "--start-step", "4", "--end-step", "9",
                       "--save-path", str(save), *FLAGS)  # fmt: skip
    arr = np.load(save / "indicies.npy")
    assert rc == 0 and arr.shape == (24, 17) and arr.dtype == np.uint16
    assert np.array_equal(arr, doc.steps(4, 9))
    rc, out, _ = run_cli(capsys, "inspect", str(pre), "--step", "7", "--format", "json",
                         "--provenance", *FLAGS)  # fmt: skip
    rep = json.loads(out)
    assert rc == 0 and rep["form"] == "preshuffled"
    assert [s["tokens"] for s in rep["samples"]] == doc.step(7).tolist()
    assert rep["samples"][0]["provenance"] == doc.provenance(np.array([28]))[0]
    rc, _, _ = run_cli(
        capsys, "preshuffle", str(ds), "--out-dir", str(tmp_path / "j"), "--no-shard", *FLAGS
    )
    assert rc == 0 and (tmp_path / "j" / "document.bin").stat().st_size == 100 * 17 * 2


def test_npy_to_stdout(ds, capsysbinary):
    assert main(["order", str(ds), *FLAGS]) == 0
    capsysbinary.readouterr()
    assert (
        main(
            [
                "inspect",
                str(ds),
                "--step",
                "1",
                "--sample",
                "0",
                "--format",
                "npy",
                "-o",
                "-",
                *FLAGS,
            ]
        )
        == 0
    )
    out = capsysbinary.readouterr().out
    assert np.array_equal(np.load(io.BytesIO(out)), DocumentData(ds, CFG).step(1)[0])


# ---- error branches: exit code + message --------------------------------------------------


def test_error_step_beyond_end(ds, capsys):
    main(["order", str(ds), *FLAGS])
    rc, _, err = run_cli(capsys, "inspect", str(ds), "--step", "25", *FLAGS)
    assert rc == 2 and "step 25 is beyond the end of training" in err and "0..24" in err


def test_error_missing_maps(ds, capsys):
    rc, _, err = run_cli(capsys, "inspect", str(ds), "--step", "0", *FLAGS)
    assert rc == 3 and "index maps for" in err and "not found" in err and "pile order" in err


def test_error_maps_for_other_config(ds, capsys):
    main(["order", str(ds), *FLAGS])
    rc, _, err = run_cli(capsys, "inspect", str(ds), "--step", "0", *FLAGS, "--seed", "7")
    assert rc == 2 and "built with a different config: 101ns_16sl_1234s" in err


def test_error_dataset_changed(ds, capsys, make_dataset):
    main(["order", str(ds), *FLAGS])
    make_dataset([33] * 60)  # same prefix, other data
    rc, _, err = run_cli(capsys, "inspect", str(ds), "--step", "0", *FLAGS)
    assert rc == 4 and "built from a different dataset" in err


def test_error_sample_outside_batch(ds, capsys):
    main(["order", str(ds), *FLAGS])
    rc, _, err = run_cli(capsys, "inspect", str(ds), "--step", "0", "--sample", "4", *FLAGS)
    assert rc == 2 and "--sample 4 is outside the batch" in err
    rc, _, err = run_cli(
        capsys, "inspect", str(ds), "--step", "0", "--sample", "9", "--format", "npy", *FLAGS
    )
    assert rc == 2 and "--sample 9 is outside the batch" in err


def test_error_argument_combinations(ds, capsys):
    rc, _, err = run_cli(capsys, "inspect", str(ds), *FLAGS)
    assert rc == 2 and "--step N is required" in err
    rc, _, err = run_cli(
        capsys, "inspect", str(ds), "--step", "1", "--start-step", "0", "--end-step", "1"
    )
    assert rc == 2 and "not both" in err
    rc, _, err = run_cli(capsys, "inspect", str(ds), "--start-step", "0")
    assert rc == 2 and "needs both" in err
    rc, _, err = run_cli(
        capsys, "inspect", str(ds), "--start-step", "0", "--end-step", "1", "--decode"
    )
    assert rc == 2 and "writes an .npy only" in err
    rc, _, err = run_cli(capsys, "inspect", str(ds), "--step", "0", "--format", "npy", "--decode")
    assert rc == 2 and "holds tokens only" in err


def test_error_range_end_beyond(ds, capsys, tmp_path):
    main(["order", str(ds), *FLAGS])
    rc, _, err = run_cli(capsys, "inspect", str(ds), "--start-step", "20", "--end-step", "30",
                         "--save-path", str(tmp_path), *FLAGS)  # fmt: skip
    assert rc == 2 and "step 30 is beyond the end" in err
    assert not (tmp_path / "indicies.npy").exists()


def test_error_provenance_without_source(ds, capsys, tmp_path):
    main(["order", str(ds), *FLAGS])
    main(["preshuffle", str(ds), "--out-dir", str(tmp_path / "pre"), *FLAGS])
    (tmp_path / "pre" / "document.manifest.json").unlink()
    rc, _, err = run_cli(
        capsys, "inspect", str(tmp_path / "pre"), "--step", "0", "--provenance", *FLAGS
    )
    assert rc == 3 and "pass --source" in err


def test_error_bad_data_path_and_preset(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "inspect", str(tmp_path / "none"), "--step", "0")
    assert rc == 3 and "no dataset here" in err
    rc, _, err = run_cli(capsys, "order", str(tmp_path / "none"), "--preset", "bogus")
    assert rc == 2 and "unknown order preset 'bogus'" in err
    rc, _, err = run_cli(capsys, "order", str(tmp_path / "none_text_document"))
    assert rc == 3 and "token dataset index not found" in err


def test_error_preshuffle_without_maps_and_bad_shard_size(ds, capsys, tmp_path):
    rc, _, err = run_cli(capsys, "preshuffle", str(ds), "--out-dir", str(tmp_path / "p"), *FLAGS)
    assert rc == 3 and "not found" in err
    main(["order", str(ds), *FLAGS])
    rc, _, err = run_cli(
        capsys, "preshuffle", str(ds), "--out-dir", str(tmp_path / "p"), "--shard-size", "0", *FLAGS
    )
    assert rc == 2 and "shard_size 0 must be a positive" in err
    with pytest.raises(SystemExit):
        main(["preshuffle", str(ds), "--out-dir", str(tmp_path / "p"), "--shard-size", "lots"])
    assert "is not a size" in capsys.readouterr().err


def test_a_fresh_process_prints_nothing_on_stderr(ds, capsys):
    # in a new process the tokenizer is loaded (and its backend chosen) for the summary's text:
    # that choice is logged at debug level, never on a normal run's stderr
    import subprocess
    import sys

    assert main(["order", str(ds), *FLAGS]) == 0
    r = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "inspect", str(ds), "--step", "3", *FLAGS],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "step 3 of" in r.stdout
