"""A subset of tools/fault_suite.py in the suite: every input case, a few kills, storage damage on
a sample of artifacts, concurrency. The whole suite (≥25 kill points, every artifact) is the tool."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TOOL = Path(__file__).resolve().parents[1] / "tools" / "fault_suite.py"


@pytest.fixture(scope="module")
def fs():
    spec = importlib.util.spec_from_file_location("fault_suite", TOOL)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fault_suite"] = mod
    spec.loader.exec_module(mod)
    return mod


def _failures(cases) -> list[str]:
    return [f"[{c.category}] {c.name}: {c.detail}" for c in cases if not c.passed]


def test_every_bad_input_is_named_or_kept(fs, tmp_path):
    cases = []
    for ic in fs.input_cases(random.Random(0)):
        if ic.name in ("100 MB line", "10^5 one-character documents"):
            continue  # the tool runs these; here they would only cost time
        cases += fs.run_input_case(ic, tmp_path)
    assert not _failures(cases)
    assert sum(c.lost for c in cases) == 0 and sum(c.undetected for c in cases) == 0
    assert len(cases) >= 2 * 25


def test_kills_resume_identically_and_damage_is_caught(fs, tmp_path):
    cases = list(fs.crash_cases(tmp_path, random.Random(1), kills=3))
    assert not _failures(cases)
    assert len(cases) >= 3 + 4

    # damage a sample of artifact kinds of the clean build the crash cases made
    rng = random.Random(2)
    out = tmp_path / "clean"
    picked = [
        "standard/pile_text_document.bin",
        "deduped/pile_0.87_deduped_text_document.idx",
        "dedup/removed.parquet",
        "report.html",
    ]
    for rel in picked:
        path = out / rel
        orig = fs.damage(path, "flip", rng)
        try:
            r = fs.pile("verify", str(out))
            assert r.code == 4 and Path(rel).name in r.text, (rel, r.text[-500:])
        finally:
            path.write_bytes(orig)


def test_concurrent_runs_are_refused_and_verify_waits(fs, tmp_path):
    cases = list(fs.concurrency_cases(tmp_path))
    assert not _failures(cases)
    assert len(cases) == 4
