"""`pile verify`: manifests, directories, sha256sum and Pythia lists; every failure names its file."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import zstandard

from pipeline.cli.main import main
from pipeline.manifest import write_manifest
from pipeline.shards.mmidx import encode_index
from pipeline.tokenize.stage import run_tokenize
from pipeline.verify import check_index, collect_sources, verify_paths

from .conftest import shared_path

NAMES = (
    "t_text_document.bin",
    "t_text_document.idx",
    "t_text_document.docs.parquet",
    "t.manifest.json",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("verify")
    docs = [f"document {i} " + "text " * (i % 5) for i in range(30)]
    data = b"".join(
        json.dumps({"text": t, "meta": {"pile_set_name": "S"}}).encode() + b"\n" for t in docs
    )
    src = d / "in.jsonl.zst"
    src.write_bytes(zstandard.ZstdCompressor().compress(data))
    run_tokenize([src], d / "ds", "t")
    return d / "ds"


@pytest.fixture
def ds(built, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(built, out)
    return out


def _flip(path, offset):
    raw = bytearray(path.read_bytes())
    raw[offset % len(raw)] ^= 0x01
    path.write_bytes(bytes(raw))


def test_clean_dataset_passes(ds, capsys):
    assert main(["verify", str(ds / "t.manifest.json")]) == 0
    out = capsys.readouterr().out
    assert "3 file(s) from 1 source(s)" in out and "all OK" in out


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("where", [0, -1, 40])
def test_flipped_byte_fails_naming_the_file(ds, capsys, name, where):
    _flip(ds / name, where)
    assert main(["verify", str(ds)]) == 4
    cap = capsys.readouterr()
    flagged = [line for line in cap.out.splitlines() if name in line.split(":")[0]]
    assert flagged, cap.out
    assert "problem(s) found" in cap.err


def test_flipped_byte_in_bin_hash_mismatch_message(ds, capsys):
    _flip(ds / "t_text_document.bin", 3)
    rep = verify_paths([ds])
    assert [(p.kind, p.path.endswith("t_text_document.bin")) for p in rep.problems] == [
        ("sha256", True)
    ]
    assert "expected" in rep.problems[0].message


def test_quick_checks_sizes_not_hashes(ds, capsys):
    _flip(ds / "t_text_document.bin", 3)
    assert main(["verify", "--quick", str(ds)]) == 0
    assert "quick:" in capsys.readouterr().out
    with open(ds / "t_text_document.bin", "ab") as f:
        f.write(b"\0\0")
    assert main(["verify", "--quick", str(ds)]) == 4
    out = capsys.readouterr().out
    assert "SIZE" in out and "t_text_document.bin" in out


def test_missing_file(ds, capsys):
    (ds / "t_text_document.docs.parquet").unlink()
    assert main(["verify", str(ds)]) == 4
    out = capsys.readouterr().out
    assert "MISSING" in out and "t_text_document.docs.parquet: file not found" in out


def test_extra_file_next_to_manifest(ds, capsys):
    (ds / "t_text_document.extra.bin").write_bytes(b"x")
    (ds / "unrelated.txt").write_text("not ours")
    assert main(["verify", str(ds)]) == 4
    out = capsys.readouterr().out
    assert "EXTRA" in out and "t_text_document.extra.bin" in out and "unrelated" not in out
    assert main(["verify", "--no-extra", str(ds)]) == 0


def test_other_manifests_in_the_directory_are_not_extra(ds, built, capsys):
    # a second dataset "t_0.87" in the same directory: its files start with "t_" but are listed
    for n in NAMES[:3]:
        shutil.copy(ds / n, ds / n.replace("t_text", "t_0.87_text"))
    write_manifest(
        ds / "t_0.87.manifest.json",
        kind="token-dataset",
        config_fingerprint="f" * 64,
        files=[
            (ds / n.replace("t_text", "t_0.87_text"), r)
            for n, r in zip(NAMES[:3], ("bin", "idx", "sidecar"))
        ],
    )
    assert main(["verify", str(ds / "t.manifest.json")]) == 0
    assert main(["verify", str(ds)]) == 0
    out = capsys.readouterr().out
    assert "6 file(s) from 2 source(s)" in out


def test_directory_recursion(ds, tmp_path, capsys):
    shutil.copytree(ds, tmp_path / "tree" / "a" / "deep")
    shutil.copytree(ds, tmp_path / "tree" / "b")
    assert main(["verify", str(tmp_path / "tree")]) == 0
    assert "6 file(s) from 2 source(s)" in capsys.readouterr().out
    _flip(tmp_path / "tree" / "a" / "deep" / "t_text_document.idx", 10)
    assert main(["verify", str(tmp_path / "tree")]) == 4
    assert "deep/t_text_document.idx" in capsys.readouterr().out


def test_structure_errors_with_consistent_hashes(tmp_path, capsys):
    d = tmp_path / "s"
    d.mkdir()
    raw = bytearray(encode_index(np.uint16, np.array([2, 3, 1])))
    raw[34 + 12 + 8 : 34 + 12 + 16] = (5).to_bytes(8, "little")  # pointer of item 1: 5, not 4
    (d / "x.idx").write_bytes(bytes(raw))
    (d / "x.bin").write_bytes(b"\0" * 10)  # 5 tokens, idx says 6
    zero = encode_index(np.uint16, np.array([2, 0]))
    (d / "z.idx").write_bytes(zero)
    np.save(d / "bad_doc_idx.npy", np.zeros((2, 2), dtype=np.int32))
    (d / "epoch.npy").write_bytes(b"not an array")  # the order stage lists .npy sidecars too
    write_manifest(
        d / "x.manifest.json",
        kind="test",
        config_fingerprint="0" * 64,
        files=[
            (d / "x.idx", "idx"),
            (d / "x.bin", "bin"),
            (d / "z.idx", "idx"),
            (d / "bad_doc_idx.npy", "doc_idx"),
            (d / "epoch.npy", "sidecar"),
        ],
    )
    assert main(["verify", str(d)]) == 4
    out = capsys.readouterr().out
    assert "x.idx: pointer of item 1 is 5, expected 4" in out
    assert "x.bin: 10 bytes, but" in out and "6 tokens x 2 bytes = 12" in out
    assert "z.idx: item 1 has size 0" in out
    assert "bad_doc_idx.npy" in out and "1-D" in out
    assert "epoch.npy: not a readable .npy array" in out


def test_check_index_doc_idx_rules(tmp_path):
    p = tmp_path / "d.idx"
    p.write_bytes(encode_index(np.uint16, np.array([1, 1]), doc_idx=np.array([0, 2, 1])))
    problems = check_index(p)
    assert any("doc_idx ends at 1, expected N = 2" in x for x in problems)
    assert any("doc_idx decreases at position 2" in x for x in problems)
    p.write_bytes(encode_index(np.uint16, np.array([1, 1]), doc_idx=np.array([1, 2])))
    assert any("doc_idx starts at 1" in x for x in check_index(p))
    # Pythia's pre-shuffled document.idx: doc_idx = [0]; fine in general, not for a token dataset
    p.write_bytes(encode_index(np.uint16, np.array([1, 1]), doc_idx=np.array([0])))
    assert check_index(p) == []
    assert any("needs N + 1 = 3" in x for x in check_index(p, one_doc_per_item=True))
    p.write_bytes(encode_index(np.uint16, np.array([1, 1]), doc_idx=np.array([0, 0, 2])))
    assert check_index(p) == []
    assert any("does not increase at position 1" in x for x in check_index(p, True))
    p.write_bytes(encode_index(np.uint16, np.array([1, 1])))
    assert check_index(p, one_doc_per_item=True) == []


def test_manifest_counts_must_match_the_index(ds, capsys):
    m = json.loads((ds / "t.manifest.json").read_text())
    files = [(ds / f["name"], f["role"]) for f in m["files"]]
    write_manifest(
        ds / "t.manifest.json",
        kind="token-dataset",
        config_fingerprint=m["config_fingerprint"],
        files=files,
        counts={**m["counts"], "tokens": m["counts"]["tokens"] + 1},
    )
    assert main(["verify", str(ds)]) == 4
    assert "counts say 30 documents" in capsys.readouterr().out


def test_sha256sum_and_pythia_lists(ds, tmp_path, capsys):
    lines_sum, lines_py = [], []
    for n in NAMES[:3]:
        h = hashlib.sha256((ds / n).read_bytes()).hexdigest()
        lines_sum.append(f"{h}  {n}")
        lines_py.append(f"{n} {h}")
    (ds / "SHA256SUMS.txt").write_text("\n".join(lines_sum) + "\n")
    (tmp_path / "pythia.txt").write_text("\n".join(lines_py) + "\n")
    assert main(["verify", "--no-extra", str(ds / "SHA256SUMS.txt")]) == 0
    # a list elsewhere, files resolved with --root
    assert main(["verify", "--root", str(ds), str(tmp_path / "pythia.txt")]) == 0
    srcs, _ = collect_sources([tmp_path / "pythia.txt"], root=ds)
    assert srcs[0].kind == "pythia" and [e.role for e in srcs[0].entries] == ["bin", "idx", None]
    _flip(ds / "t_text_document.idx", 50)
    assert main(["verify", "--root", str(ds), str(tmp_path / "pythia.txt")]) == 4
    assert "SHA256" in capsys.readouterr().out


def test_pythia_published_list(tmp_path, capsys):
    ref = shared_path("reference", "pythia_deduped_shard_hashes.txt")
    srcs, _ = collect_sources([ref], root=tmp_path)
    entries = srcs[0].entries
    assert srcs[0].kind == "pythia" and len(entries) == 84
    assert entries[0].name == "pile_0.87_deduped_text_document-00000-of-00082.bin"
    assert entries[0].sha256.startswith("44fb8e48")
    assert sum(e.role == "bin-shard" for e in entries) == 83 and entries[-1].role == "idx"
    assert main(["verify", "--root", str(tmp_path), str(ref)]) == 4
    cap = capsys.readouterr()
    out = cap.out
    assert "all 84 files listed in" in cap.err and "pass a --root DIR that holds them" in cap.err
    assert out.count("MISSING") == 84
    assert "pile_0.87_deduped_text_document-00082-of-00082.bin: file not found" in out


def test_shard_list_incomplete(tmp_path, capsys):
    h = "0" * 64
    (tmp_path / "l.txt").write_text(f"d-00000-of-00002.bin {h}\nd-00002-of-00002.bin {h}\n")
    assert main(["verify", str(tmp_path / "l.txt")]) == 4
    assert "indices [1] of 0..2 not listed" in capsys.readouterr().out


def test_bad_list_line_is_input_error(tmp_path, capsys):
    (tmp_path / "l.txt").write_text("just some words\n")
    assert main(["verify", str(tmp_path / "l.txt")]) == 3
    assert "l.txt:1" in capsys.readouterr().err


def test_nonexistent_path(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nope")]) == 3
    assert "no such file or directory" in capsys.readouterr().err


def test_directory_without_manifests(tmp_path, capsys):
    assert main(["verify", str(tmp_path)]) == 3
    assert "holds no *manifest.json" in capsys.readouterr().err


def test_directory_of_artifacts_without_manifest_names_it(ds, capsys):
    (ds / "t.manifest.json").unlink()
    assert main(["verify", str(ds)]) == 3
    err = capsys.readouterr().err
    assert f"{ds}: directory holds no *manifest.json or *.shard_hashes.txt" in err


def _other_manifest(d):
    """A second, valid manifest in `d` (as the index maps' manifest sits beside a dataset's)."""
    np.save(d / "other.npy", np.arange(3))
    write_manifest(
        d / "other.manifest.json",
        kind="test",
        config_fingerprint="0" * 64,
        files=[(d / "other.npy", "sidecar")],
    )


def test_removed_manifest_leaves_its_files_unverified(ds, capsys):
    _other_manifest(ds)
    (ds / "t.manifest.json").unlink()
    assert main(["verify", str(ds)]) == 4
    out = capsys.readouterr().out
    extra = sorted(line.split()[1] for line in out.splitlines() if line.startswith("EXTRA"))
    assert extra == [str(ds / n) + ":" for n in sorted(NAMES[:3])]
    assert "not verified" in out and "all OK" not in out


def test_corrupt_manifest_leaves_its_files_unverified(ds, capsys):
    (ds / "t.manifest.json").write_text("{not json")
    assert main(["verify", str(ds)]) == 4
    out = capsys.readouterr().out
    assert "MANIFEST  " + str(ds / "t.manifest.json") in out
    for n in NAMES[:3]:
        assert f"EXTRA     {ds / n}: no manifest or checksum list under {ds} lists it" in out
    assert "3 extra, 1 manifest" in out


def test_unlisted_json_and_npy_in_a_subdirectory_are_extra(ds, capsys):
    (ds / "t_text_document.provenance.json").write_text("{}")
    (ds / "sub").mkdir()
    np.save(ds / "sub" / "stray.npy", np.arange(2))
    (ds / "sub" / "notes.txt").write_text("not an artifact")
    assert main(["verify", str(ds)]) == 4
    out = capsys.readouterr().out
    assert out.count("EXTRA") == 2
    assert "t_text_document.provenance.json" in out and "stray.npy" in out
    assert "notes.txt" not in out


def test_build_directory_top_level_files_are_not_artifacts(ds, tmp_path, capsys):
    b = tmp_path / "build"
    shutil.copytree(ds, b / "standard")
    (b / "build.toml").write_text("[build]\n")
    for sub, name in [
        ("_state", "tokenize-standard.json"),
        ("logs", "dedup_timings.json"),
        ("quarantine", "00000-00.jsonl.zst.rejected.jsonl"),
    ]:
        (b / sub).mkdir()
        (b / sub / name).write_text("{}")
    (b / "_state" / "report.json").write_text("{}")  # a finished build's last stage
    (b / ".lock").write_text("")
    assert main(["verify", str(b)]) == 0
    assert "all OK" in capsys.readouterr().out
    # the report is an artifact with its own manifest (report.manifest.json): unlisted, flagged
    (b / "report.json").write_text("{}")
    assert main(["verify", str(b)]) == 4
    assert "EXTRA     " + str(b / "report.json") in capsys.readouterr().out
    (b / "report.json").unlink()
    # the build's own names inside a stage directory are not the build's: flagged
    (b / "standard" / "report.json").write_text("{}")
    assert main(["verify", str(b)]) == 4
    assert "EXTRA     " + str(b / "standard" / "report.json") in capsys.readouterr().out


def test_dedup_timings_and_intermediates_are_not_artifacts(tmp_path, capsys):
    d = tmp_path / "dedup"
    d.mkdir()
    (d / "stats.json").write_text("{}")
    write_manifest(
        d / "manifest.json",
        kind="dedup",
        config_fingerprint="0" * 64,
        files=[(d / "stats.json", "stats")],
    )
    (d / "timings.json").write_text("{}")  # wall clock, unlisted on purpose
    (d / "edges").mkdir()
    np.save(d / "edges" / "00000.npy", np.arange(2))  # --keep-intermediate
    assert main(["verify", str(d)]) == 0
    (d / "other.json").write_text("{}")
    assert main(["verify", str(d)]) == 4
    out = capsys.readouterr().out
    assert out.count("EXTRA") == 1 and "other.json" in out


def test_directory_below_a_hidden_directory(ds, tmp_path, capsys):
    d = tmp_path / ".cache" / "ds"
    shutil.copytree(ds, d)
    assert main(["verify", str(d)]) == 0
    assert "3 file(s) from 1 source(s)" in capsys.readouterr().out


def test_shard_output_directory_is_verified_by_its_hash_list(ds, tmp_path, capsys):
    from pipeline.shards.split import shard_bin

    res = shard_bin(ds / "t_text_document", tmp_path / "s", num_shards=2)
    assert main(["verify", str(tmp_path / "s")]) == 0
    assert "3 file(s) from 1 source(s)" in capsys.readouterr().out
    with open(res.shards[-1], "ab") as f:
        f.write(b"\0\0")
    (tmp_path / "s" / "stray.bin").write_bytes(b"x")
    assert main(["verify", str(tmp_path / "s")]) == 4
    out = capsys.readouterr().out
    assert "SHA256" in out and res.shards[-1].name in out
    assert "(2 bytes too many)" in out and "truncated" not in out
    assert "EXTRA     " + str(tmp_path / "s" / "stray.bin") in out


def test_missing_list_files_hint_at_root(ds, tmp_path, capsys):
    lines = [f"{n} {hashlib.sha256((ds / n).read_bytes()).hexdigest()}" for n in NAMES[:3]]
    lst = tmp_path / "hashes.txt"
    lst.write_text("\n".join(lines) + "\n")
    assert main(["verify", str(lst)]) == 4
    err = capsys.readouterr().err
    assert f"all 3 files listed in {lst} are not in {tmp_path} (the list's directory)" in err
    assert "pass --root DIR" in err
    assert main(["verify", "--root", str(ds), str(lst)]) == 0
    # one missing file out of three is a missing file, not a wrong directory: no hint
    (ds / NAMES[2]).unlink()
    assert main(["verify", "--root", str(ds), str(lst)]) == 4
    err = capsys.readouterr().err
    assert "--root" not in err and "rebuild or re-download" in err


@pytest.mark.parametrize("delta", [2, -2])
def test_size_message_says_which_way(ds, capsys, delta):
    p = ds / "t_text_document.bin"
    raw = p.read_bytes()
    p.write_bytes(raw + b"\0" * delta if delta > 0 else raw[:delta])
    assert main(["verify", str(ds)]) == 4
    out = capsys.readouterr().out
    want = f"size differs: expected {len(raw)} bytes, found {len(raw) + delta}"
    assert want in out
    if delta > 0:
        assert "(2 bytes too many)" in out and "truncated" not in out
    else:
        assert "(2 bytes too few, truncated)" in out


def test_corrupt_manifest_json(ds, capsys):
    p = ds / "t.manifest.json"
    p.write_text(p.read_text()[:-10])
    assert main(["verify", str(p)]) == 4
    out = capsys.readouterr().out
    assert "MANIFEST" in out and "t.manifest.json" in out


def test_root_applies_to_a_given_list_not_to_lists_found_in_a_directory(ds, tmp_path, capsys):
    from pipeline.shards.split import shard_bin

    shard_bin(ds / "t_text_document", tmp_path / "s", num_shards=2)
    lines = [f"{n} {hashlib.sha256((ds / n).read_bytes()).hexdigest()}" for n in NAMES[:2]]
    lst = tmp_path / "elsewhere.txt"
    lst.write_text("\n".join(lines) + "\n")
    # the directory's own shard list resolves next to itself; --root is for elsewhere.txt
    assert main(["verify", str(tmp_path / "s"), str(lst), "--root", str(ds)]) == 0


# ---- issue 15: attacker-supplied lists and manifests --------------------------------------------


def _secret(tmp_path):
    s = tmp_path / "secret" / "passwd"
    s.parent.mkdir()
    s.write_bytes(b"MMIDIDX\x00\x00root:x:0:0 secret")  # would pass the magic check
    return s


@pytest.mark.parametrize("absolute", [False, True])
def test_list_entries_outside_the_root_are_refused(tmp_path, capsys, absolute):
    secret = _secret(tmp_path)
    d = tmp_path / "lists"
    d.mkdir()
    name = str(secret) if absolute else "../secret/passwd"
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    for form, line in (("sha", f"{'0' * 64}  {name}.idx"), ("pythia", f"{name} {'0' * 64}")):
        (d / f"{form}.txt").write_text(line + "\n")
    (secret.parent / "passwd.idx").write_bytes(secret.read_bytes())
    for form in ("sha", "pythia"):
        assert main(["verify", str(d / f"{form}.txt")]) == 4
        out = capsys.readouterr().out
        assert "REFUSED" in out and "--allow-outside-root" in out
        assert digest not in out and "root:x" not in out and "secret" not in out.split(":")[-1]
        assert "MMIDIDX" not in out
    # the explicit flag reads them (and still prints no content)
    assert main(["verify", "--allow-outside-root", str(d / "sha.txt")]) == 4
    out = capsys.readouterr().out
    assert "REFUSED" not in out and "root:x" not in out


def test_crafted_manifest_cannot_reach_outside_its_directory(ds, tmp_path, capsys):
    _secret(tmp_path)
    m = ds / "t.manifest.json"
    doc = json.loads(m.read_text())
    doc["files"].append({"name": "../secret/passwd", "bytes": 30, "sha256": "0" * 64, "role": "x"})
    doc.pop("manifest_sha256", None)
    m.write_text(json.dumps(doc))
    assert main(["verify", str(m)]) == 4
    out = capsys.readouterr().out
    assert "REFUSED" in out and "outside" in out and "root:x" not in out


def test_symlink_inside_the_root_to_outside_is_refused(tmp_path, capsys):
    secret = _secret(tmp_path)
    d = tmp_path / "d"
    d.mkdir()
    (d / "link").symlink_to(secret)
    (d / "l.txt").write_text(f"{'0' * 64}  link\n")
    assert main(["verify", str(d / "l.txt")]) == 4
    assert "REFUSED" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_non_regular_files_are_never_opened(tmp_path, capsys, kind):
    import os

    d = tmp_path / "d"
    d.mkdir()
    if kind == "fifo":
        os.mkfifo(d / "f.bin")
        line = f"{'0' * 64}  f.bin\n"
        args = ["verify", str(d / "l.txt")]
    else:
        line = f"{'0' * 64}  /dev/zero\n"
        args = ["verify", "--allow-outside-root", str(d / "l.txt")]
    (d / "l.txt").write_text(line)
    assert main(args) == 4  # returns (a read would hang forever)
    assert "not a regular file" in capsys.readouterr().out


def test_live_build_is_reported_in_progress_with_what_is_finished(ds, tmp_path, capsys):
    from tests.procs import lock_held_elsewhere

    out = tmp_path / "out"
    shutil.copytree(ds, out / "standard")
    (out / "_state").mkdir()
    (out / "_state" / "tokenize-standard.json").write_text('{"status": "complete"}')
    (out / "_state" / "order-standard.json").write_text('{"status": "running"}')
    buckets = out / "dedup" / "buckets" / "00000"
    buckets.mkdir(parents=True)
    (out / "dedup" / "signatures").mkdir()
    for i in range(50):
        (buckets / f"{i:06d}.bin").write_bytes(b"x")
    with lock_held_elsewhere(out):
        assert main(["verify", str(out)]) == 5
        text = capsys.readouterr().out
        assert text.count("\n") == 2  # one problem line and the summary
        assert (
            "IN-PROGRESS" in text and "finished: tokenize-standard; running: order-standard" in text
        )
        assert "buckets" not in text and "all OK" not in text
    # once the writer is gone, dedup's work folder is one line, not one per file
    assert main(["verify", str(out)]) == 4
    text = capsys.readouterr().out
    assert text.count("buckets") == 1 and "dedup work folder (50 file(s))" in text


def test_speed_line_times_only_the_hashing(ds, monkeypatch):
    import pipeline.verify.run as pv

    clock = [0.0]
    monkeypatch.setattr(pv.time, "perf_counter", lambda: clock[0])
    real_structure = pv.structure

    def slow_structure(src, quick):  # structure checks take 100 "seconds" on this clock
        clock[0] += 100.0
        return real_structure(src, quick)

    real_hash = pv._hash_entry

    def hash_entry(e, quick):  # hashing takes 1 "second" per file
        clock[0] += 1.0
        return real_hash(e, quick)

    monkeypatch.setattr(pv, "structure", slow_structure)
    monkeypatch.setattr(pv, "_hash_entry", hash_entry)
    rep = verify_paths([ds], workers=1)
    n = rep.files_checked  # the manifest's files; the structure checks ran once, 100 "s"
    assert n == 3 and rep.hash_seconds == n and rep.seconds == 100.0 + n
    s = rep.summary()
    assert f"hashed in {n:.2f}s" in s and f"{100 + n:.2f}s in all" in s
    assert "MB/s" not in s  # a few kB: a rate would measure file opens, not hashing
    rep.bytes_hashed = 400 << 20
    assert f"({(400 << 20) / n / 1e6:,.0f} MB/s)" in rep.summary()


def test_damage_inside_the_self_hash_field_is_caught(ds, capsys):
    # a flipped case bit turns a hex digit of manifest_sha256 into an upper-case one: the field no
    # longer parses as a hash, which must not pass as an old manifest without one
    m = ds / "t.manifest.json"
    raw = m.read_bytes()
    i = raw.index(b'"manifest_sha256": "') + len(b'"manifest_sha256": "')
    j = next(k for k in range(i, i + 64) if raw[k : k + 1] in b"abcdef")
    m.write_bytes(raw[:j] + raw[j : j + 1].upper() + raw[j + 1 :])
    assert main(["verify", str(m)]) == 4
    assert "manifest_sha256 is not 64 lowercase hex digits" in capsys.readouterr().out


def test_every_single_byte_flip_of_a_manifest_is_caught(ds):
    # including flips inside the key "manifest_sha256" itself (which once read as a manifest
    # written before the self-hash existed) and inside its value
    from pipeline.verify import verify_paths

    m = ds / "t.manifest.json"
    orig = m.read_bytes()
    passed = []
    for i in range(len(orig)):
        m.write_bytes(orig[:i] + bytes([orig[i] ^ 0x20]) + orig[i + 1 :])
        if verify_paths([str(m)]).ok:
            passed.append((i, orig[max(0, i - 20) : i + 5]))
    m.write_bytes(orig)
    assert not passed
