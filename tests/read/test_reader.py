from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.errors import ConfigError, InputError
from pipeline.read import (
    LINE_BITS,
    Document,
    ReadConfig,
    ReadStats,
    iter_documents,
    make_doc_id,
    resolve_inputs,
    split_doc_id,
)
from pipeline.read.document import InputFile
from pipeline.read.inputs import input_names
from tests.conftest import shared_path
from tests.read.helpers import pile_line, write_gz, write_zst


def docs(paths, **kw):
    stats = ReadStats()
    out = list(iter_documents(paths, ReadConfig(**kw), stats))
    return out, stats


def test_real_pile_documents():
    d = shared_path("corpora", "pile_real")
    out, stats = docs([d])
    # directory expands sorted by name: test, train_00, val
    assert [x.pile_set_name for x in out] == ["Wikipedia (en)", "Pile-CC", "OpenWebText2"]
    assert [len(x.text) for x in out] == [1030, 13274, 6745]
    assert [x.doc_id for x in out] == [0, 1 << LINE_BITS, 2 << LINE_BITS]
    assert all(x.line == 1 for x in out)
    assert out[1].file.endswith("train_00.jsonl.zst")
    assert stats.documents == 3 and stats.rejected == 0 and stats.files == 3
    assert stats.sources["Pile-CC"].bytes == len(out[1].text.encode("utf-8"))


def test_blns_naughty_strings_and_list_text():
    out, stats = docs([shared_path("corpora", "blns", "blns.jsonl.zst")])
    assert len(out) == 4 and stats.rejected == 0
    assert all(x.pile_set_name == "unknown" for x in out)
    assert out[1].meta == {"testing": 123}
    assert out[2].meta == {"testing2": 456, "testing": ["a", "b"]}
    raw = (
        zstandard.ZstdDecompressor()
        .stream_reader(open(shared_path("corpora", "blns", "blns.jsonl.zst"), "rb"))
        .read()
    )
    objs = [json.loads(line) for line in raw.split(b"\n") if line]
    for got, obj in zip(out, objs):
        want = "\n\n".join(obj["text"]) if isinstance(obj["text"], list) else obj["text"]
        assert got.text == want


def test_line_separators_inside_text_do_not_split(tmp_path):
    weird = "a\u2028b\u2029c\x85d\x0ce\x1cf\rg"
    p = write_zst(tmp_path / "x.jsonl.zst", [pile_line(weird), pile_line("second")])
    out, stats = docs([p])
    assert [x.text for x in out] == [weird, "second"]
    assert [x.line for x in out] == [1, 2]


def test_ids_deterministic_and_stable(tmp_path):
    d = tmp_path / "train"
    for i in (2, 0, 1):
        write_zst(d / f"{i:02d}.jsonl.zst", [pile_line(f"doc {i} {j}") for j in range(3)])
    a, _ = docs([d])
    b, _ = docs([d / "00.jsonl.zst", d / "01.jsonl.zst", d / "02.jsonl.zst"])
    assert [x.doc_id for x in a] == [x.doc_id for x in b]
    assert [x.text for x in a] == [f"doc {i} {j}" for i in range(3) for j in range(3)]
    assert a[4].doc_id == make_doc_id(1, 2) == (1 << LINE_BITS) | 1
    assert split_doc_id(a[4].doc_id) == (1, 2)


def test_multi_frame_zstd_and_crlf(tmp_path):
    lines = [pile_line(f"text {i}").replace(b"\n", b"\r\n") for i in range(500)]
    p = write_zst(tmp_path / "m.jsonl.zst", lines, frames=7)
    out, _ = docs([p])
    assert [x.text for x in out] == [f"text {i}" for i in range(500)]


