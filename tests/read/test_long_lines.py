"""A line over `max_line_bytes` is rejected while it streams: raise names file, line, size and the
option; skip copies it verbatim into the quarantine piece by piece. Memory stays bounded."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import zstandard

from pipeline.cli.main import main
from pipeline.errors import ConfigError, InputError
from pipeline.read import ReadConfig, ReadStats, iter_documents
from pipeline.read.config import DEFAULT_MAX_LINE_BYTES
from tests.read.helpers import pile_line, write_gz

MB = 10**6


def write_long(path, size: int, before: int = 2, after: int = 2) -> bytes:
    """`before` short documents, one record of about `size` bytes, `after` short ones, as a zstd
    stream written piece by piece (the long line is never built in memory here either)."""
    head = b'{"text": "'
    tail = b'", "meta": {"pile_set_name": "Books3"}}\n'
    piece = b"all work and no play makes jack a dull boy " * 1000
    cctx = zstandard.ZstdCompressor(level=1)
    with open(path, "wb") as fh, cctx.stream_writer(fh) as w:
        for i in range(before):
            w.write(pile_line(f"before {i}"))
        w.write(head)
        left = size - len(head) - len(tail) + 1
        while left > 0:
            w.write(piece[:left])
            left -= len(piece)
        w.write(tail)
        for i in range(after):
            w.write(pile_line(f"after {i}"))
    return piece


def docs(paths, **kw):
    stats = ReadStats()
    return list(iter_documents(paths, ReadConfig(**kw), stats)), stats


def test_long_line_raises_naming_file_line_size_and_option(tmp_path):
    p = tmp_path / "bomb.jsonl.zst"
    write_long(p, 20 * MB)
    with pytest.raises(InputError) as e:
        docs([p], max_line_bytes=5 * MB)
    msg = str(e.value)
    assert f"{p}:3 (byte offset " in msg
    assert f"the line is {20 * MB:,} bytes, more than the reader's limit of {5 * MB:,}" in msg
    assert "--max-line-bytes" in msg and "--on-error skip" in msg


def test_long_line_skipped_into_quarantine_verbatim(tmp_path):
    p = tmp_path / "bomb.jsonl.zst"
    write_long(p, 20 * MB)
    q = tmp_path / "q"
    out, stats = docs([p], max_line_bytes=5 * MB, on_error="skip", quarantine_dir=str(q))
    assert [d.text for d in out] == ["before 0", "before 1", "after 0", "after 1"]
    assert [d.line for d in out] == [1, 2, 4, 5]
    assert stats.rejected_by_reason == {"line-too-long": 1}
    assert stats.lines == stats.documents + stats.empty + stats.blank_lines + stats.rejected
    original = zstandard.ZstdDecompressor().decompress(p.read_bytes(), max_output_size=30 * MB)
    lines = original.split(b"\n")
    assert (q / "00000-bomb.jsonl.zst.rejected.jsonl").read_bytes() == lines[2] + b"\n"
    (reason,) = map(json.loads, (q / "00000-bomb.jsonl.zst.reasons.jsonl").read_text().splitlines())
    assert reason["line"] == 3 and reason["reason"] == "line-too-long"
    assert reason["byte_offset"] == len(lines[0]) + len(lines[1]) + 2
    assert f"{20 * MB:,} bytes" in reason["detail"]


@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz"])
def test_limit_applies_to_every_format_and_to_the_last_line(tmp_path, kind):
    lines = [pile_line("short"), pile_line("x" * 5000), pile_line("y" * 3000).rstrip(b"\n")]
    p = tmp_path / f"f.{kind}"
    if kind == "jsonl":
        p.write_bytes(b"".join(lines))
    else:
        write_gz(p, lines)
    q = tmp_path / "q"
    out, stats = docs([p], max_line_bytes=2000, on_error="skip", quarantine_dir=str(q))
    assert [d.text for d in out] == ["short"]
    assert stats.rejected_by_reason == {"line-too-long": 2} and stats.lines == 3
    kept = (q / f"00000-f.{kind}.rejected.jsonl").read_bytes()
    assert kept == lines[1] + lines[2] + b"\n"
    # a line of exactly the limit (newline excluded) is read, one byte more is not
    assert len(docs([p], max_line_bytes=len(lines[1]) - 1)[0]) == 3
    cfg = {"on_error": "skip", "quarantine_dir": str(tmp_path / "q2")}
    assert len(docs([p], max_line_bytes=len(lines[1]) - 2, **cfg)[0]) == 2


def test_damage_inside_a_long_line_is_one_rejection(tmp_path):
    p = tmp_path / "cut.jsonl.zst"
    write_long(p, 3 * MB)
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    q = tmp_path / "q"
    out, stats = docs([p], max_line_bytes=MB, on_error="skip", quarantine_dir=str(q))
    assert [d.line for d in out] == [1, 2]
    assert stats.rejected_by_reason == {"corrupt-stream": 1} and stats.lines == 3
    (reason,) = map(json.loads, (q / "00000-cut.jsonl.zst.reasons.jsonl").read_text().splitlines())
    assert reason["line"] == 3 and "truncated" in reason["detail"]
    kept = (q / "00000-cut.jsonl.zst.rejected.jsonl").read_bytes()
    assert kept.startswith(b'{"text": "all work') and len(kept) > MB


def test_option_and_config(tmp_path, capsys):
    p = tmp_path / "bomb.jsonl.zst"
    write_long(p, 3 * MB)
    assert main(["stats", str(p), "--max-line-bytes", str(MB)]) == 3
    assert "--max-line-bytes" in capsys.readouterr().err
    assert main(["stats", str(p), "--max-line-bytes", str(4 * MB)]) == 0
    with pytest.raises(ConfigError, match="positive number of bytes"):
        ReadConfig(max_line_bytes=0)
    # the default is left out of the fingerprint (artifacts keep their bytes); another counts
    assert "max_line_bytes" not in ReadConfig().to_dict()
    assert ReadConfig(max_line_bytes=DEFAULT_MAX_LINE_BYTES).fingerprint() == (
        ReadConfig().fingerprint()
    )
    assert ReadConfig(max_line_bytes=MB).fingerprint() != ReadConfig().fingerprint()


def test_peak_memory_is_bounded_for_a_one_gib_line(tmp_path):
    """A 1 GiB line (a ~1 MB zstd file) in a fresh process: read and rejected, and a 64 MiB line
    copied to the quarantine (skip), with an 8 MiB limit: peak RSS stays near the limit, far
    below the lines' sizes (the reader holds at most the limit plus one decompressed chunk).
    A bound check, not a timing."""
    pytest.importorskip("resource")
    script = textwrap.dedent(
        f"""
        import resource, sys
        sys.path.insert(0, {str(tmp_path)!r})
        from pipeline.errors import InputError
        from pipeline.read import ReadConfig, iter_documents
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            cfg = ReadConfig(max_line_bytes=8 * 2**20)
            list(iter_documents([{str(tmp_path / "big.jsonl.zst")!r}], cfg))
        except InputError as e:
            assert "more than the reader's limit" in str(e), e
        else:
            raise SystemExit("not rejected")
        cfg = ReadConfig(on_error="skip", quarantine_dir={str(tmp_path / "q")!r},
                         max_line_bytes=8 * 2**20)
        n = len(list(iter_documents([{str(tmp_path / "mid.jsonl.zst")!r}], cfg)))
        assert n == 4, n
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(base, peak)
        """
    )
    write_long(tmp_path / "big.jsonl.zst", 2**30)
    write_long(tmp_path / "mid.jsonl.zst", 64 * 2**20)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    base_kib, peak_kib = map(int, r.stdout.split())
    grown = (peak_kib - base_kib) / 1024
    assert grown < 64, f"peak RSS grew {grown:.0f} MiB reading a 1 GiB and a 64 MiB line"
    assert (tmp_path / "q" / "00000-mid.jsonl.zst.rejected.jsonl").stat().st_size == 64 * 2**20 + 1
