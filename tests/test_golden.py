"""Restructuring changes no output byte and no user-visible help (tools/golden_hashes.py,
tools/help_snapshot.py record what main produced; rerun `record` only for an intended change)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"_tool_{name}", TOOLS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def golden_tree(tmp_path_factory):
    gh = _tool("golden_hashes")
    root = tmp_path_factory.mktemp("golden")
    gh.produce(root)
    return gh, root


def test_every_artifact_of_build_and_stage_commands_is_byte_identical(golden_tree):
    gh, root = golden_tree
    diffs, notes = gh.check(root, json.loads(gh.GOLDEN.read_text()))
    assert not diffs, "\n".join(diffs + notes)


def test_golden_check_notices_a_changed_byte(golden_tree):
    gh, root = golden_tree
    golden = json.loads(gh.GOLDEN.read_text())
    rel = "build/standard/pile_text_document.bin"
    golden["files"][rel] = "0" * 64
    golden["files"]["build/no_such_file"] = "0" * 64
    diffs, _ = gh.check(root, golden)
    assert f"bytes differ: {rel}" in diffs and "missing: build/no_such_file" in diffs


def test_help_of_every_command_is_unchanged():
    hs = _tool("help_snapshot")
    assert hs.differences(json.loads(hs.SNAPSHOT.read_text())) == []
