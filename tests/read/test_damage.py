"""Damaged compressed input: nothing decoded before the damage is lost, the damage is named where
it is, counts add up, and damage that still decodes is caught by the frame checksum (or, without
one, said to be undetectable)."""

from __future__ import annotations

import json
import logging
import random

import pytest
import zstandard

from pipeline.errors import InputError
from pipeline.read import ReadConfig, ReadStats, iter_documents

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def docs(paths, **kw):
    stats = ReadStats()
    out = list(iter_documents(paths, ReadConfig(**kw), stats))
    return out, stats


def varied_lines(n: int, words: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [
        json.dumps(
            {
                "text": f"doc {i} " + " ".join(rng.choice(WORDS) for _ in range(words)),
                "meta": {"pile_set_name": "Pile-CC"},
            }
        ).encode()
        + b"\n"
        for i in range(n)
    ]


def zstd_blocks(frame: bytes) -> list[tuple[int, int]]:
    """(offset, length incl. its 3-byte header) of each block of a single dict-less frame."""
    fhd = frame[4]
    single = (fhd >> 5) & 1
    pos = 5 + (0 if single else 1) + ((0, 2, 4, 8)[fhd >> 6] or (1 if single else 0))
    blocks = []
    while True:
        h = int.from_bytes(frame[pos : pos + 3], "little")
        size = 3 + (1 if (h >> 1) & 3 == 1 else h >> 3)
        blocks.append((pos, size))
        pos += size
        if h & 1:
            return blocks


def check_counts(stats: ReadStats) -> None:
    assert stats.lines == stats.documents + stats.empty + stats.blank_lines + stats.rejected


def test_corrupt_block_keeps_every_document_decoded_before_it(tmp_path):
    lines = varied_lines(100, 900)  # ~6 KB each: 100 documents over several 128 KiB blocks
    data = b"".join(lines)
    frame = zstandard.ZstdCompressor(level=3).compress(data)
    blocks = zstd_blocks(frame)
    assert len(blocks) >= 4
    at, _ = blocks[2]  # damage the third block: its header now names the reserved block type
    bad = bytearray(frame)
    bad[at] |= 0b110
    p = tmp_path / "c.jsonl.zst"
    p.write_bytes(bytes(bad))
    damage_from = 2 * 128 * 1024  # every block but the last decodes to 128 KiB

    with pytest.raises(InputError) as e:
        docs([p])
    assert f"corrupt zstd data at compressed byte offset {at} " in str(e.value)
    assert f"(decompressed byte offset {damage_from};" in str(e.value)

    q = tmp_path / "q"
    out, stats = docs([p], on_error="skip", quarantine_dir=str(q))
    # every line that ends before the damaged block is read; the one it cuts is quarantined
    ends = [sum(map(len, lines[: i + 1])) for i in range(len(lines))]
    whole = sum(end <= damage_from for end in ends)
    assert [d.line for d in out] == list(range(1, whole + 1))
    assert [d.text for d in out] == [json.loads(x)["text"] for x in lines[:whole]]
    assert stats.rejected_by_reason == {"corrupt-stream": 1}
    check_counts(stats)
    assert stats.lines == whole + 1
    cut_at = ends[whole - 1]
    assert (q / "00000-c.jsonl.zst.rejected.jsonl").read_bytes() == data[cut_at:damage_from] + b"\n"
    (reason,) = map(json.loads, (q / "00000-c.jsonl.zst.reasons.jsonl").read_text().splitlines())
    assert reason["line"] == whole + 1 and reason["byte_offset"] == cut_at
    assert f"compressed byte offset {at}" in reason["detail"]


def test_truncation_counts_add_up(tmp_path):
    lines = varied_lines(60, 900)
    frame = zstandard.ZstdCompressor(level=3).compress(b"".join(lines))
    p = tmp_path / "t.jsonl.zst"
    p.write_bytes(frame[: len(frame) * 2 // 3])
    out, stats = docs([p], on_error="skip", quarantine_dir=str(tmp_path / "q"))
    assert 0 < len(out) < 60
    check_counts(stats)


def altered_but_decodable(frame: bytes, data: bytes) -> int:
    """An offset where 16 flipped bytes still decode, to other valid records."""
    for off in range(20, len(frame) - 40):
        try:
            out = zstandard.ZstdDecompressor().decompress(flip16(frame, off))
            records = [json.loads(x) for x in out.decode().splitlines()]
        except (zstandard.ZstdError, ValueError):
            continue
        if out != data and len(records) == data.count(b"\n"):
            if all(isinstance(r, dict) and isinstance(r.get("text"), str) for r in records):
                return off
    raise AssertionError("no decodable 16-byte corruption found")  # pragma: no cover


def flip16(frame: bytes, off: int) -> bytes:
    bad = bytearray(frame)
    bad[off : off + 16] = bytes(b ^ 0x01 for b in bad[off : off + 16])
    return bytes(bad)


def test_checksum_catches_damage_that_decodes(tmp_path, caplog):
    lines = varied_lines(100, 40, seed=1)
    data = b"".join(lines)
    plain = zstandard.ZstdCompressor(level=3, write_checksum=False).compress(data)
    checked = zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)
    off = altered_but_decodable(plain, data)

    # without a checksum the damage decodes to altered text: say once that it cannot be seen
    p = tmp_path / "nock.jsonl.zst"
    p.write_bytes(flip16(plain, off) + plain)  # two frames, one warning
    with caplog.at_level(logging.WARNING, logger="pipeline.read"):
        out, _ = docs([p])
    assert len(out) == 200
    assert [d.text for d in out[:100]] != [json.loads(x)["text"] for x in lines]
    warnings = [
        r.getMessage() for r in caplog.records if "without a content checksum" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert str(p) in warnings[0] and "pile verify SHA256SUMS.txt" in warnings[0]

    # with one, the same damage is an error naming the file and the frame's offset
    p = tmp_path / "ck.jsonl.zst"
    p.write_bytes(checked + flip16(checked, off))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.read"):
        with pytest.raises(InputError) as e:
            docs([p])
        assert not [r for r in caplog.records if "without a content checksum" in r.getMessage()]
    msg = str(e.value)
    assert f"{p}: zstd content checksum mismatch" in msg
    assert f"frame at compressed byte offset {len(checked)} " in msg
    assert f"decompressed bytes {len(data)}-{2 * len(data)}" in msg
    with pytest.raises(InputError, match="checksum mismatch"):
        docs([p], on_error="skip", quarantine_dir=str(tmp_path / "q"))
    # an undamaged checksummed file reads silently and fully
    p.write_bytes(checked + checked)
    assert len(docs([p])[0]) == 200


def test_skippable_frames_are_skipped(tmp_path):
    lines = varied_lines(5, 10)
    frame = zstandard.ZstdCompressor(write_checksum=True).compress(b"".join(lines))
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    p = tmp_path / "s.jsonl.zst"
    p.write_bytes(skippable + frame + skippable + frame)
    assert len(docs([p])[0]) == 10


def deep(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    "record, reason",
    [
        ('{"text": "deep record", "x": ' + deep(1100) + "}", "too-deep"),
        ('{"text": "deep meta", "meta": ' + deep(1030) + "}", "too-deep"),
        ('{"text": "deep list", "meta": {"l": ' + "[" * 5000 + "]" * 5000 + "}}", "too-deep"),
        ('{"text": "name", "meta": {"pile_set_name": "Pile-\\ud800"}}', "lone-surrogate"),
        ('{"text": "top name", "pile_set_name": "\\udfff"}', "lone-surrogate"),
    ],
)
def test_deep_json_and_lone_surrogate_names_are_clean_rejections(tmp_path, record, reason):
    good = b'{"text": "fine", "meta": {"pile_set_name": "A"}}\n'
    p = tmp_path / "r.jsonl"
    p.write_bytes(good + record.encode() + b"\n" + good)
    with pytest.raises(InputError, match=rf"{p}:2 \(byte offset {len(good)}\): ") as e:
        docs([p])
    assert "--on-error skip" in str(e.value)
    q = tmp_path / "q"
    out, stats = docs([p], on_error="skip", quarantine_dir=str(q))
    assert [d.line for d in out] == [1, 3] and stats.rejected_by_reason == {reason: 1}
    check_counts(stats)
    assert (q / "00000-r.jsonl.rejected.jsonl").read_bytes() == record.encode() + b"\n"
    (why,) = map(json.loads, (q / "00000-r.jsonl.reasons.jsonl").read_text().splitlines())
    assert why["reason"] == reason and why["line"] == 2
    # the counts of a skipped run serialise (a surrogate would break stats.json)
    json.dumps(stats.to_dict()).encode("utf-8")
