"""Work units: reading a plan's units in order is reading the files (ids, text, meta, statistics,
quarantine), for every unit size and input kind; damage gives the whole-file reader's errors."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import zstandard

from pipeline import docid
from pipeline.errors import ConfigError, InputError
from pipeline.read import ReadConfig, ReadStats, iter_file, resolve_inputs
from pipeline.read.lines import StreamError
from pipeline.read.units import (
    UnitPlan,
    iter_plan,
    iter_unit,
    merge_quarantine,
    plan_units,
    zstd_frames,
)
from tests.read.helpers import pile_line, write_gz, write_zst


def corpus(bad: bool = False) -> list[bytes]:
    """Lines of varied length (non-ASCII, a list-valued text, empty text, blank lines, a line
    over a 300-byte limit; with `bad` invalid JSON and a record without text)."""
    out = []
    for i in range(60):
        text = f"doc {i} " + "é∑ word " * (i * 7 % 23)
        out.append(pile_line(text, name=("Pile-CC", "Books3", "ArXiv")[i % 3], i=i))
        if i % 17 == 5:
            out.append(b"\n")  # blank line
        if i % 19 == 7:
            out.append(pile_line("", name="Pile-CC"))  # empty text: counted, no document
        if i == 31:
            out.append(pile_line("long " * 1000, name="Books3"))  # over max_line_bytes=3000
        if i == 40:
            out.append(json.dumps({"text": ["para a", "para b"]}).encode() + b"\n")
        if bad and i % 13 == 3:
            out.append(b'{"text": "unterminated\n')
        if bad and i == 22:
            out.append(b'{"meta": {"pile_set_name": "X"}}\n')
    out[-1] = out[-1].rstrip(b"\n")  # the last line lacks its newline
    return out


def write_inputs(d: Path, lines: list[bytes]) -> list[str]:
    d.mkdir(parents=True, exist_ok=True)
    (d / "a.jsonl").write_bytes(b"".join(lines))
    write_zst(d / "b.jsonl.zst", lines, frames=9)  # frames cut inside lines
    write_zst(d / "c.jsonl.zst", lines, frames=1)  # lm_dataformat's single frame
    write_gz(d / "d.jsonl.gz", lines)
    return [str(d / n) for n in ("a.jsonl", "b.jsonl.zst", "c.jsonl.zst", "d.jsonl.gz")]


def read_whole(files, config):
    stats = ReadStats()
    docs = [
        (x.doc_id, x.text, x.pile_set_name, x.meta, x.file, x.line)
        for f in files
        for x in iter_file(f, config, stats)
    ]
    return docs, stats.to_dict()


def read_units(plan, config):
    stats = ReadStats()
    docs = [
        (x.doc_id, x.text, x.pile_set_name, x.meta, x.file, x.line)
        for x in iter_plan(plan, config, stats)
    ]
    return docs, stats.to_dict()


def tree(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())} if d.exists() else {}


@pytest.mark.parametrize("unit_bytes", [1, 97, 1000, 4000, 10**9])
def test_units_read_as_the_whole_files(tmp_path, unit_bytes):
    files = resolve_inputs(write_inputs(tmp_path / "in", corpus()))
    config = ReadConfig(max_line_bytes=3000, on_error="skip", quarantine_dir=str(tmp_path / "qw"))
    want = read_whole(files, config)
    plan = plan_units(files, unit_bytes, tmp_path / "cache", frame_bytes=150)
    uconfig = ReadConfig(max_line_bytes=3000, on_error="skip", quarantine_dir=str(tmp_path / "qu"))
    assert read_units(plan, uconfig) == want
    assert want[1]["rejected_by_reason"] == {"line-too-long": 4}
    assert tree(tmp_path / "qu") == tree(tmp_path / "qw")
    per_file = [len(plan.units_of(f.index)) for f in files]
    if unit_bytes == 1:  # one unit per line of the jsonl and of the 1-line frames of the cache
        assert per_file[0] == want[1]["lines"] // 4 == len(corpus())
        assert per_file[2] == per_file[3] > 30
    if unit_bytes == 10**9:
        assert per_file == [1, 1, 1, 1]
        assert {u.mode for u in plan.units} == {"file"}


@pytest.mark.parametrize("unit_bytes", [1, 300, 2000])
def test_bad_records_in_skip_mode_are_counted_and_quarantined_the_same(tmp_path, unit_bytes):
    files = resolve_inputs(write_inputs(tmp_path / "in", corpus(bad=True)))
    want = read_whole(files, ReadConfig(on_error="skip", quarantine_dir=str(tmp_path / "qw")))
    assert want[1]["rejected_by_reason"] == {"invalid-json": 20, "missing-text": 4}
    plan = plan_units(files, unit_bytes, tmp_path / "cache", frame_bytes=100)
    assert len(plan.units) > 8
    # a part left by an earlier, killed run is replaced, never merged
    (tmp_path / "qu").mkdir()
    parts = plan.units_of(1)
    assert len(parts) > 1
    for u in parts:
        (tmp_path / "qu" / f"00001-b.jsonl.zst.part{u.part:05d}.rejected.jsonl").write_bytes(b"x\n")
    got = read_units(plan, ReadConfig(on_error="skip", quarantine_dir=str(tmp_path / "qu")))
    assert got == want
    assert tree(tmp_path / "qu") == tree(tmp_path / "qw")
    assert not any(".part" in n for n in tree(tmp_path / "qu"))
    # merging again (a rerun killed after the merge) keeps the merged files
    merge_quarantine(plan, tmp_path / "qu")
    assert tree(tmp_path / "qu") == tree(tmp_path / "qw")


def test_raise_mode_names_the_original_file_and_line(tmp_path):
    files = resolve_inputs(write_inputs(tmp_path / "in", corpus(bad=True)))
    plan = plan_units(files, 200, tmp_path / "cache", frame_bytes=100)
    for f in files:
        with pytest.raises(InputError) as whole:
            list(iter_file(f))
        with pytest.raises(InputError) as units:
            for u in plan.units_of(f.index):
                list(iter_unit(u))
        assert str(units.value) == str(whole.value)
        assert f"{f.path}:5 (byte offset" in str(units.value)


def test_ids_are_file_index_and_line_whatever_the_unit(tmp_path):
    files = resolve_inputs(write_inputs(tmp_path / "in", corpus()))
    plan = plan_units(files, 50, tmp_path / "cache", frame_bytes=60)
    for u in plan.units:
        lo, hi = u.id_range()
        ids = [x.doc_id for x in iter_unit(u, ReadConfig(max_line_bytes=10**6))]
        assert all(lo <= i < hi for i in ids)
        assert all(docid.file_index(i) == u.file.index for i in ids)
    # units of a file tile its lines
    for f in files:
        us = plan.units_of(f.index)
        assert us[0].first_line == 1
        for a, b in zip(us, us[1:]):
            assert a.first_line + a.lines == b.first_line


def test_multi_frame_file_is_indexed_in_place_entering_frames_inside_lines(tmp_path):
    lines = corpus()
    p = write_zst(tmp_path / "m.jsonl.zst", lines, frames=25)
    frames, clean = zstd_frames(str(p))
    assert clean and len(frames) >= 25
    assert frames[0].start == 0 and sum(fr.size for fr in frames) == p.stat().st_size
    files = resolve_inputs([str(p)])
    plan = plan_units(files, 1)  # no cache needed
    assert all(u.mode == "frames" and u.read_path == str(p) for u in plan.units)
    assert any(u.skip > 0 for u in plan.units)  # entered past a line begun in the frame before
    config = ReadConfig(max_line_bytes=10**6)
    assert read_units(plan, config) == read_whole(files, config)


def test_line_spanning_several_frames(tmp_path):
    lines = [pile_line("a"), pile_line("b" * 5000), pile_line("c"), pile_line("d")]
    p = write_zst(tmp_path / "m.jsonl.zst", lines, frames=40)
    files = resolve_inputs([str(p)])
    plan = plan_units(files, 1)
    # lines 2 and 4 start inside frames that hold lines 1 and 3: frames are the entry points,
    # and the ~38 frames inside line 2 hold no line start
    assert [(u.first_line, u.lines) for u in plan.units] == [(1, 2), (3, 2)]
    assert read_units(plan, ReadConfig()) == read_whole(files, ReadConfig())


def test_plan_is_deterministic_serializable_and_independent_of_the_cache_place(tmp_path):
    files = resolve_inputs(write_inputs(tmp_path / "in", corpus()))
    a = plan_units(files, 500, tmp_path / "c1", frame_bytes=120)
    b = plan_units(files, 500, tmp_path / "c2", frame_bytes=120)
    assert a.fingerprint == b.fingerprint
    assert a.to_json() == plan_units(files, 500, tmp_path / "c1", frame_bytes=120).to_json()
    assert plan_units(files, 501, tmp_path / "c1", frame_bytes=120).fingerprint != a.fingerprint
    a.save(tmp_path / "units.json")
    again = UnitPlan.load(tmp_path / "units.json")
    assert again == a and again.fingerprint == a.fingerprint
    assert not list(tmp_path.glob("*.tmp"))


def test_cache_is_reused_for_any_unit_size(tmp_path):
    files = resolve_inputs(write_inputs(tmp_path / "in", corpus()))
    plan_units(files, 300, tmp_path / "cache", frame_bytes=100)
    caches = sorted((tmp_path / "cache").glob("*.jsonl.zst"))
    assert len(caches) == 2  # the single-frame zst and the gz
    stamp = [c.stat().st_mtime_ns for c in caches]
    plan = plan_units(files, 700, tmp_path / "cache", frame_bytes=100)
    assert [c.stat().st_mtime_ns for c in caches] == stamp
    assert read_units(plan, ReadConfig(max_line_bytes=10**6)) == read_whole(
        files, ReadConfig(max_line_bytes=10**6)
    )
    # the cache is multi-frame with content checksums, frames cut at line ends
    frames, clean = zstd_frames(str(caches[0]))
    assert clean and len(frames) > 5
    with open(caches[0], "rb") as fh:
        head = fh.read(18)
    assert zstandard.get_frame_parameters(head).has_checksum


def test_without_cache_a_single_frame_or_gzip_file_is_one_unit(tmp_path):
    files = resolve_inputs(write_inputs(tmp_path / "in", corpus()))
    plan = plan_units(files, 1)
    counts = [len(plan.units_of(f.index)) for f in files]
    assert counts[0] == len(corpus()) and counts[1] > 5 and counts[2:] == [1, 1]


def test_damaged_input_is_planned_whole_with_the_whole_file_errors(tmp_path):
    lines = corpus()
    t = write_zst(tmp_path / "t.jsonl.zst", lines, frames=6)
    t.write_bytes(t.read_bytes()[:-7])  # truncated
    c = write_zst(tmp_path / "c.jsonl.zst", lines, frames=1)
    data = bytearray(c.read_bytes())
    data[len(data) // 2] ^= 0xFF
    c.write_bytes(bytes(data))
    g = write_gz(tmp_path / "g.jsonl.gz", lines)
    g.write_bytes(g.read_bytes()[:-30])
    m = write_zst(tmp_path / "m.jsonl.zst", lines, frames=8)  # a corrupt block in frame 5
    frames, _ = zstd_frames(str(m))
    data = bytearray(m.read_bytes())
    hit = frames[5].start + frames[5].size // 2
    data[hit : hit + 40] = b"\xff" * 40
    m.write_bytes(bytes(data))
    files = resolve_inputs([str(t), str(c), str(g), str(m)])
    plan = plan_units(files, 1, tmp_path / "cache", frame_bytes=50)
    assert [u.mode for u in plan.units] == ["file"] * 4
    for f, u in zip(files, plan.units):
        with pytest.raises(InputError) as whole:
            list(iter_file(f, ReadConfig(max_line_bytes=10**6)))
        with pytest.raises(InputError) as unit:
            list(iter_unit(u, ReadConfig(max_line_bytes=10**6)))
        assert str(unit.value) == str(whole.value)
    q1, q2 = tmp_path / "q1", tmp_path / "q2"
    w = read_whole(files, ReadConfig(on_error="skip", quarantine_dir=str(q1)))
    got = read_units(plan, ReadConfig(on_error="skip", quarantine_dir=str(q2)))
    assert got == w and w[1]["rejected_by_reason"]["corrupt-stream"] == 4
    assert tree(q1) == tree(q2)


def test_damage_inside_a_unit_names_absolute_offsets(tmp_path):
    """A frame damaged after planning: the unit's error is the one the whole-file reader gives
    for the same file (absolute compressed and decompressed offsets, line number)."""
    lines = [pile_line(f"document {i} " + "z" * (i % 50)) for i in range(200)]
    p = write_zst(tmp_path / "m.jsonl.zst", lines, frames=10)
    files = resolve_inputs([str(p)])
    plan = plan_units(files, 1000)
    frames, _ = zstd_frames(str(p))
    data = bytearray(p.read_bytes())
    hit = frames[7].start + frames[7].size // 2
    data[hit : hit + 40] = b"\xff" * 40
    st = p.stat()
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(StreamError) as whole:
        list(iter_file(files[0]))
    errors = []
    for u in plan.units:
        try:
            list(iter_unit(u))
        except StreamError as e:
            errors.append(e)
    # the unit whose last line runs into the damaged frame meets it first, as the file does
    assert 1 <= len(errors) <= 2
    assert str(errors[0]) == str(whole.value)
    assert errors[0].line == whole.value.line and errors[0].offset == whole.value.offset
    m = re.search(r"corrupt zstd data at compressed byte offset (\d+)", str(errors[0]))
    assert m and frames[7].start < int(m.group(1)) < frames[8].start


def test_file_changed_since_planning_is_named(tmp_path):
    files = resolve_inputs(write_inputs(tmp_path / "in", corpus()))
    plan = plan_units(files, 400, tmp_path / "cache", frame_bytes=100)
    with open(files[0].path, "ab") as fh:
        fh.write(b"\n" + pile_line("appended"))
    with pytest.raises(InputError, match="changed since the units were planned"):
        list(iter_unit(plan.units_of(0)[0]))
    # rewritten in place with the same size: the modification time tells
    b = plan.units_of(1)[1]
    st = os.stat(b.read_path)
    os.utime(b.read_path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(InputError, match="changed since the units were planned"):
        list(iter_unit(b))


def test_manifest_entry_names_inputs_by_label(tmp_path):
    files = resolve_inputs(write_inputs(tmp_path / "in", corpus()))
    plan = plan_units(files, 400, tmp_path / "cache", frame_bytes=100)
    entry = plan.manifest_entry()
    assert entry["fingerprint"] == plan.fingerprint
    assert str(tmp_path) not in json.dumps(entry)
    assert [u[:3] for u in entry["units"]][:2] == [["a.jsonl", 1, plan.units[0].lines]] + [
        ["a.jsonl", plan.units[1].first_line, plan.units[1].lines]
    ]


def test_bad_unit_size_and_tampered_plan_are_config_errors(tmp_path):
    files = resolve_inputs(write_inputs(tmp_path / "in", corpus()))
    for bad in (0, -5, True, 1.5):
        with pytest.raises(ConfigError, match="unit_bytes"):
            plan_units(files, bad)
    d = plan_units(files, 400).to_dict()
    d["units"][1]["first_line"] += 1
    with pytest.raises(ConfigError, match="fingerprint"):
        UnitPlan.from_dict(d)
    with pytest.raises(ConfigError, match="malformed"):
        UnitPlan.from_dict({"version": 1, "files": [], "units": [{"file_index": 3}]})
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match="not a readable unit plan"):
        UnitPlan.load(tmp_path / "broken.json")


def test_parallel_planning_gives_the_same_plan_and_cache_bytes(tmp_path):
    from pipeline.engine.local import LocalExecutor

    m = write_zst(tmp_path / "m.jsonl.zst", corpus(), frames=12)
    s = write_zst(tmp_path / "s.jsonl.zst", corpus(), frames=1)
    files = resolve_inputs([str(m), str(s)])
    with LocalExecutor(2) as ex:
        par = plan_units(files, 300, tmp_path / "c2", frame_bytes=200, executor=ex)
    seq = plan_units(files, 300, tmp_path / "c1", frame_bytes=200)
    assert par.fingerprint == seq.fingerprint
    assert tree(tmp_path / "c2") == tree(tmp_path / "c1")


@pytest.mark.parametrize("seed", range(6))
def test_random_corpora_and_cuts(tmp_path, seed):
    """Seeded random line lengths (some lines spanning many frames, blank lines, a missing last
    newline), random frame cuts and unit sizes: units read as the whole file."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = []
    for i in range(int(rng.integers(1, 80))):
        n = int(rng.choice([0, 1, 5, 40, 400, 3000]))
        lines.append(b"\n" if rng.random() < 0.05 else pile_line(f"{i} " + "q" * n))
    if rng.random() < 0.5:
        lines[-1] = lines[-1].rstrip(b"\n") or b"{}"
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.jsonl").write_bytes(b"".join(lines))
    write_zst(d / "b.jsonl.zst", lines, frames=int(rng.integers(1, 60)))
    write_zst(d / "c.jsonl.zst", lines, frames=1)
    files = resolve_inputs(sorted(str(p) for p in d.iterdir()))
    config = ReadConfig(on_error="skip", quarantine_dir=str(tmp_path / "qw"))
    want = read_whole(files, config)
    for unit_bytes in (1, int(rng.integers(2, 5000)), 10**9):
        frame = int(rng.integers(1, 3000))
        plan = plan_units(files, unit_bytes, tmp_path / f"c{frame}", frame_bytes=frame)
        q = tmp_path / f"q{unit_bytes}-{frame}"
        assert read_units(plan, ReadConfig(on_error="skip", quarantine_dir=str(q))) == want
        assert tree(q) == tree(tmp_path / "qw")