def test_formats_jsonl_gz_parquet(tmp_path):
    lines = [pile_line("alpha", "ArXiv"), pile_line("beta", "Github", extra=1)]
    (tmp_path / "a.jsonl").write_bytes(b"".join(lines))
    write_gz(tmp_path / "b.jsonl.gz", lines)
    table = pa.table(
        {
            "text": ["alpha", "beta"],
            "meta": [{"pile_set_name": "ArXiv"}, {"pile_set_name": "Github"}],
        }
    )
    pq.write_table(table, tmp_path / "c.parquet")
    for name in ("a.jsonl", "b.jsonl.gz", "c.parquet"):
        out, _ = docs([tmp_path / name])
        assert [(x.text, x.pile_set_name, x.line) for x in out] == [
            ("alpha", "ArXiv", 1),
            ("beta", "Github", 2),
        ], name


def test_huggingface_datasets_inputs(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict(
        {"text": ["one", "", "three"], "meta": [{"pile_set_name": "EuroParl"}] * 3}
    )
    ds.save_to_disk(str(tmp_path / "disk"))
    out, stats = docs([tmp_path / "disk"])
    assert [(x.text, x.pile_set_name, x.line) for x in out] == [
        ("one", "EuroParl", 1),
        ("three", "EuroParl", 3),
    ]
    assert stats.empty == 1
    hub = tmp_path / "hub" / "data"
    hub.mkdir(parents=True)
    (hub / "train-00000.jsonl").write_bytes(pile_line("hub doc", "HackerNews"))
    out, _ = docs([f"hf:{tmp_path / 'hub'}"])
    assert [(x.text, x.pile_set_name) for x in out] == [("hub doc", "HackerNews")]


def test_empty_text_counted_and_skipped(tmp_path):
    p = write_zst(tmp_path / "e.jsonl.zst", [pile_line(""), pile_line("x", "ArXiv"), b"\n"])
    out, stats = docs([p])
    assert [x.text for x in out] == ["x"]
    assert out[0].line == 2
    assert stats.empty == 1 and stats.sources["Pile-CC"].empty == 1
    assert stats.blank_lines == 1 and stats.lines == 3


def test_source_name_fallbacks(tmp_path):
    lines = [
        b'{"text": "no meta"}\n',
        b'{"text": "top", "source": "common-crawl"}\n',
        b'{"text": "odd", "meta": "a string"}\n',
    ]
    p = write_zst(tmp_path / "s.jsonl.zst", lines)
    out, _ = docs([p])
    assert [x.pile_set_name for x in out] == ["unknown", "unknown", "unknown"]
    assert out[2].meta == {"meta": "a string"}
    out, _ = docs([p], set_name_key="source")
    assert out[1].pile_set_name == "common-crawl"
    out, _ = docs([tmp_path / "s.jsonl.zst"], text_key="text")
    assert len(out) == 3


BAD_LINES = {
    "invalid-json": (b'{"text": "unterminated\n', "invalid JSON"),
    "invalid-utf8": (b'{"text": "caf\xe9"}\n', "invalid UTF-8 at byte 13"),
    "missing-text": (b'{"content": "x"}\n', "no 'text' key"),
    "text-not-string": (b'{"text": 42}\n', "'text' is an int"),
    "not-an-object": (b'["text"]\n', "record is a list, expected a JSON object"),
    "lone-surrogate": (b'{"text": "a\\ud800b"}\n', "lone surrogate"),
}


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_bad_record_raises_with_file_line_and_fix(tmp_path, kind):
    bad, expected = BAD_LINES[kind]
    p = write_zst(tmp_path / "bad.jsonl.zst", [pile_line("good"), bad, pile_line("after")])
    with pytest.raises(InputError) as e:
        docs([p])
    msg = str(e.value)
    assert f"{p}:2 (byte offset" in msg and expected in msg and "--on-error skip" in msg


def test_bad_records_skipped_into_quarantine_verbatim(tmp_path):
    bad = [BAD_LINES[k][0] for k in sorted(BAD_LINES)]
    lines = [pile_line("first")] + bad + [pile_line("last")]
    p = write_zst(tmp_path / "bad.jsonl.zst", lines)
    q = tmp_path / "q"
    out, stats = docs([p], on_error="skip", quarantine_dir=str(q))
    assert [x.text for x in out] == ["first", "last"]
    assert out[1].line == len(lines)
    assert stats.rejected == len(bad)
    assert stats.rejected_by_reason == {k: 1 for k in BAD_LINES}
    raw = (q / "00000-bad.jsonl.zst.rejected.jsonl").read_bytes()
    assert raw == b"".join(bad)  # verbatim, in order
    reasons = [
        json.loads(x) for x in (q / "00000-bad.jsonl.zst.reasons.jsonl").read_text().splitlines()
    ]
    assert [r["reason"] for r in reasons] == sorted(BAD_LINES)
    assert [r["line"] for r in reasons] == list(range(2, 2 + len(bad)))
    assert not list(q.glob("*.tmp"))


def test_truncated_zstd_names_file_and_offset(tmp_path):
    p = write_zst(tmp_path / "t.jsonl.zst", [pile_line("x" * 100 + str(i)) for i in range(3000)])
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        InputError, match=r"t\.jsonl\.zst: truncated zstd stream.*after \d+ decompressed bytes"
    ):
        docs([p])


