"""`--export-text`: kept jsonl lines verbatim, table rows as JSON, nothing the reader rejects."""

from __future__ import annotations

import json

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.dedup import DedupConfig, export_text, run_dedup
from pipeline.read import ReadConfig, iter_documents

CONFIG = DedupConfig(partitions=2)
WORDS = " ".join(f"w{i}" for i in range(60))


def _exported(path) -> bytes:
    with open(path, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read()


def _run(tmp_path, inputs, read_config=None):
    out, dest = tmp_path / "dedup", tmp_path / "exp"
    run_dedup(inputs, out, CONFIG, read_config)
    counts = export_text(inputs, out, dest, read_config, expected_fingerprint=CONFIG.fingerprint())
    return dest, counts


# Lines that lost fields in the old {"text", "meta"} export, and lines the reader does not yield.
KEPT = [
    b'{"id": "doc-1", "text": "a top level id", "pile_set_name": "Github"}\n',
    b'{"text": "dolma style", "id": 7, "source": "s2", "added": "2024", "metadata": {"x": 1}}\n',
    b'{"text": "string meta", "meta": "{\\"pile_set_name\\": \\"ArXiv\\"}"}\n',
    b'{"meta": {"pile_set_name": "Pile-CC"},   "text": "odd spacing \\u00e9 kept"}\r\n',
    ('{"text": ' + json.dumps(WORDS) + ', "meta": {"pile_set_name": "Pile-CC"}}\n').encode(),
]
DUPLICATE = ('{"text": ' + json.dumps(WORDS.upper()) + ', "id": "dup"}\n').encode()
NOT_DOCUMENTS = [b"\n", b'{"text": ""}\n', b'{"text": \n', b"[1, 2]\n"]
LAST = b'{"text": "no trailing newline", "id": 99}'


def test_jsonl_lines_are_exported_byte_for_byte(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(KEPT[:4] + NOT_DOCUMENTS + KEPT[4:] + [DUPLICATE, LAST]))
    rc = ReadConfig(on_error="skip", quarantine_dir=str(tmp_path / "q"))
    dest, counts = _run(tmp_path, [src], rc)
    assert _exported(dest / "in.jsonl.zst") == b"".join(KEPT + [LAST + b"\n"])
    assert counts == {"files": 1, "documents_written": 6, "documents_dropped": 1}
    names = [d.pile_set_name for d in iter_documents([dest / "in.jsonl.zst"])]
    assert names == ["Github", "unknown", "ArXiv", "Pile-CC", "Pile-CC", "unknown"]


def test_jsonl_zst_export_is_deterministic(tmp_path):
    src = tmp_path / "in.jsonl.zst"
    src.write_bytes(zstandard.ZstdCompressor().compress(b"".join(KEPT + [DUPLICATE])))
    dest, _ = _run(tmp_path / "a", [src])
    again, _ = _run(tmp_path / "b", [src])
    assert _exported(dest / "in.jsonl.zst") == b"".join(KEPT)
    assert (dest / "in.jsonl.zst").read_bytes() == (again / "in.jsonl.zst").read_bytes()


def test_table_rows_are_exported_as_json(tmp_path):
    src = tmp_path / "in.parquet"
    rows = [
        {"text": WORDS, "id": "a", "pile_set_name": "Github", "n": 1},
        {"text": "", "id": "empty", "pile_set_name": "Github", "n": 2},
        {"text": WORDS.upper(), "id": "dup", "pile_set_name": "ArXiv", "n": 3},
        {"text": "other", "id": "b", "pile_set_name": None, "n": 4},
    ]
    pq.write_table(pa.Table.from_pylist(rows), src)
    dest, counts = _run(tmp_path, [src])
    got = [orjson.loads(x) for x in _exported(dest / "in.jsonl.zst").splitlines()]
    assert got == [rows[0], rows[3]]
    assert counts["documents_written"] == 2 and counts["documents_dropped"] == 1


def test_export_rejects_a_dedup_run_of_another_config(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(KEPT))
    run_dedup([src], tmp_path / "d", CONFIG)
    from pipeline.errors import IntegrityError

    with pytest.raises(IntegrityError, match="config fingerprint"):
        export_text([src], tmp_path / "d", tmp_path / "e", expected_fingerprint="0" * 64)


def test_export_never_overwrites_inputs_or_the_dedup_directory(tmp_path, capsys):
    from pipeline.cli.main import main

    d = tmp_path / "in"
    d.mkdir()
    (d / "a.jsonl").write_text('{"text": "one two three four five six"}\n')
    before = (d / "a.jsonl").read_bytes()
    for dest in (d, d / "a.jsonl", tmp_path / "dd"):
        rc = main(["dedup", str(d), "--out", str(tmp_path / "dd"), "--export-text", str(dest)])
        assert rc == 2, dest
    err = capsys.readouterr().err
    assert "holds, or is inside, the input" in err and "that is the dedup output directory" in err
    assert (d / "a.jsonl").read_bytes() == before and sorted(p.name for p in d.iterdir()) == [
        "a.jsonl"
    ]
    assert not (tmp_path / "dd").exists()  # refused before any work