def test_unit_stats_tasks_merge_to_the_file_stats(tmp_path):
    from pipeline.engine.local import LocalExecutor
    from pipeline.read import read_file_stats
    from pipeline.read.units import read_unit_stats

    files = resolve_inputs(write_inputs(tmp_path / "in", corpus()))
    config = ReadConfig(max_line_bytes=10**6)
    plan = plan_units(files, 700, tmp_path / "cache", frame_bytes=200)
    assert len(plan.units) > 12
    want = ReadStats()
    for f in files:
        want.merge(read_file_stats((f, config)))
    got = ReadStats()
    with LocalExecutor(2) as ex:
        for s in ex.map(read_unit_stats, [(u, config) for u in plan.units]):
            got.merge(s)
    assert got.to_dict() == want.to_dict() and got.files == 4 and got.documents > 200


def test_tables_and_urls_are_whole_file_units(tmp_path):
    from pipeline.read import InputFile

    url = InputFile(0, "s3://bucket/train/00.jsonl.zst", "jsonl.zst", name="train/00.jsonl.zst")
    table = InputFile(1, str(tmp_path / "t.parquet"), "parquet", name="t.parquet")
    plan = plan_units([url, table], 1, tmp_path / "cache")
    assert [(u.mode, u.lines, u.parts) for u in plan.units] == [("file", None, 1)] * 2
    assert not (tmp_path / "cache").exists()