def test_damaged_checksum_is_fatal_even_with_skip(tmp_path):
    # Two checksummed frames; the first frame's content checksum is damaged: its documents were
    # handed out before the check at the frame's end, so skipping cannot keep the output clean.
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True)
    rng = np.random.default_rng(0)
    first = cctx.compress(
        b"".join(
            pile_line(f"a{i} " + " ".join(map(str, rng.integers(0, 10**9, 30))))
            for i in range(1000)
        )
    )
    second = cctx.compress(b"".join(pile_line(f"b{i}") for i in range(1000)))
    bad = bytearray(first)
    bad[-1] ^= 0xFF
    p = tmp_path / "c.jsonl.zst"
    p.write_bytes(bytes(bad) + second)
    pattern = (
        r"c\.jsonl\.zst: zstd content checksum mismatch in the frame at compressed byte offset 0"
    )
    with pytest.raises(InputError, match=pattern):
        docs([p])
    with pytest.raises(InputError, match=pattern + ".*skipping cannot help"):
        docs([p], on_error="skip", quarantine_dir=str(tmp_path / "q"))


def test_truncated_gzip(tmp_path):
    p = write_gz(tmp_path / "g.jsonl.gz", [pile_line(f"{i} " * 50) for i in range(3000)])
    p.write_bytes(p.read_bytes()[:-200])
    with pytest.raises(InputError, match=r"g\.jsonl\.gz: truncated gzip stream"):
        docs([p])


