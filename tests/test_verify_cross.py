"""`pile verify`: shard lists next to a dataset, stale index maps / preshuffled data, interrupted
runs, --root, and hashing many small files."""

from __future__ import annotations

import hashlib
import shutil
import tracemalloc
from pathlib import Path

import pytest

import pipeline.verify.run as run_mod
import pipeline.verify.structure as structure_mod
from pipeline.cli.main import main
from pipeline.io import sha256_file
from pipeline.verify import Entry, verify_paths
from pipeline.verify.run import _batches

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample" / "val.jsonl.zst"
MAPS = "p_text_document_train_0_indexmap_772ns_2048sl_1234s.manifest.json"


@pytest.fixture(scope="module")
def ordered(tmp_path_factory):
    """tokenize -> order (sample preset) -> preshuffle into D/pre."""
    d = tmp_path_factory.mktemp("cross") / "d"
    prefix = str(d / "p_text_document")
    assert main(["-q", "tokenize", str(SAMPLE), "--out", str(d), "--prefix", "p"]) == 0
    assert main(["-q", "order", prefix, "--preset", "sample"]) == 0
    assert (
        main(["-q", "preshuffle", prefix, "--preset", "sample", "--out-dir", str(d / "pre")]) == 0
    )
    return d


@pytest.fixture
def d(ordered, tmp_path):
    out = tmp_path / "d"
    shutil.copytree(ordered, out)
    return out


def _retokenize(d: Path) -> None:
    args = ["-q", "tokenize", str(SAMPLE), "--out", str(d), "--prefix", "p", "--no-append-eod"]
    assert main(args) == 0


def _stale(capsys) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("STALE")]


def test_shards_next_to_the_dataset_are_listed_by_their_hash_list(d, capsys):
    assert main(["-q", "shard", str(d / "p_text_document"), "--num-shards", "3"]) == 0
    assert (d / "p_text_document.shard_hashes.txt").is_file()
    assert main(["verify", str(d)]) == 0
    out = capsys.readouterr().out
    assert "EXTRA" not in out and "all OK" in out
    # a stray shard-like file is still extra
    (d / "p_text_document-00009-of-00009.bin").write_bytes(b"x")
    assert main(["verify", str(d)]) == 4
    assert "EXTRA     " + str(d / "p_text_document-00009-of-00009.bin") in capsys.readouterr().out


def test_consistent_maps_and_preshuffled_pass(d, capsys):
    assert main(["verify", str(d)]) == 0
    assert "all OK" in capsys.readouterr().out


def test_maps_and_preshuffled_of_a_retokenized_dataset_are_stale(d, capsys):
    _retokenize(d)
    assert main(["verify", str(d)]) == 4
    stale = _stale(capsys)
    assert len(stale) == 2, stale
    maps, pre = sorted(stale)
    assert str(d / MAPS) in maps and "built from a different dataset" in maps
    assert "p_text_document.idx idx_sha256" in maps
    assert f"`pile order {d / 'p_text_document'} --preset sample`" in maps
    assert str(d / "pre" / "document.manifest.json") in pre and "p_text_document.idx" in pre
    assert f"pile preshuffle {d / 'p_text_document'} --preset sample --out-dir {d / 'pre'}" in pre


def test_quick_mode_compares_size_and_head_tail_hash(d, capsys):
    _retokenize(d)
    assert main(["verify", "--quick", str(d)]) == 4
    stale = _stale(capsys)
    assert len(stale) == 1 and str(d / MAPS) in stale[0] and "idx_quick_sha256" in stale[0]


def test_preshuffled_from_maps_rebuilt_since(d, capsys):
    _retokenize(d)
    assert main(["-q", "order", str(d / "p_text_document"), "--preset", "sample"]) == 0
    assert main(["verify", str(d / MAPS), str(d / "pre" / "document.manifest.json")]) == 4
    stale = _stale(capsys)
    assert len(stale) == 1, stale
    assert str(d / "pre" / "document.manifest.json") in stale[0]
    assert f"than the index maps {d / MAPS}" in stale[0]


def test_dataset_idx_is_hashed_once(d, monkeypatch):
    _retokenize(d)
    calls: list[str] = []

    def counting(path, *a, **k):
        calls.append(Path(path).name)
        return sha256_file(path, *a, **k)

    for mod in (run_mod, structure_mod):  # listed files, cross-checks: one hash in all
        monkeypatch.setattr(mod, "sha256_file", counting)
    rep = verify_paths([d])
    assert [p.kind for p in rep.problems] == ["stale", "stale"]
    assert calls.count("p_text_document.idx") == 1
    # the maps manifest alone: the .idx is not listed, so the cross-check hashes it (once)
    calls.clear()
    rep = verify_paths([d / MAPS])
    assert calls.count("p_text_document.idx") == 1 and [p.kind for p in rep.problems] == ["stale"]


