"""`pile exposure / find / contamination` in process: outputs and one test per error branch,
with exit codes; `pile verify` on the inverse maps; data made elsewhere (no manifests)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pipeline.cli.main import main
from pipeline.order.mapfiles import index_map_paths


def _run(capsys, *argv):
    rc = main(["-q", *map(str, argv)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_exposure_step_table_json_and_plot(built, capsys, tmp_path):
    rc, out, _ = _run(capsys, "exposure", built["prefix"], "--step", 5)
    assert rc == 0 and "pile_set_name" in out and "steps 0..5" in out
    rc, out, _ = _run(capsys, "exposure", built["prefix"], "--step", 5, "--json")
    r = json.loads(out)
    assert r["step"] == 5 and r["samples"] == 6 * 4 and r["tokens"] == 6 * 4 * 17
    png = tmp_path / "c.png"
    rc, out, _ = _run(capsys, "exposure", built["dir"] / "preshuffled", "--pythia-checkpoints",
                      "--json", "--plot", png)  # fmt: skip
    assert rc == 0 and png.read_bytes()[:4] == b"\x89PNG"
    rows = json.loads(out)["checkpoints"]
    assert len(rows) == 154 and rows[-1]["beyond"] and not rows[1]["beyond"]


def test_find_doc_by_id_file_line_and_item_agree(built, capsys):
    # item 7: sidecar doc_id = (7 % 3) << 40 | (7 // 3), file train/01.jsonl.zst line 3
    outs = []
    for args in (["--doc", (1 << 40) | 2], ["--file", "train/01.jsonl.zst", "--line", 3],
                 ["--item", 7]):  # fmt: skip
        rc, out, _ = _run(capsys, "find", built["prefix"], *args, "--json")
        assert rc == 0
        outs.append(json.loads(out))
    assert outs[0] == outs[1] == outs[2]
    assert outs[0]["item"] == 7 and outs[0]["pile_set_name"] == "FreeLaw"
    assert outs[0]["occurrences"]
    # the same through the pre-shuffled data (recorded source)
    rc, out, _ = _run(capsys, "find", built["dir"] / "preshuffled", "--item", 7, "--json")
    assert json.loads(out)["occurrences"] == outs[0]["occurrences"]


@pytest.mark.parametrize(
    "argv, code, words",
    [
        (["find", "{p}", "--doc", 123456789], 3, "not in this dataset"),
        (["find", "{p}", "--item", 60], 3, "items 0..59"),
        (["find", "{p}", "--file", "nope.jsonl", "--line", 1], 3, "not an input"),
        (["find", "{p}", "--file", "train/00.jsonl.zst"], 2, "--file and --line"),
        (["find", "{p}"], 2, "exactly one of"),
        (["find", "{p}", "--item", 1, "--doc", 1], 2, "exactly one of"),
        (["find", "{p}", "--tokens", "a b"], 2, "integer token ids"),
        (["find", "{p}", "--tokens", "1 2 3", "--stride", 0], 2, "--stride 0"),
        (["exposure", "{p}", "--step", 70], 2, "beyond the end of training"),
        (["exposure", "{p}", "--step", -1], 2, ">= 0"),
        (["exposure", "{p}"], 2, "exactly one of"),
        (["exposure", "{p}", "--step", 1, "--pythia-checkpoints"], 2, "exactly one of"),
        (["exposure", "{p}", "--step", 1, "--seed", 99], 2, "different config"),
        (["contamination", "{p}", "--queries", "{d}/none.jsonl"], 3, "not found"),
        (["contamination", "{p}", "--queries", "{d}/bad.jsonl"], 3, "bad.jsonl:2"),
        (["contamination", "{p}", "--queries", "{d}/q.jsonl", "--fail-above", 2], 2, "[0, 1]"),
        (["contamination", "{p}", "--queries", "{d}/q.jsonl", "--text-key", "x"], 3, "'x'"),
    ],
)
def test_error_branches(built, capsys, argv, code, words):
    d = built["dir"]
    (d / "bad.jsonl").write_text('{"text": "fine"}\n{"text": \n')
    (d / "q.jsonl").write_text('{"text": "fine"}\n')
    argv = [str(a).format(p=built["prefix"], d=d) for a in argv]
    rc, _, err = _run(capsys, *argv)
    assert rc == code, err
    assert words in err


def test_verify_checks_the_inverse_maps(built, capsys, tmp_path):
    d = tmp_path / "v"
    shutil.copytree(built["dir"], d, ignore=shutil.ignore_patterns("*inverse*", "*ngram*", "*_inv_*", "*_item_pos*", "*_exposure*"))  # fmt: skip
    prefix = d / built["prefix"].name
    assert _run(capsys, "exposure", prefix, "--step", 1)[0] == 0
    assert _run(capsys, "find", prefix, "--tokens", " ".join(["5"] * 30))[0] == 0
    # (the fixture's dataset has no tokenize manifest: --no-extra)
    rc, out, err = _run(capsys, "verify", d, "--no-extra")
    assert rc == 0, out + err
    assert "ngram_k8_s16.manifest.json" in " ".join(p.name for p in d.iterdir())
    base = str(index_map_paths(prefix, built["config"])["doc_idx"])[: -len("_doc_idx.npy")]
    p = base + "_item_pos.npy"
    raw = bytearray(open(p, "rb").read())
    raw[-1] ^= 1
    open(p, "wb").write(bytes(raw))
    rc, out, err = _run(capsys, "verify", d, "--no-extra")
    assert rc == 4 and "_item_pos.npy" in out


def test_data_made_elsewhere_and_stale_inverse_maps(built, capsys, tmp_path):
    """gpt-neox-style data: .bin/.idx + the three maps, no manifests, no sidecar."""
    d = tmp_path / "neox"
    d.mkdir()
    name = built["prefix"].name
    for ext in (".bin", ".idx"):
        shutil.copy(str(built["prefix"]) + ext, d / (name + ext))
    src = index_map_paths(built["prefix"], built["config"])
    for role in ("doc_idx", "sample_idx", "shuffle_idx"):
        shutil.copy(src[role], d / src[role].name)
    prefix = d / name
    flags = ["--seq-length", 16, "--global-batch", 4, "--train-iters", 70, "--seed", 7]
    rc, out, err = _run(capsys, "exposure", prefix, "--step", 69, "--json", *flags)
    assert rc == 0, err
    r = json.loads(out)
    assert [s["pile_set_name"] for s in r["sources"]] == ["unknown"]
    assert r["tokens"] == 70 * 4 * 17
    rc, out, _ = _run(capsys, "find", prefix, "--item", 7, "--json", *flags)
    assert rc == 0
    rc, _, err = _run(capsys, "find", prefix, "--doc", 7, *flags)
    assert rc == 3 and "--item" in err
    # without the flags the pythia preset is used: its maps are not there
    rc, _, err = _run(capsys, "exposure", prefix, "--step", 1)
    assert rc == 2 and "--seq-length" in err
    # maps replaced by others of the same size: the inverse maps are stale for verify
    sh = np.load(d / src["shuffle_idx"].name)
    sh[[0, 1]] = sh[[1, 0]]
    np.save(d / src["shuffle_idx"].name, sh)
    rc, out, err = _run(capsys, "verify", next(d.glob("*.inverse.manifest.json")))
    assert rc == 4 and "STALE" in out and "shuffle_idx" in out
    # and `pile find` rebuilds them instead of using them
    rc, out, err = _run(capsys, "find", prefix, "--item", 7, "--json", *flags)
    assert rc == 0
    rc, out, err = _run(capsys, "verify", next(d.glob("*.inverse.manifest.json")))
    assert rc == 0, out


def test_preshuffled_without_source_needs_one(built, capsys, tmp_path):
    d = tmp_path / "pre"
    d.mkdir()
    for f in (built["dir"] / "preshuffled").iterdir():
        if f.name.startswith("document") and not f.name.endswith(".json"):
            shutil.copy(f, d / f.name)
    flags = ["--seq-length", 16, "--global-batch", 4, "--train-iters", 70, "--seed", 7]
    rc, _, err = _run(capsys, "find", d, "--item", 3, *flags)
    assert rc == 3 and "--source" in err
    rc, _, err = _run(capsys, "exposure", d, "--step", 3, *flags)
    assert rc == 3 and "--source" in err
    # text search works on the samples alone
    q = built["tokens"][1:9]
    rc, out, err = _run(capsys, "find", d, "--tokens", " ".join(map(str, q)), "--json",
                        "--kgram", 4, "--stride", 4, *flags)  # fmt: skip
    assert rc == 0, err
    r = json.loads(out)
    assert all(o["epoch"] is None for o in r["occurrences"])
    rc, out, err = _run(capsys, "find", d, "--item", 3, "--source", built["prefix"], *flags)
    assert rc == 0, err


def test_index_dir_for_read_only_data(built, capsys, tmp_path):
    idx = tmp_path / "idx"
    rc, out, err = _run(capsys, "find", built["prefix"], "--item", 2, "--json", "--index-dir", idx)
    assert rc == 0, err
    assert json.loads(out)["occurrences"]
    assert len(list(idx.glob("*.inverse.manifest.json"))) == 1
    rc, out, err = _run(capsys, "verify", idx)
    assert rc == 0, out + err