def test_input_resolution_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        resolve_inputs([tmp_path / "missing.jsonl.zst"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="unsupported file type.*supported: .jsonl.zst"):
        resolve_inputs([tmp_path / "notes.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no input files"):
        resolve_inputs([tmp_path / "empty"])
    with pytest.raises(ConfigError, match="no inputs given"):
        resolve_inputs([])
    with pytest.raises(InputError, match="not a local directory"):
        resolve_inputs(["hf:" + str(tmp_path / "nope")])


def test_config_errors():
    with pytest.raises(ConfigError, match="allowed: raise, skip"):
        ReadConfig(on_error="ignore")
    with pytest.raises(ConfigError, match="needs a quarantine directory"):
        ReadConfig(on_error="skip")
    with pytest.raises(ConfigError, match="text_key"):
        ReadConfig(text_key="")


def test_stats_merge_equals_single_pass(tmp_path):
    a = write_zst(tmp_path / "a.jsonl.zst", [pile_line("x" * 10, "ArXiv"), pile_line("", "ArXiv")])
    b = write_zst(tmp_path / "b.jsonl.zst", [pile_line("yy", "Github")])
    one = ReadStats()
    list(iter_documents([a, b], stats=one))
    sa, sb = ReadStats(), ReadStats()
    list(iter_documents([a], stats=sa))
    list(iter_documents([b], stats=sb))
    merged = ReadStats().merge(sa).merge(sb)
    assert merged.to_dict() == one.to_dict()
    assert ReadStats.from_dict(one.to_dict()).to_dict() == one.to_dict()
    assert one.to_dict()["sources"]["ArXiv"] == {
        "documents": 1,
        "bytes": 10,
        "empty": 1,
        "mean_document_bytes": 10.0,
        "share": 10 / 12,
    }


def test_document_is_plain_record():
    d = Document(1, "t", "Pile-CC", {}, "f", 2)
    assert (d.doc_id, d.text, d.pile_set_name, d.meta, d.file, d.line) == (
        1,
        "t",
        "Pile-CC",
        {},
        "f",
        2,
    )


def test_directory_skips_plain_json_metadata(tmp_path):
    write_zst(tmp_path / "d" / "00.jsonl.zst", [pile_line("x")])
    (tmp_path / "d" / "ground_truth.json").write_text("{}")
    files = resolve_inputs([tmp_path / "d"])
    assert [f.path for f in files] == [str(tmp_path / "d" / "00.jsonl.zst")]
    (tmp_path / "d" / "one.json").write_bytes(pile_line("explicit"))
    out, _ = docs([tmp_path / "d" / "one.json"])
    assert [x.text for x in out] == ["explicit"]


def test_input_names_are_relative_to_the_inputs_common_root(tmp_path, monkeypatch):
    pile = tmp_path / "data" / "pile"
    for name in ("train/00.jsonl.zst", "train/01.jsonl.zst", "val.jsonl.zst"):
        write_zst(pile / name, [pile_line("x")])
    files = resolve_inputs([pile / "train", pile / "val.jsonl.zst"])
    assert [f.name for f in files] == ["train/00.jsonl.zst", "train/01.jsonl.zst", "val.jsonl.zst"]
    assert [f.label for f in files] == [f.name for f in files]
    assert files[2].where == str(pile / "val.jsonl.zst")  # messages keep the full path
    # the same layout elsewhere, given by a relative path, gets the same names
    moved = tmp_path / "x" / "y" / "pile"
    moved.parent.mkdir(parents=True)
    pile.rename(moved)
    monkeypatch.chdir(moved.parent)
    again = resolve_inputs([Path("pile/train"), Path("pile/val.jsonl.zst")])
    assert [f.name for f in again] == [f.name for f in files]
    # one file: its own name; hf splits carry '#split'
    assert resolve_inputs([moved / "val.jsonl.zst"])[0].name == "val.jsonl.zst"
    assert input_names([]) == []
    assert InputFile(0, "/a/b.jsonl", "jsonl", "train").label == "/a/b.jsonl#train"


def test_datasetdict_reads_one_split_train_by_default(tmp_path):
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["t1", "t2"]}),
            "validation": datasets.Dataset.from_dict({"text": ["v1"]}),
        }
    )
    d = tmp_path / "dd"
    dd.save_to_disk(str(d))
    out, _ = docs([d])  # never all splits: validation must not leak into training
    assert [x.text for x in out] == ["t1", "t2"]
    files = resolve_inputs([d])
    assert [f.name for f in files] == ["dd#train"]
    out, _ = docs([f"{d}#validation"])
    assert [x.text for x in out] == ["v1"]
    with pytest.raises(ConfigError, match=r"no split 'test'; it has train, validation"):
        resolve_inputs([f"{d}#test"])
    dd.pop("train")
    dd.save_to_disk(str(tmp_path / "noval"))
    with pytest.raises(ConfigError, match=r"no split 'train'.*Name one: .*noval#validation"):
        resolve_inputs([tmp_path / "noval"])
    datasets.Dataset.from_dict({"text": ["s"]}).save_to_disk(str(tmp_path / "single"))
    with pytest.raises(ConfigError, match="single Dataset.*drop '#train'"):
        resolve_inputs([f"{tmp_path / 'single'}#train"])


