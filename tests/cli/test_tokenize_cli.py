"""`pile tokenize` end to end through the CLI: outputs, verify, and one test per error branch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zstandard

from pipeline.cli.main import main
from pipeline.read import make_doc_id
from pipeline.shards.mmidx import MMIDXDataset


@pytest.fixture
def inputs(tmp_path):
    docs = [("Hello, I am", "A"), ("", "A"), ("Hello world", "B"), ("more text here", "B")]
    data = b"".join(
        json.dumps({"text": t, "meta": {"pile_set_name": n}}).encode() + b"\n" for t, n in docs
    )
    p = tmp_path / "in" / "00.jsonl.zst"
    p.parent.mkdir()
    p.write_bytes(zstandard.ZstdCompressor().compress(data))
    return p


def test_tokenize_then_verify(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["tokenize", str(inputs.parent), "--out", str(out), "--prefix", "pile"])
    assert rc == 0
    msg = capsys.readouterr().out
    assert "3 documents" in msg and "1 empty dropped" in msg and "pile.manifest.json" in msg
    ds = MMIDXDataset(out / "pile_text_document")
    assert ds[0].tolist() == [12092, 13, 309, 717, 0]
    assert main(["verify", str(out)]) == 0


def test_no_append_eod_and_hf_backend(inputs, tmp_path):
    out = tmp_path / "out"
    args = ["tokenize", str(inputs), "--out", str(out), "--prefix", "p", "--no-append-eod"]
    assert main(args + ["--backend", "hf", "--batch-size", "1"]) == 0
    assert MMIDXDataset(out / "p_text_document")[1].tolist() == [12092, 1533]


def test_exclude_npy(inputs, tmp_path, capsys):
    npy = tmp_path / "removed.npy"
    np.save(npy, np.array([make_doc_id(0, 3)], dtype=np.int64))
    out = tmp_path / "out"
    rc = main(["tokenize", str(inputs), "--out", str(out), "--prefix", "d", "--exclude", str(npy)])
    assert rc == 0
    out_text = capsys.readouterr().out
    assert "2 documents" in out_text and "1 excluded" in out_text
    m = json.loads((out / "d.manifest.json").read_text())
    assert m["counts"]["excluded"] == 1 and m["counts"]["documents"] == 2


def test_missing_input_exit_3(tmp_path, capsys):
    rc = main(["tokenize", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path), "--prefix", "p"])
    assert rc == 3
    assert "does not exist" in capsys.readouterr().err


def test_bad_exclude_exit_2(inputs, tmp_path, capsys):
    bad = tmp_path / "ids.csv"
    bad.write_text("1,2\n")
    rc = main(
        [
            "tokenize",
            str(inputs),
            "--out",
            str(tmp_path / "o"),
            "--prefix",
            "p",
            "--exclude",
            str(bad),
        ]
    )
    assert rc == 2
    assert "unsupported file type '.csv'" in capsys.readouterr().err


def test_missing_tokenizer_exit_2(inputs, tmp_path, capsys):
    rc = main(
        [
            "tokenize",
            str(inputs),
            "--out",
            str(tmp_path / "o"),
            "--prefix",
            "p",
            "--tokenizer",
            str(tmp_path / "tok.json"),
        ]
    )
    assert rc == 2
    assert "--tokenizer" in capsys.readouterr().err


def test_bad_prefix_exit_2(inputs, tmp_path, capsys):
    rc = main(["tokenize", str(inputs), "--out", str(tmp_path / "o"), "--prefix", ".hidden"])
    assert rc == 2
    assert "plain file name prefix" in capsys.readouterr().err


def test_bad_record_exit_3_and_skip_quarantines(tmp_path, capsys):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "ok"}\n{"text": 5}\n{"text": "fine too"}\n')
    assert main(["tokenize", str(src), "--out", str(tmp_path / "o"), "--prefix", "p"]) == 3
    assert "bad.jsonl:2" in capsys.readouterr().err
    rc = main(
        ["tokenize", str(src), "--out", str(tmp_path / "o"), "--prefix", "p", "--on-error", "skip"]
    )
    assert rc == 0
    m = json.loads((tmp_path / "o" / "p.manifest.json").read_text())
    assert m["counts"]["rejected"] == 1 and m["counts"]["documents"] == 2
    assert list((tmp_path / "o" / "quarantine").glob("*.rejected.jsonl"))
    # the quarantine directory is not an artifact of the dataset
    assert main(["verify", str(tmp_path / "o")]) == 0


def test_prefix_ending_in_text_document_exit_2(inputs, tmp_path, capsys):
    rc = main(
        ["tokenize", str(inputs), "--out", str(tmp_path / "o"), "--prefix", "pile_text_document"]
    )
    assert rc == 2
    assert "pass --prefix pile." in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_exclude_dedup_dir_must_match_the_input_list(tmp_path, capsys):
    # b holds exact copies of a's documents: dedup over (a, b) removes b's; tokenizing (b, a) with
    # that set would drop a's unique documents by position instead, so it is refused
    words = "the quick brown fox jumps over the lazy dog again and again".split()
    texts = [" ".join(words[i:] + words[:i]) * 8 for i in range(6)]
    d = tmp_path / "in"
    d.mkdir()
    for name, sel in (("a.jsonl", texts), ("b.jsonl", texts[:3])):
        (d / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in sel))
    a, b = str(d / "a.jsonl"), str(d / "b.jsonl")
    assert main(["dedup", a, b, "--out", str(tmp_path / "D")]) == 0
    capsys.readouterr()
    args = [
        "tokenize",
        "--out",
        str(tmp_path / "T"),
        "--prefix",
        "t",
        "--exclude",
        str(tmp_path / "D"),
    ]
    assert main([*args, b, a]) == 2
    err = capsys.readouterr().err
    assert "first differ at position 0: 'a.jsonl' there, 'b.jsonl' here" in err
    assert "same order" in err
    assert main([*args, a]) == 2
    assert "2 input file(s) but these are 1" in capsys.readouterr().err
    assert main([*args, a, b]) == 0
    assert "3 excluded" in capsys.readouterr().out


def test_exclude_refuses_an_input_rewritten_since_dedup(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    texts = [" ".join(f"w{i} w{i + 1} w{i + 2}" for i in range(k, k + 30)) for k in range(4)]
    (d / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    (d / "b.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:2]))
    assert main(["dedup", str(d), "--out", str(tmp_path / "D")]) == 0
    (d / "b.jsonl").write_text(json.dumps({"text": "a new unique document"}) + "\n")
    capsys.readouterr()
    args = ["tokenize", str(d), "--out", str(tmp_path / "T"), "--prefix", "t"]
    assert main([*args, "--exclude", str(tmp_path / "D")]) == 2
    assert "b.jsonl is" in capsys.readouterr().err


def test_unit_size_and_cache_give_the_same_bytes(inputs, tmp_path, capsys):
    names = ("pile_text_document.bin", "pile_text_document.idx", "pile.manifest.json")
    base = ["tokenize", str(inputs), "--prefix", "pile", "--out"]
    assert main([*base, str(tmp_path / "one")]) == 0
    cache = tmp_path / "cache"
    units = ["--unit-size", "1", "--unit-cache", str(cache), "--workers", "2"]
    assert main([*base, str(tmp_path / "many"), *units]) == 0
    assert any(cache.iterdir())  # the single-frame input was re-chunked to split
    for n in names:
        assert (tmp_path / "many" / n).read_bytes() == (tmp_path / "one" / n).read_bytes()


def test_unit_size_zero_exit_2(inputs, tmp_path, capsys):
    rc = main(
        ["tokenize", str(inputs), "--out", str(tmp_path / "o"), "--prefix", "p", "--unit-size", "0"]
    )
    assert rc == 2
    assert "unit_bytes=0" in capsys.readouterr().err
