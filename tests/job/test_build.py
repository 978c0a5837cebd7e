"""End-to-end `pile build`: both variants, reruns, kill-and-resume, invalidation, dry-run, lock."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.lock import DirLock
from tests.read.helpers import pile_line, write_zst

WORDS = (
    "the of and to in a is that for it as was with be by on not he i this are or his from at which "
    "but have an they you were her she there been one all we their has would when if more no out so "
    "said what up its about into than them can only other time new some could these two may first"
).split()

# small run: seq 32, 4 samples per step, 20 steps, shards of 2 KB -> several preshuffled shards
SMALL = ["--seq-length", "32", "--global-batch", "4", "--train-iters", "20", "--shard-size", "2000"]
IGNORED = {".lock", "logs/build.log", "logs/dedup_timings.json"}


def make_corpus(root: Path) -> Path:
    import numpy as np

    rng = np.random.default_rng(7)
    names = ["Pile-CC", "ArXiv", "Github", "Wikipedia (en)"]
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(20, 80)))) for _ in range(60)]
    # planted near-duplicates: a copy with one word changed in a long document, an exact copy
    long_doc = " ".join(rng.choice(WORDS, size=400))
    texts[5] = long_doc
    texts[40] = long_doc.replace(long_doc.split()[200], "zebra", 1)
    texts[50] = texts[10]
    d = root / "corpus"
    write_zst(d / "00.jsonl.zst", [pile_line(t, names[i % 4]) for i, t in enumerate(texts[:30])])
    write_zst(d / "01.jsonl.zst", [pile_line(t, names[i % 4]) for i, t in enumerate(texts[30:])])
    return d


def tree_hashes(out: Path) -> dict[str, str]:
    res = {}
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out).as_posix()
        if p.is_file() and rel not in IGNORED:
            data = p.read_bytes()
            if rel.startswith("_state/"):
                # completion records hold each output's mtime (the fast intact check); the rest
                # of the record (key, names, sizes, sha256) must be identical
                rec = json.loads(data)
                for f in rec.get("outputs", []):
                    f.pop("mtime_ns")
                data = json.dumps(rec, sort_keys=True).encode()
            res[rel] = hashlib.sha256(data).hexdigest()
    return res


def build_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["-q", "build", "--input", str(corpus), "--out", str(out), *SMALL, *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    corpus = make_corpus(root)
    out = root / "out"
    assert main(build_args(corpus, out)) == 0
    return corpus, out, tree_hashes(out)


def test_build_both_variants_outputs(reference, capsys):
    corpus, out, hashes = reference
    for name in (
        "build.toml",
        "standard/pile_text_document.bin",
        "standard/pile_text_document.idx",
        "standard/pile_text_document.docs.parquet",
        "standard/pile.manifest.json",
        "standard/preshuffled/document.idx",
        "deduped/pile_0.87_deduped_text_document.bin",
        "deduped/preshuffled/document.manifest.json",
        "dedup/removed.parquet",
        "report.html",
        "report.json",
        "report/s_curve.png",
        "_state/report.json",
    ):
        assert name in hashes, name
    rep = json.loads((out / "report.json").read_text())
    std, ded = rep["variants"]["standard"], rep["variants"]["deduped"]
    assert std["documents"] == 60
    assert ded["documents"] == 58  # the planted exact copy and near copy are removed
    assert ded["excluded"] == 2
    assert rep["dedup"]["removed"] == 2 and rep["dedup"]["clusters"] == 2
    shards = [h for h in hashes if h.startswith("standard/preshuffled/document-")]
    assert len(shards) > 1
    assert main(["verify", str(out)]) == 0


def test_rerun_is_a_noop(reference, capsys):
    corpus, out, hashes = reference
    capsys.readouterr()
    assert main(["build", "--input", str(corpus), "--out", str(out), *SMALL]) == 0
    err = capsys.readouterr().err
    assert err.count("up to date, skipped") == 8
    assert tree_hashes(out) == hashes


def test_same_bytes_with_two_workers(reference, tmp_path):
    corpus, _, hashes = reference
    out = tmp_path / "w2"
    assert main(build_args(corpus, out, "--workers", "2")) == 0
    assert _artifacts(tree_hashes(out)) == _artifacts(hashes)
    # worker counts do not change bytes: the report does not record them
    assert '"workers"' not in (out / "report.json").read_text()


def _artifacts(h: dict[str, str]) -> dict[str, str]:
    # build.toml records --out and --workers; everything else must be byte-identical
    return {k: v for k, v in h.items() if k != "build.toml"}


def test_same_bytes_from_a_corpus_in_another_directory(reference, tmp_path):
    # artifacts name inputs relative to their common root, never by absolute path, so a copy of
    # the corpus elsewhere (another checkout, another machine) builds the same bytes
    import shutil

    corpus, _, hashes = reference
    moved = tmp_path / "elsewhere" / "deeper" / "pile"
    shutil.copytree(corpus, moved)
    out = tmp_path / "moved-out"
    assert main(build_args(moved, out)) == 0

    def published(h: dict[str, str]) -> dict[str, str]:
        # build.toml and the _state records name the local paths (they key the resume logic)
        return {k: v for k, v in _artifacts(h).items() if not k.startswith("_state/")}

    assert published(tree_hashes(out)) == published(hashes)
    side = (out / "standard" / "pile_text_document.docs.parquet").read_bytes()
    assert str(tmp_path).encode() not in side


def test_config_change_invalidates_only_downstream(reference, tmp_path, capsys):
    corpus, out, _ = reference
    work = tmp_path / "inv"
    assert main(build_args(corpus, work)) == 0
    capsys.readouterr()
    # a different order seed: dedup and tokenize stay, order/preshuffle/report are redone
    assert main(["build", "--input", str(corpus), "--out", str(work), *SMALL, "--seed", "7"]) == 0
    err = capsys.readouterr().err
    for st in ("dedup", "tokenize-standard", "tokenize-deduped"):
        assert f"{st:<20}: up to date, skipped" in err
    for st in ("order-standard", "order-deduped", "preshuffle-standard", "report"):
        assert f"{st:<20}: up to date" not in err
    # the maps of the old seed were removed with the old stage record
    assert not list((work / "standard").glob("*_1234s_*.npy"))
    assert main(["verify", str(work)]) == 0
    # a different dedup threshold: the standard chain stays
    capsys.readouterr()
    assert (
        main(
            [
                "build",
                "--input",
                str(corpus),
                "--out",
                str(work),
                *SMALL,
                "--seed",
                "7",
                "--threshold",
                "0.9",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert f"{'tokenize-standard':<20}: up to date, skipped" in err
    assert f"{'order-standard':<20}: up to date, skipped" in err
    assert f"{'dedup':<20}: up to date" not in err
    assert (work / "deduped" / "pile_0.9_deduped_text_document.bin").exists()


def test_kill_at_every_stage_then_resume_is_identical(reference, tmp_path):
    corpus, _, hashes = reference
    out = tmp_path / "killed"
    stages = [
        "dedup:end",
        "tokenize-standard:mid",
        "tokenize-standard:end",
        "tokenize-deduped:end",
        "order-standard:end",
        "order-deduped:end",
        "preshuffle-standard:end",
        "preshuffle-deduped:end",
        "report:end",
    ]
    cmd = [sys.executable, "-m", "pipeline.cli.main", *build_args(corpus, out)]
    for fault in stages:
        env = dict(os.environ, PILE_FAULT=fault)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == -9, (fault, r.returncode, r.stderr[-2000:])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = tree_hashes(out)
    assert not [k for k in got if k.endswith(".tmp")]
    assert _artifacts(got) == _artifacts(hashes)


def test_dry_run_writes_nothing(tmp_path, capsys):
    out = tmp_path / "dry"
    assert main(["build", "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert 'preset = "sample"' in text and "tokenize-deduped" in text and "will run" in text
    assert not out.exists()


def test_lock_contention_names_the_holder(tmp_path, capsys):
    out = tmp_path / "locked"
    with DirLock(out, "build"):
        assert main(["build", "--out", str(out), *SMALL]) == 5
    err = capsys.readouterr().err
    assert f"pid {os.getpid()}" in err and "being built" in err


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["build", "--out", str(blocker / "out"), *SMALL]) == 1
    assert "cannot create output directory" in capsys.readouterr().err


def test_config_file_and_errors(tmp_path, capsys):
    cfg = tmp_path / "b.toml"
    cfg.write_text('variant = "standard"\n[order]\nseq_length = 64\n')
    assert main(["build", "--config", str(cfg), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert 'variant = "standard"' in text and "seq_length = 64" in text and "dedup " not in text
    cfg.write_text("[order]\nbogus = 1\n")
    assert main(["build", "--config", str(cfg), "--dry-run"]) == 2
    assert "unknown key(s) bogus in [order]" in capsys.readouterr().err
    assert main(["build", "--preset", "nope", "--dry-run"]) == 2
    assert "unknown build preset 'nope'" in capsys.readouterr().err


def test_disk_full_mid_build_then_resume(reference, tmp_path, monkeypatch, capsys):
    import errno

    from pipeline.shards import mmidx

    corpus, _, hashes = reference
    out = tmp_path / "full"
    real_finalize = mmidx.MMIDXWriter.finalize

    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.bin_path) + ".tmp")

    monkeypatch.setattr(mmidx.MMIDXWriter, "finalize", full)
    assert main(build_args(corpus, out)) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "free space" in err.lower()
    # nothing that a later run could take for a finished dataset
    assert not list(out.rglob("*_text_document.bin"))
    assert [p.relative_to(out).as_posix() for p in out.rglob("*manifest.json")] == [
        "dedup/manifest.json"
    ]
    # the stage's record says it did not finish (and which files it owns)
    rec = json.loads((out / "_state" / "tokenize-standard.json").read_text())
    assert rec["status"] == "running" and "outputs" not in rec
    monkeypatch.setattr(mmidx.MMIDXWriter, "finalize", real_finalize)
    assert main(build_args(corpus, out)) == 0
    assert _artifacts(tree_hashes(out)) == _artifacts(hashes)


@pytest.mark.parametrize("delay", [0.8, 2.0, 3.5])
def test_sigkill_at_arbitrary_time_then_resume_is_identical(reference, tmp_path, delay):
    import signal
    import time

    corpus, _, hashes = reference
    out = tmp_path / "k"
    cmd = [sys.executable, "-m", "pipeline.cli.main", *build_args(corpus, out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _artifacts(tree_hashes(out)) == _artifacts(hashes)


def test_bad_records_raise_or_are_quarantined(tmp_path, capsys):
    corpus = tmp_path / "in"
    lines = [pile_line(f"document number {i} " + " ".join(WORDS[i : i + 20])) for i in range(30)]
    lines.insert(7, b"{bad json\n")
    write_zst(corpus / "00.jsonl.zst", lines)
    out = tmp_path / "out"
    assert main(build_args(corpus, out)) == 3
    err = capsys.readouterr().err
    assert "00.jsonl.zst:8 (byte offset" in err and "--on-error skip" in err
    assert (
        main(["build", "--input", str(corpus), "--out", str(out), *SMALL, "--on-error", "skip"])
        == 0
    )
    text = capsys.readouterr().out
    assert "1 bad record(s) skipped" in text
    assert (out / "quarantine" / "00000-00.jsonl.zst.rejected.jsonl").read_bytes() == b"{bad json\n"
    rep = json.loads((out / "report.json").read_text())
    assert rep["variants"]["standard"]["documents"] == 30
    assert rep["variants"]["standard"]["rejected"] == 1


# ----------------------------------------------------------------------------------------------
# leftovers of unfinished runs, corrupt outputs, dry-run estimates, a refused order stage


def _copy_build(src: Path, dst: Path, keep_mtimes: bool = True) -> Path:
    import shutil

    shutil.copytree(src, dst, copy_function=shutil.copy2 if keep_mtimes else shutil.copy)
    (dst / ".lock").unlink(missing_ok=True)
    return dst


def _summary_status(stdout: str) -> dict[str, str]:
    """{stage: status} from the summary table `pile build` prints."""
    lines = stdout.split("stage ", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    return {ln.split()[0]: ln.split()[1] for ln in lines}


def _seed_files(out: Path, seed: int) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob(f"*_{seed}s_*"))


def test_killed_order_then_other_config_leaves_nothing_behind(reference, tmp_path):
    # killed after the maps and their manifest are written, before the completion record
    corpus, ref_out, _ = reference
    out = _copy_build(ref_out, tmp_path / "k")
    cmd = [sys.executable, "-m", "pipeline.cli.main", *build_args(corpus, out, "--seed", "7")]
    env = dict(os.environ, PILE_FAULT="order-deduped:end")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == -9, r.stderr[-2000:]
    assert _seed_files(out / "deduped", 7)
    assert main(build_args(corpus, out, "--seed", "9")) == 0
    assert _seed_files(out, 7) == [] and _seed_files(out, 1234) == []
    assert _seed_files(out, 9)
    assert main(["verify", str(out)]) == 0


def test_crash_mid_order_then_other_config_verifies(reference, tmp_path, monkeypatch):
    # the QA case: doc_idx of one config on disk, no manifest, then reruns with another config
    from pipeline.order import mapfiles

    corpus, ref_out, _ = reference
    out = _copy_build(ref_out, tmp_path / "mid")
    real_save = mapfiles.save_npy

    def crash(path, arr):
        if "deduped" in path.name and path.name.endswith("_sample_idx.npy"):
            raise RuntimeError("simulated crash")
        real_save(path, arr)

    monkeypatch.setattr(mapfiles, "save_npy", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(build_args(corpus, out, "--seed", "7"))
    monkeypatch.setattr(mapfiles, "save_npy", real_save)
    half = _seed_files(out / "deduped", 7)
    assert any(n.endswith("_doc_idx.npy") for n in half)
    assert not any(n.endswith(".manifest.json") for n in half)
    for _ in range(2):
        assert main(build_args(corpus, out, "--seed", "9")) == 0
        assert _seed_files(out, 7) == []
        assert main(["verify", str(out)]) == 0


def test_corrupt_output_of_same_size_is_rebuilt(reference, tmp_path, capsys):
    corpus, ref_out, hashes = reference
    out = _copy_build(ref_out, tmp_path / "c")
    assert _artifacts(tree_hashes(out)) == _artifacts(hashes)
    bin_path = out / "standard" / "pile_text_document.bin"
    data = bytearray(bin_path.read_bytes())
    data[100] ^= 0xFF
    bin_path.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(build_args(corpus, out)) == 0
    log_text = (out / "logs" / "build.log").read_text()
    assert f"{bin_path} does not match its recorded sha256" in log_text
    status = _summary_status(capsys.readouterr().out)
    assert status == {
        "dedup": "up-to-date",
        "tokenize-deduped": "up-to-date",
        "order-deduped": "up-to-date",
        "preshuffle-deduped": "up-to-date",
        # the corrupt stage and everything it feeds are redone
        "tokenize-standard": "done",
        "order-standard": "done",
        "preshuffle-standard": "done",
        "report": "done",
    }
    assert _artifacts(tree_hashes(out)) == _artifacts(hashes)
    assert main(["verify", str(out)]) == 0


def test_copied_output_dir_is_accepted_by_hash_and_records_refreshed(reference, tmp_path, capsys):
    corpus, ref_out, hashes = reference
    out = _copy_build(ref_out, tmp_path / "cp", keep_mtimes=False)
    capsys.readouterr()
    assert main(build_args(corpus, out)) == 0
    assert set(_summary_status(capsys.readouterr().out).values()) == {"up-to-date"}
    assert (
        "has a new mtime but still matches its recorded sha256"
        in (out / "logs" / "build.log").read_text()
    )
    rec = json.loads((out / "_state" / "tokenize-standard.json").read_text())
    for f in rec["outputs"]:
        assert f["mtime_ns"] == (out / f["name"]).stat().st_mtime_ns
    assert _artifacts(tree_hashes(out)) == _artifacts(hashes)


def test_completion_check_branches(tmp_path, caplog):
    from pipeline.job.state import check_complete, write_record, write_running

    out = tmp_path
    (out / "d").mkdir()
    f = out / "d" / "a.bin"
    f.write_bytes(b"0123456789")
    assert check_complete(out, "s", "k") == (False, "no completion record")
    write_running(out, "s", "k", ["d/a.bin"])
    assert check_complete(out, "s", "k") == (False, "an earlier run did not finish")
    write_record(out, "s", "k", [f])
    assert check_complete(out, "s", "k") == (True, "")
    assert check_complete(out, "s", "other")[0] is False
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, new mtime: accepted
    assert check_complete(out, "s", "k", refresh=True) == (True, "")
    rec = json.loads((out / "_state" / "s.json").read_text())
    assert rec["outputs"][0]["mtime_ns"] == st.st_mtime_ns + 10**9
    f.write_bytes(b"0123456780")  # same size, other bytes
    ok, why = check_complete(out, "s", "k")
    assert not ok and why == f"{f} does not match its recorded sha256"
    f.write_bytes(b"01234")
    assert check_complete(out, "s", "k") == (False, f"{f} changed size")
    f.unlink()
    assert check_complete(out, "s", "k") == (False, f"{f} is missing")
    assert f"output {f} is missing" in caplog.text


def test_owned_files_stay_inside_the_output_directory(tmp_path):
    from pipeline.job.state import owned_files

    out = tmp_path / "out"
    (out / "v").mkdir(parents=True)
    (out / "_state").mkdir()
    for name in ("v/a.npy", "v/document-00000-of-00001.bin", "v/user.txt", "_state/x.json"):
        (out / name).write_text("x")
    (tmp_path / "outside.txt").write_text("x")
    rec = {
        "outputs": [{"name": "v/a.npy"}, {"name": "../outside.txt"}],
        "planned": [
            "v/document-00000-of-00001.bin",
            "v/document-*-of-*.bin",  # a glob: never expanded
            "_state/x.json",
            "v/missing.npy",
            "v/user.txt",  # not a name the stage writes
            "/etc/passwd",
            "v/../v/a.npy",
            "**/*",
        ],
    }
    owns = ["v/*.npy", "v/document-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9].bin"]
    assert owned_files(out, rec, owns) == [
        out / "v" / "a.npy",
        out / "v" / "document-00000-of-00001.bin",
    ]


def test_hand_edited_record_deletes_nothing_of_the_user(reference, tmp_path):
    """A `_state` record with planned = ["**/*"] once deleted everything in OUT."""
    import shutil

    corpus, ref, _ = reference
    out = tmp_path / "out"
    shutil.copytree(ref, out)
    (out / "standard" / "notes.txt").write_text("mine")
    (out / "report" / "holiday.png").write_bytes(b"png")
    rec_path = out / "_state" / "order-standard.json"
    rec = json.loads(rec_path.read_text())
    rec["planned"] = ["**/*", "*", "standard/notes.txt", "../outside.txt"]
    rec["outputs"] = []
    rec["key"] = "edited"  # the stage is redone and cleans up after this record
    rec_path.write_text(json.dumps(rec))
    (tmp_path / "outside.txt").write_text("x")
    assert main(build_args(corpus, out)) == 0
    assert (out / "standard" / "notes.txt").read_text() == "mine"
    assert (out / "report" / "holiday.png").read_bytes() == b"png"
    assert (tmp_path / "outside.txt").exists()
    assert (out / "build.toml").exists() and (out / "dedup" / "manifest.json").exists()


def test_dry_run_estimates_order_and_preshuffle(reference, tmp_path, capsys):
    from pipeline.io import human_bytes
    from pipeline.order.indexmap import index_map_bytes

    corpus, ref_out, hashes = reference
    assert main(build_args(corpus, ref_out, "--dry-run")) == 0
    text = capsys.readouterr().out
    maps = human_bytes(index_map_bytes(60, 1, 3913, 32))
    assert (
        f"standard   order: 1 epoch(s) of 60 documents / 3,913 tokens, index maps ~{maps}" in text
    )
    assert "deduped    order: 1 epoch(s) of 58 documents / 3,467 tokens" in text
    assert "preshuffle: 80 samples x 33 tokens x 2 bytes = 5.28 kB" in text
    assert text.count("up to date") == 8
    assert tree_hashes(ref_out) == hashes  # a dry run writes nothing
    assert main(build_args(corpus, tmp_path / "fresh", "--dry-run")) == 0
    text = capsys.readouterr().out
    assert "epochs and index-map size not known until tokenize-standard has run" in text
    assert "preshuffle: 80 samples x 33 tokens x 2 bytes = 5.28 kB" in text
    assert not (tmp_path / "fresh").exists()


def test_order_refused_for_disk_space_then_resumes(reference, tmp_path, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    corpus, ref_out, hashes = reference
    out = _copy_build(ref_out, tmp_path / "nospace")
    usage = namedtuple("usage", "total used free")
    real = shutil.disk_usage
    monkeypatch.setattr("pipeline.order.stage.shutil.disk_usage", lambda p: usage(10, 10, 0))
    capsys.readouterr()
    assert main(build_args(corpus, out, "--seed", "7")) == 2
    err = capsys.readouterr().err
    assert "pile build: error: order" in err and "only 0 B is free there" in err
    assert "Traceback" not in err
    state = {p.stem: json.loads(p.read_text())["status"] for p in (out / "_state").glob("*.json")}
    assert state["order-standard"] == "running"
    assert state["tokenize-standard"] == state["dedup"] == "complete"
    monkeypatch.setattr("pipeline.order.stage.shutil.disk_usage", real)
    assert main(build_args(corpus, out, "--seed", "7")) == 0
    assert _seed_files(out, 1234) == []
    assert main(["verify", str(out)]) == 0


# ----------------------------------------------------------------------------------------------
# second QA pass: config precedence, stale variants, change reasons, absolute build.toml,
# worker-free report, held-out inputs


def _toml(text: str) -> dict:
    import tomllib

    return tomllib.loads(text.split("# stage plan", 1)[0].split("\n", 1)[1])


def test_config_file_out_is_used_and_rerun_from_build_toml_is_a_noop(
    reference, tmp_path, monkeypatch, capsys
):
    _, ref_out, hashes = reference
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["build", "--config", str(ref_out / "build.toml"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert _toml(text)["out"] == str(ref_out)
    assert text.count("up to date") == 8 and "will run   key" not in text
    assert not (tmp_path / "pile_out").exists()
    assert tree_hashes(ref_out) == hashes


def test_precedence_is_flag_then_config_file_then_default(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text('{"text": "x"}\n')
    cfg = tmp_path / "b.toml"
    cfg.write_text(
        'input = ["in"]\nout = "from_file"\nvariant = "standard"\npreset = "sample"\n'
        'workers = 3\n[read]\ntext_key = "body"\n[order]\nseed = 7\npreset = "sample"\n'
        "[tokenize]\nappend_eod = false\n"
    )
    assert main(["build", "--config", str(cfg), "--dry-run"]) == 0
    got = _toml(capsys.readouterr().out)
    assert got["out"] == str(tmp_path / "from_file")
    assert got["input"] == [str(tmp_path / "in")]
    assert (got["variant"], got["preset"], got["workers"]) == ("standard", "sample", 3)
    assert got["read"]["text_key"] == "body" and got["order"]["seed"] == 7
    assert got["tokenize"]["append_eod"] is False
    flags = ["--out", "flag_out", "--variant", "deduped", "--preset", "pythia", "--workers", "2"]
    flags += ["--text-key", "t", "--seed", "9", "--append-eod"]
    assert main(["build", "--config", str(cfg), *flags, "--dry-run"]) == 0
    got = _toml(capsys.readouterr().out)
    assert got["out"] == str(tmp_path / "flag_out")
    assert (got["variant"], got["preset"], got["workers"]) == ("deduped", "pythia", 2)
    # --preset outranks the stage presets the file names (build.toml always names them)
    assert got["order"]["preset"] == "pythia" and got["order"]["seed"] == 9
    assert got["read"]["text_key"] == "t" and got["tokenize"]["append_eod"] is True
    assert main(["build", "--input", "in", "--dry-run"]) == 0
    got = _toml(capsys.readouterr().out)
    assert got["out"] == str(tmp_path / "pile_out") and got["variant"] == "both"
    assert got["workers"] == 1 and got["preset"] == "pythia"
    assert not (tmp_path / "pile_out").exists()


def test_build_toml_holds_absolute_paths(reference, tmp_path, monkeypatch, capsys):
    corpus, ref_out, _ = reference
    out = _copy_build(ref_out, tmp_path / "rel" / "out")
    monkeypatch.chdir(tmp_path / "rel")
    rel_corpus = os.path.relpath(corpus)
    assert main(["-q", "build", "--input", rel_corpus, "--out", "out", *SMALL]) == 0
    saved = _toml("\n" + (out / "build.toml").read_text())
    assert saved["input"] == [str(corpus)] and saved["out"] == str(out)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["build", "--config", "../rel/out/build.toml", "--dry-run"]) == 0
    assert capsys.readouterr().out.count("up to date") == 8


def test_touched_input_is_named_as_the_reason(reference, capsys):
    corpus, ref_out, hashes = reference
    f = corpus / "01.jsonl.zst"
    st = f.stat()
    try:
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        capsys.readouterr()
        assert main(build_args(corpus, ref_out, "--dry-run")) == 0
        plan = capsys.readouterr().out.split("# stage plan", 1)[1]
    finally:
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    for stage in ("dedup", "tokenize-standard"):
        line = next(ln for ln in plan.splitlines() if ln.startswith(stage + " "))
        assert "will run" in line and line.endswith("(input 01.jsonl.zst changed (mtime))")
    assert "(upstream stage dedup runs)" in plan
    assert "(upstream stage tokenize-standard runs)" in plan
    assert tree_hashes(ref_out) == hashes


def test_input_change_descriptions():
    from pipeline.job.runner import _input_changes

    old = [["a", "/c/a", "jsonl", None, 10, 1], ["b", "/c/b", "jsonl", None, 20, 2]]
    assert _input_changes(old, old) == []
    new = [["a", "/c/a", "jsonl", None, 11, 5], ["c", "/c/c", "jsonl", None, 1, 1]]
    assert _input_changes(old, new) == [
        "input a changed (size, mtime)",
        "input c added",
        "input b removed",
    ]
    assert _input_changes(old, old[::-1]) == ["input order changed (document ids follow it)"]
    many = [[f"f{i}", f"/c/f{i}", "jsonl", None, 1, 1] for i in range(5)]
    assert _input_changes([], many)[-1] == "2 more input change(s)"


def _dir_hashes(d: Path) -> dict[str, str]:
    return {
        p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def test_stale_variant_left_out_of_a_build_is_reported(reference, tmp_path, capsys):
    import shutil

    ref_corpus, _, _ = reference
    corpus = tmp_path / "corpus"
    shutil.copytree(ref_corpus, corpus)
    out = tmp_path / "out"
    assert main(build_args(corpus, out)) == 0
    standard = _dir_hashes(out / "standard")
    write_zst(corpus / "01.jsonl.zst", [pile_line(" ".join(WORDS[i : i + 30])) for i in range(40)])
    capsys.readouterr()
    assert main(build_args(corpus, out, "--variant", "deduped", "--dry-run")) == 0
    text = capsys.readouterr().out
    warning = (
        f"WARNING: standard/ in {out} is stale (input 01.jsonl.zst changed (size, mtime)) and "
        "this build does not update it (stages tokenize-standard, order-standard, "
        f"preshuffle-standard). Rebuild it with `pile build --config {out / 'build.toml'} "
        f"--variant both` (up-to-date stages are skipped), or remove it: `rm -r {out / 'standard'}`."
    )
    assert warning in text
    assert main(build_args(corpus, out, "--variant", "deduped")) == 0
    captured = capsys.readouterr()
    assert warning in captured.out  # in the final summary
    assert warning[len("WARNING: ") :] in captured.err  # and logged as a warning
    assert _dir_hashes(out / "standard") == standard  # reported, never deleted
    assert main(build_args(corpus, out, "--variant", "deduped", "--dry-run")) == 0
    assert "# stale variants" in capsys.readouterr().out  # standard still is
    shutil.rmtree(out / "standard")
    assert main(build_args(corpus, out, "--variant", "deduped", "--dry-run")) == 0
    assert "# stale variants" not in capsys.readouterr().out


def test_stale_variant_after_a_config_change(reference, tmp_path, capsys):
    corpus, ref_out, _ = reference
    out = _copy_build(ref_out, tmp_path / "cfg")
    capsys.readouterr()
    assert main(build_args(corpus, out, "--variant", "standard", "--seed", "7", "--dry-run")) == 0
    text = capsys.readouterr().out
    assert f"WARNING: deduped/ in {out} is stale (order config changed)" in text
    assert "(stages order-deduped, preshuffle-deduped)" in text
    assert main(build_args(corpus, out, "--variant", "standard", "--dry-run")) == 0
    assert "# stale variants" not in capsys.readouterr().out


def test_held_out_names():
    from pipeline.job.config import held_out_names

    names = [
        "train/00.jsonl.zst",
        "val.jsonl.zst",
        "TEST.jsonl.zst",
        "Validation/00.parquet",
        "valid/x.jsonl",
        "contest.jsonl",
        "testing/00.jsonl",
        "ds#test",
        "ds#train",
        "test-00.jsonl.zst",
        "validation_set/a.jsonl",
        "pile_val.jsonl.zst",
        "latest.jsonl",
    ]
    assert held_out_names(names) == [
        "val.jsonl.zst",
        "TEST.jsonl.zst",
        "Validation/00.parquet",
        "valid/x.jsonl",
        "ds#test",
        "test-00.jsonl.zst",
        "validation_set/a.jsonl",
        "pile_val.jsonl.zst",
    ]


def test_held_out_inputs_warn(tmp_path, capsys):
    pile = tmp_path / "pile"
    for name in ("train/00.jsonl.zst", "val.jsonl.zst", "test.jsonl.zst"):
        write_zst(pile / name, [pile_line("a few words of text")])
    assert main(["build", "--input", str(pile), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err
    assert "input(s) pile/test.jsonl.zst, pile/val.jsonl.zst look like held-out splits" in err
    assert f"pass --input {pile / 'train'}" in err
    assert main(["build", "--input", str(pile / "train"), "--dry-run"]) == 0
    assert "held-out" not in capsys.readouterr().err
    # a folder named like a split, given itself, is caught too
    write_zst(tmp_path / "pl" / "val" / "00.jsonl.zst", [pile_line("held out")])
    assert main(["build", "--input", str(tmp_path / "pl" / "val"), "--dry-run"]) == 0
    assert "val/00.jsonl.zst look like held-out splits" in capsys.readouterr().err


def test_stale_warning_grammar_for_two_directories(tmp_path):
    from pipeline.job.runner import StaleVariant

    sv = StaleVariant(
        variant="deduped",
        out=tmp_path,
        dirs=[tmp_path / "dedup", tmp_path / "deduped"],
        stages=["dedup"],
        reason="x",
    )
    assert "dedup/ and deduped/ in" in sv.message and " are stale (x) " in sv.message
    assert "does not update them" in sv.message and "remove them:" in sv.message


def test_relative_paths_in_a_config_file_are_relative_to_the_file(tmp_path, monkeypatch):
    from pipeline.job.config import resolve_build_config

    cfg_dir = tmp_path / "project"
    cfg_dir.mkdir()
    corpus = make_corpus(cfg_dir)  # cfg_dir/corpus
    cfg = cfg_dir / "c.toml"
    cfg.write_text('input = ["corpus"]\nout = "runs/one"\npreset = "sample"\n')
    monkeypatch.chdir("/")
    bc = resolve_build_config(config_file=str(cfg))
    assert bc.inputs == (str(corpus),) and bc.out == str(cfg_dir / "runs" / "one")
    # flags stay relative to where pile runs
    monkeypatch.chdir(tmp_path)
    bc = resolve_build_config(config_file=str(cfg), out="elsewhere")
    assert bc.out == str(tmp_path / "elsewhere")


# ---- issue 15: nothing outside OUT, no user file harmed ----------------------------------------


def _plant_user_files(out: Path) -> None:
    (out / "report").mkdir(parents=True)
    (out / "standard").mkdir()
    (out / "report" / "holiday.png").write_bytes(b"holiday")
    (out / "standard" / "notes.tmp").write_text("my notes")
    (out / "report.html").write_text("<p>my report</p>")


def test_foreign_non_empty_out_is_refused(reference, tmp_path, capsys):
    corpus, _, _ = reference
    out = tmp_path / "mine"
    _plant_user_files(out)
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert main(build_args(corpus, out)) == 2
    err = capsys.readouterr().err
    assert "not a pile build" in err and "holiday" not in err and "--force" in err
    assert "report, report.html, standard" in err
    # nothing was written or removed there, not even logs/
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    # the dry run says so too, and writes nothing
    assert main(["build", "--input", str(corpus), "--out", str(out), "--dry-run"]) == 0
    assert "a build would be refused" in capsys.readouterr().out


def test_force_builds_beside_user_files_and_removes_none(reference, tmp_path, capsys):
    corpus, _, hashes = reference
    out = tmp_path / "mine"
    _plant_user_files(out)
    assert main(build_args(corpus, out, "--force")) == 0
    assert (out / "report" / "holiday.png").read_bytes() == b"holiday"
    assert (out / "standard" / "notes.tmp").read_text() == "my notes"
    # a rerun that redoes every stage removes only what pile wrote
    assert main(build_args(corpus, out, "--seed", "99", "--threshold", "0.8")) == 0
    assert (out / "report" / "holiday.png").read_bytes() == b"holiday"
    assert (out / "standard" / "notes.tmp").read_text() == "my notes"


def test_symlinked_stage_directory_is_refused(reference, tmp_path, capsys):
    corpus, ref_out, _ = reference
    out = _copy_build(ref_out, tmp_path / "b")
    other = tmp_path / "other"
    (out / "standard").rename(other)
    (out / "standard").symlink_to(other)
    (other / "precious.npy").write_bytes(b"keep")
    before = {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()}
    assert main(build_args(corpus, out, "--seed", "99")) == 2
    err = capsys.readouterr().err
    assert f"{out / 'standard'} is a symlink" in err and "only inside" in err
    assert {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()} == before


def test_planted_tmp_symlinks_are_not_followed(reference, tmp_path, capsys):
    corpus, _, hashes = reference
    out = tmp_path / "b"
    victims = tmp_path / "victims"
    victims.mkdir()
    planted = [
        "standard/pile_text_document.bin.tmp",
        "standard/pile.manifest.json.tmp",
        "dedup/manifest.json.tmp",
        "dedup/removed.parquet.tmp",
        "report.json.tmp",
        # written by stages that open their temporaries themselves: the build removes the
        # planted link (unlink, not followed) before the stage runs
        "standard/pile_text_document.provenance_set.npy.tmp",
        "standard/preshuffled/document.idx.tmp",
    ]
    for i, name in enumerate(planted):
        (victims / f"v{i}").write_text("victim")
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).symlink_to(victims / f"v{i}")
    assert main(build_args(corpus, out, "--force")) == 0
    assert all((victims / f"v{i}").read_text() == "victim" for i in range(len(planted)))
    assert not [p for p in out.rglob("*") if p.is_symlink()]
    assert _artifacts(tree_hashes(out)) == _artifacts(hashes)


def test_bit_rot_keeping_size_and_mtime_is_repaired(reference, tmp_path, capsys):
    """Damage that keeps size and mtime passes the cheap intact check; the final verify finds it
    and the build redoes the stage (it used to exit 4 on every rerun)."""
    corpus, ref_out, hashes = reference
    out = _copy_build(ref_out, tmp_path / "rot")
    bin_path = out / "standard" / "pile_text_document.bin"
    st = bin_path.stat()
    data = bytearray(bin_path.read_bytes())
    data[100] ^= 0xFF
    bin_path.write_bytes(bytes(data))
    os.utime(bin_path, ns=(st.st_atime_ns, st.st_mtime_ns))
    capsys.readouterr()
    assert main(build_args(corpus, out)) == 0
    log_text = (out / "logs" / "build.log").read_text()
    assert f"stage tokenize-standard: output {bin_path} is damaged (sha256" in log_text
    assert "redoing the stage and those after it" in log_text
    status = _summary_status(capsys.readouterr().out)
    assert status["tokenize-standard"] == "done" and status["order-standard"] == "done"
    assert status["tokenize-deduped"] == "up-to-date"
    assert _artifacts(tree_hashes(out)) == _artifacts(hashes)
    assert main(["verify", str(out)]) == 0


def test_removal_log_says_why(reference, tmp_path):
    corpus, ref_out, _ = reference
    out = _copy_build(ref_out, tmp_path / "why")
    assert main(build_args(corpus, out, "--seed", "99")) == 0
    log_text = (out / "logs" / "build.log").read_text()
    assert "left by an" not in log_text
    assert "(output of an earlier run, redone because order config changed)" in log_text
    # a killed run's leftovers are named as such
    env = dict(os.environ, PILE_FAULT="order-standard:end")
    args = [sys.executable, "-m", "pipeline.cli.main", *build_args(corpus, out, "--seed", "7")]
    subprocess.run(args, env=env, check=False, capture_output=True)
    assert main(build_args(corpus, out, "--seed", "7")) == 0
    log_text = (out / "logs" / "build.log").read_text()
    assert "(left by an interrupted or failed run)" in log_text


def _tmpfs(path: Path, size: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()})")
    return path


def test_real_disk_full_names_the_file_then_resume(reference, tmp_path, capsys):
    """A real full filesystem (a small tmpfs): every failure names the file being written."""
    corpus, _, hashes = reference
    mnt = _tmpfs(tmp_path / "mnt", "400k")
    try:
        out = mnt / "b"
        assert main(build_args(corpus, out)) == 1
        err = capsys.readouterr().err
        assert "No space left on device" in err
        assert f"{out}/" in err.split("No space left")[0]  # the file, before the reason
        assert not [p for p in out.rglob("*manifest.json") if "dedup" not in p.parts]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_dry_run_disk_estimate_covers_every_artifact(reference, tmp_path, capsys):
    from pipeline.job.config import resolve_build_config
    from pipeline.job.runner import BuildPlan

    corpus, ref_out, _ = reference
    cfg = resolve_build_config(
        inputs=[str(corpus)],
        out=str(tmp_path / "fresh"),
        overrides={
            "order": {"seq_length": 32, "global_batch": 4, "train_iters": 20},
            "preshuffle": {"shard_size": 2000},
        },
    )
    plan = BuildPlan(cfg)
    plan.refresh_status()
    est = plan.estimate_disk()
    real = sum(p.stat().st_size for p in ref_out.rglob("*") if p.is_file())
    assert not est["tokens_known"] and est["total"] >= real


def test_symlinked_logs_directory_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "build.toml").write_text("")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "logs").symlink_to(elsewhere)
    assert main(["build", "--out", str(out), *SMALL]) == 2
    assert "logs is a symlink" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


def test_completion_check_never_reads_what_a_bad_record_names(tmp_path):
    from pipeline.job.state import check_complete

    out = tmp_path / "out"
    (out / "_state").mkdir(parents=True)
    for name in ("/etc/passwd", "../x", "a/*"):
        rec = {"key": "k", "status": "complete", "outputs": [{"name": name, "bytes": 1}]}
        (out / "_state" / "s.json").write_text(json.dumps(rec))
        ok, why = check_complete(out, "s", "k")
        assert not ok and "its record is not valid" in why


def test_max_line_bytes_flag_reaches_the_reader(tmp_path, capsys):
    corpus = tmp_path / "in.jsonl"
    good = "".join(json.dumps({"text": f"document {i} " * 20}) + "\n" for i in range(5))
    corpus.write_text(good + json.dumps({"text": "x" * 5000}) + "\n")
    argv = ["build", "--input", str(corpus), "--out", str(tmp_path / "o"), "--max-line-bytes"]
    assert main([*argv, "1000", "--dry-run"]) == 0
    assert "max_line_bytes = 1000" in capsys.readouterr().out
    assert main([*argv, "1000"]) == 3
    err = capsys.readouterr().err
    assert "in.jsonl" in err and "--max-line-bytes" in err


def test_verify_of_a_killed_build_says_it_is_unfinished(reference, tmp_path, capsys):
    # a build killed (or failed) mid-way: every manifest that exists checks out, yet the build is
    # not finished; verify says which stage did not finish and how to finish it
    corpus, _, _ = reference
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "pipeline.cli.main", *build_args(corpus, out)]
    env = dict(os.environ, PILE_FAULT="order-standard:start")
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=300).returncode == -9
    capsys.readouterr()
    assert main(["verify", str(out)]) == 4
    text = capsys.readouterr().out
    assert "INTERRUPTED" in text and "order-standard" in text and "report" in text
    assert f"pile build --config {out / 'build.toml'}" in text
    assert main(build_args(corpus, out)) == 0
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0


def test_every_file_of_a_build_is_owned_by_a_stage_spec(reference):
    """Every file the build wrote is named by some stage spec's `owns` patterns
    (pipeline.contract.artifact_patterns) or is the runner's own (records, logs, build.toml),
    and every output a completion record lists is owned by that record's stage."""
    import fnmatch

    from pipeline.contract import RUNNER_PATTERNS, artifact_patterns

    _, out, _ = reference
    owned = artifact_patterns()
    patterns = [p for ps in owned.values() for p in ps] + list(RUNNER_PATTERNS)
    files = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
    assert len(files) > 30
    stray = [f for f in files if not any(fnmatch.fnmatchcase(f, p) for p in patterns)]
    assert stray == []
    for stage, pats in owned.items():
        rec = json.loads((out / "_state" / f"{stage}.json").read_text())
        for f in rec["outputs"]:
            assert any(fnmatch.fnmatchcase(f["name"], p) for p in pats), (stage, f["name"])
