"""`pile dedup` in-process: success path, S-curve output, export, and every error branch."""

from __future__ import annotations

import json

import orjson
import pytest

from pipeline.cli.main import main


@pytest.fixture
def inputs(tmp_path):
    words = [f"w{i}" for i in range(60)]
    recs = [
        {"text": " ".join(words), "meta": {"pile_set_name": "Pile-CC"}},
        {"text": "something else entirely, not a copy", "meta": {"pile_set_name": "Github"}},
        {"text": " ".join(words).upper(), "meta": {"pile_set_name": "ArXiv", "extra": [1, 2]}},
    ]
    p = tmp_path / "in.jsonl"
    p.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    return p


def test_dedup_command(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["dedup", str(inputs), "--out", str(out), "--export-text", str(tmp_path / "exp")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "J     P(candidate | J)" in text and "0.90  0.9990" in text
    assert "expected recall of LSH at J=0.87: 0.9910" in text
    assert "3 documents, 1 duplicate clusters, 1 removed" in text
    assert "exported 2 documents (1 dropped)" in text
    stats = json.loads((out / "stats.json").read_text())
    assert stats["per_pile_set_name"]["ArXiv"]["removed"] == 1
    assert stats["per_pile_set_name"]["ArXiv"]["kept_in"] == {"Pile-CC": 1}
    assert (tmp_path / "exp" / "in.jsonl.zst").exists()


def test_flags_override_preset(inputs, tmp_path):
    out = tmp_path / "out"
    rc = main(
        [
            "-q",
            "dedup",
            str(inputs),
            "--out",
            str(out),
            "--threshold",
            "0.8",
            "--bands",
            "16",
            "--rows",
            "8",
            "--ngram",
            "3",
            "--seed",
            "5",
            "--no-verify",
            "--partitions",
            "2",
        ]
    )
    assert rc == 0
    cfg = json.loads((out / "stats.json").read_text())["config"]
    assert (cfg["threshold"], cfg["bands"], cfg["rows"], cfg["ngram"], cfg["seed"]) == (
        0.8,
        16,
        8,
        3,
        5,
    )
    assert cfg["verify_candidates"] is False


@pytest.mark.parametrize(
    "flags,code,needle",
    [
        (
            ["--bands", "20", "--rows", "10"],
            2,
            "bands=20 x rows=10 (= 200) does not fit num_perm=128",
        ),
        (
            ["--threshold", "1.5"],
            2,
            "threshold=1.5 is invalid; allowed: a number strictly between 0 and 1",
        ),
        (["--threshold", "0"], 2, "strictly between 0 and 1"),
        (["--ngram", "0"], 2, "ngram=0 is invalid; allowed: an integer >= 1"),
        (["--num-perm", "0"], 2, "num_perm=0 is invalid"),
        (["--partitions", "3"], 2, "partitions=3 is invalid; allowed: a power of two"),
        (["--preset", "nope"], 2, "unknown dedup preset 'nope'; allowed: pythia-0.87"),
    ],
)
def test_config_errors(inputs, tmp_path, capsys, flags, code, needle):
    rc = main(["dedup", str(inputs), "--out", str(tmp_path / "o"), *flags])
    assert rc == code
    err = capsys.readouterr().err
    assert err.startswith("pile dedup: error: ") and needle in err
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_missing_input(tmp_path, capsys):
    rc = main(["dedup", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")])
    assert rc == 3
    assert "does not exist" in capsys.readouterr().err


def test_bad_record(tmp_path, capsys):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"text": "fine"}\n{"text": \n')
    rc = main(["dedup", str(p), "--out", str(tmp_path / "o")])
    assert rc == 3
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err
    assert not (tmp_path / "o" / "manifest.json").exists()