def test_maps_without_their_dataset_warn(d):
    for ext in (".idx", ".bin", ".docs.parquet"):
        (d / f"p_text_document{ext}").unlink()
    rep = verify_paths([d / MAPS])
    assert rep.ok
    assert any("p_text_document.idx is not there" in w for w in rep.warnings)


def test_interrupted_run_without_manifest_names_its_temporaries(tmp_path, capsys):
    (tmp_path / ".p.tokenize.tmp").mkdir()
    (tmp_path / ".p.tokenize.tmp" / "000000.bin").write_bytes(b"x")
    (tmp_path / "p_text_document.bin.tmp").write_bytes(b"x")
    assert main(["verify", str(tmp_path)]) == 4
    out = capsys.readouterr().out
    assert "INTERRUPTED" in out and "2 temporary file(s) of an interrupted run" in out
    assert str(tmp_path / ".p.tokenize.tmp") in out
    assert str(tmp_path / "p_text_document.bin.tmp") in out
    assert "rerun the command that writes them" in out


def test_temporary_next_to_a_finished_dataset(d, capsys):
    (d / "p.manifest.json.tmp").write_bytes(b"{")
    assert main(["verify", str(d)]) == 4
    out = capsys.readouterr().out
    assert "1 temporary file(s) of an interrupted run: " + str(d / "p.manifest.json.tmp") in out
    assert "EXTRA" not in out  # reported once, as what it is


def test_root_that_does_not_exist_is_a_config_error(d, tmp_path, capsys):
    lst = tmp_path / "SUMS.txt"
    lst.write_text(f"{sha256_file(d / 'p_text_document.idx')}  p_text_document.idx\n")
    assert main(["verify", str(lst), "--root", str(tmp_path / "nonexist")]) == 2
    err = capsys.readouterr().err
    assert f"--root {tmp_path / 'nonexist'}: the directory does not exist" in err
    assert main(["verify", str(lst), "--root", str(lst)]) == 2
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 5000])
def test_sha256_file_buffer_sizes(tmp_path, size):
    p = tmp_path / "f"
    data = bytes(range(256)) * (size // 256 + 1)
    p.write_bytes(data[:size])
    want = hashlib.sha256(data[:size]).hexdigest()
    assert sha256_file(p) == want
    assert sha256_file(p, chunk=1024) == want


def test_sha256_file_of_a_small_file_allocates_no_8mib_buffer(tmp_path):
    p = tmp_path / "small"
    p.write_bytes(b"x" * 1000)
    tracemalloc.start()
    try:
        sha256_file(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_small_files_are_batched_large_ones_alone(tmp_path):
    entries = [
        Entry(path=tmp_path / f"s{i}", name=f"s{i}", source="l", bytes=10) for i in range(600)
    ]
    big = [
        Entry(path=tmp_path / f"b{i}", name=f"b{i}", source="l", bytes=8 << 20) for i in range(2)
    ]
    (tmp_path / "unsized").write_bytes(b"y" * (5 << 20))
    unsized = Entry(path=tmp_path / "unsized", name="unsized", source="l")  # a list: stat'ed
    batches = _batches(entries + big + [unsized])
    assert [len(b) for b in batches] == [1, 1, 1, 256, 256, 88]
    assert batches[0][0].bytes == 8 << 20 and batches[2] == [unsized]
    assert sum(len(b) for b in batches) == 603


def test_temporaries_of_a_live_run_are_reported_as_in_progress(tmp_path):
    from pipeline.verify import verify_paths
    from tests.procs import lock_held_elsewhere

    d = tmp_path / "out"
    (d / "standard").mkdir(parents=True)
    (d / "standard" / "pile_text_document.bin.tmp").write_bytes(b"partial")
    with lock_held_elsewhere(d) as holder:
        rep = verify_paths([d])
        assert [p.kind for p in rep.problems] == ["in-progress"]
        msg = rep.problems[0].message
        assert f"pid {holder.pid} on " in msg and "(pile build)" in msg
    rep = verify_paths([d])  # the writer is gone: now they are leftovers of an interrupted run
    assert [p.kind for p in rep.problems] == ["interrupted"]
