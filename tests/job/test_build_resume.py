"""`pile build` killed inside a stage resumes inside it: the finished tokenize tasks and dedup
signature files are reused, and `pile verify` names the work directory as an interrupted run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.cli.main import main
from tests.job.test_build import _artifacts, build_args, reference, tree_hashes  # noqa: F401

pytestmark = pytest.mark.slow


def _killed_build(corpus, out, fault: str) -> None:
    cmd = [sys.executable, "-m", "pipeline.cli.main", *build_args(corpus, out, "--workers", "1")]
    r = subprocess.run(
        cmd, env={**os.environ, "PILE_FAULT": fault}, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == -9, r.stderr[-2000:]


def test_build_killed_mid_tokenize_reuses_the_finished_tasks(reference, tmp_path, capsys):  # noqa: F811
    corpus, _, hashes = reference
    out = tmp_path / "killed"
    _killed_build(corpus, out, "tokenize-standard:mid")
    work = list((out / "standard").glob(".pile.tokenize.*.tmp"))
    assert len(work) == 1 and len(list(work[0].glob("*.task.json"))) == 1
    capsys.readouterr()
    # verify: the work directory is one "interrupted" line, not one line per file in it
    assert main(["verify", str(out)]) == 4
    text = capsys.readouterr()
    text = text.out + text.err
    lines = [x for x in text.splitlines() if ".pile.tokenize." in x]
    assert len(lines) == 1 and "interrupted" in lines[0].lower(), text
    assert "1 of them hold the tasks that run finished" in lines[0]
    assert "000000." not in text  # the task files inside are not listed
    assert main(build_args(corpus, out, "--workers", "1")) == 0
    log = (out / "logs" / "build.log").read_text()
    assert "tokenize: ran 1 of 2 task(s), reused 1" in log
    got = tree_hashes(out)
    assert not [k for k in got if ".tmp" in k]
    assert _artifacts(got) == _artifacts(hashes)
    assert not list((out / "standard").glob(".*.tmp"))


def test_build_killed_mid_dedup_rereads_only_the_unfinished_files(reference, tmp_path):  # noqa: F811
    corpus, _, hashes = reference
    out = tmp_path / "killed"
    _killed_build(corpus, out, "dedup-signatures:1")
    assert len(list((out / "dedup").glob(".signatures.*.tmp/*.task.json"))) == 1
    assert main(build_args(corpus, out, "--workers", "1")) == 0
    log = (out / "logs" / "build.log").read_text()
    assert "read 1 of 2 file(s), reused 1" in log
    assert _artifacts(tree_hashes(out)) == _artifacts(hashes)
    assert not list((out / "dedup").glob(".*.tmp"))