@pytest.mark.parametrize("kind", ["zst", "gz"])
def test_truncated_stream_skip_keeps_the_cut_line(tmp_path, kind):
    lines = [pile_line("x" * 100 + str(i)) for i in range(3000)]
    write = write_zst if kind == "zst" else write_gz
    p = write(tmp_path / f"t.jsonl.{kind}", lines)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    # raise: the truncation is reported, not the invalid JSON of the line it cut off
    with pytest.raises(InputError, match="truncated") as e:
        docs([p])
    assert "invalid JSON" not in str(e.value)
    q = tmp_path / "q"
    out, stats = docs([p], on_error="skip", quarantine_dir=str(q))
    assert 0 < len(out) < 3000 and stats.rejected_by_reason == {"corrupt-stream": 1}
    kept = (q / f"00000-t.jsonl.{kind}.rejected.jsonl").read_bytes()
    (reason,) = [
        json.loads(x) for x in (q / f"00000-t.jsonl.{kind}.reasons.jsonl").read_text().splitlines()
    ]
    n = len(out)
    if kept.strip():  # the cut fell inside a line: its bytes are kept, verbatim
        assert lines[n].startswith(kept.rstrip(b"\n")) and kept.rstrip(b"\n") != lines[n].rstrip()
        assert reason["byte_offset"] == sum(map(len, lines[:n]))
    assert reason["line"] == n + 1 and reason["reason"] == "corrupt-stream"
    assert "--on-error skip" not in reason["detail"] and "re-download" in reason["detail"]


def test_what_lm_dataformat_reads_is_read(tmp_path):
    # jsonlines (lm_dataformat's parser) skips a BOM or record separator before a line, and
    # lm_dataformat yields a bare JSON string line as the text itself
    p = tmp_path / "lmd.jsonl"
    p.write_bytes(
        b"\xef\xbb\xbf"
        + pile_line("after a BOM", "ArXiv")
        + b"\x1e"
        + pile_line("after a record separator", "Github")
        + b'"a legacy bare string record"\n'
        + b'{"text": "string meta", "meta": "{\\"pile_set_name\\": \\"Enron Emails\\"}"}\n'
        + b'"\\ud800"\n'
    )
    out, stats = docs([p], on_error="skip", quarantine_dir=str(tmp_path / "q"))
    assert [(d.text, d.pile_set_name, d.meta, d.line) for d in out] == [
        ("after a BOM", "ArXiv", {"pile_set_name": "ArXiv"}, 1),
        ("after a record separator", "Github", {"pile_set_name": "Github"}, 2),
        ("a legacy bare string record", "unknown", {}, 3),
        ("string meta", "Enron Emails", {"pile_set_name": "Enron Emails"}, 4),
    ]
    assert stats.rejected_by_reason == {"lone-surrogate": 1}


def test_directory_walk_skips_pile_outputs_and_warns_on_repeats(tmp_path, caplog):
    import logging

    d = tmp_path / "corpus"
    write_zst(d / "00.jsonl.zst", [pile_line("x")])
    # an output directory of pile below the input (it has a manifest), quarantine files and a
    # sidecar: none of them are input documents
    write_zst(d / "out" / "survivors.jsonl.zst", [pile_line("exported")])
    from pipeline.manifest import write_manifest

    write_manifest(
        d / "out" / "manifest.json", kind="dedup-export", config_fingerprint="x", files=[]
    )
    # a dataset's own manifest.json (not pile's) does not hide its data
    write_zst(d / "part1" / "01.jsonl.zst", [pile_line("y")])
    (d / "part1" / "manifest.json").write_text('{"shards": ["01.jsonl.zst"]}')
    (d / "q").mkdir()
    (d / "q" / "00000-00.jsonl.zst.rejected.jsonl").write_bytes(b"{bad\n")
    (d / "q" / "00000-00.jsonl.zst.reasons.jsonl").write_bytes(b'{"reason": "x"}\n')
    pq.write_table(pa.table({"text": ["t"]}), d / "p_text_document.docs.parquet")
    with caplog.at_level(logging.WARNING, logger="pipeline.read.inputs"):
        files = resolve_inputs([d])
    assert [f.name for f in files] == ["00.jsonl.zst", "part1/01.jsonl.zst"]
    assert "an output directory of pile" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.read.inputs"):
        files = resolve_inputs([d, d / "00.jsonl.zst"])
    assert len(files) == 3 and "given more than once" in caplog.text
